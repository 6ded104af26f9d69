package harness

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stampede-sim/stampede/agentsim"
	"github.com/stampede-sim/stampede/scenarios"
)

// TestFakeBackendSetupAndProbe starts `stampede fakeapi` through the fake
// backend, writes a small cluster with the timeline's setup, probes it and
// scrapes its metrics: the harness's writes and reads against the real
// fake API server.
func TestFakeBackendSetupAndProbe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs stampede; -short")
	}
	bin := stampedeBinary(t)
	requireSubcommands(t, bin, "fakeapi")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sc := smallScenario(t, `
steps:
  - setup: {}
  - relabel: {set: {env: staging}, remove: [nope]}
  - scale: {namespace: a, deployment: deploy-0, replicas: 1}
  - deletePods: {fraction: 0.5}
`)
	admin := User{Name: "admin", Role: RoleAdmin, Token: randomToken()}
	b := &FakeBackend{}
	dir := t.TempDir()
	api, err := b.Start(ctx, BackendEnv{Dir: dir, Mode: scenarios.ModeCRD, Scenario: sc, Users: []User{admin, {Name: "node:node-0000", Role: RoleAgent, Token: "n0"}}, Executable: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if api.CAFile == "" || api.URL == "" || api.Processes["apiserver"] == 0 {
		t.Fatalf("api = %+v", api)
	}
	c, err := newAPIClient(api.URL, api.CAFile, admin.Token, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	topo, _ := sc.Generate()
	tl, err := NewTimeline(TimelineConfig{Scenario: sc, Topology: topo, Cluster: kubeCluster{c: c}, Agents: &lagAgents{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// The server holds what the topology says, with status written.
	var pods struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ NodeName string }
			Status   struct{ PodIP, Phase string }
		}
	}
	if err := c.do(ctx, "GET", "/api/v1/pods", "", nil, &pods); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != len(topo.Pods) {
		t.Errorf("server has %d pods, topology %d", len(pods.Items), len(topo.Pods))
	}
	for _, p := range pods.Items {
		if p.Status.PodIP == "" || p.Status.Phase != "Running" || p.Spec.NodeName == "" {
			t.Errorf("pod %s: node %q ip %q phase %q", p.Metadata.Name, p.Spec.NodeName, p.Status.PodIP, p.Status.Phase)
		}
	}
	var ns struct {
		Metadata struct{ Labels map[string]string }
	}
	if err := c.do(ctx, "GET", "/api/v1/namespaces/a", "", nil, &ns); err != nil {
		t.Fatal(err)
	}
	if ns.Metadata.Labels["env"] != "staging" {
		t.Errorf("namespace a labels %v, want env=staging", ns.Metadata.Labels)
	}

	// Probe every operation once.
	target := kubeProbeTarget{c: c}
	if err := target.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := target.Prepare(ctx); err != nil {
		t.Fatalf("second Prepare (objects exist): %v", err)
	}
	for i, op := range target.Ops() {
		if err := op.Do(ctx, i); err != nil {
			t.Errorf("probe %s %s: %v", op.Verb, op.Resource, err)
		}
	}
	census, err := identityCensus(ctx, c)
	if err != nil || census.Final != 0 {
		t.Errorf("identity census = %+v, %v; want 0 identities", census, err)
	}

	// Metrics with the admin token.
	hc := &http.Client{Transport: scrapeTransport(api.CAFile), Timeout: 10 * time.Second}
	ms, err := Scrape(ctx, hc, api.MetricsURLs["apiserver"], admin.Token)
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := ms.Sum(mAPIRequests, map[string]string{"resource": "pods"}); !ok || n < float64(len(topo.Pods)) {
		t.Errorf("apiserver_request_total for pods = %v (present %v)", n, ok)
	}
	if h := ms.Histograms(mAPIDuration, nil, "verb"); len(h) == 0 {
		t.Error("no apiserver_request_duration_seconds")
	}
	if _, err := filepath.Glob(filepath.Join(dir, "*.log")); err != nil {
		t.Error(err)
	}
}

// TestCapacityArgs checks what the fake backend passes to `stampede
// fakeapi` for api.capacity: nothing without it, and the cores and an
// absolute profile path with it.
func TestCapacityArgs(t *testing.T) {
	args, fact, err := capacityArgs(&scenarios.Scenario{})
	if err != nil || len(args) != 0 || !strings.HasPrefix(fact, "none") {
		t.Errorf("no capacity: args %q, fact %q, err %v", args, fact, err)
	}
	rel := "../internal/capacity/testdata/placeholder.yaml"
	abs, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	sc := &scenarios.Scenario{API: scenarios.API{Capacity: &scenarios.Capacity{Cores: 2.5, Profile: rel}}}
	args, fact, err = capacityArgs(sc)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"--capacity-cores", "2.5", "--capacity-profile", abs}, args); diff != "" {
		t.Errorf("args (-want +got):\n%s", diff)
	}
	if !strings.Contains(fact, "2.5 cores") || !strings.Contains(fact, "test-placeholder") {
		t.Errorf("fact %q does not name the cores and the profile", fact)
	}
	sc.API.Capacity.Profile = "no-such-profile"
	if _, _, err := capacityArgs(sc); err == nil || !strings.Contains(err.Error(), "api.capacity.profile") {
		t.Errorf("unknown profile: err %v, want one naming api.capacity.profile", err)
	}
}

// TestWriteTokenFileAgentsAsCiliumServiceAccount checks that agents
// authenticate as Cilium's service account in kube-system, so that APF
// classifies them as a real cluster would.
func TestWriteTokenFileAgentsAsCiliumServiceAccount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.csv")
	users := []User{{Name: "admin", Role: RoleAdmin, Token: "a"}, {Name: "node:n1", Role: RoleAgent, Token: "n1"}}
	if err := WriteTokenFile(path, users); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "a,admin,1,\"system:masters\"\n" +
		"n1,system:serviceaccount:kube-system:cilium,2,\"system:serviceaccounts,system:serviceaccounts:kube-system,stampede:agents\"\n"
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("token file (-want +got):\n%s", diff)
	}
}

// TestAgentTokensReachEachAgent checks that the agent shards can tell which
// token is whose although the API server knows every agent as one service
// account: the file written for them is read back by the agents' own loader.
func TestAgentTokensReachEachAgent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent-tokens.csv")
	users := []User{
		{Name: "admin", Role: RoleAdmin, Token: "a"},
		{Name: "node:n1", Role: RoleAgent, Token: "t1"},
		{Name: "node:n2", Role: RoleAgent, Token: "t2"},
	}
	if err := writeAgentTokens(path, users); err != nil {
		t.Fatal(err)
	}
	got, err := agentsim.LoadAgentTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"n1": "t1", "n2": "t2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("agent tokens (-want +got):\n%s", diff)
	}
}
