package capacity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"

	"github.com/stampede-sim/stampede/reports/internal/format"
	"github.com/stampede-sim/stampede/reports/internal/stats"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// SweepRunner runs a scenario resized to a node count in the given modes
// and returns its results. The command layer passes one built on the
// harness; this package does not import it.
type SweepRunner func(ctx context.Context, sc *scenarios.Scenario, nodes int, modes []scenarios.Mode) (*results.Results, error)

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
func Sweep(ctx context.Context, cfg SweepConfig) ([]*results.Results, error) {
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
	var out []*results.Results
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
	Metric results.Metric
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
	Machine results.Machine
}

// capacityMetrics are the costs the capacity model fits: the catalogue's
// plus agent memory per pod.
func capacityMetrics() []results.Metric {
	names := []string{"watch.events", "watch.bytes", "watch.events.peak", "apiserver.cpu", "api.max", "api.p99", "server.p99",
		"kvstore.p99", "kvstore.cpu", "xds.p99", "controlplane.cpu", "agent.rss.peak", "agent.cpu.seconds", "converge.max", "identities.duplicates", "writes.total"}
	var out []results.Metric
	for _, n := range names {
		if m, ok := results.MetricByName(n); ok {
			out = append(out, m)
		}
	}
	out = append(out, results.Metric{Name: "agent.rss.per.pod", Unit: "bytes", Help: "peak RSS per agent divided by the pods per node",
		Value: func(m *results.ModeResult) float64 { return math.NaN() }}) // filled per point (needs the run's pods/nodes)
	return out
}

// BuildCapacity fits every cost of every mode against the node count from
// runs of one scenario at several sizes. Runs of a scenario resized by the
// harness are named "<scenario>@<nodes>"; the part after '@' is ignored.
func BuildCapacity(rs []*results.Results, targets []int) (*CapacityReport, error) {
	if len(rs) == 0 {
		return nil, &results.UnusableInputError{Problems: []string{"no rs"}}
	}
	if len(targets) == 0 {
		targets = DefaultCapacityTargets
	}
	base := results.BaseScenario
	rep := &CapacityReport{Scenario: base(rs[0].Run.Scenario), Targets: targets,
		Backend: rs[0].Run.Backend.Name, Machine: rs[0].Run.Machine}
	var problems []string
	nodeSet := map[int]bool{}
	var ppn []float64
	for i, r := range rs {
		if base(r.Run.Scenario) != rep.Scenario {
			problems = append(problems, fmt.Sprintf("rs[%d] is scenario %q, rs[0] %q", i, base(r.Run.Scenario), rep.Scenario))
		}
		if r.Run.Nodes <= 0 {
			problems = append(problems, fmt.Sprintf("rs[%d] (%s) does not say its node count", i, r.Run.Scenario))
			continue
		}
		nodeSet[r.Run.Nodes] = true
		ppn = append(ppn, float64(r.Run.Pods)/float64(r.Run.Nodes))
		if r.Run.Backend.Name != rep.Backend {
			rep.Notes = append(rep.Notes, fmt.Sprintf("rs[%d] used backend %s, rs[0] %s", i, r.Run.Backend.Name, rep.Backend))
		}
	}
	if len(problems) > 0 {
		return nil, &results.UnusableInputError{Problems: problems}
	}
	for n := range nodeSet {
		rep.Nodes = append(rep.Nodes, n)
	}
	sort.Ints(rep.Nodes)
	if len(rep.Nodes) < 2 {
		return nil, &results.UnusableInputError{Problems: []string{fmt.Sprintf("need runs at two or more node counts, have %v", rep.Nodes)}}
	}
	rep.PodsPerNode = stats.Median(ppn)
	if stats.Spread(ppn) > 0.05 {
		rep.Notes = append(rep.Notes, "pods per node differ between runs; costs are fitted against nodes only")
	}
	maxNodes := float64(rep.Nodes[len(rep.Nodes)-1])

	for _, mode := range results.ModeOrder(rs) {
		for _, metric := range capacityMetrics() {
			var pts []CapacityPoint
			for _, r := range rs {
				for i := range r.Modes {
					m := &r.Modes[i]
					if m.Mode != mode || m.Status != results.StatusOK {
						continue
					}
					v := metric.Value(m)
					if metric.Name == "agent.rss.per.pod" {
						v = math.NaN()
						if a := results.SummaryOf(m).Agents; a != nil && r.Run.Pods > 0 {
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
		for _, slo := range sloNames(rs, mode) {
			var pts []CapacityPoint
			var limit float64
			unit := "s"
			for _, r := range rs {
				for i := range r.Modes {
					m := &r.Modes[i]
					if m.Mode != mode || m.Status != results.StatusOK {
						continue
					}
					for _, v := range results.SummaryOf(m).SLO {
						if v.Name == slo {
							pts = append(pts, CapacityPoint{Nodes: r.Run.Nodes, Pods: r.Run.Pods, Value: v.Value})
							limit, unit = v.Limit, v.Unit
						}
					}
				}
			}
			metric := results.Metric{Name: "slo: " + slo, Unit: unit, Help: "the value the harness judged against the SLO"}
			rep.Fits = append(rep.Fits, fitPoints(mode, metric, pts, targets, maxNodes, &limit))
		}
	}
	return rep, nil
}

func sloNames(rs []*results.Results, mode scenarios.Mode) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range rs {
		for _, m := range r.Modes {
			if m.Mode != mode {
				continue
			}
			for _, v := range results.SummaryOf(&m).SLO {
				if !seen[v.Name] {
					seen[v.Name] = true
					out = append(out, v.Name)
				}
			}
		}
	}
	return out
}

func fitPoints(mode scenarios.Mode, metric results.Metric, pts []CapacityPoint, targets []int, maxNodes float64, limit *float64) CapacityFit {
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
			cf.BreakNote = fmt.Sprintf("the fit reaches %s at about %s nodes", metric.Format(*limit), format.Int(int64(math.Round(b))))
			if b > maxNodes {
				cf.BreakNote += fmt.Sprintf(" (%s× the largest measured size: an extrapolation)", format.TrimFloat(b/maxNodes))
			}
		} else {
			cf.BreakNote = "the fit does not grow towards the limit"
		}
	}
	return cf
}
