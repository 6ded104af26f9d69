package reports

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/stampede-sim/stampede/reports/internal/atomicfile"
	"github.com/stampede-sim/stampede/reports/internal/document"
	"github.com/stampede-sim/stampede/reports/internal/format"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// RenderConfig configures Render.
type RenderConfig struct {
	// Dir receives report.md, report.html and plots/ (created). Required.
	Dir string
	// Formats of the plot files: "png" and/or "svg" (default both). The
	// HTML report always embeds PNGs.
	Formats []string
	// Log receives progress and the figures that could not be drawn.
	Log *slog.Logger
}

func (c *RenderConfig) defaults() error {
	if c.Dir == "" {
		return errors.New("render: no output directory")
	}
	if len(c.Formats) == 0 {
		c.Formats = []string{"png", "svg"}
	}
	for i, f := range c.Formats {
		if f != "png" && f != "svg" {
			return fmt.Errorf("render: formats[%d]: want png or svg, got %q", i, f)
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Rendered lists what Render wrote.
type Rendered struct {
	Markdown string
	HTML     string
	Plots    []string
	// FigureErrors are figures that could not be drawn (the reports say so
	// where the figure would be).
	FigureErrors []error
}

// Render draws every figure of r and writes report.md, report.html (one
// self-contained file with the images embedded) and plots/<name>.png|svg
// into cfg.Dir. Partial results render too: what was not measured is
// reported as missing. A figure that cannot be drawn does not stop the
// report; it is listed in Rendered.FigureErrors.
func Render(ctx context.Context, cfg RenderConfig, r *results.Results) (*Rendered, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("render: no results")
	}
	plotDir := filepath.Join(cfg.Dir, "plots")
	if err := os.MkdirAll(plotDir, 0o755); err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	out := &Rendered{}
	pngs := map[string][]byte{}
	var drawn []*Figure
	failed := map[string]error{}
	for _, f := range Figures(r) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("render: %w", err)
		}
		png, err := f.Encode("png")
		if err != nil {
			failed[f.Name] = err
			out.FigureErrors = append(out.FigureErrors, err)
			cfg.Log.Warn("figure not drawn", "figure", f.Name, "err", err)
			continue
		}
		pngs[f.Name] = png
		drawn = append(drawn, f)
		if err := out.writeFigure(f, png, cfg.Formats, plotDir); err != nil {
			return nil, fmt.Errorf("render: %w", err)
		}
	}
	doc := buildDocument(r, drawn, failed)
	out.Markdown = filepath.Join(cfg.Dir, "report.md")
	if err := atomicfile.Write(out.Markdown, []byte(doc.Markdown())); err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	out.HTML = filepath.Join(cfg.Dir, "report.html")
	if err := atomicfile.Write(out.HTML, []byte(doc.HTMLPage(pngs))); err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	cfg.Log.Info("report written", "markdown", out.Markdown, "html", out.HTML, "plots", len(out.Plots))
	return out, nil
}

// buildDocument is the report's content.
func buildDocument(r *results.Results, figs []*Figure, failed map[string]error) *document.Document {
	d := &document.Document{Title: "Stampede report: " + r.Run.Scenario}
	d.P("%s", Caption(r))
	if r.Run.Complete {
		d.P("The run is **complete**.")
	} else {
		reason := r.Run.IncompleteReason
		if reason == "" {
			reason = "the run has not finished (or was killed before it could say why)"
		}
		d.P("**INCOMPLETE RUN**: %s. Figures and tables show what was measured until then.", reason)
	}

	environment(d, r)

	d.H(2, "Summary")
	d.P("Latencies are from the harness's constant-rate probe unless marked server-side; convergence is measured from the start of the relabel; \"-\" means not measured in that mode or on that backend. %s.", apiServerLine(r))
	modesTable(d, r)
	latencyTable(d, r)
	costTable(d, r)
	agentWorkTable(d, r)
	cfpSection(d, r)

	d.H(2, "What did not run")
	var notRun []string
	for _, m := range r.Modes {
		switch m.Status {
		case results.StatusOK, results.StatusRunning:
			continue
		}
		reason := m.Reason
		switch {
		case reason != "":
		case m.Status == results.StatusPending:
			reason = "not reached"
		default:
			reason = "no reason recorded"
		}
		notRun = append(notRun, fmt.Sprintf("`%s`: %s: %s", m.Mode, m.Status, reason))
	}
	if len(notRun) == 0 {
		d.P("Every mode ran to the end of its timeline.")
	} else {
		d.List(notRun...)
	}

	d.H(2, "SLO verdicts")
	sloTable(d, r)

	d.H(2, "Probe and harness")
	probeTable(d, r)

	byMode := map[string][]*Figure{}
	var across []*Figure
	for _, f := range figs {
		if f.Mode == "" {
			across = append(across, f)
		} else {
			byMode[f.Mode] = append(byMode[f.Mode], f)
		}
	}
	failedNames := make([]string, 0, len(failed))
	for n := range failed {
		failedNames = append(failedNames, n)
	}
	sort.Strings(failedNames)

	if len(across) > 0 {
		d.H(2, "Across modes")
		for _, f := range across {
			d.Img(f.Name, f.Title)
		}
	}
	for i := range r.Modes {
		modeSection(d, r, &r.Modes[i], byMode[string(r.Modes[i].Mode)])
	}
	if len(failedNames) > 0 {
		d.H(2, "Figures that could not be drawn")
		var items []string
		for _, n := range failedNames {
			items = append(items, fmt.Sprintf("`%s`: %v", n, failed[n]))
		}
		d.List(items...)
	}
	return d
}

// ciliumRow names the release profile of a run and the knobs the
// scenario set against it.
func ciliumRow(c *results.Cilium) string {
	if c == nil {
		return "Cilium 1.17 (written before release profiles: the agents followed 1.17's behaviour)"
	}
	s := fmt.Sprintf("Cilium %s (defaults read from %s)", c.Version, c.Read)
	var own []string
	for _, k := range c.Knobs {
		if k.Source == "scenario" {
			own = append(own, k.Path+"="+k.Value)
		}
	}
	if len(own) > 0 {
		s += "; set by the scenario: " + strings.Join(own, ", ")
	}
	return s
}

func environment(d *document.Document, r *results.Results) {
	d.H(2, "Scenario and environment")
	run := r.Run
	rows := [][]string{{"scenario", run.Scenario}}
	if sc := run.EffectiveScenario; sc != nil {
		if s := sc.Summary(); s != "" {
			rows[0][1] += ": " + s
		}
		rows = append(rows, []string{"cluster", fmt.Sprintf("%d nodes, %d namespaces, %d pods (%d deployments x %d replicas per namespace), placement %s",
			sc.Cluster.Nodes, len(sc.Cluster.Namespaces), sc.PodCount(), sc.Cluster.Workloads.DeploymentsPerNamespace, sc.Cluster.Workloads.Replicas, sc.Cluster.Placement.Strategy)})
		var steps []string
		for _, st := range sc.Steps {
			steps = append(steps, st.Kind())
		}
		rows = append(rows, []string{"timeline", strings.Join(steps, " → ")})
		var modes []string
		for _, m := range sc.Modes {
			modes = append(modes, m.String())
		}
		rows = append(rows, []string{"modes in the scenario", strings.Join(modes, ", ")})
		rows = append(rows, []string{"SLO limits", fmt.Sprintf("mutating p99 ≤ %s, read p99 ≤ %s, list p99 ≤ %s",
			format.Sec(sc.SLO.MutatingP99.Seconds()), format.Sec(sc.SLO.ReadP99.Seconds()), format.Sec(sc.SLO.ListP99.Seconds()))})
		rows = append(rows, []string{"probe", fmt.Sprintf("%s req/s, sampling every %s", format.Sig3(sc.Measure.ProbeRate), sc.Measure.SampleInterval.Duration)})
	} else {
		rows = append(rows, []string{"cluster", fmt.Sprintf("%d nodes, %d pods", run.Nodes, run.Pods)})
	}
	rows = append(rows, []string{"seed", fmt.Sprint(run.Seed)})
	rows = append(rows, []string{"agents and operator behave as", ciliumRow(run.Cilium)})
	backend := run.Backend.Name
	if len(run.Backend.Facts) > 0 {
		keys := make([]string, 0, len(run.Backend.Facts))
		for k := range run.Backend.Facts {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var facts []string
		for _, k := range keys {
			facts = append(facts, k+"="+run.Backend.Facts[k])
		}
		backend += " (" + strings.Join(facts, ", ") + ")"
	}
	rows = append(rows, []string{"API server backend", backend})
	rows = append(rows, []string{"API figures stand for", results.APIServerOf(r).Describe()})
	if len(run.Backend.Flags) > 0 {
		rows = append(rows, []string{"backend flags", "`" + strings.Join(run.Backend.Flags, " ") + "`"})
	}
	mach := run.Machine
	machine := fmt.Sprintf("%d cores, %s memory, kernel %s", mach.Cores, format.Bytes(float64(mach.MemoryBytes)), mach.Kernel)
	if mach.OS != "" {
		machine += ", " + mach.OS + "/" + mach.Arch
	}
	rows = append(rows, []string{"machine", machine})
	dp := fmt.Sprintf("%s (requested %s)", run.Datapath.Effective, run.Datapath.Requested)
	if run.Datapath.Reason != "" {
		dp += ": " + run.Datapath.Reason
	}
	rows = append(rows, []string{"datapath", dp})
	rows = append(rows, []string{"stampede", strings.TrimSpace(run.StampedeVersion + " " + run.GoVersion)})
	if len(run.Command) > 0 {
		rows = append(rows, []string{"command", "`" + strings.Join(run.Command, " ") + "`"})
	}
	when := run.Started.UTC().Format(time.RFC3339)
	if run.Finished != nil {
		when += " → " + run.Finished.UTC().Format(time.RFC3339) + " (" + format.Duration(run.Finished.Sub(run.Started)) + ")"
	} else {
		when += " → (not finished)"
	}
	rows = append(rows, []string{"run", when})
	d.Table([]string{"what", "value"}, rows)
}

// statusCell is a mode's status for the summary tables.
func statusCell(m *results.ModeResult) string {
	if m.Status == results.StatusOK {
		return "ok"
	}
	return "**" + string(m.Status) + "**"
}

// modesTable places each mode on the three axes (a mode is its name and
// its axes, and two modes of one name with other axes are not the same)
// beside the API server's peak watch connections, the figure the read
// paths differ in most.
func modesTable(d *document.Document, r *results.Results) {
	var rows [][]string
	for i := range r.Modes {
		m := &r.Modes[i]
		kind := "preset"
		if p, ok := scenarios.Preset(m.Mode); !ok || p.Axes != m.Axes {
			kind = "own combination"
		}
		conns := format.Missing
		if s := m.Summary; s != nil && s.Watch != nil && s.Watch.Connections != nil {
			conns = format.Int(s.Watch.Connections.Peak)
		}
		rows = append(rows, []string{string(m.Mode), string(m.Axes.Identity), string(m.Axes.Endpoints), string(m.Axes.ReadPath), kind, conns})
	}
	d.Table([]string{"mode", "identity allocation", "endpoint distribution", "read path", "kind", "API watch connections (peak)"}, rows)
}

func latencyTable(d *document.Document, r *results.Results) {
	var rows [][]string
	for i := range r.Modes {
		m := &r.Modes[i]
		s := m.Summary
		row := []string{string(m.Mode), statusCell(m)}
		if s == nil {
			rows = append(rows, append(row, format.Missing, format.Missing, format.Missing, format.Missing, format.Missing, format.Missing, format.Missing, format.Missing))
			continue
		}
		all := results.FindLatency(s.APILatency, "*", "*")
		p99, maxL := math.NaN(), math.NaN()
		if all != nil {
			p99, maxL = all.P99, all.Max
		}
		server := math.NaN()
		if l := results.WorstP99(s.ServerLatency); l != nil {
			server = l.P99
		}
		kv := format.Missing
		if l := results.WorstP99(s.KVStoreLatency); l != nil {
			kv = format.Sec(l.P99) + " (" + l.Verb + ")"
		}
		xds := format.Missing
		if l := results.WorstP99(s.XDSPushLatency); l != nil {
			xds = format.Sec(l.P99)
		}
		conv, convN := format.Missing, format.Missing
		if c := results.RelabelConvergence(s); c != nil {
			conv = format.Sec(c.P50) + " / " + format.Sec(c.P99) + " / " + format.Sec(c.Max)
			convN = fmt.Sprintf("%d/%d", c.Converged, c.Agents)
		}
		rows = append(rows, append(row, format.Sec(p99), format.Sec(maxL), format.Sec(server), kv, xds, conv, convN, sloCell(s)))
	}
	d.Table([]string{"mode", "status", "API p99", "API max", "server-side p99 (worst)", "kvstore p99 (worst op)", "xDS push p99", "converge after relabel p50 / p99 / max", "agents converged", "SLO"}, rows)
}

func sloCell(s *results.Summary) string {
	if len(s.SLO) == 0 {
		return format.Missing
	}
	var failed []string
	for _, v := range s.SLO {
		if !v.Pass {
			failed = append(failed, v.Name)
		}
	}
	if len(failed) == 0 {
		return fmt.Sprintf("pass (%d/%d)", len(s.SLO), len(s.SLO))
	}
	return "**FAIL**: " + strings.Join(failed, ", ")
}

func costTable(d *document.Document, r *results.Results) {
	var rows [][]string
	for i := range r.Modes {
		m := &r.Modes[i]
		s := m.Summary
		row := []string{string(m.Mode)}
		if s == nil {
			rows = append(rows, append(row, format.Missing, format.Missing, format.Missing, format.Missing, format.Missing, format.Missing, format.Missing, format.Missing, format.Missing, format.Missing))
			continue
		}
		api := format.Missing
		if p := results.FindProcess(s, "apiserver"); p != nil {
			api = format.Float(p.CPUSeconds) + " CPU-s, peak " + format.Bytes(float64(p.PeakRSS))
		}
		if a := results.APIServerOf(r); a.Model == results.ModelCapacity {
			// The fake's process is the simulator; the model's account
			// is what a kube-apiserver would have spent.
			if v, what := results.APIServerCPU(a, s); !math.IsNaN(v) {
				api = format.Float(v) + " CPU-s " + what + " (the fake's own: " + api + ")"
			}
		}
		agCPU, agRSS := format.Missing, format.Missing
		if a := s.Agents; a != nil {
			agCPU = format.CorePct(a.PeakCPU.Mean) + " / " + format.CorePct(a.PeakCPU.Max)
			agRSS = format.Bytes(a.PeakRSS.Mean) + " / " + format.Bytes(a.PeakRSS.Max)
		}
		mem := format.Missing
		if mm := s.Memory; mm != nil {
			mem = format.Bytes(float64(mm.PeakProcessesRSS)) + " / " + format.Bytes(float64(mm.PeakMachineUsed))
		}
		events, bytes := format.Missing, format.Missing
		if w := s.Watch; w != nil {
			events = format.Int(w.Events)
			bytes = format.Bytes(float64(w.Bytes))
		}
		writes := format.Missing
		if s.Writes != nil {
			n, rejected := s.WriteTotals()
			writes = format.Int(n)
			if rejected > 0 {
				writes += " (" + format.Int(rejected) + " rejected)"
			}
		}
		throttle := format.Missing
		if t := s.Throttling; t != nil {
			throttle = fmt.Sprintf("%s / %s (%s)", format.Int(t.HTTP429), format.Int(t.ClientThrottledRequests), format.Sec(t.ClientThrottledSeconds))
		}
		ids := format.Missing
		if id := s.Identities; id != nil {
			ids = format.Int(id.Created) + " / " + format.Int(id.Duplicates)
		}
		dp := format.Missing
		if s.Datapath != nil {
			dp = format.Int(s.Datapath.Updates)
		}
		rows = append(rows, append(row, api, agCPU, agRSS, mem, events, bytes, writes, throttle, ids, dp))
	}
	d.Table([]string{"mode", "API server", "simulator's peak CPU per agent, " + simulatorCost + " (mean / max shard)", "simulator's peak RSS per agent, " + simulatorCost + " (mean / max shard)", "peak memory: all processes / machine", "watch events", "watch bytes", "API writes", "429s / client-throttled (wait summed over agents)", "identities created / duplicates", "datapath updates"}, rows)
}

func sloTable(d *document.Document, r *results.Results) {
	var rows [][]string
	for _, m := range r.Modes {
		if m.Summary == nil {
			continue
		}
		for _, v := range m.Summary.SLO {
			verdict := "pass"
			if !v.Pass {
				verdict = "**FAIL**"
			}
			val, lim := format.Float(v.Value)+" "+v.Unit, format.Float(v.Limit)+" "+v.Unit
			if v.Unit == "s" {
				val, lim = format.Sec(v.Value), format.Sec(v.Limit)
			}
			rows = append(rows, []string{string(m.Mode), v.Name, val, lim, verdict, v.Detail})
		}
	}
	if len(rows) == 0 {
		d.P("No SLO was judged.")
		return
	}
	d.Table([]string{"mode", "SLO", "value", "limit", "verdict", "detail"}, rows)
}

func probeTable(d *document.Document, r *results.Results) {
	var rows [][]string
	var warn []string
	for _, m := range r.Modes {
		s := m.Summary
		if s == nil || (s.Probe == nil && s.Harness == nil) {
			continue
		}
		target, achieved, held := format.Missing, format.Missing, format.Missing
		if p := s.Probe; p != nil {
			target = format.Rate(p.TargetRate, "req/s")
			achieved = format.Rate(p.AchievedRate, "req/s")
			held = "yes"
			if !p.HeldRate {
				held = "**no**"
				warn = append(warn, fmt.Sprintf("`%s`: the probe did not hold its rate (%s); its latencies understate the server's. %s", m.Mode, achieved, p.Detail))
			}
		}
		hcpu, hfrac, digests := format.Missing, format.Missing, format.Missing
		if h := s.Harness; h != nil {
			hcpu = format.Float(h.CPUSeconds) + " CPU-s"
			hfrac = format.Sig3(h.FractionOfTotal*100) + " %"
			if h.AgentDigestSeconds > 0 {
				digests = format.Float(h.AgentDigestSeconds) + " CPU-s"
			}
		}
		rows = append(rows, []string{string(m.Mode), target, achieved, held, hcpu, hfrac, digests})
	}
	if len(rows) == 0 {
		d.P("Not measured.")
		return
	}
	d.Table([]string{"mode", "probe target", "probe achieved", "held its rate", "harness CPU", "harness share of all CPU", "agents' status digests"}, rows)
	d.List(warn...)
}

func modeSection(d *document.Document, r *results.Results, m *results.ModeResult, figs []*Figure) {
	d.H(2, "Mode "+string(m.Mode))
	line := "Status: " + statusCell(m)
	if m.Reason != "" {
		line += ": " + m.Reason
	}
	d.P("%s.", line)
	if m.Started != nil {
		info := "Started " + m.Started.UTC().Format(time.RFC3339)
		if m.Finished != nil {
			info += ", took " + format.Duration(m.Finished.Sub(*m.Started))
		}
		if m.Agents > 0 {
			info += fmt.Sprintf("; %d agents in %d shard processes", m.Agents, m.Shards)
		}
		d.P("%s.", info)
	}
	if len(m.Steps) > 0 {
		var rows [][]string
		for _, st := range m.Steps {
			start := format.Missing
			if m.Started != nil {
				start = "+" + format.Duration(st.Start.Sub(*m.Started))
			}
			dur := "(running)"
			if st.End != nil {
				dur = format.Duration(st.End.Sub(st.Start))
			}
			out := st.Outcome
			if out != results.OutcomeOK {
				out = "**" + out + "**"
			}
			rows = append(rows, []string{fmt.Sprint(st.Index), st.Kind, start, dur, out, st.Detail})
		}
		d.H(3, "Timeline")
		d.Table([]string{"step", "kind", "start", "duration", "outcome", "detail"}, rows)
	}
	s := m.Summary
	if s != nil {
		latencySection(d, "API latency (probe)", s.APILatency)
		latencySection(d, "API latency (server-side, apiserver_request_duration_seconds)", s.ServerLatency)
		latencySection(d, "kvstore latency", s.KVStoreLatency)
		latencySection(d, "xDS push latency", s.XDSPushLatency)
		if len(s.Processes) > 0 {
			var rows [][]string
			for _, p := range s.Processes {
				rows = append(rows, []string{p.Name, format.Float(p.CPUSeconds), format.CorePct(p.PeakCPU), format.Bytes(float64(p.PeakRSS)), format.Bytes(float64(p.MeanRSS))})
			}
			d.H(3, "Processes")
			d.Table([]string{"process", "CPU-seconds", "peak CPU", "peak RSS", "mean RSS"}, rows)
		}
		if a := s.Agents; a != nil {
			d.H(3, "Per agent: the simulator's cost, not a cilium-agent's")
			d.P("%d agents in %d shards; per agent = shard figure / agents in the shard; mean, min and max across shards. "+
				"These are the %s: its agents decode into slim types and share decoded frames and strings; what a cilium-agent would receive and hold follows.", a.Count, a.Shards, simulatorCost)
			if a.SharedFrames > 0 {
				d.P("%.1f %% of the frames of unfiltered watches were decoded once per shard and shared by its agents, so per-agent CPU leaves out most decoding a real agent does.", 100*a.SharedFrames)
			}
			sp := func(v results.Spread, f func(float64) string) []string {
				return []string{f(v.Mean), f(v.Min), f(v.Max)}
			}
			d.Table([]string{"figure", "mean", "min", "max"}, [][]string{
				append([]string{"CPU-seconds"}, sp(a.CPUSeconds, format.Float)...),
				append([]string{"mean CPU"}, sp(a.MeanCPU, format.CorePct)...),
				append([]string{"peak CPU"}, sp(a.PeakCPU, format.CorePct)...),
				append([]string{"peak RSS"}, sp(a.PeakRSS, format.Bytes)...),
				append([]string{"mean RSS"}, sp(a.MeanRSS, format.Bytes)...),
			})
		}
		if w := s.AgentWork; w != nil {
			agentWorkByResource(d, w)
		}
		if s.Mesh != nil {
			meshSection(d, m)
		}
		var facts []string
		if w := s.Watch; w != nil {
			facts = append(facts, fmt.Sprintf("watch: %s events, %s delivered; peak %s events/s, %s/s%s", format.Int(w.Events), format.Bytes(float64(w.Bytes)),
				format.Sig3(w.PeakEventsPerSecond), format.Bytes(w.PeakBytesPerSecond), countMapSuffix(w.EventsByResource)))
			if c := w.Connections; c != nil {
				facts = append(facts, fmt.Sprintf("API server watch connections (apiserver_longrunning_requests{verb=\"WATCH\"}): peak %s, mean %s over %s scrapes; each resource's peak%s",
					format.Int(c.Peak), format.Sig3(c.Mean), format.Int(int64(c.Samples)), countMapSuffix(c.ByResource)))
			}
			if w.APIServerEvents > 0 {
				facts = append(facts, "watch events the API server sent to all its watchers (apiserver_watch_events_total): "+format.Int(w.APIServerEvents))
			}
		}
		if len(s.Writes) > 0 {
			facts = append(facts, "API writes:"+countMapSuffix(s.Writes))
		}
		if len(s.WritesRejected) > 0 {
			facts = append(facts, "API writes not answered with a 2xx (409 Conflict, 429 Too Many Requests, ...):"+countMapSuffix(s.WritesRejected))
		}
		if t := s.Throttling; t != nil {
			facts = append(facts, fmt.Sprintf("throttling: %s responses 429, %s requests waited in client rate limiters for %s in total", format.Int(t.HTTP429), format.Int(t.ClientThrottledRequests), format.Sec(t.ClientThrottledSeconds)))
		}
		for _, sc := range s.Scrapes {
			// A hole of a few intervals is a busy moment; beyond that the
			// component's series has gaps worth knowing about.
			if sc.Failed > 0 || sc.MaxGapSeconds > 5 {
				facts = append(facts, fmt.Sprintf("metrics of %s: %s scrapes answered, %s failed, up to %s without an answer (its rates have gaps there; its totals are exact)",
					sc.Component, format.Int(int64(sc.Answered)), format.Int(int64(sc.Failed)), format.Sec(sc.MaxGapSeconds)))
			}
		}
		if id := s.Identities; id != nil {
			facts = append(facts, fmt.Sprintf("identities: %s created, %s duplicates, %s at the end", format.Int(id.Created), format.Int(id.Duplicates), format.Int(id.Final)))
		}
		if dp := s.Datapath; dp != nil {
			facts = append(facts, "datapath updates: "+format.Int(dp.Updates)+countMapSuffix(dp.ByMap))
		}
		for _, c := range s.Convergence {
			f := fmt.Sprintf("convergence after step %d (%s): %d/%d agents, p50 %s, p99 %s, max %s", c.Step, c.Trigger, c.Converged, c.Agents, format.Sec(c.P50), format.Sec(c.P99), format.Sec(c.Max))
			if c.PolicyOverflow > 0 {
				f += fmt.Sprintf("; %s agents refused an endpoint policy larger than the policy map (agent.policyMapMax)", format.Int(int64(c.PolicyOverflow)))
			}
			facts = append(facts, f)
		}
		if len(facts) > 0 {
			d.H(3, "Counts")
			d.List(facts...)
		}
	}
	if len(figs) > 0 {
		d.H(3, "Plots")
		for _, f := range figs {
			d.Img(f.Name, f.Title)
		}
	} else if m.Series.Len() == 0 {
		d.P("No time series were recorded for this mode.")
	}
}

func countMapSuffix(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+format.Int(m[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func latencySection(d *document.Document, title string, ls []results.LatencySummary) {
	if len(ls) == 0 {
		return
	}
	var rows [][]string
	for _, l := range ls {
		res := l.Resource
		if res == "" {
			res = format.Missing
		}
		rows = append(rows, []string{l.Verb, res, format.Sec(l.P50), format.Sec(l.P90), format.Sec(l.P99), format.Sec(l.Max), format.Int(l.Count), format.Int(l.Errors)})
	}
	d.H(3, title)
	d.Table([]string{"verb", "resource", "p50", "p90", "p99", "max", "count", "errors"}, rows)
}

// writeFigure writes f into plotDir in each format, reusing the PNG already
// encoded. A format that cannot be encoded is listed in FigureErrors; a file
// that cannot be written is returned as an error.
func (out *Rendered) writeFigure(f *Figure, png []byte, formats []string, plotDir string) error {
	for _, format := range formats {
		data := png
		if format != "png" {
			var err error
			if data, err = f.Encode(format); err != nil {
				out.FigureErrors = append(out.FigureErrors, err)
				continue
			}
		}
		path := filepath.Join(plotDir, f.Name+"."+format)
		if err := atomicfile.Write(path, data); err != nil {
			return err
		}
		out.Plots = append(out.Plots, path)
	}
	return nil
}
