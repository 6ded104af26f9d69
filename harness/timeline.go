package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/truth"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// AgentStatus is what one simulated agent reports.
type AgentStatus struct {
	Node    string
	IPCache string
	Policy  string
	// LastChange is when the agent's state last changed (zero if unknown).
	LastChange time.Time
	// Work is what the agent received, holds and did (nil if it does not
	// say).
	Work *agentcontract.Work
}

// AgentSource lists the current status of every agent.
type AgentSource interface {
	Agents(ctx context.Context) ([]AgentStatus, error)
}

// TimelineConfig configures a Timeline.
type TimelineConfig struct {
	Scenario *scenarios.Scenario
	Topology *scenarios.Topology
	Cluster  Cluster
	Agents   AgentSource
	// Workers is the number of concurrent admin writers in setup and
	// churn steps (default 16: with fewer, creating a large scenario's
	// pods while the agents load the API server is bounded by the
	// harness's round trips, and setup measures the harness instead of
	// the cluster).
	Workers int
	// PollInterval is how often convergence is checked (default 500ms).
	PollInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	Log *slog.Logger
	// OnStep is called when a step starts and when it ends.
	OnStep func(results.StepResult)
	// OnConverged is called at the end of each waitConverged step.
	OnConverged func(results.ConvergenceSummary)
	// OnProgress is called on every convergence poll.
	OnProgress func(step string, converged, total int)
}

// Timeline executes a scenario's steps against a cluster and waits for the
// agents as the steps say. It keeps the ground truth (topology and
// namespace labels) in step with what it wrote.
type Timeline struct {
	cfg TimelineConfig
	// trigger is the last step that changed the cluster.
	trigger     int
	triggerKind string
	triggerAt   time.Time
}

// ErrNotConverged is returned when a waitConverged step times out. It is an
// outcome of the system under test, not a failure of the harness.
type ErrNotConverged struct {
	Step      int
	Converged int
	Agents    int
	Timeout   time.Duration
	Sample    []truth.Mismatch
	// Overflowing counts the agents that had refused an endpoint policy
	// larger than their policy map (agent.policyMapMax), as Cilium
	// refuses it: those cannot converge until the policy shrinks.
	Overflowing int
}

func (e *ErrNotConverged) Error() string {
	s := fmt.Sprintf("steps[%d].waitConverged: %d/%d agents converged within %v", e.Step, e.Converged, e.Agents, e.Timeout)
	if e.Overflowing > 0 {
		s += fmt.Sprintf("; %d agents refused an endpoint policy larger than the policy map (agent.policyMapMax)", e.Overflowing)
	}
	if len(e.Sample) > 0 {
		m := e.Sample[0]
		s += fmt.Sprintf(" (e.g. %s: want %s/%s, got %s/%s, reported %v)", m.Node, m.Want.IPCache, m.Want.Policy, m.Got.IPCache, m.Got.Policy, m.Reported)
	}
	return s
}

// policyOverflows counts the mismatches whose agent reports a policy map
// overflow (agentcontract.PolicyOverflowMarker in its policy digest).
func policyOverflows(ms []truth.Mismatch) int {
	n := 0
	for _, m := range ms {
		if strings.Contains(m.Got.Policy, agentcontract.PolicyOverflowMarker) {
			n++
		}
	}
	return n
}

// NewTimeline checks and defaults cfg.
func NewTimeline(cfg TimelineConfig) (*Timeline, error) {
	switch {
	case cfg.Scenario == nil:
		return nil, errors.New("timeline: Scenario is nil")
	case cfg.Topology == nil:
		return nil, errors.New("timeline: Topology is nil")
	case cfg.Cluster == nil:
		return nil, errors.New("timeline: Cluster is nil")
	case cfg.Agents == nil:
		return nil, errors.New("timeline: Agents is nil")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.OnStep == nil {
		cfg.OnStep = func(results.StepResult) {}
	}
	if cfg.OnConverged == nil {
		cfg.OnConverged = func(results.ConvergenceSummary) {}
	}
	if cfg.OnProgress == nil {
		cfg.OnProgress = func(string, int, int) {}
	}
	return &Timeline{cfg: cfg, trigger: -1}, nil
}

// Run executes every step in order. It stops at the first step that fails
// or times out; the error says which.
func (t *Timeline) Run(ctx context.Context) error {
	for i, step := range t.cfg.Scenario.Steps {
		kind := step.Kind()
		start := t.cfg.Now()
		t.cfg.OnStep(results.StepResult{Index: i, Kind: kind, Start: start, Outcome: results.OutcomeRunning})
		t.cfg.Log.Info("step", "index", i, "kind", kind)
		detail, err := t.runStep(ctx, i, step, start)
		end := t.cfg.Now()
		res := results.StepResult{Index: i, Kind: kind, Start: start, End: &end, Outcome: results.OutcomeOK, Detail: detail}
		var nc *ErrNotConverged
		switch {
		case err == nil:
		case errors.As(err, &nc):
			res.Outcome, res.Detail = results.OutcomeTimeout, err.Error()
		case ctx.Err() != nil:
			res.Outcome, res.Detail = results.OutcomeInterrupted, err.Error()
		default:
			res.Outcome, res.Detail = results.OutcomeFailed, err.Error()
		}
		t.cfg.OnStep(res)
		if err != nil {
			return err
		}
	}
	return nil
}

func (t *Timeline) runStep(ctx context.Context, i int, step scenarios.Step, start time.Time) (string, error) {
	switch {
	case step.Setup != nil:
		t.markTrigger(i, "setup", start)
		return t.setup(ctx, step.Setup)
	case step.WaitConverged != nil:
		return t.waitConverged(ctx, i, step.WaitConverged.Timeout.Duration)
	case step.Observe != nil:
		timer := time.NewTimer(step.Observe.Duration.Duration)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("steps[%d].observe: %w", i, ctx.Err())
		case <-timer.C:
			return "", nil
		}
	case step.Relabel != nil:
		t.markTrigger(i, "relabel", start)
		return t.relabel(ctx, i, step.Relabel)
	case step.Scale != nil:
		t.markTrigger(i, "scale", start)
		return t.scale(ctx, i, step.Scale)
	case step.DeletePods != nil:
		t.markTrigger(i, "deletePods", start)
		return t.deletePods(ctx, i, step.DeletePods)
	case step.ScaleAll != nil:
		t.markTrigger(i, "scaleAll", start)
		return t.scaleAll(ctx, i, step.ScaleAll)
	}
	return "", fmt.Errorf("steps[%d]: empty step", i)
}

func (t *Timeline) markTrigger(i int, kind string, at time.Time) {
	t.trigger, t.triggerKind, t.triggerAt = i, kind, at
}

// parallel runs fn over n items with the configured workers, at most qps
// items per second (0: unlimited). It stops at the first error.
func (t *Timeline) parallel(ctx context.Context, n int, qps float64, fn func(ctx context.Context, i int) error) error {
	if n == 0 {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var lim *rate.Limiter
	if qps > 0 {
		burst := int(qps)
		if burst < 1 {
			burst = 1
		}
		lim = rate.NewLimiter(rate.Limit(qps), burst)
	}
	next := make(chan int)
	var wg sync.WaitGroup
	workers := min(t.cfg.Workers, n)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := retry(ctx, func() error { return fn(ctx, i) }); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	func() {
		defer close(next)
		for i := 0; i < n; i++ {
			if lim != nil {
				if err := lim.Wait(ctx); err != nil {
					return
				}
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

// retry retries throttled (429) and server-side (5xx) failures a few times
// with backoff; other errors are returned at once.
func retry(ctx context.Context, fn func() error) error {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		var ae *APIError
		if attempt >= 8 || !errors.As(err, &ae) || (ae.Status != 429 && ae.Status < 500) {
			return err
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return err
		case <-timer.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (t *Timeline) setup(ctx context.Context, s *scenarios.SetupStep) (string, error) {
	topo, sc := t.cfg.Topology, t.cfg.Scenario
	c := t.cfg.Cluster
	if err := t.parallel(ctx, len(topo.Nodes), s.CreateQPS, func(ctx context.Context, i int) error {
		return c.CreateNode(ctx, topo.Nodes[i])
	}); err != nil {
		return "", fmt.Errorf("setup: create nodes: %w", err)
	}
	if err := t.parallel(ctx, len(topo.Namespaces), s.CreateQPS, func(ctx context.Context, i int) error {
		return c.CreateNamespace(ctx, topo.Namespaces[i])
	}); err != nil {
		return "", fmt.Errorf("setup: create namespaces: %w", err)
	}
	nsa := sc.Cluster.Workloads.ServiceAccounts
	if err := t.parallel(ctx, len(topo.Namespaces)*nsa, s.CreateQPS, func(ctx context.Context, i int) error {
		return c.CreateServiceAccount(ctx, topo.Namespaces[i/nsa].Name, scenarios.ServiceAccountName(i%nsa))
	}); err != nil {
		return "", fmt.Errorf("setup: create service accounts: %w", err)
	}
	var nss []string
	for _, ns := range topo.Namespaces {
		nss = append(nss, ns.Name)
	}
	cnps := policy.RenderAll(sc.Policies, nss)
	if err := t.parallel(ctx, len(cnps), s.CreateQPS, func(ctx context.Context, i int) error {
		return c.CreatePolicy(ctx, cnps[i])
	}); err != nil {
		return "", fmt.Errorf("setup: create policies: %w", err)
	}
	if !s.CreatesPods() {
		// The deployments exist only as names: the ground truth holds no
		// pods until a scaleAll creates them.
		for k := len(topo.Pods) - 1; k >= 0; k-- {
			topo.RemovePod(topo.Pods[k])
		}
	}
	pods := podCreationOrder(topo.Pods, s.PodOrder)
	if err := t.parallel(ctx, len(pods), s.CreateQPS, func(ctx context.Context, i int) error {
		return c.CreatePod(ctx, pods[i], topo.Nodes[pods[i].NodeIndex].IP.String())
	}); err != nil {
		return "", fmt.Errorf("setup: create pods: %w", err)
	}
	return fmt.Sprintf("created %d nodes, %d namespaces, %d service accounts, %d policies, %d pods",
		len(topo.Nodes), len(topo.Namespaces), len(topo.Namespaces)*nsa, len(cnps), len(pods)), nil
}

// podCreationOrder returns the pods in the order setup creates them:
// grouped by deployment (byDeployment, the topology's order), or one pod
// of each deployment in turn (interleaved, the default), so that the
// replicas of a deployment, which share a label set, appear spread over
// the whole setup.
func podCreationOrder(pods []*scenarios.Pod, order string) []*scenarios.Pod {
	out := make([]*scenarios.Pod, 0, len(pods))
	if order == scenarios.PodOrderByDeployment {
		return append(out, pods...)
	}
	var groups [][]*scenarios.Pod
	idx := map[string]int{}
	for _, p := range pods {
		k := p.Namespace + "/" + p.Deployment
		g, ok := idx[k]
		if !ok {
			g = len(groups)
			idx[k] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], p)
	}
	for r := 0; len(out) < len(pods); r++ {
		for _, g := range groups {
			if r < len(g) {
				out = append(out, g[r])
			}
		}
	}
	return out
}

func (t *Timeline) relabel(ctx context.Context, i int, r *scenarios.RelabelStep) (string, error) {
	topo := t.cfg.Topology
	names := r.Namespaces
	if len(names) == 0 {
		for _, ns := range topo.Namespaces {
			names = append(names, ns.Name)
		}
	}
	for _, name := range names {
		ns, ok := topo.Namespace(name)
		if !ok {
			return "", fmt.Errorf("steps[%d].relabel.namespaces: unknown namespace %q", i, name)
		}
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		for k, v := range r.Set {
			ns.Labels[k] = v
		}
		for _, k := range r.Remove {
			delete(ns.Labels, k)
		}
	}
	if err := t.parallel(ctx, len(names), 0, func(ctx context.Context, j int) error {
		return t.cfg.Cluster.SetNamespaceLabels(ctx, names[j], r.Set, r.Remove)
	}); err != nil {
		return "", fmt.Errorf("steps[%d].relabel: %w", i, err)
	}
	return fmt.Sprintf("relabelled %d namespaces", len(names)), nil
}

func (t *Timeline) scale(ctx context.Context, i int, s *scenarios.ScaleStep) (string, error) {
	topo := t.cfg.Topology
	var cur []*scenarios.Pod
	for _, p := range topo.Pods {
		if p.Namespace == s.Namespace && p.Deployment == s.Deployment {
			cur = append(cur, p)
		}
	}
	switch {
	case s.Replicas > len(cur):
		var add []*scenarios.Pod
		for k := len(cur); k < s.Replicas; k++ {
			p, err := topo.AddPod(s.Namespace, s.Deployment)
			if err != nil {
				return "", fmt.Errorf("steps[%d].scale: %w", i, err)
			}
			add = append(add, p)
		}
		if err := t.parallel(ctx, len(add), 0, func(ctx context.Context, j int) error {
			return t.cfg.Cluster.CreatePod(ctx, add[j], topo.Nodes[add[j].NodeIndex].IP.String())
		}); err != nil {
			return "", fmt.Errorf("steps[%d].scale: %w", i, err)
		}
		return fmt.Sprintf("scaled %s/%s from %d to %d", s.Namespace, s.Deployment, len(cur), s.Replicas), nil
	case s.Replicas < len(cur):
		del := cur[s.Replicas:]
		for _, p := range del {
			topo.RemovePod(p)
		}
		if err := t.parallel(ctx, len(del), 0, func(ctx context.Context, j int) error {
			return t.cfg.Cluster.DeletePod(ctx, del[j].Namespace, del[j].Name)
		}); err != nil {
			return "", fmt.Errorf("steps[%d].scale: %w", i, err)
		}
		return fmt.Sprintf("scaled %s/%s from %d to %d", s.Namespace, s.Deployment, len(cur), s.Replicas), nil
	}
	return fmt.Sprintf("%s/%s already has %d replicas", s.Namespace, s.Deployment, s.Replicas), nil
}

// scaleAll sets every deployment of the step's namespaces to Replicas
// pods, one pod of each deployment in turn (as setup's interleaved order),
// at most Rate creations and deletions a second in all. New pods are
// placed in the topology before they are created, in that order, so that
// placement stays deterministic; a deleted pod leaves the topology once
// the API server has deleted it. Scaling down deletes a deployment's
// newest pods first.
func (t *Timeline) scaleAll(ctx context.Context, i int, s *scenarios.ScaleAllStep) (string, error) {
	topo, sc := t.cfg.Topology, t.cfg.Scenario
	names := s.Namespaces
	if len(names) == 0 {
		for _, ns := range topo.Namespaces {
			names = append(names, ns.Name)
		}
	}
	type deployment struct{ ns, name string }
	var deps []deployment
	cur := map[deployment][]*scenarios.Pod{}
	for _, ns := range names {
		if _, ok := topo.Namespace(ns); !ok {
			return "", fmt.Errorf("steps[%d].scaleAll.namespaces: unknown namespace %q", i, ns)
		}
		for d := 0; d < sc.Cluster.Workloads.DeploymentsPerNamespace; d++ {
			dep := deployment{ns, scenarios.DeploymentName(d)}
			deps = append(deps, dep)
			cur[dep] = nil
		}
	}
	for _, p := range topo.Pods {
		dep := deployment{p.Namespace, p.Deployment}
		if pods, ok := cur[dep]; ok {
			cur[dep] = append(pods, p)
		}
	}
	type change struct {
		pod    *scenarios.Pod
		create bool
	}
	var changes []change
	created, deleted := 0, 0
	for r := 0; ; r++ {
		more := false
		for _, dep := range deps {
			have := len(cur[dep])
			switch {
			case have+r < s.Replicas:
				p, err := topo.AddPod(dep.ns, dep.name)
				if err != nil {
					return "", fmt.Errorf("steps[%d].scaleAll: %w", i, err)
				}
				changes = append(changes, change{p, true})
				created++
				more = true
			case have-r > s.Replicas:
				changes = append(changes, change{cur[dep][have-1-r], false})
				deleted++
				more = true
			}
		}
		if !more {
			break
		}
	}
	var mu sync.Mutex
	begin := t.cfg.Now()
	err := t.parallel(ctx, len(changes), s.Rate, func(ctx context.Context, j int) error {
		c := changes[j]
		if c.create {
			return t.cfg.Cluster.CreatePod(ctx, c.pod, topo.Nodes[c.pod.NodeIndex].IP.String())
		}
		if err := t.cfg.Cluster.DeletePod(ctx, c.pod.Namespace, c.pod.Name); err != nil {
			return err
		}
		mu.Lock()
		topo.RemovePod(c.pod)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("steps[%d].scaleAll: %w", i, err)
	}
	took := t.cfg.Now().Sub(begin)
	detail := fmt.Sprintf("scaled %d deployments to %d replicas: created %d and deleted %d pods", len(deps), s.Replicas, created, deleted)
	if n := created + deleted; n > 0 && took > 0 {
		detail += fmt.Sprintf(" in %s (%.1f pods/s)", took.Round(time.Millisecond), float64(n)/took.Seconds())
	}
	return detail, nil
}

func (t *Timeline) deletePods(ctx context.Context, i int, d *scenarios.DeletePodsStep) (string, error) {
	topo := t.cfg.Topology
	in := map[string]bool{}
	for _, ns := range d.Namespaces {
		in[ns] = true
	}
	var cands []*scenarios.Pod
	for _, p := range topo.Pods {
		if len(in) == 0 || in[p.Namespace] {
			cands = append(cands, p)
		}
	}
	n := int(float64(len(cands))*d.Fraction + 0.5)
	rng := rand.New(rand.NewPCG(uint64(t.cfg.Scenario.Seed), uint64(i)))
	rng.Shuffle(len(cands), func(a, b int) { cands[a], cands[b] = cands[b], cands[a] })
	victims := cands[:n]
	// Replace each victim as a ReplicaSet would: delete, then create a new
	// pod of the same deployment (new name, possibly a new node and IP).
	var mu sync.Mutex
	err := t.parallel(ctx, len(victims), d.Rate, func(ctx context.Context, j int) error {
		v := victims[j]
		if err := t.cfg.Cluster.DeletePod(ctx, v.Namespace, v.Name); err != nil {
			return err
		}
		mu.Lock()
		topo.RemovePod(v)
		p, err := topo.AddPod(v.Namespace, v.Deployment)
		mu.Unlock()
		if err != nil {
			return err
		}
		return t.cfg.Cluster.CreatePod(ctx, p, topo.Nodes[p.NodeIndex].IP.String())
	})
	if err != nil {
		return "", fmt.Errorf("steps[%d].deletePods: %w", i, err)
	}
	return fmt.Sprintf("replaced %d of %d pods", n, len(cands)), nil
}

// Expected computes the digests every agent should report now.
func (t *Timeline) Expected() (map[string]truth.Expected, error) {
	st, err := truth.FromTopology(t.cfg.Scenario, t.cfg.Topology)
	if err != nil {
		return nil, err
	}
	return st.Compute()
}

func (t *Timeline) waitConverged(ctx context.Context, i int, timeout time.Duration) (string, error) {
	want, err := t.Expected()
	if err != nil {
		return "", fmt.Errorf("steps[%d].waitConverged: ground truth: %w", i, err)
	}
	since := t.triggerAt
	if t.trigger < 0 {
		since = t.cfg.Now()
	}
	deadline := t.cfg.Now().Add(timeout)
	firstSeen := map[string]time.Time{}
	var lastMismatch []truth.Mismatch
	var lastErr error
	var lastLogged time.Time
	summary := func(converged map[string]time.Time) results.ConvergenceSummary {
		var ds []float64
		for _, at := range converged {
			d := at.Sub(since).Seconds()
			if d < 0 {
				d = 0
			}
			ds = append(ds, d)
		}
		sort.Float64s(ds)
		return results.ConvergenceSummary{
			Step: max(t.trigger, i), Trigger: t.triggerKindOr("waitConverged"),
			Agents: len(want), Converged: len(converged),
			P50: quantileSorted(ds, 0.50), P99: quantileSorted(ds, 0.99), Max: quantileSorted(ds, 1),
			PolicyOverflow: policyOverflows(lastMismatch),
		}
	}
	tick := time.NewTicker(t.cfg.PollInterval)
	defer tick.Stop()
	for {
		got, err := t.cfg.Agents.Agents(ctx)
		now := t.cfg.Now()
		if err != nil {
			lastErr = err
			t.cfg.Log.Debug("poll agents", "err", err)
		} else {
			lastErr = nil
			reported := make(map[string]truth.Expected, len(got))
			last := make(map[string]time.Time, len(got))
			for _, a := range got {
				reported[a.Node] = truth.Expected{IPCache: a.IPCache, Policy: a.Policy}
				last[a.Node] = a.LastChange
			}
			lastMismatch = truth.Compare(want, reported)
			bad := make(map[string]bool, len(lastMismatch))
			for _, m := range lastMismatch {
				bad[m.Node] = true
			}
			for node := range want {
				if bad[node] {
					delete(firstSeen, node) // diverged again
					continue
				}
				if _, ok := firstSeen[node]; !ok {
					at := last[node]
					if at.IsZero() || at.After(now) || at.Before(since) {
						at = now
					}
					firstSeen[node] = at
				}
			}
			t.cfg.OnProgress("waitConverged", len(want)-len(lastMismatch), len(want))
			if len(lastMismatch) > 0 && now.Sub(lastLogged) >= 10*time.Second {
				lastLogged = now
				m := lastMismatch[0]
				t.cfg.Log.Debug("not converged", "step", i, "mismatched", len(lastMismatch), "node", m.Node, "reported", m.Reported,
					"wantIPCache", m.Want.IPCache, "gotIPCache", m.Got.IPCache, "wantPolicy", m.Want.Policy, "gotPolicy", m.Got.Policy)
			}
			if len(lastMismatch) == 0 {
				t.cfg.OnConverged(summary(firstSeen))
				return fmt.Sprintf("converged %d/%d", len(want), len(want)), nil
			}
		}
		if now.After(deadline) {
			sum := summary(firstSeen)
			t.cfg.OnConverged(sum)
			e := &ErrNotConverged{Step: i, Converged: len(want) - len(lastMismatch), Agents: len(want), Timeout: timeout, Overflowing: sum.PolicyOverflow}
			if lastErr != nil {
				e.Converged = len(firstSeen)
				return "", fmt.Errorf("%w (last poll: %v)", e, lastErr)
			}
			if len(lastMismatch) > 3 {
				e.Sample = lastMismatch[:3]
			} else {
				e.Sample = lastMismatch
			}
			return "", e
		}
		select {
		case <-ctx.Done():
			t.cfg.OnConverged(summary(firstSeen))
			return "", fmt.Errorf("steps[%d].waitConverged: %w", i, ctx.Err())
		case <-tick.C:
		}
	}
}

func (t *Timeline) triggerKindOr(def string) string {
	if t.triggerKind == "" {
		return def
	}
	return t.triggerKind
}

// quantileSorted returns the q-quantile (nearest rank) of sorted values, 0
// when empty.
func quantileSorted(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	idx := int(q*float64(len(v))+0.999999) - 1
	if idx < 0 {
		idx = 0
	}
	if idx >= len(v) {
		idx = len(v) - 1
	}
	return v[idx]
}
