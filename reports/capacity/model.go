package capacity

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/stampede-sim/stampede/reports/internal/stats"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

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

// CapacityFit is how one cost of one mode on one API server grows with
// the cluster.
type CapacityFit struct {
	Mode   scenarios.Mode
	API    APIServer
	Metric results.Metric
	Points []CapacityPoint
	Fit    Fit
	// Alt is the model not chosen, for comparison.
	Alt         *Fit
	Projections []Projection
	// Limit is the SLO limit of the metric, if it has one; Break is what
	// the data says about the node count at which the mode reaches it.
	Limit *float64
	Break BreakingPoint
	// Err is why there is no fit (too few points).
	Err string
}

// ModeVerdict is the answer for one mode on one API server: the first SLO
// it breaks, or why the data does not say.
type ModeVerdict struct {
	Mode scenarios.Mode
	API  APIServer
	// SLO is the SLO the verdict is about ("" when the mode has none).
	SLO   string
	Break BreakingPoint
}

// CapacityReport is the capacity model of a scenario.
type CapacityReport struct {
	Scenario string
	// Nodes are the measured node counts; PodsPerNode the sweep's ratio.
	Nodes       []int
	PodsPerNode float64
	Targets     []int
	// APIServers are the API servers the runs measured against, in order;
	// APINodes[i] the node counts measured on APIServers[i].
	APIServers []APIServer
	APINodes   [][]int
	// MaxExtrapolation is how far beyond the data breaking points are
	// stated.
	MaxExtrapolation float64
	Fits             []CapacityFit
	// Verdicts hold one entry per mode and API server.
	Verdicts []ModeVerdict
	Notes    []string
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
// runs of one scenario at several sizes, separately per API server (backend
// and capacity size), and judges each SLO's breaking point. Runs of a
// scenario resized by the harness are named "<scenario>@<nodes>"; the part
// after '@' is ignored.
func BuildCapacity(rs []*results.Results, opt Options) (*CapacityReport, error) {
	if len(rs) == 0 {
		return nil, &results.UnusableInputError{Problems: []string{"no results"}}
	}
	if err := opt.defaults(); err != nil {
		return nil, &results.UnusableInputError{Problems: []string{err.Error()}}
	}
	base := results.BaseScenario
	rep := &CapacityReport{Scenario: base(rs[0].Run.Scenario), Targets: opt.Targets, MaxExtrapolation: opt.MaxExtrapolation,
		Backend: rs[0].Run.Backend.Name, Machine: rs[0].Run.Machine}
	var problems []string
	nodeSet := map[int]bool{}
	var ppn []float64
	groups := map[APIServer][]*results.Results{}
	for i, r := range rs {
		if base(r.Run.Scenario) != rep.Scenario {
			problems = append(problems, fmt.Sprintf("results[%d] is scenario %q, results[0] %q", i, base(r.Run.Scenario), rep.Scenario))
		}
		if r.Run.Nodes <= 0 {
			problems = append(problems, fmt.Sprintf("results[%d] (%s) does not say its node count", i, r.Run.Scenario))
			continue
		}
		nodeSet[r.Run.Nodes] = true
		ppn = append(ppn, float64(r.Run.Pods)/float64(r.Run.Nodes))
		a := apiServerOf(r)
		if _, ok := groups[a]; !ok {
			rep.APIServers = append(rep.APIServers, a)
		}
		groups[a] = append(groups[a], r)
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
	slices.SortFunc(rep.APIServers, compareAPIServers)
	for _, a := range rep.APIServers {
		var ns []int
		for _, r := range groups[a] {
			if !slices.Contains(ns, r.Run.Nodes) {
				ns = append(ns, r.Run.Nodes)
			}
		}
		slices.Sort(ns)
		rep.APINodes = append(rep.APINodes, ns)
	}
	for _, mode := range results.ModeOrder(rs) {
		for _, a := range rep.APIServers {
			fits := fitGroup(groups[a], mode, a, opt)
			rep.Fits = append(rep.Fits, fits...)
			rep.Verdicts = append(rep.Verdicts, verdictOf(mode, a, fits))
		}
	}
	return rep, nil
}

// fitGroup fits every cost and SLO of one mode from the runs on one API
// server.
func fitGroup(rs []*results.Results, mode scenarios.Mode, api APIServer, opt Options) []CapacityFit {
	maxNodes := 0
	for _, r := range rs {
		maxNodes = max(maxNodes, r.Run.Nodes)
	}
	var fits []CapacityFit
	for _, metric := range capacityMetrics() {
		pts := modePoints(rs, mode, func(r *results.Results, m *results.ModeResult) (float64, bool) {
			v := metric.Value(m)
			if metric.Name == "agent.rss.per.pod" {
				v = math.NaN()
				if a := results.SummaryOf(m).Agents; a != nil && r.Run.Pods > 0 {
					v = a.PeakRSS.Mean / (float64(r.Run.Pods) / float64(r.Run.Nodes))
				}
			}
			return v, !math.IsNaN(v) && !math.IsInf(v, 0)
		})
		if len(pts) > 0 {
			fits = append(fits, fitPoints(mode, api, metric, pts, opt, float64(maxNodes), nil))
		}
	}
	// SLOs: the harness's verdict values, fitted, solved for the limit.
	for _, slo := range sloNames(rs, mode) {
		var limit float64
		unit := "s"
		pts := modePoints(rs, mode, func(_ *results.Results, m *results.ModeResult) (float64, bool) {
			for _, v := range results.SummaryOf(m).SLO {
				if v.Name == slo {
					limit, unit = v.Limit, v.Unit
					return v.Value, true
				}
			}
			return 0, false
		})
		metric := results.Metric{Name: "slo: " + slo, Unit: unit, Help: "the value the harness judged against the SLO"}
		fits = append(fits, fitPoints(mode, api, metric, pts, opt, float64(maxNodes), &limit))
	}
	return fits
}

// modePoints collects value(r, m) of every run's mode that finished.
func modePoints(rs []*results.Results, mode scenarios.Mode, value func(*results.Results, *results.ModeResult) (float64, bool)) []CapacityPoint {
	var pts []CapacityPoint
	for _, r := range rs {
		for i := range r.Modes {
			m := &r.Modes[i]
			if m.Mode != mode || m.Status != results.StatusOK {
				continue
			}
			if v, ok := value(r, m); ok {
				pts = append(pts, CapacityPoint{Nodes: r.Run.Nodes, Pods: r.Run.Pods, Value: v})
			}
		}
	}
	return pts
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

// fitPoints fits pts and, for an SLO (limit set), judges its breaking
// point.
func fitPoints(mode scenarios.Mode, api APIServer, metric results.Metric, pts []CapacityPoint, opt Options, maxNodes float64, limit *float64) CapacityFit {
	sort.Slice(pts, func(i, j int) bool { return pts[i].Nodes < pts[j].Nodes })
	cf := CapacityFit{Mode: mode, API: api, Metric: metric, Points: pts, Limit: limit}
	fitInto(&cf, opt.Targets, maxNodes)
	if limit != nil {
		cf.Break = judgeBreak(&cf, opt.MaxExtrapolation)
	}
	return cf
}

// fitInto fits cf.Points and projects the fit to targets (cf.Err says why
// not).
func fitInto(cf *CapacityFit, targets []int, maxNodes float64) {
	pts := cf.Points
	distinct := map[int]bool{}
	n := make([]float64, len(pts))
	y := make([]float64, len(pts))
	for i, p := range pts {
		n[i], y[i] = float64(p.Nodes), p.Value
		distinct[p.Nodes] = true
	}
	if len(distinct) < 2 {
		cf.Err = fmt.Sprintf("measured at %d node count only", len(distinct))
		return
	}
	f, alt, err := fitBest(n, y)
	if err != nil {
		cf.Err = err.Error()
		return
	}
	cf.Fit, cf.Alt = f, alt
	for _, t := range targets {
		lo, hi := f.Interval(float64(t))
		cf.Projections = append(cf.Projections, Projection{Nodes: t, Value: f.Predict(float64(t)), Lo: lo, Hi: hi, Factor: float64(t) / maxNodes})
	}
}

// verdictOf sums up a mode's SLO fits on one API server: the stated
// breaking point at the fewest nodes; else the SLO closest to a statement
// (within reach but without an interval, then beyond reach), else the
// first SLO's reason.
func verdictOf(mode scenarios.Mode, api APIServer, fits []CapacityFit) ModeVerdict {
	rank := func(b BreakingPoint) int {
		switch {
		case b.Stated():
			return 0
		case b.Kind == BreakNoInterval:
			return 1
		case b.Kind == BreakBeyond:
			return 2
		}
		return 3
	}
	v := ModeVerdict{Mode: mode, API: api}
	found := false
	for _, f := range fits {
		if f.Limit == nil {
			continue
		}
		b := f.Break
		better := !found || rank(b) < rank(v.Break) || b.Stated() && v.Break.Stated() && b.Nodes < v.Break.Nodes
		if better {
			v.SLO, v.Break, found = strings.TrimPrefix(f.Metric.Name, "slo: "), b, true
		}
	}
	if !found {
		v.Break = BreakingPoint{Kind: BreakNoFit, Nodes: math.NaN(), Lo: math.NaN(), Hi: math.NaN(), Reason: "the results hold no SLO verdicts"}
	}
	return v
}
