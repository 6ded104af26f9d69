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

	"github.com/stampede-sim/stampede/scenarios"
)

// SweepRunner runs a scenario resized to a node count in the given modes
// and returns its results. The command layer passes one built on the
// harness; reports does not import it.
type SweepRunner func(ctx context.Context, sc *scenarios.Scenario, nodes int, modes []scenarios.Mode) (*Results, error)

// SweepConfig configures Sweep.
type SweepConfig struct {
	Scenario *scenarios.Scenario
	Nodes    []int
	Modes    []scenarios.Mode
	Run      SweepRunner
	Log      *slog.Logger
}

// Sweep runs the scenario at every node count, smallest first. It returns
// the results it got so far with the error of the first run that failed
// outright (a run that returns results with failed modes continues).
func Sweep(ctx context.Context, cfg SweepConfig) ([]*Results, error) {
	if cfg.Scenario == nil {
		return nil, errors.New("sweep: no scenario")
	}
	if cfg.Run == nil {
		return nil, errors.New("sweep: no runner")
	}
	if len(cfg.Nodes) == 0 {
		return nil, errors.New("sweep: no node counts")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	nodes := append([]int(nil), cfg.Nodes...)
	sort.Ints(nodes)
	var out []*Results
	for _, n := range nodes {
		if n <= 0 {
			return out, fmt.Errorf("sweep: node count %d must be positive", n)
		}
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("sweep: %w", err)
		}
		cfg.Log.Info("capacity sweep: running", "scenario", cfg.Scenario.Name, "nodes", n)
		r, err := cfg.Run(ctx, cfg.Scenario, n, cfg.Modes)
		if r != nil {
			out = append(out, r)
		}
		if err != nil {
			if r == nil || ctx.Err() != nil {
				return out, fmt.Errorf("sweep at %d nodes: %w", n, err)
			}
			cfg.Log.Warn("capacity sweep: run had errors; using what it measured", "nodes", n, "err", err)
		}
	}
	return out, nil
}

// DefaultCapacityTargets are the node counts capacity reports extrapolate
// to.
var DefaultCapacityTargets = []int{1000, 5000, 10000, 50000}

// CapacityPoint is one measurement: a run at a node count.
type CapacityPoint struct {
	Nodes int
	Pods  int
	Value float64
}

// Projection is a fitted value at a node count beyond (or within) the
// measured range, with its 95 % prediction interval.
type Projection struct {
	Nodes int
	// Value, Lo and Hi are in the metric's unit; Lo and Hi are NaN when
	// the fit has no error estimate.
	Value, Lo, Hi float64
	// Factor is Nodes over the largest measured node count: how far the
	// projection reaches beyond the data.
	Factor float64
}

// CapacityFit is how one cost of one mode grows with the cluster.
type CapacityFit struct {
	Mode   scenarios.Mode
	Metric Metric
	Points []CapacityPoint
	Fit    Fit
	// Alt is the model not chosen, for comparison.
	Alt         *Fit
	Projections []Projection
	// Limit is the SLO limit of the metric, if it has one; BreaksAt the
	// node count at which the mode reaches it (NaN: not within reach of
	// the model), and BreakNote says how that was found.
	Limit     *float64
	BreaksAt  float64
	BreakNote string
	// Err is why there is no fit (too few points).
	Err string
}

// CapacityReport is the capacity model of a scenario.
type CapacityReport struct {
	Scenario string
	// Nodes are the measured node counts; PodsPerNode the sweep's ratio.
	Nodes       []int
	PodsPerNode float64
	Targets     []int
	Fits        []CapacityFit
	Notes       []string
	// Backend and Machine of the runs (of the first run).
	Backend string
	Machine Machine
}

// capacityMetrics are the costs the capacity model fits: the catalogue's
// plus agent memory per pod.
func capacityMetrics() []Metric {
	names := []string{"watch.events", "watch.bytes", "watch.events.peak", "apiserver.cpu", "api.max", "api.p99", "server.p99",
		"kvstore.p99", "kvstore.cpu", "xds.p99", "controlplane.cpu", "agent.rss.peak", "agent.cpu.seconds", "converge.max", "identities.duplicates", "writes.total"}
	var out []Metric
	for _, n := range names {
		if m, ok := MetricByName(n); ok {
			out = append(out, m)
		}
	}
	out = append(out, Metric{Name: "agent.rss.per.pod", Unit: "bytes", Help: "peak RSS per agent divided by the pods per node",
		Value: func(m *ModeResult) float64 { return nan }}) // filled per point (needs the run's pods/nodes)
	return out
}

// BuildCapacity fits every cost of every mode against the node count from
// runs of one scenario at several sizes. Runs of a scenario resized by the
// harness are named "<scenario>@<nodes>"; the part after '@' is ignored.
func BuildCapacity(results []*Results, targets []int) (*CapacityReport, error) {
	if len(results) == 0 {
		return nil, &UnusableInputError{Problems: []string{"no results"}}
	}
	if len(targets) == 0 {
		targets = DefaultCapacityTargets
	}
	base := baseScenario
	rep := &CapacityReport{Scenario: base(results[0].Run.Scenario), Targets: targets,
		Backend: results[0].Run.Backend.Name, Machine: results[0].Run.Machine}
	var problems []string
	nodeSet := map[int]bool{}
	var ppn []float64
	for i, r := range results {
		if base(r.Run.Scenario) != rep.Scenario {
			problems = append(problems, fmt.Sprintf("results[%d] is scenario %q, results[0] %q", i, base(r.Run.Scenario), rep.Scenario))
		}
		if r.Run.Nodes <= 0 {
			problems = append(problems, fmt.Sprintf("results[%d] (%s) does not say its node count", i, r.Run.Scenario))
			continue
		}
		nodeSet[r.Run.Nodes] = true
		ppn = append(ppn, float64(r.Run.Pods)/float64(r.Run.Nodes))
		if r.Run.Backend.Name != rep.Backend {
			rep.Notes = append(rep.Notes, fmt.Sprintf("results[%d] used backend %s, results[0] %s", i, r.Run.Backend.Name, rep.Backend))
		}
	}
	if len(problems) > 0 {
		return nil, &UnusableInputError{Problems: problems}
	}
	for n := range nodeSet {
		rep.Nodes = append(rep.Nodes, n)
	}
	sort.Ints(rep.Nodes)
	if len(rep.Nodes) < 2 {
		return nil, &UnusableInputError{Problems: []string{fmt.Sprintf("need runs at two or more node counts, have %v", rep.Nodes)}}
	}
	rep.PodsPerNode = median(ppn)
	if spread(ppn) > 0.05 {
		rep.Notes = append(rep.Notes, "pods per node differ between runs; costs are fitted against nodes only")
	}
	maxNodes := float64(rep.Nodes[len(rep.Nodes)-1])

	for _, mode := range modeOrder(results) {
		for _, metric := range capacityMetrics() {
			var pts []CapacityPoint
			for _, r := range results {
				for i := range r.Modes {
					m := &r.Modes[i]
					if m.Mode != mode || m.Status != StatusOK {
						continue
					}
					v := metric.Value(m)
					if metric.Name == "agent.rss.per.pod" {
						v = nan
						if a := summaryOf(m).Agents; a != nil && r.Run.Pods > 0 {
							v = a.PeakRSS.Mean / (float64(r.Run.Pods) / float64(r.Run.Nodes))
						}
					}
					if !math.IsNaN(v) && !math.IsInf(v, 0) {
						pts = append(pts, CapacityPoint{Nodes: r.Run.Nodes, Pods: r.Run.Pods, Value: v})
					}
				}
			}
			if len(pts) == 0 {
				continue
			}
			rep.Fits = append(rep.Fits, fitPoints(mode, metric, pts, targets, maxNodes, nil))
		}
		// SLOs: the harness's verdict values, fitted, solved for the limit.
		for _, slo := range sloNames(results, mode) {
			var pts []CapacityPoint
			var limit float64
			unit := "s"
			for _, r := range results {
				for i := range r.Modes {
					m := &r.Modes[i]
					if m.Mode != mode || m.Status != StatusOK {
						continue
					}
					for _, v := range summaryOf(m).SLO {
						if v.Name == slo {
							pts = append(pts, CapacityPoint{Nodes: r.Run.Nodes, Pods: r.Run.Pods, Value: v.Value})
							limit, unit = v.Limit, v.Unit
						}
					}
				}
			}
			metric := Metric{Name: "slo: " + slo, Unit: unit, Help: "the value the harness judged against the SLO"}
			rep.Fits = append(rep.Fits, fitPoints(mode, metric, pts, targets, maxNodes, &limit))
		}
	}
	return rep, nil
}

func sloNames(results []*Results, mode scenarios.Mode) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range results {
		for _, m := range r.Modes {
			if m.Mode != mode {
				continue
			}
			for _, v := range summaryOf(&m).SLO {
				if !seen[v.Name] {
					seen[v.Name] = true
					out = append(out, v.Name)
				}
			}
		}
	}
	return out
}

func fitPoints(mode scenarios.Mode, metric Metric, pts []CapacityPoint, targets []int, maxNodes float64, limit *float64) CapacityFit {
	sort.Slice(pts, func(i, j int) bool { return pts[i].Nodes < pts[j].Nodes })
	cf := CapacityFit{Mode: mode, Metric: metric, Points: pts, Limit: limit, BreaksAt: math.NaN()}
	distinct := map[int]bool{}
	n := make([]float64, len(pts))
	y := make([]float64, len(pts))
	for i, p := range pts {
		n[i], y[i] = float64(p.Nodes), p.Value
		distinct[p.Nodes] = true
	}
	if len(distinct) < 2 {
		cf.Err = fmt.Sprintf("measured at %d node count only", len(distinct))
		return cf
	}
	f, alt, err := fitBest(n, y)
	if err != nil {
		cf.Err = err.Error()
		return cf
	}
	cf.Fit, cf.Alt = f, alt
	for _, t := range targets {
		lo, hi := f.Interval(float64(t))
		cf.Projections = append(cf.Projections, Projection{Nodes: t, Value: f.Predict(float64(t)), Lo: lo, Hi: hi, Factor: float64(t) / maxNodes})
	}
	if limit != nil {
		for _, p := range pts {
			if p.Value > *limit {
				cf.BreaksAt = float64(p.Nodes)
				cf.BreakNote = fmt.Sprintf("measured above the limit at %d nodes", p.Nodes)
				return cf
			}
		}
		if b := f.Solve(*limit); !math.IsNaN(b) && b > 0 {
			cf.BreaksAt = b
			cf.BreakNote = fmt.Sprintf("the fit reaches %s at about %s nodes", metric.Format(*limit), fmtInt(int64(math.Round(b))))
			if b > maxNodes {
				cf.BreakNote += fmt.Sprintf(" (%s× the largest measured size: an extrapolation)", trimFloat(b/maxNodes))
			}
		} else {
			cf.BreakNote = "the fit does not grow towards the limit"
		}
	}
	return cf
}

// CapacityConfig configures RenderCapacity.
type CapacityConfig struct {
	// Dir receives capacity.md, capacity.html and plots/capacity-*.
	Dir     string
	Formats []string
	Log     *slog.Logger
}

// RenderCapacity writes the capacity report and its plots into cfg.Dir.
func RenderCapacity(ctx context.Context, cfg CapacityConfig, rep *CapacityReport) (*Rendered, error) {
	rc := RenderConfig{Dir: cfg.Dir, Formats: cfg.Formats, Log: cfg.Log}
	if err := rc.defaults(); err != nil {
		return nil, err
	}
	plotDir := filepath.Join(cfg.Dir, "plots")
	if err := os.MkdirAll(plotDir, 0o755); err != nil {
		return nil, fmt.Errorf("render capacity: %w", err)
	}
	out := &Rendered{}
	pngs := map[string][]byte{}
	var drawn []*Figure
	for _, f := range capacityFigures(rep) {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("render capacity: %w", err)
		}
		png, err := f.Encode("png")
		if err != nil {
			out.FigureErrors = append(out.FigureErrors, err)
			continue
		}
		pngs[f.Name] = png
		drawn = append(drawn, f)
		if err := out.writeFigure(f, png, rc.Formats, plotDir); err != nil {
			return nil, fmt.Errorf("render capacity: %w", err)
		}
	}
	doc := capacityDocument(rep, drawn)
	out.Markdown = filepath.Join(cfg.Dir, "capacity.md")
	if err := writeFileAtomic(out.Markdown, []byte(doc.markdown())); err != nil {
		return nil, fmt.Errorf("render capacity: %w", err)
	}
	out.HTML = filepath.Join(cfg.Dir, "capacity.html")
	if err := writeFileAtomic(out.HTML, []byte(doc.htmlPage(pngs))); err != nil {
		return nil, fmt.Errorf("render capacity: %w", err)
	}
	return out, nil
}

func fmtNodes(n int) string { return fmtInt(int64(n)) }

func capacityDocument(rep *CapacityReport, figs []*Figure) *document {
	d := &document{title: "Stampede capacity model: " + rep.Scenario}
	var measured []string
	for _, n := range rep.Nodes {
		measured = append(measured, fmtNodes(n))
	}
	maxN := rep.Nodes[len(rep.Nodes)-1]
	d.p("Measured at %s nodes (%s pods per node), %s API server, %d cores, %s memory.",
		strings.Join(measured, ", "), sig3(rep.PodsPerNode), rep.Backend, rep.Machine.Cores, fmtBytes(float64(rep.Machine.MemoryBytes)))
	d.h(2, "How to read this")
	d.list(
		"Each cost is fitted against the node count n (pods grow with nodes at the ratio above, so the same fit holds for pods). "+
			"The model is a power law a·n^b fitted by least squares in log-log space (b≈1: linear, b≈2: quadratic), "+
			"or a linear model a + b·n when it predicts left-out points clearly better or a value is zero. "+
			"R² and the RMSE of the relative residuals state how well the model fits the measured points.",
		fmt.Sprintf("Range of validity: the fits describe %s to %s nodes. Projections beyond %s nodes are extrapolations: "+
			"they hold only if nothing changes mechanism on the way (a rate limit reached, memory exhausted, a timeout, an API server falling over), "+
			"and their error grows with the distance (the ×factor column). Intervals are 95 %% prediction intervals of the fit; "+
			"they cover the scatter of the measured points, not changes of mechanism.", fmtNodes(rep.Nodes[0]), fmtNodes(maxN), fmtNodes(maxN)),
		"With two node counts a fit is exact and has no error estimate; sweep at least four sizes (e.g. --nodes 25,50,100,200).",
	)
	if len(rep.Notes) > 0 {
		d.h(2, "Notes")
		d.list(rep.Notes...)
	}

	d.h(2, "SLO breaking points")
	var rows [][]string
	for _, f := range rep.Fits {
		if f.Limit == nil {
			continue
		}
		at := missing
		if !math.IsNaN(f.BreaksAt) {
			at = "**" + fmtNodes(int(math.Round(f.BreaksAt))) + " nodes**"
		}
		note := f.BreakNote
		if f.Err != "" {
			note = "no fit: " + f.Err
		}
		rows = append(rows, []string{string(f.Mode), strings.TrimPrefix(f.Metric.Name, "slo: "), f.Metric.Format(*f.Limit), at, note})
	}
	if len(rows) == 0 {
		d.p("The results hold no SLO verdicts.")
	} else {
		d.table([]string{"mode", "SLO", "limit", "breaks at", "how"}, rows)
	}

	d.h(2, "Fits and projections")
	head := []string{"mode", "cost", "measured"}
	head = append(head, "fit", "growth")
	for _, t := range rep.Targets {
		head = append(head, fmtNodes(t)+" nodes")
	}
	byMetric := map[string][]CapacityFit{}
	var order []string
	for _, f := range rep.Fits {
		if _, ok := byMetric[f.Metric.Name]; !ok {
			order = append(order, f.Metric.Name)
		}
		byMetric[f.Metric.Name] = append(byMetric[f.Metric.Name], f)
	}
	for _, name := range order {
		fits := byMetric[name]
		d.h(3, name+": "+fits[0].Metric.Help)
		var rows [][]string
		for _, f := range fits {
			var meas []string
			for _, p := range f.Points {
				meas = append(meas, fmtNodes(p.Nodes)+": "+f.Metric.Format(p.Value))
			}
			row := []string{string(f.Mode), f.Metric.Name, strings.Join(meas, "; ")}
			if f.Err != "" {
				row = append(row, "no fit: "+f.Err, missing)
				for range rep.Targets {
					row = append(row, missing)
				}
				rows = append(rows, row)
				continue
			}
			fit := f.Fit.String()
			if f.Alt != nil {
				fit += " (other model: " + f.Alt.String() + ")"
			}
			row = append(row, fit, f.Fit.Growth())
			for _, p := range f.Projections {
				cell := f.Metric.Format(p.Value)
				if !math.IsNaN(p.Lo) {
					cell += " [" + f.Metric.Format(math.Max(p.Lo, 0)) + ", " + f.Metric.Format(p.Hi) + "]"
				}
				cell += fmt.Sprintf(" (×%s)", trimFloat(p.Factor))
				row = append(row, cell)
			}
			rows = append(rows, row)
		}
		d.table(head, rows)
		for _, fig := range figs {
			if fig.Name == capacityFigureName(name) {
				d.img(fig.Name, fig.Title)
			}
		}
	}
	return d
}
