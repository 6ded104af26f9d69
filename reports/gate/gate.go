package gate

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/stampede-sim/stampede/reports/internal/document"
	"github.com/stampede-sim/stampede/reports/internal/format"
	"github.com/stampede-sim/stampede/reports/internal/stats"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// Verdicts of the gate's rows.
const (
	VerdictPass       = "pass"
	VerdictFail       = "FAIL"
	VerdictNoisy      = "spread too wide"
	VerdictNoBaseline = "no baseline"
	VerdictSkipped    = "skipped"
	VerdictMissing    = "not measured"
)

// GateRow is one judged metric of one mode.
type GateRow struct {
	Mode     scenarios.Mode
	Metric   string
	Baseline string
	Current  string
	Change   string
	Rule     string
	Verdict  string
	Why      string
}

// GateReport is the gate's outcome.
type GateReport struct {
	Rows []GateRow
	// Notes are remarks that are not verdicts (backend differences, the
	// probe falling behind).
	Notes []string
}

// Failed reports whether any row failed.
func (g *GateReport) Failed() bool {
	return len(g.Failures()) > 0
}

// Failures lists the failed rows as "mode metric: why".
func (g *GateReport) Failures() []string {
	var out []string
	for _, r := range g.Rows {
		if r.Verdict == VerdictFail {
			out = append(out, fmt.Sprintf("%s %s: %s", r.Mode, r.Metric, r.Why))
		}
	}
	return out
}

// RegressionError is the gate's verdict that the current runs regressed
// or broke a hard limit. It is not a harness failure.
type RegressionError struct {
	Failures []string
}

func (e *RegressionError) Error() string {
	return fmt.Sprintf("%d regressions: %s", len(e.Failures), strings.Join(e.Failures, "; "))
}

// Err is a *RegressionError when the gate failed, else nil.
func (g *GateReport) Err() error {
	if f := g.Failures(); len(f) > 0 {
		return &RegressionError{Failures: f}
	}
	return nil
}

// Gate compares current runs with baseline runs, mode by mode and metric by
// metric, with the medians of each side. It returns an *UnusableInputError
// when the runs cannot be compared.
func Gate(baseline, current []*results.Results, rules *GateRules) (*GateReport, error) {
	if rules != nil {
		if p := rules.validate(); len(p) > 0 {
			return nil, &RulesError{Source: "rules", Problems: p}
		}
	}
	var problems []string
	if len(baseline) == 0 {
		problems = append(problems, "no baseline results")
	}
	if len(current) == 0 {
		problems = append(problems, "no current results")
	}
	if len(problems) > 0 {
		return nil, &results.UnusableInputError{Problems: problems}
	}
	report := &GateReport{}
	all := append(append([]*results.Results{}, baseline...), current...)
	ref := all[0].Run
	refAPI := results.APIServerOf(all[0])
	backends := map[string]bool{}
	// Modes compare by name, and a name must mean one set of axes: a
	// "mesh" of other axes is another architecture.
	type axesSeen struct {
		axes  scenarios.Axes
		where string
	}
	firstAxes := map[scenarios.Mode]axesSeen{}
	for i, r := range all {
		side, idx := "current", i-len(baseline)
		if i < len(baseline) {
			side, idx = "baseline", i
		}
		// A sweep names a resized scenario "<name>@<nodes>"; nodes are
		// compared below.
		if results.BaseScenario(r.Run.Scenario) != results.BaseScenario(ref.Scenario) {
			problems = append(problems, fmt.Sprintf("%s[%d] ran scenario %q, %s ran %q", side, idx, r.Run.Scenario, "baseline[0]", ref.Scenario))
		}
		if r.Run.Nodes != ref.Nodes || r.Run.Pods != ref.Pods {
			problems = append(problems, fmt.Sprintf("%s[%d] has %d nodes/%d pods, baseline[0] %d/%d", side, idx, r.Run.Nodes, r.Run.Pods, ref.Nodes, ref.Pods))
		}
		// A latency of the fake without a capacity model is the simulator's;
		// with one, it is that of a server of the modelled size; neither
		// compares with another size or with a real kube-apiserver.
		if api := results.APIServerOf(r); !api.Comparable(refAPI) {
			problems = append(problems, fmt.Sprintf("%s[%d] ran against API server %s, baseline[0] against %s: figures of different API servers are not comparable", side, idx, api.Short(), refAPI.Short()))
		}
		backends[fmt.Sprintf("%s API server, %s datapath, %d cores", r.Run.Backend.Name, r.Run.Datapath.Effective, r.Run.Machine.Cores)] = true
		for _, m := range r.Modes {
			where := fmt.Sprintf("%s[%d]", side, idx)
			if seen, ok := firstAxes[m.Mode]; !ok {
				firstAxes[m.Mode] = axesSeen{m.Axes, where}
			} else if seen.axes != m.Axes {
				problems = append(problems, fmt.Sprintf("mode %q: axes differ (%s %s, %s %s)", m.Mode, seen.where, seen.axes, where, m.Axes))
			}
			switch m.Status {
			case results.StatusIncomplete, results.StatusPending, results.StatusRunning:
				problems = append(problems, fmt.Sprintf("%s[%d] mode %s is %s (partial results cannot be judged)", side, idx, m.Mode, m.Status))
			}
		}
	}
	if len(problems) > 0 {
		return nil, &results.UnusableInputError{Problems: problems}
	}
	if len(backends) > 1 {
		keys := make([]string, 0, len(backends))
		for k := range backends {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		report.Notes = append(report.Notes, "runs used different environments ("+strings.Join(keys, "; ")+"); differences may come from that")
	}

	effRules, spreadLimit := rules.effective()
	for _, mode := range results.ModeOrder(all) {
		base := results.ModesOf(baseline, mode)
		cur := results.ModesOf(current, mode)
		if len(cur) == 0 {
			if len(base) > 0 {
				report.Notes = append(report.Notes, fmt.Sprintf("%s: in the baseline but not in the current runs", mode))
			}
			continue
		}
		if failedModes := withStatus(cur, results.StatusFailed); len(failedModes) > 0 {
			report.Rows = append(report.Rows, GateRow{Mode: mode, Metric: "status", Baseline: statusList(base), Current: statusList(cur),
				Verdict: VerdictFail, Why: "mode failed: " + failedModes[0].Reason})
			continue
		}
		if len(withStatus(cur, results.StatusSkipped)) == len(cur) {
			report.Rows = append(report.Rows, GateRow{Mode: mode, Metric: "status", Baseline: statusList(base), Current: statusList(cur),
				Verdict: VerdictSkipped, Why: cur[0].Reason})
			continue
		}
		cur = withStatus(cur, results.StatusOK)
		base = withStatus(base, results.StatusOK)
		for _, c := range cur {
			if p := results.SummaryOf(c).Probe; p != nil && !p.HeldRate {
				report.Notes = append(report.Notes, fmt.Sprintf("%s: the probe did not hold its rate in a current run; latencies understate", mode))
				break
			}
		}
		for _, metric := range results.Metrics() {
			rule, ok := ruleFor(effRules, metric.Name, mode)
			if !ok {
				continue
			}
			row, ok := judge(mode, metric, rule, values(base, metric), values(cur, metric), spreadLimit)
			if ok {
				report.Rows = append(report.Rows, row)
			}
		}
		if rules.judgesSLO(mode) {
			report.Rows = append(report.Rows, sloRows(mode, cur)...)
		}
	}
	if len(report.Rows) == 0 {
		return nil, &results.UnusableInputError{Problems: []string{"no mode has measurements on both sides"}}
	}
	return report, nil
}

func withStatus(ms []*results.ModeResult, s results.Status) []*results.ModeResult {
	var out []*results.ModeResult
	for _, m := range ms {
		if m.Status == s {
			out = append(out, m)
		}
	}
	return out
}

func statusList(ms []*results.ModeResult) string {
	if len(ms) == 0 {
		return format.Missing
	}
	var s []string
	for _, m := range ms {
		s = append(s, string(m.Status))
	}
	return strings.Join(s, ",")
}

func values(ms []*results.ModeResult, metric results.Metric) []float64 {
	var out []float64
	for _, m := range ms {
		if v := metric.Value(m); !math.IsNaN(v) && !math.IsInf(v, 0) {
			out = append(out, v)
		}
	}
	return out
}

func sideCell(metric results.Metric, v []float64) string {
	if len(v) == 0 {
		return format.Missing
	}
	s := metric.Format(stats.Median(v))
	if len(v) > 1 {
		s += fmt.Sprintf(" (n=%d, ±%s%%)", len(v), format.TrimFloat(stats.Spread(v)*50))
	}
	return s
}

func ruleCell(metric results.Metric, r GateRule) string {
	var parts []string
	if r.MaxIncrease != nil {
		parts = append(parts, "+"+format.TrimFloat(*r.MaxIncrease*100)+"%")
	}
	if r.MaxIncreaseAbs != nil {
		parts = append(parts, "+"+metric.Format(*r.MaxIncreaseAbs))
	}
	s := strings.Join(parts, " and ")
	if r.Limit != nil {
		if s != "" {
			s += "; "
		}
		s += "limit " + metric.Format(*r.Limit)
	}
	return s
}

func judge(mode scenarios.Mode, metric results.Metric, rule GateRule, base, cur []float64, spreadLimit float64) (GateRow, bool) {
	if len(base) == 0 && len(cur) == 0 {
		return GateRow{}, false
	}
	row := GateRow{Mode: mode, Metric: metric.Name, Baseline: sideCell(metric, base), Current: sideCell(metric, cur), Rule: ruleCell(metric, rule), Change: format.Missing}
	if len(cur) == 0 {
		row.Verdict = VerdictMissing
		row.Why = "measured in the baseline, not in the current runs"
		return row, true
	}
	cm := stats.Median(cur)
	if rule.Limit != nil && cm > *rule.Limit {
		row.Verdict = VerdictFail
		row.Why = fmt.Sprintf("%s is above the hard limit %s", metric.Format(cm), metric.Format(*rule.Limit))
	}
	if len(base) == 0 {
		if row.Verdict == "" {
			row.Verdict = VerdictNoBaseline
			row.Why = "no baseline value; only hard limits apply"
		}
		return row, true
	}
	bm := stats.Median(base)
	delta := cm - bm
	rel := math.Inf(1)
	switch {
	case bm != 0:
		rel = delta / math.Abs(bm)
	case delta <= 0:
		rel = 0
	}
	row.Change = formatChange(metric, delta, rel)
	if row.Verdict == VerdictFail {
		return row, true
	}
	if sb, sc := stats.Spread(base), stats.Spread(cur); sb > spreadLimit || sc > spreadLimit {
		row.Verdict = VerdictNoisy
		row.Why = fmt.Sprintf("spread of the runs (baseline %s%%, current %s%%) exceeds %s%%", format.TrimFloat(sb*100), format.TrimFloat(sc*100), format.TrimFloat(spreadLimit*100))
		return row, true
	}
	overRel := rule.MaxIncrease == nil || rel > *rule.MaxIncrease
	overAbs := rule.MaxIncreaseAbs == nil || delta > *rule.MaxIncreaseAbs
	if (rule.MaxIncrease != nil || rule.MaxIncreaseAbs != nil) && overRel && overAbs {
		row.Verdict = VerdictFail
		row.Why = fmt.Sprintf("%s → %s (%s) exceeds %s", metric.Format(bm), metric.Format(cm), row.Change, row.Rule)
		return row, true
	}
	row.Verdict = VerdictPass
	return row, true
}

func formatChange(metric results.Metric, delta, rel float64) string {
	if delta == 0 {
		return "0"
	}
	sign := "+"
	if delta < 0 {
		sign = "-"
	}
	abs := metric.Format(math.Abs(delta))
	if math.IsInf(rel, 0) {
		return sign + abs
	}
	return fmt.Sprintf("%s%s%% (%s%s)", sign, format.TrimFloat(math.Abs(rel)*100), sign, abs)
}

// sloRows are the hard SLO limits of the current runs (median of the
// judged values against the limit).
func sloRows(mode scenarios.Mode, cur []*results.ModeResult) []GateRow {
	type acc struct {
		limit float64
		unit  string
		vals  []float64
	}
	byName := map[string]*acc{}
	var names []string
	for _, m := range cur {
		for _, v := range results.SummaryOf(m).SLO {
			a, ok := byName[v.Name]
			if !ok {
				a = &acc{limit: v.Limit, unit: v.Unit}
				byName[v.Name] = a
				names = append(names, v.Name)
			}
			a.vals = append(a.vals, v.Value)
		}
	}
	var rows []GateRow
	for _, n := range names {
		a := byName[n]
		metric := results.Metric{Name: "slo: " + n, Unit: a.unit}
		cm := stats.Median(a.vals)
		row := GateRow{Mode: mode, Metric: metric.Name, Baseline: format.Missing, Current: sideCell(metric, a.vals), Change: format.Missing,
			Rule: "limit " + metric.Format(a.limit), Verdict: VerdictPass}
		if cm > a.limit {
			row.Verdict = VerdictFail
			row.Why = fmt.Sprintf("SLO %s: %s is above %s", n, metric.Format(cm), metric.Format(a.limit))
		}
		rows = append(rows, row)
	}
	return rows
}

// Table renders the report as an aligned text table followed by the notes
// and a one-line verdict.
func (g *GateReport) Table() string {
	head := []string{"MODE", "METRIC", "BASELINE", "CURRENT", "CHANGE", "THRESHOLD", "VERDICT"}
	rows := [][]string{head}
	for _, r := range g.Rows {
		rows = append(rows, []string{string(r.Mode), r.Metric, r.Baseline, r.Current, r.Change, r.Rule, r.Verdict})
	}
	widths := make([]int, len(head))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		var line strings.Builder
		for i, c := range r {
			line.WriteString(c)
			if i < len(r)-1 {
				line.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))+2))
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteByte('\n')
	}
	counts := map[string]int{}
	for _, r := range g.Rows {
		counts[r.Verdict]++
	}
	if f := g.Failures(); len(f) > 0 {
		b.WriteString("\nFailures:\n")
		for _, s := range f {
			b.WriteString("  " + s + "\n")
		}
	}
	if len(g.Notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range g.Notes {
			b.WriteString("  " + n + "\n")
		}
	}
	verdict := "PASS"
	if g.Failed() {
		verdict = "FAIL"
	}
	fmt.Fprintf(&b, "\ngate: %s (%d checks: %d pass, %d fail, %d spread too wide, %d no baseline, %d not measured, %d skipped)\n",
		verdict, len(g.Rows), counts[VerdictPass], counts[VerdictFail], counts[VerdictNoisy], counts[VerdictNoBaseline], counts[VerdictMissing], counts[VerdictSkipped])
	return b.String()
}

// Markdown renders the report as a Markdown table (for a CI job summary).
func (g *GateReport) Markdown() string {
	d := &document.Document{}
	var rows [][]string
	for _, r := range g.Rows {
		v := r.Verdict
		if v == VerdictFail {
			v = "**FAIL**"
		}
		rows = append(rows, []string{string(r.Mode), r.Metric, r.Baseline, r.Current, r.Change, r.Rule, v})
	}
	d.Table([]string{"mode", "metric", "baseline", "current", "change", "threshold", "verdict"}, rows)
	if f := g.Failures(); len(f) > 0 {
		d.P("**Failures**")
		d.List(f...)
	}
	if len(g.Notes) > 0 {
		d.P("Notes")
		d.List(g.Notes...)
	}
	verdict := "PASS"
	if g.Failed() {
		verdict = "FAIL"
	}
	d.Title = "Stampede gate: " + verdict
	return d.Markdown()
}
