package agentsim

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/testenv"
	"github.com/stampede-sim/stampede/scenarios"
)

// TestWatchCountsWhatArrives feeds an agent's namespace watch a list and
// watch frames of known sizes and checks that its report counts every
// event and byte, and holds the objects left with the size each was
// last received with.
func TestWatchCountsWhatArrives(t *testing.T) {
	item := func(name, v string) string {
		return fmt.Sprintf(`{"metadata":{"name":%q,"resourceVersion":%q,"labels":{"team":%q}}}`, name, v, name+v)
	}
	a0, b0 := item("a", "1"), item("b", "2")
	list := `{"kind":"NamespaceList","metadata":{"resourceVersion":"2"},"items":[` + a0 + "," + b0 + `]}`
	frame := func(typ, obj string) string { return `{"type":"` + typ + `","object":` + obj + "}\n" }
	frames := []string{
		frame("ADDED", item("c", "3")),
		frame("MODIFIED", item("a", "4444")),
		frame("BOOKMARK", `{"metadata":{"resourceVersion":"5"}}`),
		frame("DELETED", item("b", "6")),
	}
	served := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") != "true" {
			fmt.Fprint(w, list)
			return
		}
		select {
		case <-served:
			// Later watches stay open and quiet.
		default:
			for _, f := range frames {
				fmt.Fprint(w, f)
			}
			close(served)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()

	m := newMetrics(prometheus.NewRegistry(), nil)
	cfg := AgentConfig{Node: "n1", Mode: scenarios.ModeCRD, Metrics: m}
	cfg.setDefaults()
	a := newAgentState(cfg)
	kc, err := newKubeClient(&rest.Config{Host: srv.URL}, "t", "n1", 1000, 1000, m)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.close()
	a.kc = kc
	r := newReflector[slimNamespace](a, resourceSpec{name: "namespaces", path: pathNamespaces},
		handler[slimNamespace]{replace: a.replaceNamespaces, event: a.onNamespace}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); r.run(ctx) }()
	defer func() { cancel(); <-done }()

	wantBytes := uint64(len(list))
	for _, f := range frames {
		wantBytes += uint64(len(f))
	}
	want := agentcontract.Traffic{Events: 3, Bytes: wantBytes}
	var w *agentcontract.Work
	for {
		w = a.Status().Work
		if w != nil && w.Received["namespaces"] == want {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("received %+v, want %+v", w.Received, want)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// a (modified) and c (added) are held, b was deleted; each with the
	// size of the frame it last came in.
	wantHeld := agentcontract.Holding{Objects: 2, Bytes: int64(len(frames[0]) + len(frames[1]))}
	if got := w.Cached["namespaces"]; got != wantHeld {
		t.Errorf("cached %+v, want %+v", got, wantHeld)
	}
	if n := len(a.k8s.namespaces); n != 2 {
		t.Errorf("agent keeps %d namespaces, want 2", n)
	}
}

// TestDecodeListSizes: each list item's size is its bytes in the body (and
// the separator before it).
func TestDecodeListSizes(t *testing.T) {
	items := []string{`{"metadata":{"name":"300"},"security-labels":{"k8s:a":"b"}}`, `{"metadata":{"name":"301"},"security-labels":{}}`}
	in := `{"metadata":{"resourceVersion":"42"},"items":[` + strings.Join(items, ",") + `]}`
	lb, err := decodeList[slimCID](strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(lb.sizes) != len(items) {
		t.Fatalf("%d sizes for %d items", len(lb.sizes), len(items))
	}
	for i, it := range items {
		if got := lb.sizes[i]; got < len(it) || got > len(it)+1 {
			t.Errorf("items[%d]: size %d, want %d (+1 for the comma)", i, got, len(it))
		}
	}
}

// TestRegenerationCounts: a policy recomputation is counted with the
// endpoint policies it changed and the keys they now hold.
func TestRegenerationCounts(t *testing.T) {
	cfg := AgentConfig{Node: "n1", Mode: scenarios.ModeCRD, Metrics: newMetrics(prometheus.NewRegistry(), nil)}
	cfg.setDefaults()
	a := newAgentState(cfg)
	a.regenerate()
	w := a.Status().Work
	if w.PolicyRecomputations != 1 || w.EndpointPolicyChanges != 0 {
		t.Errorf("after one recomputation of no endpoints: %d recomputations, %d endpoint changes; want 1, 0", w.PolicyRecomputations, w.EndpointPolicyChanges)
	}
	if w.Datapath != "" || w.KernelMapBytes != nil {
		t.Errorf("no datapath, but the report says %q with %v kernel bytes", w.Datapath, w.KernelMapBytes)
	}
}

// checkWork checks the agents' reports of what they received and hold
// against the cluster the test wrote: every agent holds every object of
// the cluster-wide resources it watches (as a cilium-agent's informer
// store does), its own Node and its own pods, received at least what it holds, and
// counts the policy keys and datapath writes its datapath has.
func (c *testCluster) checkWork(ctx context.Context, f *Fleet, mode scenarios.Mode) {
	t := c.t
	t.Helper()
	// A cilium-agent watches its own Node only (watches.go), so it holds one.
	want := map[string]int64{"namespaces": int64(len(c.list(ctx, pathNamespaces))), "nodes": 1}
	switch mode {
	case scenarios.ModeCRD, scenarios.ModeOperator:
		want["ciliumendpoints"] = int64(len(c.list(ctx, pathCEPs)))
		want["ciliumidentities"] = int64(len(c.list(ctx, pathCIDs)))
	case scenarios.ModeCES:
		want["ciliumendpointslices"] = int64(len(c.list(ctx, pathCESs)))
		want["ciliumidentities"] = int64(len(c.list(ctx, pathCIDs)))
	case scenarios.ModeKVStore:
		want["kvstore-ipcache"] = int64(len(c.topo.Pods))
	case scenarios.ModeXDS:
		want = map[string]int64{}
	}
	local := map[string]int64{}
	for _, p := range c.topo.Pods {
		local[p.Node]++
	}
	// Watches deliver and the datapath writes a little after the digests
	// converge: wait for the counts to settle.
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var problems []string
	for {
		problems = problems[:0]
		for _, st := range f.Statuses() {
			problems = append(problems, workProblems(st, want, local[st.Node], mode)...)
		}
		if len(problems) == 0 {
			break
		}
		select {
		case <-wctx.Done():
			t.Fatalf("agents' work reports (%d problems), first: %s", len(problems), strings.Join(problems[:min(len(problems), 5)], "; "))
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The datapath's own counters.
	for _, a := range f.agents {
		st, _ := a.datapathStats()
		w := a.Status().Work
		if uint64(st.PolicyEntries) != uint64(w.PolicyMapKeys) || st.Updates != w.DatapathUpdates || st.MapWrites != w.MapWrites {
			t.Errorf("%s: report says %d policy keys, %d updates, %d map writes; datapath has %d, %d, %d",
				a.Node(), w.PolicyMapKeys, w.DatapathUpdates, w.MapWrites, st.PolicyEntries, st.Updates, st.MapWrites)
		}
		if (w.KernelMapBytes != nil) != (st.Kind == datapath.KindBPF) {
			t.Errorf("%s: %s datapath, kernel map bytes reported: %v", a.Node(), st.Kind, w.KernelMapBytes != nil)
		}
	}
	st := f.Statuses()[0]
	t.Logf("%s: work of %s: %+v", mode, st.Node, *st.Work)
}

func workProblems(st Status, want map[string]int64, local int64, mode scenarios.Mode) []string {
	w := st.Work
	if w == nil {
		return []string{st.Node + ": no work report"}
	}
	var out []string
	for res, n := range want {
		if got := w.Cached[res].Objects; got != n {
			out = append(out, fmt.Sprintf("%s: holds %d %s, want %d", st.Node, got, res, n))
		}
	}
	// Identities held are those known: CiliumIdentities are checked
	// against the API server above.
	for _, res := range []string{"xds-Identity", "kvstore-identities"} {
		if h, ok := w.Cached[res]; ok && h.Objects != int64(st.Identities) {
			out = append(out, fmt.Sprintf("%s: holds %d %s, knows %d identities", st.Node, h.Objects, res, st.Identities))
		}
	}
	if mode == scenarios.ModeXDS {
		if got := w.Cached["xds-Endpoint"].Objects; got != local {
			out = append(out, fmt.Sprintf("%s: holds %d xds endpoints, want %d", st.Node, got, local))
		}
		if _, ok := w.Cached["xds-Identity"]; !ok {
			out = append(out, st.Node+": holds no xds identities")
		}
	} else if got := w.Cached["pods"].Objects; got != local {
		out = append(out, fmt.Sprintf("%s: holds %d pods, want its own %d", st.Node, got, local))
	}
	for res, h := range w.Cached {
		rcv := w.Received[res]
		if h.Objects > 0 && (h.Bytes <= 0 || uint64(h.Bytes) > rcv.Bytes) {
			out = append(out, fmt.Sprintf("%s: %s: holds %d bytes, received %d", st.Node, res, h.Bytes, rcv.Bytes))
		}
	}
	if w.Identities != st.Identities || w.Identities == 0 {
		out = append(out, fmt.Sprintf("%s: %d identities known, status says %d", st.Node, w.Identities, st.Identities))
	}
	if w.PolicyRecomputations == 0 || w.EndpointPolicyChanges < uint64(local) || w.PolicyMapKeys == 0 {
		out = append(out, fmt.Sprintf("%s: %d recomputations changed %d endpoint policies to %d keys; want some for %d endpoints",
			st.Node, w.PolicyRecomputations, w.EndpointPolicyChanges, w.PolicyMapKeys, local))
	}
	if w.DatapathUpdates == 0 || w.MapWrites == 0 || w.Datapath == "" {
		out = append(out, fmt.Sprintf("%s: datapath %q: %d updates, %d map writes", st.Node, w.Datapath, w.DatapathUpdates, w.MapWrites))
	}
	return out
}

// TestKernelMapBytesOnlyFromBPF: with the bpf datapath an agent reports
// the kernel's memory of its maps (their fdinfo memlock, which the
// datapath reads); with mem it reports none rather than an estimate.
func TestKernelMapBytesOnlyFromBPF(t *testing.T) {
	for _, kind := range []datapath.Kind{datapath.KindMem, datapath.KindBPF} {
		t.Run(string(kind), func(t *testing.T) {
			// auto opens bpf where this process may, mem elsewhere.
			open := kind
			if kind == datapath.KindBPF {
				open = datapath.KindAuto
			}
			dp, got, err := datapath.Open(context.Background(), datapath.SizeFor(open, 1000, 10, 100), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer dp.Close()
			if got != kind {
				testenv.Skip(t, "bpf datapath: this process cannot use it (datapath auto chose %s)", got)
			}
			cfg := AgentConfig{Node: "n1", Mode: scenarios.ModeCRD, Metrics: newMetrics(prometheus.NewRegistry(), nil), Datapath: dp}
			cfg.setDefaults()
			a := newAgentState(cfg)
			a.mu.Lock()
			a.queueDP(dpOp{kind: dpUpsertIP, ip: 10<<24 | 1, id: 300})
			a.mu.Unlock()
			a.flushDP()
			w := a.Status().Work
			st := dp.Stats()
			if w.Datapath != string(kind) || w.DatapathUpdates != st.Updates || w.DatapathUpdates == 0 {
				t.Errorf("report: datapath %q, %d updates; want %s, %d (> 0)", w.Datapath, w.DatapathUpdates, kind, st.Updates)
			}
			switch {
			case kind == datapath.KindMem && w.KernelMapBytes != nil:
				t.Errorf("mem datapath reported %d bytes of kernel maps", *w.KernelMapBytes)
			case kind == datapath.KindBPF && (w.KernelMapBytes == nil || *w.KernelMapBytes != st.MapBytes || st.MapBytes == 0):
				t.Errorf("bpf datapath: reported %v kernel bytes, its maps' memlock is %d", w.KernelMapBytes, st.MapBytes)
			}
		})
	}
}

// BenchmarkObjectSizes is the cost of keeping what an agent holds of a
// watched resource: per event (hash the object's name, set its size,
// publish the totals) and, as heap-B/object, the simulator's memory per
// object held (every agent keeps one entry per CiliumEndpoint of the
// cluster in crd mode).
func BenchmarkObjectSizes(b *testing.B) {
	const objects = 20000
	names := make([]string, objects)
	for i := range names {
		names[i] = fmt.Sprintf("deploy-%d-7f9c6b5d4-%05d", i%50, i)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := newObjectSizes(&resourceWork{})
	for i, n := range names {
		s.set(objectKey("ns-0", n), 1000+i%100)
	}
	s.publish()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perObject := float64(after.HeapAlloc-before.HeapAlloc) / objects
	runtime.KeepAlive(s)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.set(objectKey("ns-0", names[i%objects]), 1000+i%100)
		s.rw.events.Add(1)
		s.publish()
	}
	b.ReportMetric(perObject, "heap-B/object")
}
