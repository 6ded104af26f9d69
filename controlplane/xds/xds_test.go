package xds_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/stampede-sim/stampede/agentsim/xdsclient"
	"github.com/stampede-sim/stampede/controlplane/xds"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/xdsapi"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestMain(m *testing.M) {
	if name := os.Getenv(benchChildEnv); name != "" {
		if err := runBenchChild(name); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

// state is what an agent holds, in comparable form.
type state struct {
	Identities map[uint32][]string
	Hosts      map[uint32][]netip.Addr
	Policies   map[string]int // namespace/name -> number of rules
	Endpoints  map[string]xdsclient.Endpoint
}

func newState() state {
	return state{Identities: map[uint32][]string{}, Hosts: map[uint32][]netip.Addr{}, Policies: map[string]int{}, Endpoints: map[string]xdsclient.Endpoint{}}
}

// fakeSink is a hand-written xdsclient.Sink that records the state.
type fakeSink struct {
	mu      sync.Mutex
	s       state
	applied map[string]string
}

func newFakeSink() *fakeSink { return &fakeSink{s: newState(), applied: map[string]string{}} }

func (f *fakeSink) UpsertIdentity(id uint32, labels []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s.Identities[id] = slices.Clone(labels)
	return nil
}
func (f *fakeSink) DeleteIdentity(id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.s.Identities, id)
	return nil
}
func (f *fakeSink) SetIdentityHosts(id uint32, addrs []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s.Hosts[id] = slices.Clone(addrs)
	return nil
}
func (f *fakeSink) DeleteIdentityHosts(id uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.s.Hosts, id)
	return nil
}
func (f *fakeSink) UpsertPolicy(ns, name string, rules []policy.Rule) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s.Policies[ns+"/"+name] = len(rules)
	return nil
}
func (f *fakeSink) DeletePolicy(ns, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.s.Policies, ns+"/"+name)
	return nil
}
func (f *fakeSink) SetEndpoint(ep xdsclient.Endpoint) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.s.Endpoints[ep.Namespace+"/"+ep.Name] = ep
	return nil
}
func (f *fakeSink) DeleteEndpoint(ns, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.s.Endpoints, ns+"/"+name)
	return nil
}
func (f *fakeSink) Applied(typeURL, version string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied[typeURL] = version
}

func (f *fakeSink) snapshot() state {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := newState()
	maps.Copy(out.Identities, f.s.Identities)
	maps.Copy(out.Hosts, f.s.Hosts)
	maps.Copy(out.Policies, f.s.Policies)
	maps.Copy(out.Endpoints, f.s.Endpoints)
	return out
}

func (f *fakeSink) appliedTypes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Collect(maps.Keys(f.applied))
}

func newServer(t *testing.T) *xds.Server {
	t.Helper()
	srv, err := xds.New(xds.Config{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// serve runs srv on a fresh loopback port (or addr if given) until stop.
func serve(ctx context.Context, t *testing.T, srv *xds.Server, addr ...string) (string, func()) {
	t.Helper()
	a := "127.0.0.1:0"
	if len(addr) > 0 {
		a = addr[0]
	}
	lis, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	return lis.Addr().String(), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}

func runClient(ctx context.Context, t *testing.T, addr, node string, sink xdsclient.Sink, sotw bool) func() {
	t.Helper()
	c, err := xdsclient.New(xdsclient.Config{Server: addr, Node: node, Sink: sink, StateOfTheWorld: sotw, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("client %s: %v", node, err)
		}
	}
}

func newClient(t *testing.T, addr, node string, sink xdsclient.Sink, sotw bool) *xdsclient.Client {
	t.Helper()
	c, err := xdsclient.New(xdsclient.Config{Server: addr, Node: node, Sink: sink, StateOfTheWorld: sotw, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startClient(ctx context.Context, t *testing.T, c *xdsclient.Client) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("client: %v", err)
		}
	}
}

// eventually waits for cond, checking it every few milliseconds, for at
// most 30 seconds.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		<-tick.C
	}
}

func loadModel(t *testing.T, name string) (*xds.Model, *scenarios.Scenario, *scenarios.Topology) {
	t.Helper()
	s, err := scenarios.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	m := xds.NewModel(s.Cluster.Name, nil)
	if err := loadTopology(m, s, topo); err != nil {
		t.Fatal(err)
	}
	return m, s, topo
}

// relabel applies the scenario's relabel step to the model's namespaces.
func relabel(t *testing.T, m *xds.Model, s *scenarios.Scenario, topo *scenarios.Topology) {
	t.Helper()
	for _, st := range s.Steps {
		if st.Relabel == nil {
			continue
		}
		for i := range topo.Namespaces {
			ns := &topo.Namespaces[i]
			if len(st.Relabel.Namespaces) > 0 && !slices.Contains(st.Relabel.Namespaces, ns.Name) {
				continue
			}
			for k, v := range st.Relabel.Set {
				ns.Labels[k] = v
			}
			for _, k := range st.Relabel.Remove {
				delete(ns.Labels, k)
			}
			m.SetNamespace(ns.Name, ns.Labels)
		}
		return
	}
	t.Fatal("scenario has no relabel step")
}

// expected computes every node's expected agent state from the model.
func expected(t *testing.T, m *xds.Model, topo *scenarios.Topology) map[string]state {
	t.Helper()
	global := newState()
	ids := map[uint32][]netip.Addr{}
	out := map[string]state{}
	for _, n := range topo.Nodes {
		s := newState()
		s.Identities, s.Hosts, s.Policies = global.Identities, global.Hosts, global.Policies
		out[n.Name] = s
	}
	for _, p := range topo.Pods {
		id, ok := m.IdentityOf(p.Namespace, p.Name)
		if !ok {
			t.Fatalf("pod %s/%s has no identity", p.Namespace, p.Name)
		}
		ids[uint32(id)] = append(ids[uint32(id)], p.IP)
		out[p.Node].Endpoints[p.Namespace+"/"+p.Name] = xdsclient.Endpoint{Namespace: p.Namespace, Name: p.Name, IP: p.IP, Identity: uint32(id)}
	}
	for id, addrs := range ids {
		slices.SortFunc(addrs, netip.Addr.Compare)
		global.Hosts[id] = addrs
		global.Identities[id] = nil // labels checked separately: count only
	}
	return out
}

func checkConverged(t *testing.T, want map[string]state, sinks map[string]*fakeSink, policies int) {
	t.Helper()
	for node, sink := range sinks {
		w := want[node]
		eventually(t, func() bool {
			g := sink.snapshot()
			return len(g.Identities) == len(w.Identities) && maps.EqualFunc(w.Hosts, g.Hosts, slices.Equal) && maps.Equal(w.Endpoints, g.Endpoints) && len(g.Policies) == policies
		})
		g := sink.snapshot()
		for id := range w.Identities {
			if len(g.Identities[id]) == 0 {
				t.Errorf("node %s: identity %d has no labels", node, id)
			}
		}
	}
}

// TestRelabelSmallConverges serves relabel-small to one client per node,
// relabels every namespace, and checks that every agent holds exactly the
// identities, hosts and policies of the cluster and only its own node's
// endpoints, before and after, in delta and state-of-the-world.
func TestRelabelSmallConverges(t *testing.T) {
	for _, tc := range []struct {
		name string
		sotw bool
	}{{"delta", false}, {"sotw", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			m, s, topo := loadModel(t, "relabel-small")
			c, err := m.Flush()
			if err != nil {
				t.Fatal(err)
			}
			srv := newServer(t)
			if _, err := srv.Apply(c); err != nil {
				t.Fatal(err)
			}
			addr, stop := serve(ctx, t, srv)
			defer stop()
			sinks := map[string]*fakeSink{}
			for _, n := range topo.Nodes {
				sinks[n.Name] = newFakeSink()
				defer runClient(ctx, t, addr, n.Name, sinks[n.Name], tc.sotw)()
			}
			policies := srv.Resources()[xdsapi.TypePolicy]
			if policies == 0 {
				t.Fatal("no policies published")
			}
			before := m.Identities()
			checkConverged(t, expected(t, m, topo), sinks, policies)

			relabel(t, m, s, topo)
			c, err = m.Flush()
			if err != nil {
				t.Fatal(err)
			}
			n, err := srv.Apply(c)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Fatal("relabel changed no resource")
			}
			checkConverged(t, expected(t, m, topo), sinks, policies)
			if m.Identities() != before {
				t.Errorf("identities after relabel = %d, want %d (one per deployment, old ones withdrawn)", m.Identities(), before)
			}
			eventually(t, func() bool { return srv.PushLatency().Pending == 0 })
			pl := srv.PushLatency()
			if pl.Measured < 1 || pl.Max <= 0 {
				t.Errorf("push latency not measured: %+v", pl)
			}
			t.Logf("push latency: %+v", pl)
		})
	}
}

// TestResumeAfterRestart stops the control plane under connected delta
// agents, changes the cluster, starts a new control plane on the same
// address with the new state, and checks that every agent converges and
// received only the resources that changed.
func TestResumeAfterRestart(t *testing.T) {
	ctx := t.Context()
	m, s, topo := loadModel(t, "relabel-small")
	c, err := m.Flush()
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t)
	if _, err := srv.Apply(c); err != nil {
		t.Fatal(err)
	}
	addr, stop := serve(ctx, t, srv)
	sinks := map[string]*fakeSink{}
	clients := map[string]*xdsclient.Client{}
	for _, n := range topo.Nodes {
		sinks[n.Name] = newFakeSink()
		clients[n.Name] = newClient(t, addr, n.Name, sinks[n.Name], false)
		defer startClient(ctx, t, clients[n.Name])()
	}
	policies := srv.Resources()[xdsapi.TypePolicy]
	checkConverged(t, expected(t, m, topo), sinks, policies)
	stop()

	upserts := map[string]uint64{}
	for n, cl := range clients {
		upserts[n] = cl.Stats().Upserts
	}
	relabel(t, m, s, topo)
	change, err := m.Flush()
	if err != nil {
		t.Fatal(err)
	}
	changed := change.Len()

	srv2 := newServer(t)
	if _, err := srv2.Apply(m.Snapshot()); err != nil {
		t.Fatal(err)
	}
	_, stop2 := serve(ctx, t, srv2, addr)
	defer stop2()
	checkConverged(t, expected(t, m, topo), sinks, policies)
	total := 0
	for _, n := range srv2.Resources() {
		total += n
	}
	for n, cl := range clients {
		st := cl.Stats()
		got := st.Upserts - upserts[n]
		if got == 0 || got >= uint64(total) {
			t.Errorf("node %s: %d upserts after resuming, want some but fewer than the %d resources held (batch had %d changes)", n, got, total, changed)
		}
		if st.Reconnects == 0 {
			t.Errorf("node %s: no reconnect counted", n)
		}
	}
}

// TestNACKKeepsLastGoodState publishes a malformed resource and checks the
// agent NACKs it, keeps its last good state, counts the error, and takes
// the next good version.
func TestNACKKeepsLastGoodState(t *testing.T) {
	for _, tc := range []struct {
		name string
		sotw bool
	}{{"delta", false}, {"sotw", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			reg := prometheus.NewRegistry()
			srv, err := xds.New(xds.Config{Registerer: reg})
			if err != nil {
				t.Fatal(err)
			}
			hosts := func(addrs ...string) *xds.Changes {
				c := &xds.Changes{}
				c.Set(xdsapi.TypeIdentity, "", "256", &xdsapi.Identity{Id: 256, Labels: []string{"k8s:app=a"}})
				c.Set(xdsapi.TypeIdentityHosts, "", "256", &xdsapi.IdentityHosts{Policy: 256, HostAddresses: addrs})
				return c
			}
			if _, err := srv.Apply(hosts("10.0.0.1")); err != nil {
				t.Fatal(err)
			}
			addr, stop := serve(ctx, t, srv)
			defer stop()
			sink := newFakeSink()
			cl := newClient(t, addr, "node-0000", sink, tc.sotw)
			defer startClient(ctx, t, cl)()
			good := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
			eventually(t, func() bool { return cmp.Equal(sink.snapshot().Hosts[256], good, addrCmp) })

			if _, err := srv.Apply(hosts("10.0.0.1", "not-an-address")); err != nil {
				t.Fatal(err)
			}
			eventually(t, func() bool { return cl.Stats().NACKs == 1 })
			eventually(t, func() bool {
				return counterValue(t, reg, "stampede_xds_nacks_total", "IdentityHosts") == 1
			})
			if diff := cmp.Diff(good, sink.snapshot().Hosts[256], addrCmp); diff != "" {
				t.Errorf("state after NACK (-want +got):\n%s", diff)
			}
			if st := cl.Stats(); st.LastError == "" {
				t.Error("NACK left no error message")
			}

			if _, err := srv.Apply(hosts("10.0.0.2")); err != nil {
				t.Fatal(err)
			}
			fixed := []netip.Addr{netip.MustParseAddr("10.0.0.2")}
			eventually(t, func() bool { return cmp.Equal(sink.snapshot().Hosts[256], fixed, addrCmp) })
			if n := cl.Stats().NACKs; n != 1 {
				t.Errorf("NACKs = %d, want 1", n)
			}
		})
	}
}

// counterValue reads a counter with one label value back from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestApplyRejectsBadChanges checks the errors of Apply.
func TestApplyRejectsBadChanges(t *testing.T) {
	for _, tc := range []struct {
		name     string
		typ      string
		node     string
		resource string
	}{
		{"endpoint without node", xdsapi.TypeEndpoint, "", "ns/a"},
		{"identity with node", xdsapi.TypeIdentity, "node-1", "256"},
		{"unknown type", "type.googleapis.com/x.Y", "", "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			c := &xds.Changes{}
			c.Set(tc.typ, tc.node, tc.resource, &xdsapi.Identity{Id: 256})
			if _, err := srv.Apply(c); !errors.Is(err, xds.ErrBadChange) {
				t.Errorf("Apply = %v, want ErrBadChange", err)
			}
		})
	}
}

// TestUnchangedApplyIsNoChange checks that re-applying identical resources
// changes nothing and records no change.
func TestUnchangedApplyIsNoChange(t *testing.T) {
	srv := newServer(t)
	c := &xds.Changes{}
	for i := 256; i < 260; i++ {
		c.Set(xdsapi.TypeIdentity, "", strconv.Itoa(i), &xdsapi.Identity{Id: uint32(i), Labels: []string{"k8s:app=" + strconv.Itoa(i)}})
	}
	if n, err := srv.Apply(c); err != nil || n != 4 {
		t.Fatalf("first Apply = %d, %v; want 4", n, err)
	}
	if n, err := srv.Apply(c); err != nil || n != 0 {
		t.Fatalf("second Apply = %d, %v; want 0", n, err)
	}
	if got := srv.PushLatency().Changes; got != 1 {
		t.Errorf("changes = %d, want 1", got)
	}
}
