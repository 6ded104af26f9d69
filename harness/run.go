package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stampede-sim/stampede/internal/proc"
	"github.com/stampede-sim/stampede/internal/ready"
	"github.com/stampede-sim/stampede/reports"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// Config configures a run.
type Config struct {
	// Scenario is the defaulted, validated scenario.
	Scenario *scenarios.Scenario
	// Backend is the API server backend; it is started fresh per mode.
	Backend Backend
	// Modes to run (default: the scenario's).
	Modes []scenarios.Mode
	// Out is the run's output directory (created).
	Out string
	// Shards is the number of agent processes (0: from the machine).
	Shards int
	// AgentNice is the nice value of the agent shards in every mode (0:
	// none), or AgentNiceAuto for each mode's default (see
	// DefaultAgentNice).
	AgentNice int
	// Executable is the stampede binary for child processes (default:
	// this process's executable).
	Executable string
	// Command is the command line, recorded in results.
	Command []string
	// Log receives the harness's log.
	Log *slog.Logger
	// Progress receives progress lines; Live makes them one rewritten line
	// (a terminal).
	Progress io.Writer
	Live     bool
	// Grace is how long children get between SIGTERM and SIGKILL.
	Grace time.Duration
	// NoReport skips rendering report.md, report.html and plots/.
	NoReport bool
	// ChildLogLevel is the --log-level of child processes (default info).
	ChildLogLevel string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultShards is the shard count for a number of agents on this machine:
// about 250 agents per shard, at least 1, at most twice the cores and never
// more than the agents.
func DefaultShards(agents int) int {
	n := (agents + 249) / 250
	n = min(n, 2*runtime.NumCPU())
	n = min(n, agents)
	return max(n, 1)
}

func (c *Config) defaults() error {
	if c.Scenario == nil {
		return errors.New("run: no scenario")
	}
	if c.Backend == nil {
		return errors.New("run: no backend")
	}
	if len(c.Modes) == 0 {
		c.Modes = c.Scenario.ModeNames()
	}
	for i, m := range c.Modes {
		if _, ok := c.Scenario.ModeSpec(m); !ok {
			return fmt.Errorf("run: modes[%d]: scenario %s has no mode %q (its modes: %v)", i, c.Scenario.Name, m, c.Scenario.ModeNames())
		}
	}
	if c.Out == "" {
		return errors.New("run: no output directory")
	}
	if c.Shards < 0 {
		return fmt.Errorf("run: shards must be >= 0, got %d", c.Shards)
	}
	if c.AgentNice < AgentNiceAuto || c.AgentNice > 19 {
		return fmt.Errorf("run: agent nice value must be 0 to 19 (lower than the measured processes' priority, which needs no privilege) or %d for each mode's default, got %d", AgentNiceAuto, c.AgentNice)
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards(c.Scenario.Cluster.Nodes)
	}
	if c.Shards > c.Scenario.Cluster.Nodes {
		c.Shards = c.Scenario.Cluster.Nodes
	}
	if c.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("run: find stampede executable: %w", err)
		}
		c.Executable = exe
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Grace <= 0 {
		c.Grace = 10 * time.Second
	}
	if c.ChildLogLevel == "" {
		c.ChildLogLevel = "info"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Run executes the scenario in every mode and writes results.json (and the
// report) under cfg.Out. It returns the results, also when a mode failed or
// the run was interrupted; the error says what went wrong with the run as
// a whole (interruption, a failed mode).
func Run(ctx context.Context, cfg Config) (*results.Results, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("run: create output directory: %w", err)
	}
	sc := cfg.Scenario
	yml, err := sc.YAML()
	if err != nil {
		return nil, fmt.Errorf("run: render scenario: %w", err)
	}
	scenarioFile := filepath.Join(cfg.Out, "scenario.yaml")
	if err := os.WriteFile(scenarioFile, yml, 0o644); err != nil {
		return nil, fmt.Errorf("run: write scenario: %w", err)
	}
	run := results.Run{
		Scenario:          sc.Name,
		EffectiveScenario: sc,
		Cilium:            results.CiliumOf(sc),
		Seed:              sc.Seed,
		Nodes:             sc.Cluster.Nodes,
		Pods:              sc.PodCount(),
		StampedeVersion:   version(),
		GoVersion:         runtime.Version(),
		Command:           cfg.Command,
		Started:           cfg.Now(),
		Backend:           results.Backend{Name: cfg.Backend.Name(), Facts: map[string]string{}},
		Machine:           machine(),
		Datapath:          effectiveDatapath(sc.Agent.Datapath),
	}
	w, err := results.NewWriter(results.WriterConfig{Path: filepath.Join(cfg.Out, "results.json"), MinInterval: 2 * time.Second, Now: cfg.Now}, &results.Results{Run: run})
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	if err := w.Update(func(r *results.Results) {
		for _, m := range cfg.Modes {
			spec, _ := cfg.Scenario.ModeSpec(m) // defaults checked each is there
			mr := r.Mode(m)
			mr.Status, mr.Axes = results.StatusPending, spec.Axes
		}
	}); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	r := &runner{cfg: cfg, w: w, scenarioFile: scenarioFile, machineBytes: run.Machine.MemoryBytes}
	var failed []string
	var runErr error
	for _, mode := range cfg.Modes {
		if ctx.Err() != nil {
			break
		}
		status, err := r.runMode(ctx, mode)
		if err != nil {
			cfg.Log.Warn("mode ended with an error", "mode", mode, "status", status, "err", err)
			if status == results.StatusFailed {
				failed = append(failed, fmt.Sprintf("%s: %v", mode, err))
			}
		}
	}
	fin := cfg.Now()
	complete := true
	reason := ""
	if ctx.Err() != nil {
		complete = false
		reason = "interrupted: " + context.Cause(ctx).Error()
		runErr = fmt.Errorf("run interrupted: %w", context.Cause(ctx))
	} else if len(failed) > 0 {
		complete = false
		reason = "modes failed: " + strings.Join(failed, "; ")
		runErr = fmt.Errorf("%d of %d modes failed: %s", len(failed), len(cfg.Modes), strings.Join(failed, "; "))
	}
	if err := w.Update(func(res *results.Results) {
		res.Run.Finished = &fin
		res.Run.Complete = complete
		res.Run.IncompleteReason = reason
		for i := range res.Modes {
			if res.Modes[i].Status == results.StatusPending {
				res.Modes[i].Status = results.StatusIncomplete
				res.Modes[i].Reason = "not reached: " + reason
			}
		}
	}); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if err := w.Flush(); err != nil {
		runErr = errors.Join(runErr, err)
	}
	snap, err := w.Snapshot()
	if err != nil {
		return nil, errors.Join(runErr, err)
	}
	if !cfg.NoReport {
		// Render also after an interruption: what was measured is kept.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		rendered, err := reports.Render(rctx, reports.RenderConfig{Dir: cfg.Out, Formats: []string{"png"}, Log: cfg.Log}, snap)
		cancel()
		switch {
		case err != nil:
			runErr = errors.Join(runErr, fmt.Errorf("render report: %w", err))
		case len(rendered.FigureErrors) > 0:
			cfg.Log.Warn("some figures could not be drawn", "errors", errors.Join(rendered.FigureErrors...))
		}
	}
	return snap, runErr
}

// runner runs the modes of one run.
type runner struct {
	cfg          Config
	w            *results.Writer
	scenarioFile string
	machineBytes int64
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// component is a started child process of a mode.
type component struct {
	p      *proc.Process
	agents int
}

func (r *runner) update(fn func(m *results.ModeResult), mode scenarios.Mode) {
	if err := r.w.Update(func(res *results.Results) { fn(res.Mode(mode)) }); err != nil {
		r.cfg.Log.Warn("write results", "err", err)
	}
}

var errComponent = errors.New("component failed")

func statusFor(ctx context.Context, def results.Status) results.Status {
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), errComponent) {
		return results.StatusIncomplete
	}
	return def
}

// SkipError says a backend or mode cannot run on this machine.
type SkipError struct{ Reason string }

func (e *SkipError) Error() string { return e.Reason }

func shardSize(agents, shards, i int) int {
	n := agents / shards
	if i < agents%shards {
		n++
	}
	return n
}

// startChild starts `stampede args...` as component name and waits until
// it is ready.
func (r *runner) startChild(ctx context.Context, mr *modeRun, name string, agents int, args ...string) (*component, ready.Announcement, error) {
	readyFile := filepath.Join(mr.dir, name+".ready")
	full := append([]string{"--log-level", r.cfg.ChildLogLevel}, args...)
	full = append(full, "--ready-file", readyFile)
	p, err := proc.Start(ctx, proc.Spec{
		Name:      name,
		Path:      r.cfg.Executable,
		Args:      full,
		LogFile:   filepath.Join(mr.dir, name+".log"),
		ReadyFile: readyFile,
		Grace:     r.cfg.Grace,
	})
	if err != nil {
		return nil, ready.Announcement{}, err
	}
	c := &component{p: p, agents: agents}
	mr.comps = append(mr.comps, c)
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	a, err := p.WaitReady(wctx)
	if err != nil {
		return nil, a, fmt.Errorf("start %s: %w: %s", name, err, lastLine(p.Tail(2048)))
	}
	return c, a, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// endMode stops every process of the mode (agents first, the backend
// last), verifies none is left, and records the mode's outcome.
func (r *runner) endMode(mr *modeRun, status results.Status, cause error, summary *results.Summary) (results.Status, error) {
	stopCtx, cancel := context.WithTimeout(context.Background(), r.cfg.Grace+30*time.Second)
	defer cancel()
	var stopErrs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Agents concurrently, then control plane, then kvstore.
	var rest []*component
	for _, c := range mr.comps {
		if strings.HasPrefix(c.p.Name(), "agents-") {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.p.Stop(stopCtx); err != nil {
					mu.Lock()
					stopErrs = append(stopErrs, err)
					mu.Unlock()
				}
			}()
		} else {
			rest = append(rest, c)
		}
	}
	wg.Wait()
	for i := len(rest) - 1; i >= 0; i-- {
		if err := rest[i].p.Stop(stopCtx); err != nil {
			stopErrs = append(stopErrs, err)
		}
	}
	if mr.backend {
		if err := r.cfg.Backend.Stop(stopCtx); err != nil {
			stopErrs = append(stopErrs, fmt.Errorf("stop backend: %w", err))
		}
	}
	// Verify: no child of this harness is left.
	if left := liveChildren(); len(left) > 0 {
		stopErrs = append(stopErrs, fmt.Errorf("processes still running after the mode: %v", left))
	}
	err := cause
	if len(stopErrs) > 0 {
		err = errors.Join(append([]error{cause}, stopErrs...)...)
		if status == results.StatusOK {
			status = results.StatusFailed
		}
	}
	fin := r.cfg.Now()
	reason := ""
	if err != nil {
		reason = err.Error()
	}
	if status != results.StatusOK && reason == "" {
		reason = string(status)
	}
	r.update(func(m *results.ModeResult) {
		m.Status = status
		m.Reason = reason
		m.Finished = &fin
		if summary != nil {
			m.Summary = summary
		}
		for i := range m.Steps {
			if m.Steps[i].Outcome == results.OutcomeRunning {
				m.Steps[i].Outcome = results.OutcomeInterrupted
				m.Steps[i].End = &fin
			}
		}
	}, mr.mode)
	if status == results.StatusOK {
		return status, nil
	}
	return status, err
}

// liveChildren lists processes whose parent is this process and that are
// not zombies.
func liveChildren() []int {
	snap, err := proc.TakeSnapshot()
	if err != nil {
		return nil
	}
	me := os.Getpid()
	var out []int
	for pid, st := range snap {
		if st.PPID == me && st.State != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

func upsertStep(m *results.ModeResult, s results.StepResult) {
	for i := range m.Steps {
		if m.Steps[i].Index == s.Index {
			m.Steps[i] = s
			return
		}
	}
	m.Steps = append(m.Steps, s)
}

func (r *runner) fact(k, v string) {
	if v == "" {
		return
	}
	_ = r.w.Update(func(res *results.Results) { res.Run.Backend.Facts[k] = v })
}

// sample ticks the measurer at the scenario's interval and appends rows to
// the results, flushing to disk at most every flushEvery.
func (r *runner) sample(ctx context.Context, mode scenarios.Mode, meas *Measurer, pr *progress) {
	const flushEvery = 5 * time.Second
	interval := r.cfg.Scenario.Measure.SampleInterval.Duration
	tick := time.NewTicker(interval)
	defer tick.Stop()
	type row struct {
		t time.Time
		v map[string]float64
	}
	var pending []row
	lastFlush := r.cfg.Now()
	flush := func() {
		if len(pending) == 0 {
			return
		}
		rows := pending
		pending = nil
		r.update(func(m *results.ModeResult) {
			for _, x := range rows {
				m.AppendSample(x.t, x.v)
			}
		}, mode)
		lastFlush = r.cfg.Now()
	}
	defer flush()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := r.cfg.Now()
		// A component slower than that answers into a later tick.
		v := meas.TickWithin(ctx, now, interval*3/4)
		pending = append(pending, row{now, v})
		pr.events(v[results.SeriesWatchEventsRate], v[results.SeriesAPIServerWatchEventsRate])
		if now.Sub(lastFlush) >= flushEvery {
			flush()
		}
	}
}

func scrapeTransport(caFile string) http.RoundTripper {
	c, err := newAPIClient("http://unused", caFile, "", 16)
	if err != nil {
		return http.DefaultTransport
	}
	return c.http.Transport
}

// identityCensus lists CiliumIdentities and counts label sets with more
// than one identity.
func identityCensus(ctx context.Context, c *apiClient) (*IdentityCensus, error) {
	var list struct {
		Items []struct {
			SecurityLabels map[string]string `json:"security-labels"`
		} `json:"items"`
	}
	if err := c.do(ctx, "GET", "/apis/cilium.io/v2/ciliumidentities", "", nil, &list); err != nil {
		return nil, err
	}
	seen := map[string]int{}
	for _, it := range list.Items {
		keys := sortedKeys(it.SecurityLabels)
		var sb strings.Builder
		for _, k := range keys {
			sb.WriteString(k + "=" + it.SecurityLabels[k] + ";")
		}
		seen[sb.String()]++
	}
	ic := &IdentityCensus{Final: int64(len(list.Items))}
	for _, n := range seen {
		if n > 1 {
			ic.Duplicates += int64(n - 1)
		}
	}
	return ic, nil
}

// sloVerdicts judges the probe's latency against the scenario's SLOs.
func sloVerdicts(sc *scenarios.Scenario, s *results.Summary) []results.SLOVerdict {
	var mut, read, list float64
	var have [3]bool
	for _, l := range s.APILatency {
		if l.Verb == "*" || l.Count == 0 {
			continue
		}
		switch l.Verb {
		case "PATCH", "POST", "PUT", "DELETE":
			mut, have[0] = max(mut, l.P99), true
		case "GET":
			read, have[1] = max(read, l.P99), true
		case "LIST":
			list, have[2] = max(list, l.P99), true
		}
	}
	var out []results.SLOVerdict
	add := func(name string, ok bool, v float64, lim time.Duration) {
		if ok {
			out = append(out, results.SLOVerdict{Name: name, Limit: lim.Seconds(), Value: v, Unit: "s", Pass: v <= lim.Seconds(), Detail: "probe p99"})
		}
	}
	add("mutating p99", have[0], mut, sc.SLO.MutatingP99.Duration)
	add("read p99", have[1], read, sc.SLO.ReadP99.Duration)
	add("list p99", have[2], list, sc.SLO.ListP99.Duration)
	return out
}

func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	if bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// AgentNiceAuto asks for each mode's default nice value of the agents.
const AgentNiceAuto = -1

// DefaultAgentNice is the nice value of the agent shards in kvstore mode
// by default; the other modes run them at the measured processes'
// priority. The agents are the load and etcd is what is measured; in a
// cluster they do not share CPUs. On a small machine at equal priority
// the agents' shards starve etcd's single apply loop, its lease renewals
// time out and every agent's session expires, so the run would measure
// the CPU contention rather than etcd. In crd mode a lower priority makes
// the agents' identity race worse instead: agents that see each other's
// identities later allocate more duplicates, which can push them past the
// policy map's capacity.
const DefaultAgentNice = 10

// agentNice is the nice value of a mode's shards for the configured value.
func agentNice(configured int, axes scenarios.Axes) int {
	if configured != AgentNiceAuto {
		return configured
	}
	if axes.HasKVStore() {
		return DefaultAgentNice
	}
	return 0
}

// shardMemoryLimit is the soft memory limit of each of n agent shards:
// half the machine's memory, shared. Without it every shard's heap may
// grow to twice its live data before a collection (GOGC=100), and a
// large fleet then takes most of the machine's memory; the other half
// is left to the kernel (BPF maps, socket buffers), the API server and
// the rest. Zero when the machine's memory is unknown.
func shardMemoryLimit(machineBytes int64, n int) int64 {
	if machineBytes <= 0 || n < 1 {
		return 0
	}
	return machineBytes / 2 / int64(n)
}

func machine() results.Machine {
	m := results.Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	m.Hostname, _ = os.Hostname()
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		var b []byte
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b = append(b, byte(c))
		}
		m.Kernel = string(b)
	}
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		m.MemoryBytes = int64(si.Totalram) * int64(si.Unit)
	}
	if m.Kernel == "" {
		m.Kernel = "unknown"
	}
	return m
}

// effectiveDatapath records what the agents use. The agents decide
// ("auto" picks bpf where BPF maps can be created, mem otherwise) and do not
// announce it, so for "auto" this is the harness's expectation from its
// own privileges, and Reason says so.
func effectiveDatapath(requested string) results.Datapath {
	d := results.Datapath{Requested: requested, Effective: requested}
	if requested == "bpf" || requested == "mem" {
		return d
	}
	if os.Geteuid() == 0 {
		d.Effective, d.Reason = "bpf", "auto: expected bpf (running as root); the agents choose and do not report it"
	} else {
		d.Effective, d.Reason = "mem", "auto: expected mem (not root, no BPF); the agents choose and do not report it"
	}
	return d
}

// metricsURL is the /metrics URL of an announced "metrics" endpoint, which
// is either a base URL or already the /metrics URL.
func metricsURL(ep string) string {
	ep = strings.TrimSuffix(ep, "/")
	if strings.HasSuffix(ep, "/metrics") {
		return ep
	}
	return ep + "/metrics"
}
