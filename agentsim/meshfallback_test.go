package agentsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/fakeapi"
	"github.com/stampede-sim/stampede/internal/access"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// replicaService is a stable address in front of one replica, as the
// Kubernetes Service in front of a clustermesh-apiserver is: agents keep
// its URL while the replica behind it dies and a new one (new etcd, new
// cluster ID) takes its place. While no replica is behind it, it accepts
// and closes connections at once.
type replicaService struct {
	ln net.Listener

	mu      sync.Mutex
	backend string // host:port, "" while down
	conns   map[net.Conn]bool
	wg      sync.WaitGroup
}

func startReplicaService(t *testing.T) *replicaService {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &replicaService{ln: ln, conns: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		ln.Close()
		s.down()
		s.wg.Wait()
	})
	return s
}

func (s *replicaService) url() string { return "http://" + s.ln.Addr().String() }

// up puts the replica whose etcd listens at clientURL behind the service.
func (s *replicaService) up(clientURL string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.backend = strings.TrimPrefix(clientURL, "http://")
}

// down takes the replica away and cuts every connection to it.
func (s *replicaService) down() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.backend = ""
	for c := range s.conns {
		c.Close()
	}
	clear(s.conns)
}

func (s *replicaService) serve() {
	defer s.wg.Done()
	for {
		in, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		backend := s.backend
		s.mu.Unlock()
		var out net.Conn
		if backend != "" {
			out, _ = net.DialTimeout("tcp", backend, time.Second)
		}
		if out == nil {
			in.Close()
			continue
		}
		s.mu.Lock()
		if s.backend != backend {
			s.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
		s.conns[in], s.conns[out] = true, true
		s.mu.Unlock()
		s.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer s.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(in, out)
		go pipe(out, in)
	}
}

// meshFallbackRun is mode mesh with replicas behind replicaServices.
type meshFallbackRun struct {
	c        *testCluster
	services []*replicaService
	mirrors  []*meshMirror
	f        *Fleet
	log      *requestLog
	reg      *prometheus.Registry
}

// startMeshFallbackMode runs mode mesh on s with replicas mirrors, each
// behind a replicaService, and the agents' API server fallback set to
// fallback (replacing the scenario's knob).
func startMeshFallbackMode(t *testing.T, ctx context.Context, s *scenarios.Scenario, replicas int, fallback bool) *meshFallbackRun { //nolint:revive // ctx bounds setup
	t.Helper()
	topo, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	agentTokens := map[string]string{}
	var tokens []fakeapi.Token
	for _, n := range topo.Nodes {
		tok := "agent-" + n.Name
		agentTokens[n.Name] = tok
		tokens = append(tokens, fakeapi.Token{Token: tok, User: access.AgentUser(n.Name)})
	}
	tokens = append(tokens, fakeapi.Token{Token: meshTestToken, User: access.MeshUser})
	c := startCluster(t, s, func(cfg *fakeapi.Config) { cfg.Tokens = tokens })
	c.setup(ctx)
	c.startControlPlane(t, scenarios.ModeMesh)

	run := &meshFallbackRun{c: c, log: &requestLog{}, reg: prometheus.NewRegistry()}
	urls := make([]string, replicas)
	for i := range replicas {
		svc := startReplicaService(t)
		m := c.startMirror(t, i)
		svc.up(m.r.srv.ClientURL())
		run.services = append(run.services, svc)
		run.mirrors = append(run.mirrors, m)
		urls[i] = svc.url()
	}
	cfg := c.fleetConfig(scenarios.ModeMesh)
	cfg.REST = run.log.wrap(cfg.REST)
	cfg.Tokens = agentTokens
	cfg.Mesh = urls
	cfg.MeshProbeInterval = 200 * time.Millisecond
	cfg.MeshAPIServerFallback = &fallback
	cfg.Registerer = run.reg
	run.f = runFleet(t, ctx, cfg)
	return run
}

// stopReplica kills replica i: its mirror and etcd, and the connections.
func (r *meshFallbackRun) stopReplica(i int) {
	r.services[i].down()
	r.mirrors[i].stop()
}

// restartReplica starts a new replica i (new etcd, new cluster ID, filled
// from the API server) behind the same service.
func (r *meshFallbackRun) restartReplica(t *testing.T, i int) {
	t.Helper()
	m := r.c.startMirror(t, i)
	r.mirrors[i] = m
	r.services[i].up(m.r.srv.ClientURL())
}

// agents are the fleet's agents in node order.
func (r *meshFallbackRun) agents(t *testing.T) []*Agent {
	t.Helper()
	var out []*Agent
	for _, n := range r.c.topo.Nodes {
		a, ok := r.f.Agent(n.Name)
		if !ok {
			t.Fatalf("no agent for %s", n.Name)
		}
		out = append(out, a)
	}
	return out
}

// fallbackReads counts, per agent user, the API server's list and watch
// requests of the resources the fallback reads (CiliumIdentities and
// CiliumEndpointSlices, fakeapi's per-user accounting), and the agents'
// lists and watches of every CiliumNode (the request log: the API server
// counts the agents' reads of their own CiliumNode under the same
// resource).
type fallbackReads struct {
	byUser         map[string]map[string]int64 // user -> "verb resource" -> n
	allCiliumNodes int
}

func (r *meshFallbackRun) fallbackReads() fallbackReads {
	out := fallbackReads{byUser: map[string]map[string]int64{}}
	for k, n := range r.c.api.RequestCounts() {
		if !strings.HasPrefix(k.User, access.AgentUserPrefix) || (k.Verb != "list" && k.Verb != "watch") {
			continue
		}
		if k.Resource != "ciliumidentities" && k.Resource != "ciliumendpointslices" && k.Resource != "ciliumendpoints" {
			continue
		}
		if out.byUser[k.User] == nil {
			out.byUser[k.User] = map[string]int64{}
		}
		out.byUser[k.User][k.Verb+" "+k.Resource] += n
	}
	for _, q := range r.log.snapshot() {
		if q.method == http.MethodGet && strings.HasSuffix(q.path, "/ciliumnodes") && !ownObject(q.query) {
			out.allCiliumNodes++
		}
	}
	return out
}

func (f fallbackReads) total() int64 {
	n := int64(f.allCiliumNodes)
	for _, m := range f.byUser {
		for _, v := range m {
			n += v
		}
	}
	return n
}

// metric is the value of the shard's unlabelled counter name.
func (r *meshFallbackRun) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not exported", name)
	return 0
}

// deleteFirstPod deletes the topology's first pod from the API server and
// the ground truth; it returns its ipcache key.
func (c *testCluster) deleteFirstPod(ctx context.Context, t *testing.T) uint32 {
	t.Helper()
	victim := c.topo.Pods[0]
	if _, err := c.admin.do(ctx, http.MethodDelete, "/api/v1/namespaces/"+victim.Namespace+"/pods/"+victim.Name, "", nil, nil); err != nil {
		t.Fatal(err)
	}
	c.topo.RemovePod(victim)
	c.st.Pods = c.topo.Pods
	ip, ok := addrKey(victim.IP)
	if !ok {
		t.Fatalf("victim %s has no IPv4 address", victim.Name)
	}
	return ip
}

// TestMeshFallbackToAPIServer: every replica dies; the agents, once each
// replica failed, read CiliumIdentities, CiliumEndpointSlices and every
// CiliumNode from the API server (CFP-44774 bootstrap option 1), and a
// relabel and a pod deletion made meanwhile reach them. A replica comes
// back (a new etcd with a new cluster ID, filled by its mirror): the
// agents list from it, stop their API server reflectors and still hold
// exactly the ground truth, as they do after a later relabel that only
// the replica carries to them.
func TestMeshFallbackToAPIServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := startMeshFallbackMode(t, ctx, meshScenario(t, 4), 2, true)
	c := run.c
	c.waitConverged(ctx, run.f, "after setup")
	if n := run.fallbackReads().total(); n != 0 {
		t.Fatalf("agents read %d times from the API server what the replicas carry, before any replica died", n)
	}

	run.stopReplica(0)
	run.stopReplica(1)
	agents := run.agents(t)
	waitMesh(t, "every agent on the API server fallback", func() error {
		for _, a := range agents {
			if !a.mesh.fb.running() {
				return fmt.Errorf("%s is not on the fallback (failovers %d)", a.Node(), a.mesh.failovers.Load())
			}
		}
		reads := run.fallbackReads()
		for _, a := range agents {
			u := access.AgentUser(a.Node())
			for _, k := range []string{"list ciliumidentities", "watch ciliumidentities", "list ciliumendpointslices", "watch ciliumendpointslices"} {
				if reads.byUser[u][k] == 0 {
					return fmt.Errorf("%s: no %s request", u, k)
				}
			}
		}
		if reads.allCiliumNodes < len(agents) {
			return fmt.Errorf("%d reads of every CiliumNode, want at least %d", reads.allCiliumNodes, len(agents))
		}
		return nil
	})

	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	gone := c.deleteFirstPod(ctx, t)
	c.waitConverged(ctx, run.f, "on the fallback")
	if got := run.metric(t, "stampede_agent_mesh_fallback_seconds_total"); got <= 0 {
		t.Errorf("stampede_agent_mesh_fallback_seconds_total = %v after the fallback ran", got)
	}
	if got := run.metric(t, "stampede_agent_mesh_failovers_total"); got < float64(len(agents)) {
		t.Errorf("stampede_agent_mesh_failovers_total = %v, want at least one per agent (%d)", got, len(agents))
	}

	run.restartReplica(t, 0)
	waitMesh(t, "every agent back on replica 0", func() error {
		for _, a := range agents {
			if a.mesh.current() != 0 || a.mesh.fb.running() {
				return fmt.Errorf("%s: replica %d, fallback running %v", a.Node(), a.mesh.current(), a.mesh.fb.running())
			}
		}
		return nil
	})
	c.waitConverged(ctx, run.f, "back on a replica")
	spent := run.metric(t, "stampede_agent_mesh_fallback_seconds_total")
	before := run.fallbackReads()

	// Only the replica carries this relabel to the agents now.
	c.relabel(ctx, map[string]string{"version": "v10.47"})
	c.waitConverged(ctx, run.f, "after a relabel on the replica")
	if after := run.fallbackReads(); after.total() != before.total() {
		t.Errorf("agents read from the API server %d more times after moving back to a replica", after.total()-before.total())
	}
	if got := run.metric(t, "stampede_agent_mesh_fallback_seconds_total"); got != spent {
		t.Errorf("fallback seconds grew from %v to %v with a replica answering", spent, got)
	}
	for _, a := range agents {
		a.mu.Lock()
		_, held := a.ipc.entries[gone]
		owners := 0
		for _, e := range a.ipc.entries {
			if e.owner != kvOwner {
				owners++
			}
		}
		slices := len(a.ipc.slices)
		a.mu.Unlock()
		if held {
			t.Errorf("%s still holds the address of the deleted pod", a.Node())
		}
		if owners != 0 || slices != 0 {
			t.Errorf("%s holds %d ipcache entries and %d slices of the fallback after moving back", a.Node(), owners, slices)
		}
		for _, r := range []string{"ciliumidentities", "ciliumendpointslices", "ciliumnodes"} {
			if n := a.work.resource(r).objects.Load(); n != 0 {
				t.Errorf("%s counts %d %s held after the fallback stopped", a.Node(), n, r)
			}
		}
	}
}

// TestMeshNoFallback: with controlPlane.mesh.apiServerFallback off, agents
// whose replica died wait for one: no list or watch of CiliumIdentities,
// CiliumEndpointSlices or every CiliumNode reaches the API server, and
// they converge on a relabel made meanwhile once a replica is back.
func TestMeshNoFallback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := startMeshFallbackMode(t, ctx, meshScenario(t, 3), 1, false)
	c := run.c
	c.waitConverged(ctx, run.f, "after setup")

	run.stopReplica(0)
	agents := run.agents(t)
	// Two failovers each: every agent has found the only replica gone
	// and tried it again, where a fallback would have started.
	waitMesh(t, "every agent failing over", func() error {
		for _, a := range agents {
			if a.mesh.failovers.Load() < 2 {
				return fmt.Errorf("%s: %d failovers", a.Node(), a.mesh.failovers.Load())
			}
		}
		return nil
	})
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	if n := run.fallbackReads().total(); n != 0 {
		t.Errorf("agents read %d times from the API server with the fallback off", n)
	}
	for _, a := range agents {
		if a.mesh.fb != nil {
			t.Errorf("%s has a fallback with the knob off", a.Node())
		}
	}
	if got := run.metric(t, "stampede_agent_mesh_fallback_seconds_total"); got != 0 {
		t.Errorf("stampede_agent_mesh_fallback_seconds_total = %v with the fallback off", got)
	}

	run.restartReplica(t, 0)
	c.waitConverged(ctx, run.f, "after the replica came back")
	if n := run.fallbackReads().total(); n != 0 {
		t.Errorf("agents read %d times from the API server with the fallback off", n)
	}
}

// fakeFallback marks m's fallback as running with every group read from
// the API server, without starting reflectors: the test feeds the gate.
func fakeFallback(m *meshClient) {
	f := m.fb
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active = [meshGroups]bool{true, true, true}
	f.cancel = func() {}
}

// sliceOf is a CiliumEndpointSlice carrying 10.0.0.<i> with identity
// 70000+i for each i, as prepare leaves it.
func sliceOf(name string, is ...int) slimCES {
	var s slimCES
	s.Metadata.Name = name
	s.Namespace = "ns"
	for _, i := range is {
		s.entries = append(s.entries, sliceEntry{ip: uint32(10)<<24 | uint32(i), id: identity.ID(70000 + i), owner: ownerHash("ns", fmt.Sprint("p", i))})
	}
	return s
}

// TestMeshFallbackHandOver: the ipcache hand-over in both directions.
// From the fallback to a replica, an address the fallback held and the
// replica lacks (its pod went while the gate already dropped the
// fallback's events) is dropped by the replica's list, and no slice of
// the fallback stays behind; from a replica to the fallback, an address
// the mirror held and no slice carries is dropped by the first slice
// list.
func TestMeshFallbackHandOver(t *testing.T) {
	r0 := startMeshReplica(t, 0)
	r0.fill(t, "c1", true) // 10.0.0.1-4
	a := newMeshTestAgent(t)
	m, err := newMeshClient(a, meshConfig{Replicas: []string{r0.srv.ClientURL()}, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: time.Second, APIServerFallback: true})
	if err != nil {
		t.Fatal(err)
	}
	fakeFallback(m)
	m.fb.apply("ciliumendpointslices", true, func() {
		a.replaceSlices([]slimCES{sliceOf("s1", 1, 2), sliceOf("s2", 3, 4, 9)})
	})
	a.mu.Lock()
	_, held := a.ipc.entries[uint32(10)<<24|9]
	a.mu.Unlock()
	if !held {
		t.Fatal("the fallback's slice list did not reach the ipcache")
	}

	runMeshClient(t, m)
	waitMesh(t, "the replica's content", sameState(a, r0, t))
	waitMesh(t, "the fallback stopped", func() error {
		if m.fb.running() {
			return errors.New("still running")
		}
		return nil
	})
	a.mu.Lock()
	slices := len(a.ipc.slices)
	a.mu.Unlock()
	if slices != 0 {
		t.Errorf("%d slices of the fallback stay after the hand-over", slices)
	}
	// A late event of the stopped fallback is dropped by the gate.
	late := sliceOf("s3", 9)
	m.fb.apply("ciliumendpointslices", false, func() { a.onSlice(evAdded, &late) })
	if err := sameState(a, r0, t)(); err != nil {
		t.Errorf("after a late event of the fallback: %v", err)
	}

	// Back to the fallback: its first list carries 1-3 only.
	fakeFallback(m)
	m.fb.apply("ciliumendpointslices", true, func() {
		a.replaceSlices([]slimCES{sliceOf("s1", 1, 2), sliceOf("s2", 3)})
	})
	a.mu.Lock()
	var got []string
	for ip, e := range a.ipc.entries {
		got = append(got, fmt.Sprint(keyAddr(ip), "=", e.id))
	}
	a.mu.Unlock()
	slices2 := []string{"10.0.0.1=70001", "10.0.0.2=70002", "10.0.0.3=70003"}
	sort.Strings(got)
	if d := cmp.Diff(slices2, got); d != "" {
		t.Errorf("ipcache after the fallback's first list (-want +got):\n%s", d)
	}
}

// TestMeshFallbackKnob: the scenario's controlPlane.mesh.apiServerFallback
// reaches every agent unless the fleet's MeshAPIServerFallback (stampede
// agents --mesh-api-server-fallback) replaces it.
func TestMeshFallbackKnob(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		name            string
		scenario, fleet *bool
		want            bool
	}{
		{"scenario on", &yes, nil, true},
		{"scenario off", &no, nil, false},
		{"flag off", &yes, &no, false},
		{"flag on", &no, &yes, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := meshScenario(t, 2)
			s.ControlPlane.Mesh.APIServerFallback = tc.scenario
			f, err := New(t.Context(), Config{
				Scenario: s, Mode: scenarios.ModeMesh, REST: &rest.Config{Host: "http://127.0.0.1:1"},
				Mesh: []string{"http://127.0.0.1:2"}, MeshAPIServerFallback: tc.fleet,
				NewDatapath: func(ctx context.Context, node string) (datapath.Datapath, error) {
					d, _, err := datapath.Open(ctx, datapath.SizeFor(datapath.KindMem, 100, 100, 1024), nil)
					return d, err
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer f.closeAll()
			for _, r := range f.agents {
				a := r.(*Agent)
				if got := a.mesh.fb != nil; got != tc.want {
					t.Errorf("%s: fallback %v, want %v", a.Node(), got, tc.want)
				}
			}
		})
	}
}
