package harness

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/truth"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// fakeCluster records what the timeline writes, as an API server would
// store it.
type fakeCluster struct {
	mu       sync.Mutex
	nodes    map[string]bool
	ns       map[string]map[string]string
	sas      map[string]bool
	cnps     []policy.CiliumNetworkPolicy
	pods     map[string]*scenarios.Pod
	failPods int // fail this many pod creates with a 500 first
	writes   int
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{nodes: map[string]bool{}, ns: map[string]map[string]string{}, sas: map[string]bool{}, pods: map[string]*scenarios.Pod{}}
}

func (f *fakeCluster) CreateNode(_ context.Context, n scenarios.Node) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[n.Name] = true
	f.writes++
	return nil
}

func (f *fakeCluster) CreateNamespace(_ context.Context, ns scenarios.Namespace) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := map[string]string{}
	for k, v := range ns.Labels {
		l[k] = v
	}
	f.ns[ns.Name] = l
	f.writes++
	return nil
}

func (f *fakeCluster) CreateServiceAccount(_ context.Context, ns, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sas[ns+"/"+name] = true
	f.writes++
	return nil
}

func (f *fakeCluster) CreatePolicy(_ context.Context, cnp policy.CiliumNetworkPolicy) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cnps = append(f.cnps, cnp)
	f.writes++
	return nil
}

func (f *fakeCluster) CreatePod(_ context.Context, p *scenarios.Pod, hostIP string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failPods > 0 {
		f.failPods--
		return &APIError{Method: "POST", Path: "/pods", Status: 500, Body: "try again"}
	}
	if hostIP == "" {
		return errors.New("no host IP")
	}
	cp := *p
	f.pods[p.Namespace+"/"+p.Name] = &cp
	f.writes += 2
	return nil
}

func (f *fakeCluster) SetNamespaceLabels(_ context.Context, ns string, set map[string]string, removed []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.ns[ns]
	if !ok {
		return &APIError{Method: "PATCH", Path: ns, Status: 404}
	}
	for k, v := range set {
		l[k] = v
	}
	for _, k := range removed {
		delete(l, k)
	}
	f.writes++
	return nil
}

func (f *fakeCluster) DeletePod(_ context.Context, ns, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pods, ns+"/"+name)
	f.writes++
	return nil
}

// state is the truth as the fake cluster stores it: what agents that saw
// every write would compute.
func (f *fakeCluster) state(sc *scenarios.Scenario) (map[string]truth.Expected, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	filter, err := identity.NewFilter(sc.Agent.LabelFilter)
	if err != nil {
		return nil, err
	}
	st := &truth.State{Cluster: sc.Cluster.Name, Filter: filter}
	for name, l := range f.ns {
		if name == ProbeNamespace {
			continue
		}
		st.Namespaces = append(st.Namespaces, scenarios.Namespace{Name: name, Labels: l})
	}
	for _, p := range f.pods {
		st.Pods = append(st.Pods, p)
	}
	for _, c := range f.cnps {
		r, err := policy.Compile(&c)
		if err != nil {
			return nil, err
		}
		st.Rules = append(st.Rules, r...)
	}
	for n := range f.nodes {
		st.Nodes = append(st.Nodes, n)
	}
	return st.Compute()
}

// lagAgents report the cluster's state only after lag polls since the last
// change they noticed; before that, they report what they had.
type lagAgents struct {
	sc      *scenarios.Scenario
	cluster *fakeCluster
	lag     int
	now     func() time.Time
	broken  bool // never converge

	mu      sync.Mutex
	polls   int
	shown   map[string]truth.Expected
	pending map[string]truth.Expected
	since   int
	changed time.Time
}

func (a *lagAgents) Agents(context.Context) ([]AgentStatus, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.polls++
	cur, err := a.cluster.state(a.sc)
	if err != nil {
		return nil, err
	}
	if fmt.Sprint(cur) != fmt.Sprint(a.pending) {
		a.pending, a.since = cur, a.polls
	}
	if a.polls-a.since >= a.lag && !a.broken && fmt.Sprint(a.shown) != fmt.Sprint(a.pending) {
		a.shown = a.pending
		a.changed = a.now()
	}
	var out []AgentStatus
	for n, e := range a.shown {
		out = append(out, AgentStatus{Node: n, IPCache: e.IPCache, Policy: e.Policy, LastChange: a.changed})
	}
	return out, nil
}

func smallScenario(t *testing.T, steps string) *scenarios.Scenario {
	t.Helper()
	sc, err := scenarios.Parse("test", []byte(`
name: t
seed: 7
cluster:
  nodes: 3
  namespaces:
    - {name: a, labels: {env: prod}}
    - {name: b, labels: {env: prod}}
  workloads: {deploymentsPerNamespace: 2, replicas: 3}
policies:
  - name: from-prod
    ingress:
      - fromNamespaceLabels: {env: prod}
        ports: [{port: 80, protocol: TCP}]
`+steps))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestTimelineRunsEveryStepAndConverges(t *testing.T) {
	sc := smallScenario(t, `
steps:
  - setup: {}
  - waitConverged: {timeout: 1m}
  - relabel: {set: {env: staging}}
  - waitConverged: {timeout: 1m}
  - scale: {namespace: a, deployment: deploy-0, replicas: 5}
  - deletePods: {fraction: 0.5}
  - scale: {namespace: b, deployment: deploy-1, replicas: 1}
  - waitConverged: {timeout: 1m}
`)
	topo, err := sc.Generate()
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeCluster()
	fc.failPods = 2 // retried
	agents := &lagAgents{sc: sc, cluster: fc, lag: 2, now: time.Now}
	var steps []results.StepResult
	var conv []results.ConvergenceSummary
	tl, err := NewTimeline(TimelineConfig{
		Scenario: sc, Topology: topo, Cluster: fc, Agents: agents,
		PollInterval: time.Millisecond,
		OnStep:       func(s results.StepResult) { steps = append(steps, s) },
		OnConverged:  func(c results.ConvergenceSummary) { conv = append(conv, c) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(steps) != 2*len(sc.Steps) {
		t.Fatalf("got %d step events, want %d", len(steps), 2*len(sc.Steps))
	}
	for i := 1; i < len(steps); i += 2 {
		if steps[i].Outcome != results.OutcomeOK || steps[i].End == nil {
			t.Errorf("step %d: %+v, want ok with an end", steps[i].Index, steps[i])
		}
	}
	if len(conv) != 3 {
		t.Fatalf("convergence summaries = %d, want 3", len(conv))
	}
	wantTriggers := []string{"setup", "relabel", "scale"}
	for i, c := range conv {
		if c.Trigger != wantTriggers[i] || c.Agents != 3 || c.Converged != 3 || c.Max < c.P50 {
			t.Errorf("convergence %d = %+v, want trigger %s and 3/3", i, c, wantTriggers[i])
		}
	}
	// The cluster holds what the topology says: 12 pods, +2 by scale, -2.
	if got := len(fc.pods); got != len(topo.Pods) || got != 12 {
		t.Errorf("cluster has %d pods, topology %d; want 12", got, len(topo.Pods))
	}
	for _, l := range fc.ns {
		if l["env"] != "staging" {
			t.Errorf("namespace labels %v, want env=staging", l)
		}
	}
	if len(fc.cnps) != 2 || len(fc.sas) != 2 || len(fc.nodes) != 3 {
		t.Errorf("cnps %d sas %d nodes %d, want 2 2 3", len(fc.cnps), len(fc.sas), len(fc.nodes))
	}
}

func TestTimelineTimeout(t *testing.T) {
	sc := smallScenario(t, `
steps:
  - setup: {}
  - waitConverged: {timeout: 50ms}
`)
	topo, _ := sc.Generate()
	fc := newFakeCluster()
	var steps []results.StepResult
	tl, err := NewTimeline(TimelineConfig{
		Scenario: sc, Topology: topo, Cluster: fc,
		Agents:       &lagAgents{sc: sc, cluster: fc, broken: true, now: time.Now},
		PollInterval: time.Millisecond,
		OnStep:       func(s results.StepResult) { steps = append(steps, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	err = tl.Run(context.Background())
	var nc *ErrNotConverged
	if !errors.As(err, &nc) || nc.Converged != 0 || nc.Agents != 3 || nc.Step != 1 {
		t.Fatalf("err = %v, want ErrNotConverged 0/3 at step 1", err)
	}
	if last := steps[len(steps)-1]; last.Outcome != results.OutcomeTimeout || !strings.Contains(last.Detail, "0/3") {
		t.Errorf("last step = %+v, want a timeout naming 0/3", last)
	}
}

func TestTimelineInterrupted(t *testing.T) {
	sc := smallScenario(t, `
steps:
  - setup: {}
  - observe: {duration: 1h}
`)
	topo, _ := sc.Generate()
	ctx, cancel := context.WithCancel(context.Background())
	var steps []results.StepResult
	tl, err := NewTimeline(TimelineConfig{
		Scenario: sc, Topology: topo, Cluster: newFakeCluster(), Agents: &lagAgents{},
		OnStep: func(s results.StepResult) {
			steps = append(steps, s)
			if s.Kind == "observe" && s.Outcome == results.OutcomeRunning {
				cancel()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
	if last := steps[len(steps)-1]; last.Outcome != results.OutcomeInterrupted {
		t.Errorf("last step outcome %q, want interrupted", last.Outcome)
	}
}

func TestTimelineConfigErrors(t *testing.T) {
	sc := smallScenario(t, "steps: [{setup: {}}]")
	topo, _ := sc.Generate()
	tests := []struct {
		name string
		cfg  TimelineConfig
		want string
	}{
		{"no scenario", TimelineConfig{Topology: topo, Cluster: newFakeCluster(), Agents: &lagAgents{}}, "Scenario is nil"},
		{"no topology", TimelineConfig{Scenario: sc, Cluster: newFakeCluster(), Agents: &lagAgents{}}, "Topology is nil"},
		{"no cluster", TimelineConfig{Scenario: sc, Topology: topo, Agents: &lagAgents{}}, "Cluster is nil"},
		{"no agents", TimelineConfig{Scenario: sc, Topology: topo, Cluster: newFakeCluster()}, "Agents is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewTimeline(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestSetupStopsAtFirstHardError(t *testing.T) {
	sc := smallScenario(t, "steps: [{setup: {}}]")
	topo, _ := sc.Generate()
	tl, _ := NewTimeline(TimelineConfig{Scenario: sc, Topology: topo, Cluster: failingCluster{newFakeCluster()}, Agents: &lagAgents{}})
	err := tl.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "create namespaces") || !strings.Contains(err.Error(), "HTTP 403") {
		t.Errorf("err = %v, want the namespace failure", err)
	}
}

type failingCluster struct{ *fakeCluster }

func (failingCluster) CreateNamespace(context.Context, scenarios.Namespace) error {
	return &APIError{Method: "POST", Path: "/api/v1/namespaces", Status: 403, Body: "forbidden"}
}

func TestNotConvergedNamesPolicyOverflow(t *testing.T) {
	ms := []truth.Mismatch{
		{Node: "n1", Got: truth.Expected{IPCache: "a/1", Policy: "b/2 overflow:20"}, Reported: true},
		{Node: "n2", Got: truth.Expected{IPCache: "a/1", Policy: "b/2"}, Reported: true},
		{Node: "n3", Got: truth.Expected{IPCache: "a/1", Policy: "c/3 overflow:1"}, Reported: true},
	}
	if got := policyOverflows(ms); got != 2 {
		t.Fatalf("policyOverflows = %d, want 2", got)
	}
	e := &ErrNotConverged{Step: 4, Converged: 997, Agents: 1000, Timeout: time.Minute, Sample: ms[:1], Overflowing: 2}
	if msg := e.Error(); !strings.Contains(msg, "2 agents refused an endpoint policy larger than the policy map (agent.policyMapMax)") {
		t.Errorf("error %q does not name the overflow", msg)
	}
	e.Overflowing = 0
	if msg := e.Error(); strings.Contains(msg, "policy map") {
		t.Errorf("error %q names an overflow nobody reported", msg)
	}
}

// overflowAgents reports every node as refusing an endpoint policy.
type overflowAgents struct{ nodes []string }

func (a overflowAgents) Agents(context.Context) ([]AgentStatus, error) {
	var out []AgentStatus
	for _, n := range a.nodes {
		out = append(out, AgentStatus{Node: n, IPCache: "0/0", Policy: "0/0" + agentcontract.PolicyOverflowMarker + "2"})
	}
	return out, nil
}

func TestTimelineTimeoutRecordsPolicyOverflow(t *testing.T) {
	sc := smallScenario(t, `
steps:
  - setup: {}
  - waitConverged: {timeout: 20ms}
`)
	topo, err := sc.Generate()
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, n := range topo.Nodes[:2] {
		nodes = append(nodes, n.Name)
	}
	var conv []results.ConvergenceSummary
	tl, err := NewTimeline(TimelineConfig{
		Scenario: sc, Topology: topo, Cluster: newFakeCluster(),
		Agents:       overflowAgents{nodes: nodes},
		PollInterval: time.Millisecond,
		OnConverged:  func(c results.ConvergenceSummary) { conv = append(conv, c) },
	})
	if err != nil {
		t.Fatal(err)
	}
	err = tl.Run(context.Background())
	var nc *ErrNotConverged
	if !errors.As(err, &nc) || nc.Overflowing != 2 {
		t.Fatalf("err = %v, want ErrNotConverged with 2 overflowing agents", err)
	}
	// Two of three agents refuse their policy, the third never reported.
	if len(conv) != 1 || conv[0].PolicyOverflow != 2 || conv[0].Converged != 0 || conv[0].Agents != 3 {
		t.Fatalf("convergence = %+v, want one summary with 0/3 converged and policyOverflow 2", conv)
	}
}

func TestPodCreationOrder(t *testing.T) {
	sc := smallScenario(t, `
steps:
  - setup: {}
`)
	topo, err := sc.Generate()
	if err != nil {
		t.Fatal(err)
	}
	deploy := func(p *scenarios.Pod) string { return p.Namespace + "/" + p.Deployment }
	groups := map[string]int{}
	for _, p := range topo.Pods {
		groups[deploy(p)]++
	}
	if len(groups) < 2 {
		t.Fatalf("scenario has %d deployments, the test needs several", len(groups))
	}

	by := podCreationOrder(topo.Pods, scenarios.PodOrderByDeployment)
	if len(by) != len(topo.Pods) {
		t.Fatalf("byDeployment: %d pods, want %d", len(by), len(topo.Pods))
	}
	for i := range by {
		if by[i] != topo.Pods[i] {
			t.Fatalf("byDeployment: pod %d is %s, want the topology's %s", i, by[i].Name, topo.Pods[i].Name)
		}
	}

	in := podCreationOrder(topo.Pods, scenarios.PodOrderInterleaved)
	if len(in) != len(topo.Pods) {
		t.Fatalf("interleaved: %d pods, want %d", len(in), len(topo.Pods))
	}
	seen := map[*scenarios.Pod]bool{}
	for _, p := range in {
		if seen[p] {
			t.Fatalf("interleaved: pod %s twice", p.Name)
		}
		seen[p] = true
	}
	// The first len(groups) pods are one of each deployment, and two pods
	// of a deployment never follow each other while others remain.
	first := map[string]bool{}
	for _, p := range in[:len(groups)] {
		first[deploy(p)] = true
	}
	if len(first) != len(groups) {
		t.Errorf("interleaved: the first %d pods cover %d deployments, want all", len(groups), len(first))
	}
	for i := 1; i < len(groups); i++ {
		if deploy(in[i]) == deploy(in[i-1]) {
			t.Errorf("interleaved: pods %d and %d are both of %s", i-1, i, deploy(in[i]))
		}
	}
	// The order within a deployment is kept (replica by replica).
	next := map[string]int{}
	want := map[string][]*scenarios.Pod{}
	for _, p := range topo.Pods {
		want[deploy(p)] = append(want[deploy(p)], p)
	}
	for _, p := range in {
		d := deploy(p)
		if want[d][next[d]] != p {
			t.Fatalf("interleaved: %s out of its deployment's order", p.Name)
		}
		next[d]++
	}
	if got := podCreationOrder(nil, scenarios.PodOrderInterleaved); len(got) != 0 {
		t.Errorf("no pods: got %d", len(got))
	}
}

// TestTimelineScaleAllChurn: setup without pods leaves the cluster and the
// ground truth without pods; scaleAll to 5 then to 0 creates and deletes
// every deployment's pods, the agents converge after each, and the
// cluster's pods are the topology's.
func TestTimelineScaleAllChurn(t *testing.T) {
	sc := smallScenario(t, `
steps:
  - setup: {pods: false}
  - waitConverged: {timeout: 1m}
  - scaleAll: {replicas: 5, rate: 1000}
  - waitConverged: {timeout: 1m}
  - scaleAll: {replicas: 2, rate: 1000, namespaces: [b]}
  - waitConverged: {timeout: 1m}
  - scaleAll: {replicas: 0, rate: 1000}
  - waitConverged: {timeout: 1m}
`)
	topo, err := sc.Generate()
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeCluster()
	agents := &lagAgents{sc: sc, cluster: fc, lag: 2, now: time.Now}
	type seen struct {
		pods, truthPods int
		perDeploy       map[string]int
	}
	var after []seen
	var conv []results.ConvergenceSummary
	var steps []results.StepResult
	tl, err := NewTimeline(TimelineConfig{
		Scenario: sc, Topology: topo, Cluster: fc, Agents: agents,
		PollInterval: time.Millisecond,
		OnStep: func(s results.StepResult) {
			steps = append(steps, s)
			if s.End == nil || s.Kind == "waitConverged" {
				return
			}
			fc.mu.Lock()
			per := map[string]int{}
			for _, p := range fc.pods {
				per[p.Namespace+"/"+p.Deployment]++
			}
			after = append(after, seen{pods: len(fc.pods), truthPods: len(topo.Pods), perDeploy: per})
			fc.mu.Unlock()
		},
		OnConverged: func(c results.ConvergenceSummary) { conv = append(conv, c) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// setup, scaleAll to 5, b to 2, all to 0.
	want := []seen{
		{0, 0, map[string]int{}},
		{20, 20, map[string]int{"a/deploy-0": 5, "a/deploy-1": 5, "b/deploy-0": 5, "b/deploy-1": 5}},
		{14, 14, map[string]int{"a/deploy-0": 5, "a/deploy-1": 5, "b/deploy-0": 2, "b/deploy-1": 2}},
		{0, 0, map[string]int{}},
	}
	if len(after) != len(want) {
		t.Fatalf("%d cluster-changing steps ended, want %d", len(after), len(want))
	}
	for k := range want {
		if after[k].pods != want[k].pods || after[k].truthPods != want[k].truthPods || fmt.Sprint(after[k].perDeploy) != fmt.Sprint(want[k].perDeploy) {
			t.Errorf("after change %d: cluster %d pods, topology %d, per deployment %v; want %+v", k, after[k].pods, after[k].truthPods, after[k].perDeploy, want[k])
		}
	}
	wantTriggers := []string{"setup", "scaleAll", "scaleAll", "scaleAll"}
	if len(conv) != len(wantTriggers) {
		t.Fatalf("convergence summaries = %d, want %d", len(conv), len(wantTriggers))
	}
	for k, c := range conv {
		if c.Trigger != wantTriggers[k] || c.Converged != 3 || c.Agents != 3 {
			t.Errorf("convergence %d = %+v, want trigger %s and 3/3", k, c, wantTriggers[k])
		}
	}
	// Each scaleAll is recorded with its start and end, as relabel is.
	var scaled []results.StepResult
	for _, s := range steps {
		if s.Kind == "scaleAll" && s.End != nil {
			scaled = append(scaled, s)
		}
	}
	if len(scaled) != 3 || !strings.Contains(scaled[0].Detail, "created 20 and deleted 0 pods") || !strings.Contains(scaled[2].Detail, "created 0 and deleted 14 pods") {
		t.Errorf("scaleAll steps = %+v, want three with their counts", scaled)
	}
	if len(fc.nodes) != 3 || len(fc.sas) != 2 || len(fc.cnps) != 2 || len(fc.ns) != 2 {
		t.Errorf("setup without pods created nodes %d, service accounts %d, policies %d, namespaces %d; want 3 2 2 2", len(fc.nodes), len(fc.sas), len(fc.cnps), len(fc.ns))
	}
}

// TestScaleAllInterleavesAndKeepsRate: the pods of a scaleAll take turns
// by deployment, and the step takes at least as long as its rate says.
func TestScaleAllInterleavesAndKeepsRate(t *testing.T) {
	sc := smallScenario(t, `
steps:
  - setup: {pods: false}
  - scaleAll: {replicas: 10, rate: 20}
`)
	topo, err := sc.Generate()
	if err != nil {
		t.Fatal(err)
	}
	rc := &recordingCluster{fakeCluster: newFakeCluster()}
	tl, err := NewTimeline(TimelineConfig{Scenario: sc, Topology: topo, Cluster: rc, Agents: &lagAgents{}, Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := tl.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if len(rc.order) != 40 {
		t.Fatalf("created %d pods, want 40", len(rc.order))
	}
	// 4 deployments: each run of 4 creations holds each deployment once.
	for r := 0; r < 10; r++ {
		round := map[string]bool{}
		for _, d := range rc.order[r*4 : r*4+4] {
			round[d] = true
		}
		if len(round) != 4 {
			t.Errorf("creations %d..%d are of %v, want one of each of the 4 deployments", r*4, r*4+3, rc.order[r*4:r*4+4])
		}
	}
	// 40 pods at 20/s: the first 20 may go at once (the limiter's burst
	// is one second's worth, as in setup), the other 20 take a second.
	if took < 900*time.Millisecond {
		t.Errorf("40 pods at 20/s took %v, want at least 1s", took)
	}
}

// recordingCluster records the deployment of each pod created, in order.
type recordingCluster struct {
	*fakeCluster
	order []string
}

func (r *recordingCluster) CreatePod(ctx context.Context, p *scenarios.Pod, hostIP string) error {
	r.fakeCluster.mu.Lock()
	r.order = append(r.order, p.Namespace+"/"+p.Deployment)
	r.fakeCluster.mu.Unlock()
	return r.fakeCluster.CreatePod(ctx, p, hostIP)
}

// TestChurnSmallFake runs one cycle of churn-1k at test size
// (testdata/churn-small.yaml: 20 nodes, 5 namespaces x 2 deployments, 10
// replicas, ces-slim) through the harness against the fake API server:
// the agents converge after setup without pods, after the scale-up and
// after the scale-down, and the identity GC deletes every identity the
// cycle created within the final observe, sized from its knobs.
func TestChurnSmallFake(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run; -short")
	}
	bin := stampedeBinary(t)
	requireSubcommands(t, bin, "fakeapi", "controlplane", "agents")
	sc, err := scenarios.LoadFile(filepath.Join("testdata", "churn-small.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Config{
		Scenario: sc, Backend: &FakeBackend{}, Modes: []scenarios.Mode{scenarios.ModeCESSlim}, Out: out, Executable: bin,
		Progress: testWriter{t}, Grace: 5 * time.Second, AgentNice: AgentNiceAuto,
	})
	if err != nil {
		t.Errorf("run: %v", err)
	}
	if res == nil {
		t.Fatal("no results")
	}
	t.Logf("churn-small, ces-slim, fake backend: %v (output %s)", time.Since(start).Round(time.Second), out)
	if len(res.Modes) != 1 || res.Modes[0].Status != results.StatusOK {
		t.Fatalf("modes = %+v, want ces-slim ok", res.Modes)
	}
	m := res.Modes[0]
	for _, st := range m.Steps {
		t.Logf("steps[%d] %s %s: %s", st.Index, st.Kind, st.End.Sub(st.Start).Round(time.Millisecond), st.Detail)
	}
	conv := m.Summary.Convergence
	wantTriggers := []string{"setup", "scaleAll", "scaleAll"}
	if len(conv) != len(wantTriggers) {
		t.Fatalf("%d convergence summaries, want %d: %+v", len(conv), len(wantTriggers), conv)
	}
	for k, c := range conv {
		if c.Trigger != wantTriggers[k] || c.Agents != sc.Cluster.Nodes || c.Converged != c.Agents {
			t.Errorf("convergence %d = %+v, want trigger %s and %d/%d", k, c, wantTriggers[k], sc.Cluster.Nodes, sc.Cluster.Nodes)
		}
	}
	// The identities: one per deployment created by the operator, none
	// left at the end (only the identity GC deletes them).
	deployments := int64(len(sc.Cluster.Namespaces) * sc.Cluster.Workloads.DeploymentsPerNamespace)
	if id := m.Summary.Identities; id == nil || id.Created < deployments || id.Final != 0 {
		t.Errorf("identities %+v, want at least %d created and 0 left after the GC", id, deployments)
	}
	deletes, ok := m.Series.Values["api.writes.rate{type=delete ciliumidentities}"]
	deleted := false
	for _, v := range deletes {
		deleted = deleted || v > 0
	}
	if !ok || !deleted {
		t.Errorf("no CiliumIdentity deletes in the series")
	}
}
