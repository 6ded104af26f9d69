package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stampede-sim/stampede/internal/access"
	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// A mode runs in steps, each a method of modeRun below, in this order:
//
//  1. generate the topology and the users (an admin, the operator and,
//     except in xds mode, one user per agent);
//  2. start the backend and take its tokens and object labels;
//  3. start the kvstore (kvstore read path only), the mesh mirror replicas
//     (mesh read path only) and the control plane;
//  4. start the agent shards, concurrently, and watch every component:
//     one that exits ends the mode;
//  5. prepare the probes (the API probe; the mirror-lag probe on the mesh
//     read path);
//  6. run the timeline while sampling and probing;
//  7. summarize: identity census, summary and SLO verdicts.
//
// endMode then stops everything and records the outcome. A step that
// fails returns a *modeError, which carries the status the failure gives
// the mode.

// modeRun is the state of one mode while it runs: what each step started
// and what the later steps and endMode need from it.
type modeRun struct {
	r       *runner
	mode    scenarios.Mode
	axes    scenarios.Axes
	dir     string
	started time.Time
	nice    int
	log     *slog.Logger
	pr      *progress
	// cancel ends the mode's context; a component that exits cancels it
	// with errComponent.
	cancel context.CancelCauseFunc

	comps   []*component
	backend bool // the backend was started and must be stopped
	// cleanups run in reverse order when runMode returns, after endMode.
	cleanups []func()

	topo            *scenarios.Topology
	users           []User // admin, operator, the agents, then the mirrors' user
	admin, operator User
	api             *APIServer
	tokenFile       string
	meas            *Measurer
	kvURL           string
	kvProbe         *KVProbe
	meshUser        User     // the mirrors' user (mesh read path)
	meshURLs        []string // the replicas' etcd client URLs, in order
	xdsAddr         string
	agentURLs       []string
	setupClient     *apiClient
	probe           *Probe
	meshProbe       *MeshProbe // mesh read path
	conv            []results.ConvergenceSummary
	timelineErr     error
}

// modeError is a step's failure and the status it gives the mode.
type modeError struct {
	status results.Status
	err    error
}

func (e *modeError) Error() string { return e.err.Error() }
func (e *modeError) Unwrap() error { return e.err }

// failed is a failure of the mode itself.
func failed(err error) error { return &modeError{status: results.StatusFailed, err: err} }

// failedUnlessInterrupted is a failure of the mode, unless the mode's
// context had already ended for a reason other than a component's exit:
// then the step failed because the run was interrupted.
func failedUnlessInterrupted(ctx context.Context, err error) error {
	return &modeError{status: statusFor(ctx, results.StatusFailed), err: err}
}

// runMode runs one mode on fresh processes and returns its status.
func (r *runner) runMode(parent context.Context, mode scenarios.Mode) (results.Status, error) {
	mr, err := r.beginMode(mode)
	if err != nil {
		return results.StatusFailed, err
	}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	mr.cancel = cancel
	mr.pr = newProgress(r.cfg.Progress, r.cfg.Live, mode, len(r.cfg.Scenario.Steps), r.cfg.Scenario.Cluster.Nodes, r.cfg.Now)
	defer mr.pr.finish()
	defer mr.cleanup()

	steps := []func(context.Context) error{
		mr.generate,
		mr.startBackend,
		mr.startKVStore,
		mr.startMesh,
		mr.startControlPlane,
		mr.startAgents,
		mr.watchComponents,
		mr.prepareProbe,
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			status, cause := results.StatusFailed, err
			var me *modeError
			if errors.As(err, &me) {
				status, cause = me.status, me.err
			}
			return r.endMode(mr, status, cause, nil)
		}
	}
	mr.runTimeline(ctx)
	summary := mr.summarize(ctx)
	status, cause := modeStatus(ctx, parent, mr.timelineErr)
	return r.endMode(mr, status, cause, summary)
}

// beginMode creates the mode's directory and records the mode as running.
func (r *runner) beginMode(mode scenarios.Mode) (*modeRun, error) {
	cfg := r.cfg
	spec, ok := cfg.Scenario.ModeSpec(mode)
	if !ok {
		return nil, fmt.Errorf("scenario %s has no mode %q", cfg.Scenario.Name, mode)
	}
	mr := &modeRun{
		r:       r,
		mode:    mode,
		axes:    spec.Axes,
		dir:     filepath.Join(cfg.Out, string(mode)),
		started: cfg.Now(),
		nice:    agentNice(cfg.AgentNice, spec.Axes),
		log:     cfg.Log.With("mode", mode),
	}
	if err := os.MkdirAll(mr.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create mode directory: %w", err)
	}
	started := mr.started
	mr.update(func(m *results.ModeResult) {
		m.Status = results.StatusRunning
		m.Started = &started
		m.Shards = cfg.Shards
		m.Agents = cfg.Scenario.Cluster.Nodes
		m.AgentNice = mr.nice
	})
	return mr, nil
}

func (mr *modeRun) update(fn func(m *results.ModeResult)) { mr.r.update(fn, mr.mode) }

// onCleanup registers fn to run when runMode returns.
func (mr *modeRun) onCleanup(fn func()) { mr.cleanups = append(mr.cleanups, fn) }

func (mr *modeRun) cleanup() {
	for i := len(mr.cleanups) - 1; i >= 0; i-- {
		mr.cleanups[i]()
	}
}

// generate makes the topology and the users of the mode: the admin, the
// operator, one user per agent (except on the xds read path) and, on the
// mesh read path, the mirrors' user.
func (mr *modeRun) generate(context.Context) error {
	topo, err := mr.r.cfg.Scenario.Generate()
	if err != nil {
		return failed(fmt.Errorf("generate topology: %w", err))
	}
	mr.topo = topo
	mr.admin = User{Name: "stampede-admin", Role: RoleAdmin, Token: randomToken()}
	mr.operator = User{Name: "system:serviceaccount:kube-system:cilium-operator", Role: RoleOperator, Token: randomToken()}
	mr.users = []User{mr.admin, mr.operator}
	// xds-mode agents read from the control plane, not the API server.
	if mr.axes.AgentsHaveAPIClient() {
		for _, n := range topo.Nodes {
			mr.users = append(mr.users, User{Name: access.AgentUser(n.Name), Role: RoleAgent, Token: randomToken()})
		}
	}
	if mr.axes.HasMesh() {
		mr.meshUser = newMeshUser()
		mr.users = append(mr.users, mr.meshUser)
	}
	return nil
}

// recordAPIServer writes which API server the mode's figures stand for;
// facts of the started backend add a kube-apiserver's version.
func (mr *modeRun) recordAPIServer(facts map[string]string) error {
	cfg := mr.r.cfg
	a, err := apiServerRecord(cfg.Backend.Name(), cfg.Scenario, facts)
	if err != nil {
		return fmt.Errorf("record API server: %w", err)
	}
	if err := mr.r.w.Update(func(res *results.Results) { res.Run.APIServer = a }); err != nil {
		mr.log.Warn("write results", "err", err)
	}
	return nil
}

// startBackend starts the API server backend, takes the tokens it issued
// and the labels its objects must carry, writes the token file if it has
// none, and starts measuring its processes.
func (mr *modeRun) startBackend(ctx context.Context) error {
	cfg := mr.r.cfg
	mr.pr.set("start backend", -1)
	if err := mr.recordAPIServer(nil); err != nil {
		return failed(err)
	}
	api, err := cfg.Backend.Start(ctx, BackendEnv{Dir: mr.dir, Mode: mr.mode, Axes: mr.axes, Scenario: cfg.Scenario, Users: mr.users, Executable: cfg.Executable, Log: mr.log})
	if err != nil {
		var se *SkipError
		if errors.As(err, &se) {
			return &modeError{status: results.StatusSkipped, err: err}
		}
		return failedUnlessInterrupted(ctx, fmt.Errorf("start backend %s: %w", cfg.Backend.Name(), err))
	}
	mr.backend = true
	mr.api = api
	if err := mr.r.w.Update(func(res *results.Results) {
		for k, v := range api.Facts {
			res.Run.Backend.Facts[k] = v
		}
	}); err != nil {
		mr.log.Warn("write results", "err", err)
	}
	if err := mr.recordAPIServer(api.Facts); err != nil {
		return failed(err)
	}
	// Backends that issue their own tokens (TokenRequest) replace ours.
	if api.Tokens != nil {
		for i := range mr.users {
			if tok, ok := api.Tokens[mr.users[i].Name]; ok {
				mr.users[i].Token = tok
			}
		}
		mr.admin, mr.operator = mr.users[0], mr.users[1]
		if mr.axes.HasMesh() {
			mr.meshUser = mr.users[len(mr.users)-1]
		}
	}
	// Objects must carry the backend's labels; namespace and pod labels
	// are part of identities, so the ground truth gets them too.
	if len(api.ObjectLabels) > 0 {
		for i := range mr.topo.Namespaces {
			if mr.topo.Namespaces[i].Labels == nil {
				mr.topo.Namespaces[i].Labels = map[string]string{}
			}
			for k, v := range api.ObjectLabels {
				mr.topo.Namespaces[i].Labels[k] = v
			}
		}
	}
	// The API server may authenticate every agent as Cilium's one service
	// account (WriteTokenFile), so the shards get a file of their own that
	// says which token is which node's.
	mr.tokenFile = filepath.Join(mr.dir, "agent-tokens.csv")
	if err := writeAgentTokens(mr.tokenFile, mr.users); err != nil {
		return failed(err)
	}
	mr.meas = NewMeasurer(&http.Client{Timeout: scrapeTimeout, Transport: scrapeTransport(api.CAFile)}, mr.log)
	for name, pid := range api.Processes {
		mr.meas.AddProcess(name, pid, 0)
	}
	for name, u := range api.MetricsURLs {
		mr.meas.AddScrape(name, u, mr.admin.Token)
	}
	return nil
}

// startKVStore starts etcd and the harness's kvstore probe in modes with
// the kvstore read path; the other modes have no kvstore.
func (mr *modeRun) startKVStore(ctx context.Context) error {
	if !mr.axes.HasKVStore() {
		return nil
	}
	mr.pr.set("start kvstore", -1)
	c, a, err := mr.r.startChild(ctx, mr, "kvstore", 0, "etcd", "--data-dir", filepath.Join(mr.dir, "kvstore-data"))
	if err != nil {
		return failedUnlessInterrupted(ctx, err)
	}
	mr.kvURL = a.Endpoints["client"]
	mr.meas.AddProcess("kvstore", c.p.PID(), 0)
	if m := a.Endpoints["metrics"]; m != "" {
		mr.meas.AddScrape("kvstore", metricsURL(m), "")
	}
	mr.r.fact("kvstore.fsync", a.Extra["fsync"])
	kvp, err := NewKVProbe(mr.kvURL, 5)
	if err != nil {
		return failed(err)
	}
	mr.onCleanup(func() { _ = kvp.Close() })
	mr.meas.SetKVProbe(kvp)
	mr.kvProbe = kvp
	return nil
}

// startControlPlane starts the operator side (the identity GC, CES,
// the xDS server) with the operator's token.
func (mr *modeRun) startControlPlane(ctx context.Context) error {
	mr.pr.set("start controlplane", -1)
	opTokenFile := filepath.Join(mr.dir, "operator.token")
	if err := os.WriteFile(opTokenFile, []byte(mr.operator.Token+"\n"), 0o600); err != nil {
		return failed(fmt.Errorf("write operator token: %w", err))
	}
	args := []string{"controlplane", "--mode", string(mr.mode), "--scenario", mr.r.scenarioFile,
		"--api-url", mr.api.URL, "--token-file", opTokenFile, "--xds-listen", "127.0.0.1:0"}
	if mr.api.CAFile != "" {
		args = append(args, "--ca-file", mr.api.CAFile)
	}
	if mr.kvURL != "" {
		args = append(args, "--kvstore", mr.kvURL)
	}
	c, a, err := mr.r.startChild(ctx, mr, "controlplane", 0, args...)
	if err != nil {
		return failedUnlessInterrupted(ctx, err)
	}
	mr.meas.AddProcess("controlplane", c.p.PID(), 0)
	if m := a.Endpoints["metrics"]; m != "" {
		mr.meas.AddScrape("controlplane", metricsURL(m), "")
	}
	mr.xdsAddr = a.Endpoints["xds"]
	return nil
}

// startAgents starts the agent shards concurrently (a shard takes as
// long to start as its agents take to connect) and measures each.
func (mr *modeRun) startAgents(ctx context.Context) error {
	shards := mr.r.cfg.Shards
	mr.pr.set(fmt.Sprintf("start %d agent shards", shards), -1)
	type started struct {
		c   *component
		url string
		err error
	}
	res := make([]started, shards)
	var wg sync.WaitGroup
	for i := range shards {
		args := mr.agentArgs(i)
		n := shardSize(mr.r.cfg.Scenario.Cluster.Nodes, shards, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, a, err := mr.r.startChild(ctx, mr, fmt.Sprintf("agents-%d", i), n, args...)
			res[i] = started{c: c, err: err}
			if err == nil {
				res[i].url = a.Endpoints["metrics"]
			}
		}()
	}
	wg.Wait()
	for i, s := range res {
		if s.err != nil {
			return failedUnlessInterrupted(ctx, s.err)
		}
		mr.meas.AddProcess(fmt.Sprintf("agents-%d", i), s.c.p.PID(), s.c.agents)
		if s.url == "" {
			return failed(fmt.Errorf("agents-%d announced no \"metrics\" endpoint (see %s)", i, s.c.p.LogFile()))
		}
		mr.meas.AddScrape(fmt.Sprintf("agents-%d", i), metricsURL(s.url), "")
		mr.agentURLs = append(mr.agentURLs, strings.TrimSuffix(strings.TrimSuffix(s.url, "/"), "/metrics"))
	}
	return nil
}

// agentArgs is the command line of agent shard i.
func (mr *modeRun) agentArgs(i int) []string {
	shards := mr.r.cfg.Shards
	args := []string{"agents", "--shard", fmt.Sprintf("%d/%d", i, shards), "--mode", string(mr.mode),
		"--scenario", mr.r.scenarioFile, "--api-url", mr.api.URL}
	if mr.api.CAFile != "" {
		args = append(args, "--ca-file", mr.api.CAFile)
	}
	if mr.axes.AgentsHaveAPIClient() {
		args = append(args, "--token-auth-file", mr.tokenFile)
	}
	if mr.kvURL != "" {
		args = append(args, "--kvstore", mr.kvURL)
	}
	if len(mr.meshURLs) > 0 {
		args = append(args, "--mesh", strings.Join(mr.meshURLs, ","))
		args = append(args, "--mesh-api-server-fallback="+strconv.FormatBool(mr.r.cfg.Scenario.ControlPlane.Mesh.APIServerFallback != nil && *mr.r.cfg.Scenario.ControlPlane.Mesh.APIServerFallback))
	}
	if mr.axes.HasXDS() && mr.xdsAddr != "" {
		args = append(args, "--xds", mr.xdsAddr)
	}
	if lim := shardMemoryLimit(mr.r.machineBytes, shards); lim > 0 {
		args = append(args, "--memory-limit", strconv.FormatInt(lim, 10))
	}
	if mr.nice != 0 {
		args = append(args, "--nice", strconv.Itoa(mr.nice))
	}
	return args
}

// watchComponents ends the mode when any component exits: the mode's
// figures mean nothing without it.
func (mr *modeRun) watchComponents(context.Context) error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range mr.comps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-c.p.Done():
				mr.cancel(fmt.Errorf("%w: %s exited (%v); see %s", errComponent, c.p.Name(), c.p.Err(), c.p.LogFile()))
			case <-done:
			}
		}()
	}
	mr.onCleanup(func() { close(done); wg.Wait() })
	return nil
}

// prepareProbe makes the admin clients (one pool for the timeline, its
// own for the probe, so that the timeline's writes do not queue the
// probe's requests) and the probe.
func (mr *modeRun) prepareProbe(ctx context.Context) error {
	setupClient, err := newAPIClient(mr.api.URL, mr.api.CAFile, mr.admin.Token, 8)
	if err != nil {
		return failed(err)
	}
	mr.onCleanup(setupClient.close)
	mr.setupClient = setupClient
	probeClient, err := newAPIClient(mr.api.URL, mr.api.CAFile, mr.admin.Token, 16)
	if err != nil {
		return failed(err)
	}
	mr.onCleanup(probeClient.close)
	target := kubeProbeTarget{c: probeClient, labels: mr.api.ObjectLabels}
	if err := retry(ctx, func() error { return target.Prepare(ctx) }); err != nil {
		return failedUnlessInterrupted(ctx, err)
	}
	probe, err := NewProbe(ProbeConfig{Target: target, Rate: mr.r.cfg.Scenario.Measure.ProbeRate})
	if err != nil {
		return failed(err)
	}
	mr.meas.SetProbe(probe)
	mr.probe = probe
	return mr.prepareMeshProbe()
}

// prepareMeshProbe makes the mirror-lag probe (mesh read path): its own
// client as the harness's user, so that its creates queue behind neither
// the timeline's writes nor the API probe's.
func (mr *modeRun) prepareMeshProbe() error {
	if !mr.axes.HasMesh() {
		return nil
	}
	c, err := newAPIClient(mr.api.URL, mr.api.CAFile, mr.admin.Token, 4)
	if err != nil {
		return failed(err)
	}
	mr.onCleanup(c.close)
	mp, err := NewMeshProbe(MeshProbeConfig{
		API:      kubeIdentityWriter{c: c, labels: mr.api.ObjectLabels},
		Replicas: mr.meshURLs, Rate: mr.r.cfg.Scenario.Measure.MeshProbeRate, Log: mr.log,
	})
	if err != nil {
		return failed(err)
	}
	mr.onCleanup(func() { _ = mp.Close() })
	mr.meas.SetMeshProbe(mp)
	mr.meshProbe = mp
	return nil
}

// runTimeline runs the scenario's steps while the measurer samples and
// the probes probe, between a baseline sample and a final one: the
// mode's counters (writes, events) count from the first to the last.
func (mr *modeRun) runTimeline(ctx context.Context) {
	cfg := mr.r.cfg
	base := mr.meas.Tick(ctx, cfg.Now())
	mr.update(func(m *results.ModeResult) { m.AppendSample(cfg.Now(), base) })

	measCtx, stopMeas := context.WithCancel(ctx)
	var measWG sync.WaitGroup
	measWG.Add(2)
	go func() { defer measWG.Done(); mr.probe.Run(measCtx) }()
	if mr.kvProbe != nil {
		measWG.Add(1)
		go func() { defer measWG.Done(); mr.kvProbe.Run(measCtx) }()
	}
	if mr.meshProbe != nil {
		measWG.Add(1)
		go func() { defer measWG.Done(); mr.meshProbe.Run(measCtx) }()
	}
	go func() { defer measWG.Done(); mr.r.sample(measCtx, mr.mode, mr.meas, mr.pr) }()

	tl, err := NewTimeline(TimelineConfig{
		Scenario: cfg.Scenario, Topology: mr.topo,
		Cluster: kubeCluster{c: mr.setupClient, labels: mr.api.ObjectLabels},
		Agents:  &shardAgents{client: &http.Client{Timeout: 2 * time.Minute}, urls: mr.agentURLs},
		Now:     cfg.Now, Log: mr.log,
		OnStep: func(s results.StepResult) {
			mr.pr.set(s.Kind, s.Index)
			mr.update(func(m *results.ModeResult) { upsertStep(m, s) })
		},
		OnConverged: func(c results.ConvergenceSummary) { mr.conv = append(mr.conv, c) },
		OnProgress: func(_ string, n, total int) {
			mr.meas.SetConverged(n)
			mr.pr.converged(n, total)
		},
	})
	if err != nil {
		mr.timelineErr = err
	} else {
		mr.timelineErr = tl.Run(ctx)
	}
	stopMeas()
	measWG.Wait()
	final := mr.meas.Tick(context.WithoutCancel(ctx), cfg.Now())
	mr.update(func(m *results.ModeResult) { m.AppendSample(cfg.Now(), final) })
}

// summarize counts the identities that exist at the end (unless the mode
// was cut short), builds the mode's summary with its convergence and SLO
// verdicts, and warns when the measurement itself is suspect.
func (mr *modeRun) summarize(ctx context.Context) *results.Summary {
	cfg := mr.r.cfg
	var census *IdentityCensus
	if ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		var err error
		if mr.kvProbe != nil {
			// kvstore mode: the identities live in etcd.
			census, err = mr.kvProbe.IdentityCensus(cctx)
		} else {
			census, err = identityCensus(cctx, mr.setupClient)
		}
		cancel()
		if err != nil {
			mr.log.Warn("identity census", "err", err)
		}
	}
	summary := mr.meas.Summary(census)
	summary.AgentWork = mr.agentWork(ctx)
	if summary.Mesh != nil {
		summary.Mesh.Served = meshServed(summary.AgentWork)
	}
	summary.Convergence = mr.conv
	summary.SLO = sloVerdicts(cfg.Scenario, summary)
	if p := summary.Probe; p != nil && !p.HeldRate {
		fmt.Fprintf(cfg.Progress, "[%s] warning: %s\n", mr.mode, p.Detail)
	}
	if h := summary.Harness; h != nil && h.FractionOfTotal > 0.10 {
		fmt.Fprintf(cfg.Progress, "[%s] warning: the harness used %.0f%% of the measured CPU (target < 10%%)\n", mr.mode, 100*h.FractionOfTotal)
	}
	return summary
}

// agentWork reads every agent's report of what it received, holds and
// did, at the end of the mode (also of one cut short, while the agents
// still answer), and aggregates it.
func (mr *modeRun) agentWork(ctx context.Context) *results.AgentWorkSummary {
	if len(mr.agentURLs) == 0 {
		return nil
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	src := &shardAgents{client: &http.Client{Timeout: 30 * time.Second}, urls: mr.agentURLs}
	sts, err := src.Agents(actx)
	if err != nil {
		mr.log.Warn("read the agents' work reports", "err", err)
		return nil
	}
	ws := make([]*agentcontract.Work, len(sts))
	for i := range sts {
		ws[i] = sts[i].Work
	}
	return agentWorkSummary(ws)
}

// modeStatus is the status a mode ends with after its timeline returned
// err, and the error to record: a component's exit is the cause even when
// the timeline noticed it first as a failed request.
func modeStatus(ctx, parent context.Context, err error) (results.Status, error) {
	switch {
	case err == nil:
		return results.StatusOK, nil
	case errors.Is(context.Cause(ctx), errComponent):
		return results.StatusFailed, context.Cause(ctx)
	case parent.Err() != nil:
		return results.StatusIncomplete, err
	default:
		return results.StatusFailed, err
	}
}
