package agentsim

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestFrameCacheDecodesEachFrameOnce(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry(), nil)
	c := newFrameCache(1<<20, m)
	var decodes atomic.Int32
	decode := func(b []byte) (any, error) {
		decodes.Add(1)
		return string(b), nil
	}
	frame := []byte(`{"type":"MODIFIED","object":{"metadata":{"name":"ces-1"}}}`)
	if v, err := c.get("ciliumendpointslices", frame, decode); err != nil || v != string(frame) {
		t.Fatalf("first read: %v, %v", v, err)
	}
	const agents = 50
	got := make([]any, agents)
	var wg sync.WaitGroup
	for i := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each agent reads the frame into its own buffer.
			v, err := c.get("ciliumendpointslices", bytes.Clone(frame), decode)
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	wg.Wait()
	if n := decodes.Load(); n != 1 {
		t.Errorf("%d more agents reading a decoded frame decoded it %d times in all, want 1", agents, n)
	}
	for i, v := range got {
		if v != string(frame) {
			t.Fatalf("agent %d got %v", i, v)
		}
	}
	if h, miss := testutil.ToFloat64(c.hits), testutil.ToFloat64(c.misses); h != agents || miss != 1 {
		t.Errorf("hits/misses = %v/%v, want %d/1", h, miss, agents)
	}

	// The same bytes under another resource, and other bytes, are other
	// frames.
	if _, err := c.get("ciliumidentities", frame, decode); err != nil {
		t.Fatal(err)
	}
	other := bytes.Replace(frame, []byte("ces-1"), []byte("ces-2"), 1)
	if v, _ := c.get("ciliumendpointslices", other, decode); v != string(other) {
		t.Errorf("a different frame got %v", v)
	}
	if n := decodes.Load(); n != 3 {
		t.Errorf("decodes = %d, want 3 (one per distinct resource and frame)", n)
	}
}

// TestFrameCacheNeverWaits reads a frame while another agent is still
// decoding it: the reader decodes its own copy instead of waiting (agents
// filing one by one through a frame made their watches fall behind).
func TestFrameCacheNeverWaits(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry(), nil)
	c := newFrameCache(1<<20, m)
	frame := []byte(`{"type":"ADDED","object":{}}`)
	started, release := make(chan struct{}), make(chan struct{})
	first := make(chan any)
	go func() {
		v, _ := c.get("ciliumidentities", frame, func(b []byte) (any, error) {
			close(started)
			<-release
			return "first", nil
		})
		first <- v
	}()
	<-started
	second := make(chan any)
	go func() {
		v, _ := c.get("ciliumidentities", frame, func([]byte) (any, error) { return "own", nil })
		second <- v
	}()
	select {
	case v := <-second:
		if v != "own" {
			t.Errorf("the second reader got %v, want its own decoding", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second reader waited for the first one's decoding")
	}
	close(release)
	if v := <-first; v != "first" {
		t.Errorf("the first reader got %v", v)
	}
	if v, _ := c.get("ciliumidentities", frame, nil); v != "first" {
		t.Errorf("a later reader got %v, want the shared decoding", v)
	}
	if b, h := testutil.ToFloat64(c.busy), testutil.ToFloat64(c.hits); b != 1 || h != 1 {
		t.Errorf("busy/hits = %v/%v, want 1/1", b, h)
	}
}

func TestFrameCacheSharesErrors(t *testing.T) {
	c := newFrameCache(1<<20, nil)
	bad := errors.New("bad frame")
	calls := 0
	decode := func([]byte) (any, error) { calls++; return nil, bad }
	for range 3 {
		if _, err := c.get("pods", []byte("{"), decode); !errors.Is(err, bad) {
			t.Fatalf("err = %v, want %v", err, bad)
		}
	}
	if calls != 1 {
		t.Errorf("decoded %d times, want 1", calls)
	}
}

// TestFrameCacheBounded checks that the cache forgets frames once two
// generations of maxBytes have passed, and keeps a frame still being read
// in the newer generation.
func TestFrameCacheBounded(t *testing.T) {
	const size, perStripe = 100, 1000 // ten frames per stripe and generation
	c := newFrameCache(frameStripes*perStripe, nil)
	decodes := map[string]int{}
	decode := func(b []byte) (any, error) { decodes[string(b)]++; return nil, nil }
	frame := func(i int) []byte {
		s := fmt.Sprintf("frame-%d", i)
		return []byte(s + strings.Repeat(" ", size-len(s)))
	}
	hot := frame(-1)
	const n = 100 * frameStripes
	for i := range n {
		_, _ = c.get("r", frame(i), decode)
		if i%5 == 0 {
			_, _ = c.get("r", hot, decode)
		}
	}
	if n := decodes[string(hot)]; n != 1 {
		t.Errorf("a frame read every few frames was decoded %d times, want 1", n)
	}
	_, _ = c.get("r", frame(0), decode)
	if d := decodes[string(frame(0))]; d != 2 {
		t.Errorf("a frame %d frames old was decoded %d times, want 2 (forgotten once)", n, d)
	}
	held := 0
	for i := range c.stripes {
		held += len(c.stripes[i].cur) + len(c.stripes[i].prev)
	}
	if limit := frameStripes * (2*perStripe/size + 2); held > limit {
		t.Errorf("cache holds %d frames, want at most %d (two generations per stripe)", held, limit)
	}
}

// TestAgentsShareSliceFrames has several ces-mode agents read the same
// CiliumEndpointSlice stream at the same time through one frame cache (the
// race detector catches an agent that modifies a shared object): each
// slice is decoded once for sharing, and every agent ends up with every
// endpoint.
func TestAgentsShareSliceFrames(t *testing.T) {
	const slices, agents = 40, 4
	frames, _ := cesStream(t, slices)
	m := newMetrics(prometheus.NewRegistry(), nil)
	cache := newFrameCache(defaultFrameCacheBytes, m)
	var wg sync.WaitGroup
	all := make([]*Agent, agents)
	for i := range all {
		dp, _, err := datapath.Open(t.Context(), datapath.Config{Kind: datapath.KindMem, MaxIPCacheEntries: 1 << 16}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer dp.Close()
		cfg := AgentConfig{Node: fmt.Sprintf("node-%04d", i), Mode: scenarios.ModeCES, Datapath: dp, Metrics: m, Frames: cache}
		cfg.setDefaults()
		a := newAgentState(cfg)
		all[i] = a
		r := newReflector[slimCES](a, resourceSpec{name: "ciliumendpointslices"}, handler[slimCES]{replace: a.replaceSlices, event: a.onSlice}, cache)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.consume(bytes.NewReader(frames), ""); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// Each slice is decoded once and shared; an agent that read it while
	// the first was decoding it decoded its own copy (busy).
	miss, hit, busy := testutil.ToFloat64(cache.misses), testutil.ToFloat64(cache.hits), testutil.ToFloat64(cache.busy)
	if miss != slices || hit+busy != slices*(agents-1) || hit == 0 {
		t.Errorf("misses/hits/busy = %v/%v/%v, want %d misses and %d hits or busy, some hits", miss, hit, busy, slices, slices*(agents-1))
	}
	for i, a := range all {
		a.flushDP()
		if n := a.Status().IPCacheEntries; n != slices*100 {
			t.Errorf("agent %d has %d ipcache entries, want %d", i, n, slices*100)
		}
		if len(a.ipc.slices) != slices {
			t.Errorf("agent %d holds %d slices, want %d", i, len(a.ipc.slices), slices)
		}
	}
}
