package agentsim

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"

	"github.com/stampede-sim/stampede/controlplane/mesh"
	"github.com/stampede-sim/stampede/fakeapi"
	"github.com/stampede-sim/stampede/internal/access"
	"github.com/stampede-sim/stampede/scenarios"
)

// meshMirror is one running replica: a mirror (controlplane/mesh) filling
// its own etcd from the API server.
type meshMirror struct {
	r    *meshReplica
	stop func() // stops the mirror, then its etcd
}

// meshModeRun is a mesh-mode cluster: the API server with one token per
// agent and one for the mirrors, the control plane, the replicas and the
// fleet.
type meshModeRun struct {
	c       *testCluster
	mirrors []*meshMirror
	f       *Fleet
	log     *requestLog
}

const meshTestToken = "mesh-token"

// meshScenario is relabel-small in mode mesh at 1.20 (the release
// CFP-44774 targets), cut to nodes nodes and a few pods each.
func meshScenario(t *testing.T, nodes int) *scenarios.Scenario {
	t.Helper()
	s := smallScenario(t, scenarios.ModeMesh, true)
	s.Cilium.Version = "1.20"
	s.Cluster.Nodes = nodes
	s.Cluster.Workloads.DeploymentsPerNamespace = 2
	s.Cluster.Workloads.Replicas = 4
	return s
}

// startMeshMode runs mode mesh on s with replicas mirrors: each agent
// authenticates as its own user (access.AgentUser), the mirrors as the
// clustermesh-apiserver's, so that the API server counts them apart.
func startMeshMode(t *testing.T, ctx context.Context, s *scenarios.Scenario, replicas int) *meshModeRun { //nolint:revive // ctx bounds setup
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

	run := &meshModeRun{c: c, log: &requestLog{}}
	urls := make([]string, replicas)
	for i := range replicas {
		m := c.startMirror(t, i)
		run.mirrors = append(run.mirrors, m)
		urls[i] = m.r.srv.ClientURL()
	}
	cfg := c.fleetConfig(scenarios.ModeMesh)
	cfg.REST = run.log.wrap(cfg.REST)
	cfg.Tokens = agentTokens
	cfg.Mesh = urls
	cfg.MeshProbeInterval = 200 * time.Millisecond
	run.f = runFleet(t, ctx, cfg)
	return run
}

// startMirror starts replica i: an ephemeral etcd with its own cluster
// token and a mirror of slices (ces-slim), identities and nodes, and
// waits for its sync canaries.
func (c *testCluster) startMirror(t *testing.T, i int) *meshMirror {
	t.Helper()
	r := startMeshReplica(t, i)
	dyn, err := dynamic.NewForConfig(restConfigFor(c.api.RESTConfig(), meshTestToken))
	if err != nil {
		t.Fatal(err)
	}
	mr, err := mesh.New(mesh.Config{Replica: i, Cluster: c.s.Cluster.Name, Source: mesh.SourceCES, Kube: dyn, Etcd: r.cli})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mr.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("mirror %d: %v", i, err)
			}
			r.srv.Close()
		})
	}
	t.Cleanup(stop)
	waitMesh(t, fmt.Sprint("mirror ", i, " synced"), func() error {
		if !mr.Synced() {
			return fmt.Errorf("not synced")
		}
		return nil
	})
	return &meshMirror{r: r, stop: stop}
}

// TestMeshModeWithControlPlane: in mode mesh (operator identities, slim
// slices, the mesh read path; CFP-44774) agents converge before and after
// a relabel from what two mirror replicas carry, and no agent lists or
// watches CiliumIdentities, CiliumEndpoints, CiliumEndpointSlices or every
// CiliumNode on the API server ("Scope of offloading"), while they do
// watch their pods there.
func TestMeshModeWithControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := startMeshMode(t, ctx, meshScenario(t, 4), 2)
	c, f := run.c, run.f
	c.waitConverged(ctx, f, "after setup")
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	c.waitConverged(ctx, f, "after relabel")

	// The agents read from the mirrors: replica index mod 2, each holding
	// what it received under the mesh resources.
	for _, n := range c.topo.Nodes {
		a, ok := f.Agent(n.Name)
		if !ok {
			t.Fatalf("no agent for %s", n.Name)
		}
		if got, want := a.mesh.current(), n.Index%2; got != want {
			t.Errorf("%s (index %d) reads from replica %d, want %d", n.Name, n.Index, got, want)
		}
		if a.work.resource(meshIdentities).objects.Load() == 0 || a.work.resource(meshIPCache).objects.Load() == 0 {
			t.Errorf("%s holds no identities or ipcache entries from the mirror", n.Name)
		}
	}

	// Per user, verb and resource, as the API server counted them.
	offloaded := map[string]bool{"ciliumidentities": true, "ciliumendpoints": true, "ciliumendpointslices": true}
	var podWatches, podLists int64
	for k, n := range c.api.RequestCounts() {
		if !strings.HasPrefix(k.User, access.AgentUserPrefix) {
			continue
		}
		if offloaded[k.Resource] && (k.Verb == "list" || k.Verb == "watch" || k.Verb == "get") {
			t.Errorf("agent %s: %d %s requests on %s; the mesh read path carries them", k.User, n, k.Verb, k.Resource)
		}
		if k.Resource == "pods" {
			switch k.Verb {
			case "watch":
				podWatches += n
			case "list":
				podLists += n
			}
		}
	}
	if podWatches < int64(len(c.topo.Nodes)) || podLists < int64(len(c.topo.Nodes)) {
		t.Errorf("agents listed pods %d times and watched them %d times, want at least once each per agent (%d)", podLists, podWatches, len(c.topo.Nodes))
	}
	// CiliumNodes: only each agent's own (the API server counts by
	// resource, so the selector is checked on the agents' side).
	reqs := run.log.snapshot()
	nodeReads := 0
	for _, r := range reqs {
		if r.method != http.MethodGet || !strings.HasSuffix(r.path, "/ciliumnodes") {
			continue
		}
		nodeReads++
		if !ownObject(r.query) {
			t.Errorf("agent request GET %s?%s reads every CiliumNode", r.path, r.query.Encode())
		}
	}
	if nodeReads == 0 {
		t.Error("no agent read its own CiliumNode: the request log saw nothing")
	}
	if cs := c.api.RequestCounts(); cs[fakeapi.RequestKey{User: access.MeshUser, Verb: "watch", Group: "cilium.io", Resource: "ciliumidentities"}] == 0 {
		t.Errorf("the mirrors never watched ciliumidentities as %s", access.MeshUser)
	}
}

// ownObject tells whether a list or watch is of one object by name.
func ownObject(q url.Values) bool {
	return strings.HasPrefix(q.Get("fieldSelector"), "metadata.name=")
}

// TestMeshModeFailover: replica 0 dies (mirror and etcd) while the agents
// run; while it is down a namespace is relabelled and a pod deleted. The
// agents of replica 0 move to replica 1, list again and converge to the
// ground truth, without the deleted pod's address (restartableWatchStore's
// stale-key drain on a new list; CFP-44774 "Horizontal scaling").
func TestMeshModeFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := startMeshMode(t, ctx, meshScenario(t, 4), 2)
	c, f := run.c, run.f
	c.waitConverged(ctx, f, "after setup")

	var moved []*Agent
	for _, n := range c.topo.Nodes {
		a, _ := f.Agent(n.Name)
		if n.Index%2 == 0 {
			moved = append(moved, a)
		}
	}
	if len(moved) == 0 {
		t.Fatal("no agent on replica 0")
	}
	run.mirrors[0].stop()

	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	victim := c.topo.Pods[0]
	if _, err := c.admin.do(ctx, http.MethodDelete, "/api/v1/namespaces/"+victim.Namespace+"/pods/"+victim.Name, "", nil, nil); err != nil {
		t.Fatal(err)
	}
	c.topo.RemovePod(victim)
	c.st.Pods = c.topo.Pods
	c.waitConverged(ctx, f, "after the failover")

	ip, ok := addrKey(victim.IP)
	if !ok {
		t.Fatalf("victim %s has no IPv4 address", victim.Name)
	}
	for _, a := range moved {
		if got := a.mesh.current(); got != 1 {
			t.Errorf("%s reads from replica %d after replica 0 died, want 1", a.Node(), got)
		}
		if a.mesh.failovers.Load() == 0 {
			t.Errorf("%s counted no failover", a.Node())
		}
		a.mu.Lock()
		_, held := a.ipc.entries[ip]
		a.mu.Unlock()
		if held {
			t.Errorf("%s still holds %s of the deleted pod %s", a.Node(), victim.IP, victim.Name)
		}
	}
}
