package agentsim

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/fakeapi"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/truth"
	"github.com/stampede-sim/stampede/scenarios"
)

// testLogger logs warnings and errors to the test output when -v.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: testLogLevel}))
	}
	return slog.New(slog.DiscardHandler)
}

// testCluster plays the harness's part: it writes the scenario's objects
// to the API server as the harness does and keeps the ground truth.
type testCluster struct {
	t     testing.TB
	s     *scenarios.Scenario
	topo  *scenarios.Topology
	st    *truth.State
	api   *fakeapi.Server
	admin *kubeClient
	m     *Metrics
}

// smallScenario is relabel-small with test-sized waits: a short grace
// period and client limits high enough that setup does not take minutes.
// With shrink it is also cut to 10 nodes and 250 pods (5 namespaces x 5
// deployments x 10 replicas) so that the four modes' tests fit the CI
// budget under -race; the full size runs in BenchmarkRelabelSmall.
func smallScenario(t testing.TB, mode scenarios.Mode, shrink bool) *scenarios.Scenario {
	t.Helper()
	s, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	if shrink {
		s.Cluster.Nodes = 10
		s.Cluster.Workloads.DeploymentsPerNamespace = 5
		s.Cluster.Workloads.Replicas = 10
	}
	s.Agent.IdentityChangeGracePeriod = scenarios.D(200 * time.Millisecond)
	jitter := scenarios.D(300 * time.Millisecond) // the release's 30s, test-sized
	s.Agent.IdentityMaxJitter = &jitter
	s.Agent.ClientQPS = 500
	s.Agent.ClientBurst = 1000
	s.Agent.Datapath = "mem"
	modes, err := scenarios.PresetModes(mode)
	if err != nil {
		t.Fatal(err)
	}
	s.Modes = modes
	return s
}

// startCluster starts an in-process fakeapi that lives until the test's
// cleanup (after the fleet's, which is registered later); edits change
// its Config.
func startCluster(t testing.TB, s *scenarios.Scenario, edits ...func(*fakeapi.Config)) *testCluster {
	t.Helper()
	acfg := fakeapi.Config{Logger: testLogger(t), MaxMutatingRequestsInflight: -1, MaxRequestsInflight: -1}
	for _, e := range edits {
		e(&acfg)
	}
	api, err := fakeapi.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(context.Background())
	if err := api.Start(actx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		api.Close()
	})
	topo, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st, err := truth.FromTopology(s, topo)
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(prometheus.NewRegistry(), nil)
	admin, err := newKubeClient(api.RESTConfig(), "", "harness", 1e6, 1e6, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.close)
	return &testCluster{t: t, s: s, topo: topo, st: st, api: api, admin: admin, m: m}
}

func (c *testCluster) post(ctx context.Context, path string, obj any) {
	c.t.Helper()
	body, err := json.Marshal(obj)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.admin.do(ctx, http.MethodPost, path, "application/json", body, nil); err != nil {
		c.t.Fatalf("POST %s: %v", path, err)
	}
}

func (c *testCluster) patch(ctx context.Context, path string, obj any) {
	c.t.Helper()
	body, err := json.Marshal(obj)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.admin.do(ctx, http.MethodPatch, path, "application/merge-patch+json", body, nil); err != nil {
		c.t.Fatalf("PATCH %s: %v", path, err)
	}
}

// setup creates nodes, namespaces, policies and pods (then their IPs
// through pods/status), in parallel.
func (c *testCluster) setup(ctx context.Context) {
	for _, n := range c.topo.Nodes {
		c.post(ctx, pathNodes, map[string]any{
			"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]any{"name": n.Name},
			"status":   map[string]any{"addresses": []map[string]string{{"type": "InternalIP", "address": n.IP.String()}}},
		})
	}
	var nss []string
	for _, ns := range c.topo.Namespaces {
		nss = append(nss, ns.Name)
		c.post(ctx, pathNamespaces, map[string]any{
			"apiVersion": "v1", "kind": "Namespace",
			"metadata": map[string]any{"name": ns.Name, "labels": ns.Labels},
		})
	}
	for _, cnp := range policy.RenderAll(c.s.Policies, nss) {
		c.post(ctx, "/apis/cilium.io/v2/namespaces/"+cnp.Metadata.Namespace+"/ciliumnetworkpolicies", cnp)
	}
	hostIP := map[string]string{}
	for _, n := range c.topo.Nodes {
		hostIP[n.Name] = n.IP.String()
	}
	c.parallel(len(c.topo.Pods), func(i int) {
		p := c.topo.Pods[i]
		c.post(ctx, "/api/v1/namespaces/"+p.Namespace+"/pods", map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": p.Name, "namespace": p.Namespace, "labels": p.Labels},
			"spec": map[string]any{
				"nodeName": p.Node, "serviceAccountName": p.ServiceAccount,
				"containers": []map[string]any{{"name": "app", "image": "registry.k8s.io/pause:3.10"}},
			},
		})
		c.patch(ctx, "/api/v1/namespaces/"+p.Namespace+"/pods/"+p.Name+"/status", map[string]any{
			"status": map[string]any{"phase": "Running", "podIP": p.IP.String(), "podIPs": []map[string]string{{"ip": p.IP.String()}}, "hostIP": hostIP[p.Node]},
		})
	})
}

func (c *testCluster) parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
}

// relabel applies a relabel step to the API server and the ground truth.
func (c *testCluster) relabel(ctx context.Context, set map[string]string) {
	for i := range c.topo.Namespaces {
		ns := &c.topo.Namespaces[i]
		for k, v := range set {
			ns.Labels[k] = v
		}
		c.patch(ctx, pathNamespaces+"/"+ns.Name, map[string]any{"metadata": map[string]any{"labels": set}})
	}
}

// expected is the ground truth's digest per node.
func (c *testCluster) expected() map[string]truth.Expected {
	c.t.Helper()
	want, err := c.st.Compute()
	if err != nil {
		c.t.Fatal(err)
	}
	return want
}

// waitConverged polls the fleet until every agent reports the expected
// digests.
func (c *testCluster) waitConverged(ctx context.Context, f *Fleet, what string) {
	c.t.Helper()
	want := c.expected()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		got := map[string]truth.Expected{}
		statuses := f.Statuses()
		for _, s := range statuses {
			got[s.Node] = truth.Expected{IPCache: s.IPCacheDigest, Policy: s.PolicyDigest}
		}
		mm := truth.Compare(want, got)
		if len(mm) == 0 {
			return
		}
		if testing.Verbose() && time.Now().Second()%3 == 0 && len(statuses) > 0 {
			s := statuses[0]
			c.t.Logf("%s: %d mismatched; %s: ready %d/%d pending %d queued %d ipcache %d ids %d events %d", what, len(mm), s.Node, s.EndpointsReady, s.LocalEndpoints, s.PendingIdentity, s.QueuedEndpoints, s.IPCacheEntries, s.Identities, s.Events)
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			for i, m := range mm {
				if i == 3 {
					break
				}
				fmt.Fprintf(&b, "\n  %s: want %+v got %+v", m.Node, m.Want, m.Got)
			}
			for _, s := range statuses {
				if s.Node == mm[0].Node {
					fmt.Fprintf(&b, "\n  status of %s: %+v", s.Node, s)
				}
			}
			c.t.Fatalf("%s: %d of %d agents did not converge:%s", what, len(mm), len(want), b.String())
		case <-tick.C:
		}
	}
}

func (c *testCluster) fleetConfig(mode scenarios.Mode) Config {
	return Config{
		Scenario: c.s, Mode: mode, REST: c.api.RESTConfig(),
		Log: testLogger(c.t), RegenInterval: 100 * time.Millisecond, Workers: 16,
		NewDatapath: func(ctx context.Context, node string) (datapath.Datapath, error) {
			d, _, err := datapath.Open(ctx, datapath.SizeFor(datapath.KindMem, len(c.topo.Pods), 200, 16384), nil)
			return d, err
		},
	}
}

// list returns the raw items of a collection.
func (c *testCluster) list(ctx context.Context, path string) []json.RawMessage {
	c.t.Helper()
	raw, err := c.admin.do(ctx, http.MethodGet, path, "", nil, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	var l struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		c.t.Fatal(err)
	}
	return l.Items
}

// labelSets returns the ground truth's distinct identity label sets.
func (c *testCluster) labelSets() []identity.Labels {
	seen := map[string]bool{}
	var out []identity.Labels
	for _, p := range c.topo.Pods {
		l, err := c.st.PodIdentityLabels(p)
		if err != nil {
			c.t.Fatal(err)
		}
		if k := l.Key(); !seen[k] {
			seen[k] = true
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// cidsByKey counts CiliumIdentities per label key.
func (c *testCluster) cidsByKey(ctx context.Context) map[string]int {
	out := map[string]int{}
	for _, raw := range c.list(ctx, pathCIDs) {
		var cid slimCID
		if err := json.Unmarshal(raw, &cid); err != nil {
			c.t.Fatal(err)
		}
		l, err := identity.FromSecurityLabels(cid.SecurityLabels)
		if err != nil {
			c.t.Fatal(err)
		}
		out[l.Key()]++
	}
	return out
}

// restConfigFor returns a config for a user token.
func restConfigFor(base *rest.Config, token string) *rest.Config {
	c := rest.CopyConfig(base)
	c.BearerToken = token
	return c
}

var testLogLevel = slog.LevelWarn
