package agentsim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	etcdserver "github.com/stampede-sim/stampede/controlplane/etcd"
	"github.com/stampede-sim/stampede/controlplane/mesh"
	"github.com/stampede-sim/stampede/fakeapi"
	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// meshReplica is one replica's etcd, written directly as a mirror would.
type meshReplica struct {
	srv *etcdserver.Server
	cli *clientv3.Client
}

func startMeshReplica(t *testing.T, i int) *meshReplica {
	t.Helper()
	srv, err := etcdserver.Start(t.Context(), etcdserver.Config{
		Dir: t.TempDir(), Ephemeral: true, InitialClusterToken: fmt.Sprintf("stampede-mesh-%d", i), UnsafeNoFsync: true, LogLevel: "fatal",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.ClientURL()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &meshReplica{srv: srv, cli: cli}
}

func (r *meshReplica) put(t *testing.T, key, value string) {
	t.Helper()
	if _, err := r.cli.Put(t.Context(), key, value); err != nil {
		t.Fatal(err)
	}
}

func (r *meshReplica) del(t *testing.T, key string) {
	t.Helper()
	if _, err := r.cli.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
}

// fill writes the cluster configuration, identities, ipcache entries and
// nodes; canaries only if canaries is set.
func (r *meshReplica) fill(t *testing.T, cluster string, canaries bool) {
	t.Helper()
	r.put(t, agentcontract.KVClusterConfigPrefix+cluster, `{"capabilities":{"syncedCanaries":true,"maxConnectedClusters":255}}`)
	for i := 1; i <= 4; i++ {
		r.put(t, fmt.Sprintf("%s%d", agentcontract.KVIDPrefix, 70000+i), fmt.Sprintf("k8s:app=a%d;k8s:io.kubernetes.pod.namespace=ns;", i))
		v, _ := json.Marshal(agentcontract.IPIdentityPair{IP: net.IPv4(10, 0, 0, byte(i)).To4(), ID: uint32(70000 + i), K8sNamespace: "ns", K8sPodName: fmt.Sprint("p", i)})
		r.put(t, fmt.Sprintf("%s10.0.0.%d", agentcontract.KVIPPrefix, i), string(v))
		n, _ := json.Marshal(agentcontract.NodeValue{Name: fmt.Sprint("node-", i), Cluster: cluster, Source: agentcontract.NodeSourceCustomResource})
		r.put(t, fmt.Sprintf("%s%s/node-%d", agentcontract.KVNodesPrefix, cluster, i), string(n))
	}
	if canaries {
		r.writeCanaries(t, cluster)
	}
}

func (r *meshReplica) writeCanaries(t *testing.T, cluster string) {
	for _, p := range []string{agentcontract.KVSyncedIdentities, agentcontract.KVSyncedIPCache, agentcontract.KVSyncedNodes} {
		r.put(t, agentcontract.SyncedKey(cluster, p), time.Now().UTC().Format(time.RFC3339))
	}
}

// meshState is what a replica holds or an agent learned from it.
type meshState struct {
	IDs   map[identity.ID]string // ID -> label key
	IPs   map[string]identity.ID
	Nodes int64
}

func (r *meshReplica) state(t *testing.T, cluster string) meshState {
	t.Helper()
	s := meshState{IDs: map[identity.ID]string{}, IPs: map[string]identity.ID{}}
	resp, err := r.cli.Get(t.Context(), "cilium/state/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		switch {
		case strings.HasPrefix(k, agentcontract.KVIDPrefix):
			id, err := identity.ParseID(strings.TrimPrefix(k, agentcontract.KVIDPrefix))
			if err != nil {
				t.Fatal(err)
			}
			s.IDs[id] = string(kv.Value)
		case strings.HasPrefix(k, agentcontract.KVIPPrefix):
			var p agentcontract.IPIdentityPair
			if err := json.Unmarshal(kv.Value, &p); err != nil {
				t.Fatal(err)
			}
			s.IPs[strings.TrimPrefix(k, agentcontract.KVIPPrefix)] = identity.ID(p.ID)
		case strings.HasPrefix(k, agentcontract.KVNodesPrefix+cluster+"/"):
			s.Nodes++
		}
	}
	return s
}

func agentMeshState(a *Agent) meshState {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := meshState{IDs: map[identity.ID]string{}, IPs: map[string]identity.ID{}}
	for id, e := range a.ids.byID {
		s.IDs[id] = e.key
	}
	for ip, e := range a.ipc.entries {
		s.IPs[keyAddr(ip).String()] = e.id
	}
	s.Nodes = a.work.resource(meshNodes).objects.Load()
	return s
}

func newMeshTestAgent(t *testing.T) *Agent {
	t.Helper()
	cfg := AgentConfig{Node: "node-1", Mode: scenarios.ModeOperator, Cluster: "c1", Metrics: newMetrics(prometheus.NewRegistry(), nil)}
	cfg.setDefaults()
	return newAgentState(cfg)
}

func runMeshClient(t *testing.T, m *meshClient) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); m.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func waitMesh(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond) //nolint:forbidigo // polling an external store
	}
}

func sameState(a *Agent, r *meshReplica, t *testing.T) func() error {
	return func() error {
		if d := cmp.Diff(r.state(t, "c1"), agentMeshState(a)); d != "" {
			return fmt.Errorf("agent state differs from the replica's (-replica +agent):\n%s", d)
		}
		return nil
	}
}

// TestMeshClientFailover: the agent reads from replica index mod N; when
// that replica dies it moves to the next one, lists again and ends with
// exactly that replica's content, including a key deleted there while the
// agent read elsewhere (restartableWatchStore's stale-key drain).
func TestMeshClientFailover(t *testing.T) {
	r0, r1 := startMeshReplica(t, 0), startMeshReplica(t, 1)
	if r0.srv.ClusterID() == r1.srv.ClusterID() {
		t.Fatal("the two replicas share a cluster ID")
	}
	r0.fill(t, "c1", true)
	r1.fill(t, "c1", true)
	a := newMeshTestAgent(t)
	m, err := newMeshClient(a, meshConfig{Replicas: []string{r0.srv.ClientURL(), r1.srv.ClientURL()}, Index: 2, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runMeshClient(t, m)
	for _, ch := range m.synced() {
		select {
		case <-ch:
		case <-time.After(30 * time.Second):
			t.Fatal("not synced")
		}
	}
	if got := m.current(); got != 0 {
		t.Fatalf("agent with index 2 of 2 replicas reads from replica %d, want 0", got)
	}
	waitMesh(t, "state of replica 0", sameState(a, r0, t))
	// A watched change arrives.
	r0.put(t, agentcontract.KVIDPrefix+"70005", "k8s:app=a5;k8s:io.kubernetes.pod.namespace=ns;")
	waitMesh(t, "watched identity", sameState(a, r0, t))

	// The replicas diverge: replica 1 loses an identity, an ipcache entry
	// and a node, and gains an entry; the agent, on replica 0, still holds
	// the old ones.
	r1.del(t, agentcontract.KVIDPrefix+"70002")
	r1.del(t, agentcontract.KVIPPrefix+"10.0.0.2")
	r1.del(t, agentcontract.KVNodesPrefix+"c1/node-2")
	v, _ := json.Marshal(agentcontract.IPIdentityPair{IP: net.IPv4(10, 0, 0, 9).To4(), ID: 70001})
	r1.put(t, agentcontract.KVIPPrefix+"10.0.0.9", string(v))
	before := agentMeshState(a)
	if _, ok := before.IPs["10.0.0.2"]; !ok {
		t.Fatal("agent lacks 10.0.0.2 before the failover")
	}

	r0.srv.Close()
	waitMesh(t, "failover to replica 1", func() error {
		if got := m.current(); got != 1 {
			return fmt.Errorf("on replica %d", got)
		}
		return nil
	})
	waitMesh(t, "state of replica 1", sameState(a, r1, t))
	if m.failovers.Load() == 0 {
		t.Error("no failover counted")
	}
	after := agentMeshState(a)
	if _, ok := after.IPs["10.0.0.2"]; ok {
		t.Error("10.0.0.2, deleted on replica 1 while the agent was away, is still in its ipcache")
	}
	if _, ok := after.IDs[70002]; ok {
		t.Error("identity 70002, deleted on replica 1, is still known")
	}
	if _, ok := after.IDs[70005]; ok {
		t.Error("identity 70005, only on the lost replica, is still known")
	}
}

// TestMeshClientWaitsForCanaries: nothing is listed before the replica
// wrote the sync canaries (wsmSync).
func TestMeshClientWaitsForCanaries(t *testing.T) {
	r0 := startMeshReplica(t, 0)
	r0.fill(t, "c1", false)
	a := newMeshTestAgent(t)
	m, err := newMeshClient(a, meshConfig{Replicas: []string{r0.srv.ClientURL()}, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runMeshClient(t, m)
	waitMesh(t, "connected", func() error {
		if m.current() != 0 {
			return fmt.Errorf("not connected")
		}
		return nil
	})
	// Several probe rounds without canaries: nothing may be listed.
	time.Sleep(500 * time.Millisecond) //nolint:forbidigo // asserting that nothing happens
	if s := agentMeshState(a); len(s.IDs) != 0 || len(s.IPs) != 0 {
		t.Fatalf("agent listed before the canaries: %d identities, %d entries", len(s.IDs), len(s.IPs))
	}
	r0.writeCanaries(t, "c1")
	waitMesh(t, "state after canaries", sameState(a, r0, t))
}

// switchProxy forwards TCP connections to a target it can switch; a
// switch drops every open connection, as a Service whose endpoint changed
// does.
type switchProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			target := p.target
			p.mu.Unlock()
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); _, _ = io.Copy(u, c); u.Close() }()
			go func() { defer p.wg.Done(); _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.dropAll(); p.wg.Wait() })
	return p
}

func (p *switchProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *switchProxy) switchTo(target string) {
	p.mu.Lock()
	p.target = target
	p.mu.Unlock()
	p.dropAll()
}

func (p *switchProxy) dropAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// TestMeshClientClusterIDChange: behind one address (a Service), the
// replica changes; the etcd client reconnects by itself and every read
// succeeds, so only the cluster ID tells the agent it now talks to
// another etcd, whose revisions mean nothing to its watches. It must list
// again: its state then equals the new replica's, including a key the new
// replica lacks. With the ID check off, the watches resume on the new etcd
// at the old revision and the stale key stays.
func TestMeshClientClusterIDChange(t *testing.T) {
	r0, r1 := startMeshReplica(t, 0), startMeshReplica(t, 1)
	// Replica 0's revisions run ahead of replica 1's, as two independent
	// etcds' do: a watch resumed on replica 1 at replica 0's revision
	// would never see replica 1's earlier changes.
	for i := range 50 {
		r0.put(t, "unrelated", fmt.Sprint(i))
	}
	r0.fill(t, "c1", true)
	r1.fill(t, "c1", true)
	r1.del(t, agentcontract.KVIPPrefix+"10.0.0.3")
	addr := func(r *meshReplica) string { return strings.TrimPrefix(r.srv.ClientURL(), "http://") }
	p := newSwitchProxy(t, addr(r0))
	a := newMeshTestAgent(t)
	m, err := newMeshClient(a, meshConfig{Replicas: []string{p.url()}, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runMeshClient(t, m)
	waitMesh(t, "state of replica 0", sameState(a, r0, t))
	p.switchTo(addr(r1))
	waitMesh(t, "state of replica 1", sameState(a, r1, t))
	if m.failovers.Load() == 0 {
		t.Error("the cluster ID change was not handled as a reconnect")
	}
}

// TestMeshClientFailoverWithMirrors runs the whole read path: two
// mirrors (controlplane/mesh) fill two etcds from one API server; the
// agent reads from replica 0; replica 0 dies (mirror and etcd) and, while
// the agent moves, an endpoint is deleted and an identity created on the
// API server. The agent ends with replica 1's content, which is the API
// server's.
func TestMeshClientFailoverWithMirrors(t *testing.T) {
	api, err := fakeapi.New(fakeapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	if err := api.Start(actx); err != nil {
		acancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { acancel(); api.Close() })
	dyn, err := dynamic.NewForConfig(api.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	gvrNS := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gvrCID := schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumidentities"}
	gvrCEP := schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumendpoints"}
	create := func(gvr schema.GroupVersionResource, ns string, obj map[string]any) {
		t.Helper()
		r := dyn.Resource(gvr)
		var err error
		if ns != "" {
			_, err = r.Namespace(ns).Create(t.Context(), &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
		} else {
			_, err = r.Create(t.Context(), &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cid := func(id int) map[string]any {
		return map[string]any{"apiVersion": "cilium.io/v2", "kind": "CiliumIdentity", "metadata": map[string]any{"name": fmt.Sprint(id)},
			"security-labels": map[string]any{"k8s:app": fmt.Sprint("a", id), "k8s:io.kubernetes.pod.namespace": "ns"}}
	}
	create(gvrNS, "", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "ns"}})
	for i := 1; i <= 3; i++ {
		create(gvrCID, "", cid(70000+i))
		create(gvrCEP, "ns", map[string]any{"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint", "metadata": map[string]any{"name": fmt.Sprint("p", i), "namespace": "ns"},
			"status": map[string]any{"identity": map[string]any{"id": int64(70000 + i)},
				"networking": map[string]any{"addressing": []any{map[string]any{"ipv4": fmt.Sprint("10.0.0.", i)}}, "node": "192.168.0.1"}}})
	}

	replicas := []*meshReplica{startMeshReplica(t, 0), startMeshReplica(t, 1)}
	stops := make([]func(), len(replicas))
	for i, r := range replicas {
		mr, err := mesh.New(mesh.Config{Replica: i, Cluster: "c1", Source: mesh.SourceCEP, Kube: dyn, Etcd: r.cli})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- mr.Run(ctx) }()
		var once sync.Once
		stops[i] = func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("mirror %d: %v", i, err)
				}
			})
		}
		t.Cleanup(stops[i])
		waitMesh(t, fmt.Sprint("mirror ", i), func() error {
			if !mr.Synced() {
				return fmt.Errorf("not synced")
			}
			return nil
		})
	}

	a := newMeshTestAgent(t)
	m, err := newMeshClient(a, meshConfig{Replicas: []string{replicas[0].srv.ClientURL(), replicas[1].srv.ClientURL()}, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runMeshClient(t, m)
	waitMesh(t, "state of replica 0", sameState(a, replicas[0], t))
	if s := agentMeshState(a); len(s.IPs) != 3 || len(s.IDs) != 3 {
		t.Fatalf("agent holds %d entries and %d identities, want 3 and 3", len(s.IPs), len(s.IDs))
	}

	stops[0]()
	replicas[0].srv.Close()
	if err := dyn.Resource(gvrCEP).Namespace("ns").Delete(t.Context(), "p2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	create(gvrCID, "", cid(70004))
	waitMesh(t, "replica 1 follows the API server", func() error {
		s := replicas[1].state(t, "c1")
		if _, ok := s.IPs["10.0.0.2"]; ok || len(s.IDs) != 4 {
			return fmt.Errorf("replica 1: %d identities, entries %v", len(s.IDs), s.IPs)
		}
		return nil
	})
	waitMesh(t, "agent on replica 1 with its content", func() error {
		if m.current() != 1 {
			return fmt.Errorf("on replica %d", m.current())
		}
		return sameState(a, replicas[1], t)()
	})
}
