package agentsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// cepObject is a CiliumEndpoint as an API server sends it: the agent's
// object plus server-set metadata.
func cepObject(i int, id identity.ID, l identity.Labels) []byte {
	ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	labels := make([]string, len(l))
	for j, x := range l {
		labels[j] = x.String()
	}
	name := fmt.Sprintf("deploy-%d-7f9c6b5d4-%05d", i%50, i)
	obj := map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
		"metadata": map[string]any{
			"name": name, "namespace": "ns-" + fmt.Sprint(i%5),
			"uid":               fmt.Sprintf("6f1c2d3e-4b5a-4c7d-8e9f-%012d", i),
			"resourceVersion":   fmt.Sprint(100000 + i),
			"generation":        1,
			"creationTimestamp": "2026-11-22T04:00:00Z",
			"ownerReferences": []map[string]any{{
				"apiVersion": "v1", "kind": "Pod", "name": name,
				"uid": fmt.Sprintf("1a2b3c4d-5e6f-4a8b-9c0d-%012d", i),
			}},
		},
		"status": EndpointStatus{
			ID:                  int64(i%4000 + 1),
			Identity:            EndpointIdentity{ID: int64(id), Labels: labels},
			Networking:          EndpointNetworking{Addressing: []AddressPair{{IPv4: ip.String()}}, Node: "100.64.0.1"},
			State:               "ready",
			ExternalIdentifiers: ExternalIdentifiers{K8sNamespace: "ns-0", K8sPodName: name, PodName: "ns-0/" + name},
		},
	}
	b, _ := json.Marshal(obj)
	return b
}

// eventAgent is a crd-mode agent without a client, fed directly.
func eventAgent(b *testing.B) (*Agent, []identity.Labels) {
	b.Helper()
	dp, _, err := datapath.Open(b.Context(), datapath.Config{Kind: datapath.KindMem, MaxIPCacheEntries: 1 << 20}, nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg := AgentConfig{
		Node: "node-0000", Mode: scenarios.ModeCRD, Datapath: dp,
		Metrics: newMetrics(prometheus.NewRegistry(), nil), Interner: &identity.Interner{},
	}
	cfg.setDefaults()
	a := newAgentState(cfg)
	var sets []identity.Labels
	for i := 0; i < 250; i++ {
		l := identity.PodLabels(a.cfg.Filter, identity.PodInfo{
			Cluster: "default", Namespace: fmt.Sprint("ns-", i%5), ServiceAccount: "sa-0",
			PodLabels:       map[string]string{"app": fmt.Sprint("deploy-", i/5), "tier": "backend"},
			NamespaceLabels: map[string]string{"env": "prod", "team": "t", "version": "v10.45"},
		}, nil)
		a.mu.Lock()
		a.upsertIdentity(identity.ID(1000+i), l, l.Key())
		a.mu.Unlock()
		sets = append(sets, l)
	}
	b.Cleanup(func() { dp.Close() })
	return a, sets
}

// BenchmarkCEPEvent compares an agent's cost per received CiliumEndpoint
// watch event (decode the frame into the slim type in one pass, update the
// ipcache, the digest and the datapath) with the cost of only decoding the
// event's object into the slim type, and with client-go's unstructured
// decoding of the same object. Metrics: ns/event and bytes/event; the
// agent/decode ratio is reported by the "agent" case as x-decode.
func BenchmarkCEPEvent(b *testing.B) {
	const distinct = 20000
	a, sets := eventAgent(b)
	objs := make([][]byte, distinct)
	var size int
	for i := range objs {
		objs[i] = cepObject(i, identity.ID(1000+i%250), sets[i%250])
		size += len(objs[i])
	}
	avg := float64(size) / distinct
	var stream bytes.Buffer
	for i := 0; i < distinct; i++ {
		typ := evAdded
		if i%2 == 1 {
			typ = evModified
		}
		fmt.Fprintf(&stream, `{"type":%q,"object":%s}`+"\n", typ, objs[i])
	}
	frames := stream.Bytes()

	var decodeNs float64
	b.Run("decode-slim", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			var c slimCEP
			if err := json.Unmarshal(objs[i%distinct], &c); err != nil {
				b.Fatal(err)
			}
		}
		decodeNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(avg, "bytes/event")
	})
	b.Run("decode-unstructured", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			var u unstructured.Unstructured
			if err := u.UnmarshalJSON(objs[i%distinct]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("agent", func(b *testing.B) {
		r := newReflector[slimCEP](a, resourceSpec{name: "ciliumendpoints"}, handler[slimCEP]{replace: a.replaceCEPs, event: a.onCEP}, nil)
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			// One pass over the stream is distinct events; the
			// benchmark loop runs it as often as needed.
			if _, err := r.consume(bytes.NewReader(frames), ""); err != nil {
				b.Fatal(err)
			}
			a.flushDP()
			n += distinct
		}
		perEvent := float64(b.Elapsed().Nanoseconds()) / float64(n)
		b.ReportMetric(perEvent, "ns/event")
		if decodeNs > 0 {
			b.ReportMetric(perEvent/decodeNs, "x-decode")
		}
		st := a.Status()
		if st.IPCacheEntries != distinct {
			b.Fatalf("ipcache has %d entries, want %d", st.IPCacheEntries, distinct)
		}
	})
}

// BenchmarkSliceEventShared measures what one CiliumEndpointSlice watch
// event costs a shard of agents that all read it (each its own stream, as
// from the API server): decoded by every agent ("private") or once per
// shard through the frame cache ("shared"). Metrics: ns per agent per event
// (B/op is per shard per pass over the slices).
func BenchmarkSliceEventShared(b *testing.B) {
	const slices, agents = 200, 25
	frames, _ := cesStream(b, slices)
	for _, shared := range []bool{false, true} {
		name := "private"
		if shared {
			name = "shared"
		}
		b.Run(name, func(b *testing.B) {
			m := newMetrics(prometheus.NewRegistry(), nil)
			readers := make([]*reflector[slimCES, *slimCES], agents)
			for i := range readers {
				dp, _, err := datapath.Open(b.Context(), datapath.Config{Kind: datapath.KindMem, MaxIPCacheEntries: 1 << 16}, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { dp.Close() })
				cfg := AgentConfig{Node: fmt.Sprintf("node-%04d", i), Mode: scenarios.ModeCES, Datapath: dp, Metrics: m}
				cfg.setDefaults()
				a := newAgentState(cfg)
				r := newReflector[slimCES](a, resourceSpec{name: "ciliumendpointslices"}, handler[slimCES]{replace: a.replaceSlices, event: a.onSlice}, nil)
				readers[i] = r
				// The first pass adds the endpoints; the measured
				// passes are updates that change nothing, so that
				// only the reading of events is compared.
				if _, err := r.consume(bytes.NewReader(frames), ""); err != nil {
					b.Fatal(err)
				}
				a.flushDP()
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				// A new cache per pass: each pass is new events, as
				// resourceVersions would make them.
				var cache *frameCache
				if shared {
					cache = newFrameCache(defaultFrameCacheBytes, nil)
				}
				for _, r := range readers {
					r.frames = cache
					if _, err := r.consume(bytes.NewReader(frames), ""); err != nil {
						b.Fatal(err)
					}
				}
				n += slices * agents
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/agent-event")
		})
	}
}
