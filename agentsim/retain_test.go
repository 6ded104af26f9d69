package agentsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/scenarios"
)

// cesStream is a watch stream of full CiliumEndpointSlices (100 endpoints
// each, about 12 KiB a frame) and its objects' total size.
func cesStream(t testing.TB, slices int) ([]byte, int) {
	t.Helper()
	type ep struct {
		Name       string `json:"name"`
		ID         int64  `json:"id"`
		Networking struct {
			Addressing []map[string]string `json:"addressing"`
			Node       string              `json:"node"`
		} `json:"networking"`
	}
	var stream bytes.Buffer
	size := 0
	for s := 0; s < slices; s++ {
		eps := make([]ep, 100)
		for i := range eps {
			n := s*len(eps) + i
			eps[i].Name = fmt.Sprintf("deploy-%d-7f9c6b5d4-%05d", n%50, n)
			eps[i].ID = int64(1000 + n%500)
			eps[i].Networking.Addressing = []map[string]string{{"ipv4": fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)}}
			eps[i].Networking.Node = "100.64.0.1"
		}
		obj, err := json.Marshal(map[string]any{
			"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumEndpointSlice",
			"metadata":  map[string]any{"name": fmt.Sprintf("ces-%05d-abcdefgh", s), "resourceVersion": fmt.Sprint(1000 + s)},
			"namespace": "ns-0", "endpoints": eps,
		})
		if err != nil {
			t.Fatal(err)
		}
		size += len(obj)
		fmt.Fprintf(&stream, `{"type":"ADDED","object":%s}`+"\n", obj)
	}
	return stream.Bytes(), size
}

func heapAlloc() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestSliceWatchDoesNotPinFrames feeds full CiliumEndpointSlices to an
// agent through its watch path, then deletes them, and checks that the
// deletion frees little more than the slices' entries. goccy/go-json hands
// out strings that share the memory of the whole decoded frame, so a slice
// name kept as a map key pinned its frame until the slice went away: 0.7
// GiB of a 250-agent shard's heap in relabel-1k's ces mode.
func TestSliceWatchDoesNotPinFrames(t *testing.T) {
	const slices = 400
	frames, size := cesStream(t, slices)
	dp, _, err := datapath.Open(t.Context(), datapath.Config{Kind: datapath.KindMem, MaxIPCacheEntries: 1 << 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	cfg := AgentConfig{Node: "node-0000", Mode: scenarios.ModeCES, Datapath: dp, Metrics: newMetrics(prometheus.NewRegistry(), nil)}
	cfg.setDefaults()
	a := newAgentState(cfg)
	r := newReflector[slimCES](a, resourceSpec{name: "ciliumendpointslices"}, handler[slimCES]{replace: a.replaceSlices, event: a.onSlice}, nil)
	if _, err := r.consume(bytes.NewReader(frames), ""); err != nil {
		t.Fatal(err)
	}
	a.flushDP()
	if got := len(a.ipc.slices); got != slices {
		t.Fatalf("agent holds %d slices, want %d", got, slices)
	}
	held := heapAlloc()
	a.mu.Lock()
	for name := range a.ipc.slices {
		a.applySlice(name, nil)
	}
	a.mu.Unlock()
	a.flushDP()
	freed := held - heapAlloc()
	runtime.KeepAlive(frames)
	// What goes is the slices' entries and the datapath's queued
	// deletions, well under half the frames' size; had the agent pinned
	// the frames, they would go too.
	t.Logf("frames %d KiB; deleting the slices freed %d KiB", size>>10, freed>>10)
	if freed > int64(size)/2 {
		t.Errorf("deleting %d slices freed %d KiB (frames: %d KiB): the agent pinned the frames", slices, freed>>10, size>>10)
	}
}
