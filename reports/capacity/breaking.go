package capacity

import (
	"fmt"
	"math"

	"github.com/stampede-sim/stampede/reports/internal/format"
)

// DefaultMaxExtrapolation is how far beyond the largest measured node count
// a breaking point is stated by default.
const DefaultMaxExtrapolation = 10

// BreakKind is what can be said about where a mode breaks an SLO.
type BreakKind string

// Breaking point kinds. Only BreakMeasured and BreakProjected state a node
// count; the others say why not and, where more runs would settle it,
// which.
const (
	// BreakMeasured: a run measured the value above the limit.
	BreakMeasured BreakKind = "measured"
	// BreakProjected: the fit reaches the limit within the allowed
	// extrapolation, stated with its 95 % interval.
	BreakProjected BreakKind = "projected"
	// BreakBeyond: the fit reaches the limit, if at all, further beyond
	// the data than the allowed extrapolation.
	BreakBeyond BreakKind = "beyond"
	// BreakNoInterval: the fit reaches the limit within reach, but from
	// two node counts, so it has no error estimate.
	BreakNoInterval BreakKind = "no-interval"
	// BreakNoModel: measured on the fake API server without a capacity
	// model, whose latency is the simulator's.
	BreakNoModel BreakKind = "no-capacity-model"
	// BreakNotApplicable: the mode's agents do not talk to the API server.
	BreakNotApplicable BreakKind = "not-applicable"
	// BreakNoFit: too few points to fit.
	BreakNoFit BreakKind = "no-fit"
)

// BreakingPoint is the node count at which a mode breaks an SLO on one API
// server, or why the data does not say.
type BreakingPoint struct {
	Kind BreakKind
	// Nodes is the breaking point when Stated (NaN otherwise).
	Nodes float64
	// Lo and Hi bound it: for a projection, the 95 % interval of the node
	// count at which the fit's prediction interval reaches the limit (Hi is
	// +Inf when the lower prediction bound does not reach it within the
	// allowed extrapolation); for a measurement, the largest measured node
	// count below the limit (0 if none: it broke at the smallest size) and
	// the smallest above it.
	Lo, Hi float64
	// Reason says how it was found, or why nothing is stated.
	Reason string
	// Settle are node counts whose runs would settle an unstated breaking
	// point; SettleNote says what else would (another backend, a flag).
	Settle     []int
	SettleNote string
}

// Stated reports whether b names a node count.
func (b BreakingPoint) Stated() bool {
	return b.Kind == BreakMeasured || b.Kind == BreakProjected
}

// judgeBreak decides what cf's SLO fit says about a breaking point, by the
// rules the package doc states: API latency only from a server that models
// a kube-apiserver, only for modes whose agents use it, and only within
// reach times the largest measured node count.
func judgeBreak(cf *CapacityFit, reach float64) BreakingPoint {
	nan := math.NaN()
	b := BreakingPoint{Nodes: nan, Lo: nan, Hi: nan}
	maxN := 0
	for _, p := range cf.Points {
		maxN = max(maxN, p.Nodes)
	}
	if maxN == 0 {
		b.Kind = BreakNoFit
		b.Reason = "no run of this mode on this API server finished: nothing measured"
		return b
	}
	largest := fmt.Sprintf("largest measured %s nodes", format.Int(int64(maxN)))
	if !AgentsUseAPIServer(cf.Mode) {
		b.Kind = BreakNotApplicable
		b.Reason = fmt.Sprintf("%s agents never talk to the API server, so its latency in this mode does not grow with them: no API breaking point", cf.Mode)
		return b
	}
	if !cf.API.ModelsKubeAPIServer() {
		b.Kind = BreakNoModel
		b.Reason = fmt.Sprintf("measured on the %s: its latency is the simulator's on this machine, not a kube-apiserver's", cf.API)
		b.SettleNote = "run the sweep with --api-cores (the fake with a capacity model) or --api local (kube-apiserver and etcd)"
		return b
	}
	lastBelow := 0
	for _, p := range cf.Points {
		if p.Value > *cf.Limit {
			b.Kind, b.Nodes, b.Lo, b.Hi = BreakMeasured, float64(p.Nodes), float64(lastBelow), float64(p.Nodes)
			b.Reason = fmt.Sprintf("measured %s at %s nodes", cf.Metric.Format(p.Value), format.Int(int64(p.Nodes)))
			if lastBelow > 0 {
				b.Reason += fmt.Sprintf(", within the limit at %s", format.Int(int64(lastBelow)))
			} else {
				b.Reason += ", the smallest size measured: it breaks there or below"
				if p.Nodes >= 4 {
					b.Settle = []int{p.Nodes / 4, p.Nodes / 2}
				}
			}
			return b
		}
		lastBelow = max(lastBelow, p.Nodes)
	}
	if cf.Err != "" {
		b.Kind = BreakNoFit
		b.Reason = "no fit: " + cf.Err
		b.Settle = nextSizes(maxN, 2*float64(maxN))
		return b
	}
	reachN := reach * float64(maxN)
	est := cf.Fit.Solve(*cf.Limit)
	if math.IsNaN(est) || est <= 0 || est > reachN {
		b.Kind = BreakBeyond
		b.Reason = fmt.Sprintf("beyond what the data supports (%s): the fit does not reach the limit within %s× that", largest, format.TrimFloat(reach))
		if math.IsNaN(est) || est <= 0 {
			b.Reason = fmt.Sprintf("beyond what the data supports (%s): the fit does not grow towards the limit", largest)
			est = math.Inf(1)
		}
		b.Settle = nextSizes(maxN, est/reach)
		return b
	}
	lo, hi := nodeInterval(cf.Fit, *cf.Limit, float64(cf.Points[0].Nodes), reachN)
	if math.IsNaN(lo) {
		b.Kind = BreakNoInterval
		b.Reason = fmt.Sprintf("the fit reaches the limit within %s× the %s, but %d node counts give no error estimate", format.TrimFloat(reach), largest, cf.Fit.Points)
		b.Settle = nextSizes(maxN, 4*float64(maxN))
		return b
	}
	b.Kind, b.Nodes, b.Lo, b.Hi = BreakProjected, est, lo, hi
	b.Reason = fmt.Sprintf("the fit reaches %s at %s× the %s", cf.Metric.Format(*cf.Limit), format.TrimFloat(est/float64(maxN)), largest)
	if math.IsInf(hi, 1) {
		b.Reason += fmt.Sprintf("; the interval's upper end lies beyond %s× it", format.TrimFloat(reach))
		b.Settle = nextSizes(maxN, est)
	}
	return b
}

// nodeInterval is the 95 % interval of the node count at which f reaches
// limit: from where the upper prediction bound reaches it to where the
// lower one does, searched from the smallest measured node count minN (the
// band also widens below the data, where the runs measured) up to reachN
// (+Inf beyond). NaN when f has no error estimate.
func nodeInterval(f Fit, limit, minN, reachN float64) (lo, hi float64) {
	if l, _ := f.Interval(reachN); math.IsNaN(l) {
		return math.NaN(), math.NaN()
	}
	upper := func(n float64) float64 { _, h := f.Interval(n); return h }
	lower := func(n float64) float64 { l, _ := f.Interval(n); return l }
	return firstReach(upper, limit, minN, reachN), firstReach(lower, limit, minN, reachN)
}

// firstReach is the smallest n in [from, reachN] with g(n) >= limit, found
// on a logarithmic grid and refined by bisection; +Inf if there is none.
func firstReach(g func(float64) float64, limit, from, reachN float64) float64 {
	const steps = 2000
	bottom, top := math.Log(from), math.Log(reachN)
	prev := from
	if g(prev) >= limit {
		return prev
	}
	for i := 1; i <= steps; i++ {
		n := math.Exp(bottom + (top-bottom)*float64(i)/steps)
		if g(n) >= limit {
			a, z := prev, n
			for range 60 {
				m := math.Sqrt(a * z)
				if g(m) >= limit {
					z = m
				} else {
					a = m
				}
			}
			return z
		}
		prev = n
	}
	return math.Inf(1)
}

// nextSizes are the node counts to run next: doublings of the largest
// measured count until need is covered, at most four.
func nextSizes(maxN int, need float64) []int {
	var out []int
	for n := 2 * maxN; len(out) < 4; n *= 2 {
		out = append(out, n)
		if float64(n) >= need {
			break
		}
	}
	return out
}
