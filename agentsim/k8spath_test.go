package agentsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/client-go/rest"

	etcdserver "github.com/stampede-sim/stampede/controlplane/etcd"
	"github.com/stampede-sim/stampede/scenarios"
)

// requestLog records the requests the agents send to the API server, in
// order, with the bodies of writes.
type requestLog struct {
	mu   sync.Mutex
	reqs []loggedRequest
}

type loggedRequest struct {
	method, path string
	query        url.Values
	body         []byte
}

// wrap installs the log on a copy of cfg.
func (l *requestLog) wrap(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			lr := loggedRequest{method: r.Method, path: r.URL.Path, query: r.URL.Query()}
			if r.Body != nil && r.Method != http.MethodGet {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					return nil, err
				}
				r.Body.Close()
				r.Body = io.NopCloser(bytes.NewReader(b))
				lr.body = b
			}
			l.mu.Lock()
			l.reqs = append(l.reqs, lr)
			l.mu.Unlock()
			return rt.RoundTrip(r)
		})
	}
	return c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (l *requestLog) snapshot() []loggedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

// watches lists the watch requests as "path?selectors", sorted.
func (l *requestLog) watches() []string {
	var out []string
	for _, r := range l.snapshot() {
		if r.method != http.MethodGet || r.query.Get("watch") != "true" {
			continue
		}
		w := r.path
		var sel []string
		for _, k := range []string{"fieldSelector", "labelSelector"} {
			if v := r.query.Get(k); v != "" {
				sel = append(sel, k+"="+v)
			}
		}
		if len(sel) > 0 {
			w += "?" + strings.Join(sel, "&")
		}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	sort.Strings(out)
	return out
}

// tinyScenario is relabel-small cut to 2 nodes and 10 pods.
func tinyScenario(t *testing.T, mode scenarios.Mode) *scenarios.Scenario {
	s := smallScenario(t, mode, true)
	s.Cluster.Nodes = 2
	s.Cluster.Workloads.DeploymentsPerNamespace = 1
	s.Cluster.Workloads.Replicas = 2
	return s
}

// The agents open the watches of their release's cilium-agent: kvstore
// agents no CiliumEndpoints, CiliumIdentities or all-CiliumNodes watch
// (enableK8sWatchers since v1.17), --disable-endpoint-crd no endpoint
// watch, and CiliumCIDRGroups at cilium.io/v2 from 1.18.
func TestAgentWatchesAsCilium(t *testing.T) {
	const node = "node-0000"
	common := func(ccg string) []string {
		return []string{
			"/api/v1/namespaces",
			"/api/v1/nodes?fieldSelector=metadata.name=" + node,
			"/api/v1/pods?fieldSelector=spec.nodeName=" + node,
			"/api/v1/services?labelSelector=!service.kubernetes.io/service-proxy-name",
			"/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies",
			"/apis/cilium.io/v2/ciliumnetworkpolicies",
			"/apis/cilium.io/v2/ciliumnodes?fieldSelector=metadata.name=" + node,
			"/apis/cilium.io/" + ccg + "/ciliumcidrgroups",
			"/apis/discovery.k8s.io/v1/endpointslices?labelSelector=endpointslice.kubernetes.io/managed-by!=endpointslice-mesh-controller.cilium.io",
			"/apis/networking.k8s.io/v1/networkpolicies",
		}
	}
	crdOnly := []string{"/apis/cilium.io/v2/ciliumidentities", "/apis/cilium.io/v2/ciliumnodes"}
	for _, tc := range []struct {
		name    string
		version string
		mode    scenarios.Mode
		noCRD   bool
		want    []string
	}{
		{name: "1.19 crd", version: "1.19", mode: scenarios.ModeCRD,
			want: slices.Concat(common("v2"), crdOnly, []string{"/apis/cilium.io/v2/ciliumendpoints"})},
		{name: "1.17 crd", version: "1.17", mode: scenarios.ModeCRD,
			want: slices.Concat(common("v2alpha1"), crdOnly, []string{"/apis/cilium.io/v2/ciliumendpoints"})},
		{name: "1.19 ces", version: "1.19", mode: scenarios.ModeCES,
			want: slices.Concat(common("v2"), crdOnly, []string{"/apis/cilium.io/v2alpha1/ciliumendpointslices"})},
		{name: "1.18 operator", version: "1.18", mode: scenarios.ModeOperator,
			want: slices.Concat(common("v2"), crdOnly, []string{"/apis/cilium.io/v2/ciliumendpoints"})},
		{name: "1.19 kvstore", version: "1.19", mode: scenarios.ModeKVStore, want: common("v2")},
		{name: "1.17 kvstore", version: "1.17", mode: scenarios.ModeKVStore, want: common("v2alpha1")},
		{name: "1.19 kvstore without endpoint CRD", version: "1.19", mode: scenarios.ModeKVStore, noCRD: true, want: common("v2")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := tinyScenario(t, tc.mode)
			s.Cilium.Version = tc.version
			s.Agent.DisableEndpointCRD = tc.noCRD
			c := startCluster(t, s)
			c.setup(ctx)
			var log requestLog
			cfg := c.fleetConfig(tc.mode)
			cfg.REST = log.wrap(cfg.REST)
			cfg.Shards, cfg.Shard = len(c.topo.Nodes), 0 // node-0000 alone
			if tc.mode == scenarios.ModeKVStore {
				cfg.KVStore = []string{startEtcd(t)}
			}
			f := runFleet(t, ctx, cfg)
			waitSynced(ctx, t, f)
			// Each watch follows its list; give them time to open.
			for deadline := time.Now().Add(10 * time.Second); len(log.watches()) < len(tc.want) && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
			slices.Sort(tc.want)
			if got := log.watches(); !slices.Equal(got, tc.want) {
				t.Errorf("watches (-want +got):\n-%s\n+%s", strings.Join(tc.want, "\n-"), strings.Join(got, "\n+"))
			}
			// Every watch was listed first.
			for _, w := range tc.want {
				path, _, _ := strings.Cut(w, "?")
				if !slices.ContainsFunc(log.snapshot(), func(r loggedRequest) bool {
					return r.method == http.MethodGet && r.path == path && r.query.Get("watch") == ""
				}) {
					t.Errorf("%s watched without a list", path)
				}
			}
			// The fake holds a watcher per watch.
			got := c.registeredWatchers(ctx)
			for deadline := time.Now().Add(5 * time.Second); got < len(tc.want) && time.Now().Before(deadline); got = c.registeredWatchers(ctx) {
				time.Sleep(20 * time.Millisecond)
			}
			if got != len(tc.want) {
				t.Errorf("the API server holds %d watchers, want %d", got, len(tc.want))
			}
		})
	}
}

// registeredWatchers sums the fake API server's open watches,
// apiserver_longrunning_requests{verb="WATCH"}.
func (c *testCluster) registeredWatchers(ctx context.Context) int {
	c.t.Helper()
	raw, err := c.admin.do(ctx, http.MethodGet, "/metrics", "", nil, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	var n float64
	if fam := fams["apiserver_longrunning_requests"]; fam != nil {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "verb" && l.GetValue() == "WATCH" {
					n += m.GetGauge().GetValue()
				}
			}
		}
	}
	return int(n)
}

// startEtcd runs an embedded etcd for the test and returns its URL.
func startEtcd(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	etcd, err := etcdserver.Start(ctx, etcdserver.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		etcd.Close()
		cancel()
	})
	return etcd.ClientURL()
}

// waitSynced waits until every agent of f finished its first lists.
func waitSynced(ctx context.Context, t *testing.T, f *Fleet) {
	t.Helper()
	for {
		done := true
		for _, st := range f.Statuses() {
			done = done && st.Synced
		}
		if done {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("agents did not sync")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cepRequests returns the requests to the CiliumEndpoint of each pod, by
// "namespace/name".
func cepRequests(reqs []loggedRequest) map[string][]loggedRequest {
	out := map[string][]loggedRequest{}
	for _, r := range reqs {
		parts := strings.Split(strings.Trim(r.path, "/"), "/")
		// apis cilium.io v2 namespaces NS ciliumendpoints [NAME]
		if len(parts) < 6 || parts[5] != "ciliumendpoints" || r.query.Get("watch") == "true" {
			continue
		}
		var name string
		switch {
		case len(parts) == 7:
			name = parts[6]
		case r.method == http.MethodPost:
			var o struct {
				Metadata struct{ Name string } `json:"metadata"`
			}
			_ = json.Unmarshal(r.body, &o)
			name = o.Metadata.Name
		}
		k := parts[4] + "/" + name
		out[k] = append(out[k], r)
	}
	return out
}

// The CiliumEndpoint synchroniser works as Cilium's: a GET from the
// cache before the create, the pod's labels and owner on the created
// object, no write while the status is unchanged, and patches that test
// the object's uid.
func TestCiliumEndpointSyncAsCilium(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := tinyScenario(t, scenarios.ModeCRD)
	s.Agent.IdentityChangeGracePeriod = scenarios.D(0)
	s.Agent.EndpointSyncInterval = scenarios.D(100 * time.Millisecond)
	c := startCluster(t, s)
	c.setup(ctx)
	var log requestLog
	cfg := c.fleetConfig(scenarios.ModeCRD)
	cfg.REST = log.wrap(cfg.REST)
	f := runFleet(t, ctx, cfg)
	c.waitConverged(ctx, f, "after setup")
	// Several sync intervals with nothing changed.
	time.Sleep(10 * s.Agent.EndpointSyncInterval.Duration)

	byPod := cepRequests(log.snapshot())
	if len(byPod) != len(c.topo.Pods) {
		t.Fatalf("CiliumEndpoint requests for %d pods, want %d", len(byPod), len(c.topo.Pods))
	}
	for k, reqs := range byPod {
		var got []string
		for _, r := range reqs {
			got = append(got, r.method+" rv="+r.query.Get("resourceVersion"))
		}
		if want := []string{"GET rv=0", "POST rv="}; !slices.Equal(got, want) {
			t.Errorf("%s: requests %v, want %v (one GET from the cache, one create, no patch of an unchanged status)", k, got, want)
		}
	}
	pods := map[string]map[string]any{}
	for _, raw := range c.list(ctx, pathPods) {
		var p struct {
			Metadata struct {
				Name, Namespace, UID string
				Labels               map[string]any
			} `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatal(err)
		}
		pods[p.Metadata.Namespace+"/"+p.Metadata.Name] = map[string]any{"uid": p.Metadata.UID, "labels": p.Metadata.Labels}
	}
	uids := map[string]string{}
	for _, raw := range c.list(ctx, pathCEPs) {
		var cep struct {
			Metadata struct {
				Name, Namespace, UID string
				Labels               map[string]any
				OwnerReferences      []ownerRef `json:"ownerReferences"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &cep); err != nil {
			t.Fatal(err)
		}
		k := cep.Metadata.Namespace + "/" + cep.Metadata.Name
		uids[k] = cep.Metadata.UID
		pod := pods[k]
		if pod == nil {
			t.Errorf("CiliumEndpoint %s has no pod", k)
			continue
		}
		if !mapsEqualAny(cep.Metadata.Labels, pod["labels"].(map[string]any)) {
			t.Errorf("CiliumEndpoint %s labels %v, want the pod's %v", k, cep.Metadata.Labels, pod["labels"])
		}
		want := []ownerRef{{APIVersion: "v1", Kind: "Pod", Name: cep.Metadata.Name, UID: pod["uid"].(string)}}
		if !slices.Equal(cep.Metadata.OwnerReferences, want) {
			t.Errorf("CiliumEndpoint %s owners %v, want %v", k, cep.Metadata.OwnerReferences, want)
		}
	}
	c.checkObjects(ctx)

	// A new identity for every pod: each CiliumEndpoint is patched, and
	// every patch first tests the uid the agent created.
	c.relabel(ctx, map[string]string{"env": "staging"})
	c.waitConverged(ctx, f, "after relabel")
	byPod = cepRequests(log.snapshot())
	for k, reqs := range byPod {
		var patches int
		for _, r := range reqs {
			if r.method != http.MethodPatch {
				continue
			}
			patches++
			var ops []struct {
				Op, Path string
				Value    any
			}
			if err := json.Unmarshal(r.body, &ops); err != nil {
				t.Fatalf("%s: patch %s: %v", k, r.body, err)
			}
			if len(ops) != 2 || ops[0].Op != "test" || ops[0].Path != "/metadata/uid" || ops[0].Value != uids[k] || ops[1].Op != "replace" || ops[1].Path != "/status" {
				t.Errorf("%s: patch %s, want a test of /metadata/uid %q, then a replace of /status", k, r.body, uids[k])
			}
		}
		if patches == 0 {
			t.Errorf("%s: no patch after its identity changed", k)
		}
	}
}

func mapsEqualAny(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A kvstore agent writes its endpoints' CiliumEndpoints (though no agent
// watches them), unless agent.disableEndpointCRD turns the synchroniser
// off (RunK8sCiliumEndpointSync returns at once with
// DisableCiliumEndpointCRD).
func TestKVStoreEndpointCRD(t *testing.T) {
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("disableEndpointCRD=%v", disable), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			s := tinyScenario(t, scenarios.ModeKVStore)
			s.Agent.DisableEndpointCRD = disable
			c := startCluster(t, s)
			c.setup(ctx)
			var log requestLog
			cfg := c.fleetConfig(scenarios.ModeKVStore)
			cfg.REST = log.wrap(cfg.REST)
			cfg.KVStore = []string{startEtcd(t)}
			f := runFleet(t, ctx, cfg)
			c.waitConverged(ctx, f, "after setup")
			want := len(c.topo.Pods)
			if disable {
				want = 0
			}
			if n := len(c.list(ctx, pathCEPs)); n != want {
				t.Errorf("%d CiliumEndpoints, want %d", n, want)
			}
			if n := len(cepRequests(log.snapshot())); n != want {
				t.Errorf("CiliumEndpoint requests for %d pods, want %d", n, want)
			}
		})
	}
}

// An endpoint never writes over a CiliumEndpoint it did not create: its
// patch tests the uid it holds, and a GET that finds another object does
// not adopt it (updateCEPUID).
func TestCiliumEndpointOfAnotherUIDIsLeftAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := tinyScenario(t, scenarios.ModeCRD)
	s.Cluster.Nodes = 1
	s.Agent.IdentityChangeGracePeriod = scenarios.D(0)
	s.Agent.EndpointSyncInterval = scenarios.D(100 * time.Millisecond)
	c := startCluster(t, s)
	c.setup(ctx)
	var log requestLog
	cfg := c.fleetConfig(scenarios.ModeCRD)
	cfg.REST = log.wrap(cfg.REST)
	f := runFleet(t, ctx, cfg)
	c.waitConverged(ctx, f, "after setup")

	// Replace one pod's CiliumEndpoint by another object of the same name.
	p := c.topo.Pods[0]
	path := "/apis/cilium.io/v2/namespaces/" + p.Namespace + "/ciliumendpoints/" + p.Name
	if _, err := c.admin.do(ctx, http.MethodDelete, path, "", nil, nil); err != nil {
		t.Fatal(err)
	}
	c.post(ctx, "/apis/cilium.io/v2/namespaces/"+p.Namespace+"/ciliumendpoints", map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
		"metadata": map[string]any{"name": p.Name, "namespace": p.Namespace},
		"status":   map[string]any{"id": 99, "identity": map[string]any{"id": 99}},
	})
	// A new identity for every pod makes every endpoint write.
	c.relabel(ctx, map[string]string{"env": "staging"})
	deadline := time.Now().Add(5 * time.Second)
	var patches, gets int
	for time.Now().Before(deadline) && (patches == 0 || gets == 0) {
		time.Sleep(100 * time.Millisecond)
		patches, gets = 0, 0
		for _, r := range cepRequests(log.snapshot())[p.Namespace+"/"+p.Name] {
			switch {
			case r.method == http.MethodPatch:
				patches++
			case r.method == http.MethodGet && r.query.Get("resourceVersion") == "":
				gets++
			}
		}
	}
	if patches == 0 || gets == 0 {
		t.Fatalf("%d patches and %d fresh GETs of the replaced CiliumEndpoint, want a failed patch and a GET", patches, gets)
	}
	raw, err := c.admin.do(ctx, http.MethodGet, path, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cep cepReadBack
	if err := json.Unmarshal(raw, &cep); err != nil {
		t.Fatal(err)
	}
	if cep.Status.Identity.ID != 99 {
		t.Errorf("the agent wrote over a CiliumEndpoint it does not own: identity %d", cep.Status.Identity.ID)
	}
}
