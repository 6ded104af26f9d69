package reports

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/stampede-sim/stampede/scenarios"
)

// GateRules configure the regression gate. Thresholds are in the metric's
// unit (Metrics lists them: seconds, bytes, cores, CPU-seconds, counts).
type GateRules struct {
	// SpreadLimit is the widest relative spread, (max-min)/median, of one
	// side's runs that still allows a judgement (default 0.5). Wider, and
	// the metric is reported as "spread too wide" instead of judged.
	SpreadLimit *float64 `json:"spreadLimit,omitempty"`
	// ReplaceDefaults drops the built-in rules; otherwise Rules are added
	// after them and, for a mode and metric, the last matching rule wins.
	ReplaceDefaults bool `json:"replaceDefaults,omitempty"`
	// Rules are the per-metric thresholds.
	Rules []GateRule `json:"rules,omitempty"`
	// SLOModes are the modes whose SLO verdicts (the scenario's limits,
	// judged by the harness) are hard limits; empty means every mode.
	// IgnoreSLO turns SLO verdicts off entirely (crd mode is expected to
	// break them in the relabel storm, for example).
	SLOModes  []scenarios.Mode `json:"sloModes,omitempty"`
	IgnoreSLO bool             `json:"ignoreSLO,omitempty"`
}

// GateRule is the threshold of one metric, in some or all modes. The
// current median regresses when it exceeds the baseline median by more
// than MaxIncrease (relative) and by more than MaxIncreaseAbs (absolute;
// this keeps noise on tiny values from failing the gate). Limit is a hard
// limit on the current median, judged with or without a baseline.
type GateRule struct {
	// Metric is a name from Metrics().
	Metric string `json:"metric"`
	// Modes the rule applies to; empty means all.
	Modes []scenarios.Mode `json:"modes,omitempty"`
	// MaxIncrease is relative: 0.25 allows +25 %.
	MaxIncrease *float64 `json:"maxIncrease,omitempty"`
	// MaxIncreaseAbs is absolute, in the metric's unit.
	MaxIncreaseAbs *float64 `json:"maxIncreaseAbs,omitempty"`
	// Limit is a hard upper limit, in the metric's unit.
	Limit *float64 `json:"limit,omitempty"`
	// Disabled turns the metric off (in the given modes).
	Disabled bool `json:"disabled,omitempty"`
}

func f64(v float64) *float64 { return &v }

// DefaultGateRules are the built-in thresholds.
func DefaultGateRules() []GateRule {
	r := func(metric string, rel, abs float64) GateRule {
		return GateRule{Metric: metric, MaxIncrease: f64(rel), MaxIncreaseAbs: f64(abs)}
	}
	return []GateRule{
		r("api.p99", 0.25, 0.05),
		r("api.max", 0.5, 0.25),
		r("api.errors", 0.5, 10),
		r("server.p99", 0.25, 0.05),
		r("kvstore.p99", 0.25, 0.02),
		r("xds.p99", 0.25, 0.02),
		r("apiserver.cpu", 0.2, 2),
		r("apiserver.rss", 0.2, 50<<20),
		r("kvstore.cpu", 0.2, 2),
		r("controlplane.cpu", 0.25, 2),
		r("agent.cpu.peak", 0.25, 0.01),
		r("agent.cpu.seconds", 0.25, 0.05),
		r("agent.rss.peak", 0.2, 2<<20),
		r("watch.events", 0.1, 1000),
		r("watch.bytes", 0.1, 1<<20),
		r("writes.total", 0.1, 100),
		r("http429", 0.5, 50),
		r("identities.duplicates", 0.25, 10),
		r("converge.p99", 0.25, 2),
		r("converge.max", 0.25, 2),
		{Metric: "agents.unconverged", Limit: f64(0)},
	}
}

const defaultSpreadLimit = 0.5

// ParseGateRules decodes a rules file (YAML or JSON) strictly: an unknown
// field, a wrong type or an unknown metric is an error naming its path
// (rules[2].maxIncrease).
func ParseGateRules(source string, data []byte) (*GateRules, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	var raw any
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if raw == nil {
		return &GateRules{}, nil
	}
	var problems []string
	checkRulesShape(raw, &problems)
	if len(problems) > 0 {
		return nil, &RulesError{Source: source, Problems: problems}
	}
	var rules GateRules
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rules); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	problems = rules.validate()
	if len(problems) > 0 {
		return nil, &RulesError{Source: source, Problems: problems}
	}
	return &rules, nil
}

// LoadGateRules reads a rules file.
func LoadGateRules(path string) (*GateRules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseGateRules(path, data)
}

// RulesError lists what is wrong with a rules file.
type RulesError struct {
	Source   string
	Problems []string
}

func (e *RulesError) Error() string {
	return e.Source + ": " + strings.Join(e.Problems, "; ")
}

// checkRulesShape checks keys and types of the decoded document, so that
// every problem names its path.
func checkRulesShape(raw any, problems *[]string) {
	add := func(format string, args ...any) { *problems = append(*problems, fmt.Sprintf(format, args...)) }
	top, ok := raw.(map[string]any)
	if !ok {
		add("top level: want a mapping with spreadLimit, replaceDefaults, rules")
		return
	}
	for k, v := range top {
		switch k {
		case "spreadLimit":
			if _, ok := v.(float64); !ok {
				add("spreadLimit: want a number, got %s", jsonType(v))
			}
		case "replaceDefaults":
			if _, ok := v.(bool); !ok {
				add("replaceDefaults: want true or false, got %s", jsonType(v))
			}
		case "ignoreSLO":
			if _, ok := v.(bool); !ok {
				add("ignoreSLO: want true or false, got %s", jsonType(v))
			}
		case "sloModes":
			list, ok := v.([]any)
			if !ok {
				add("sloModes: want a list of modes, got %s", jsonType(v))
				continue
			}
			for i, x := range list {
				if _, ok := x.(string); !ok {
					add("sloModes[%d]: want a mode name, got %s", i, jsonType(x))
				}
			}
		case "rules":
			list, ok := v.([]any)
			if !ok {
				add("rules: want a list, got %s", jsonType(v))
				continue
			}
			for i, item := range list {
				checkRuleShape(fmt.Sprintf("rules[%d]", i), item, add)
			}
		default:
			add("%s: unknown field (known: spreadLimit, replaceDefaults, rules, sloModes, ignoreSLO)", k)
		}
	}
	sort.Strings(*problems)
}

func checkRuleShape(path string, item any, add func(string, ...any)) {
	m, ok := item.(map[string]any)
	if !ok {
		add("%s: want a mapping, got %s", path, jsonType(item))
		return
	}
	for k, v := range m {
		p := path + "." + k
		switch k {
		case "metric":
			if _, ok := v.(string); !ok {
				add("%s: want a string, got %s", p, jsonType(v))
			}
		case "modes":
			list, ok := v.([]any)
			if !ok {
				add("%s: want a list of modes, got %s", p, jsonType(v))
				continue
			}
			for i, x := range list {
				if _, ok := x.(string); !ok {
					add("%s[%d]: want a mode name, got %s", p, i, jsonType(x))
				}
			}
		case "maxIncrease", "maxIncreaseAbs", "limit":
			if _, ok := v.(float64); !ok {
				add("%s: want a number, got %s", p, jsonType(v))
			}
		case "disabled":
			if _, ok := v.(bool); !ok {
				add("%s: want true or false, got %s", p, jsonType(v))
			}
		default:
			add("%s: unknown field (known: metric, modes, maxIncrease, maxIncreaseAbs, limit, disabled)", p)
		}
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return fmt.Sprintf("the string %q", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

func (g *GateRules) validate() []string {
	var p []string
	if g.SpreadLimit != nil && !(*g.SpreadLimit > 0) {
		p = append(p, fmt.Sprintf("spreadLimit: must be > 0, got %g", *g.SpreadLimit))
	}
	for i, m := range g.SLOModes {
		if !m.Valid() {
			p = append(p, fmt.Sprintf("sloModes[%d]: unknown mode %q (known: %v)", i, m, scenarios.AllModes))
		}
	}
	for i, r := range g.Rules {
		at := fmt.Sprintf("rules[%d]", i)
		if r.Metric == "" {
			p = append(p, at+".metric: required")
		} else if _, ok := MetricByName(r.Metric); !ok {
			p = append(p, fmt.Sprintf("%s.metric: unknown metric %q (known: %s)", at, r.Metric, strings.Join(MetricNames(), ", ")))
		}
		for j, m := range r.Modes {
			if !m.Valid() {
				p = append(p, fmt.Sprintf("%s.modes[%d]: unknown mode %q (known: %v)", at, j, m, scenarios.AllModes))
			}
		}
		if r.MaxIncrease != nil && *r.MaxIncrease < 0 {
			p = append(p, fmt.Sprintf("%s.maxIncrease: must be >= 0, got %g", at, *r.MaxIncrease))
		}
		if r.MaxIncreaseAbs != nil && *r.MaxIncreaseAbs < 0 {
			p = append(p, fmt.Sprintf("%s.maxIncreaseAbs: must be >= 0, got %g", at, *r.MaxIncreaseAbs))
		}
		if !r.Disabled && r.MaxIncrease == nil && r.MaxIncreaseAbs == nil && r.Limit == nil {
			p = append(p, at+": sets no threshold (give maxIncrease, maxIncreaseAbs or limit, or disabled: true)")
		}
	}
	return p
}

// effective is the rule list the gate applies.
func (g *GateRules) effective() ([]GateRule, float64) {
	var rules []GateRule
	spread := defaultSpreadLimit
	if g == nil {
		return DefaultGateRules(), spread
	}
	if !g.ReplaceDefaults {
		rules = DefaultGateRules()
	}
	rules = append(rules, g.Rules...)
	if g.SpreadLimit != nil {
		spread = *g.SpreadLimit
	}
	return rules, spread
}

// judgesSLO reports whether mode's SLO verdicts are hard limits.
func (g *GateRules) judgesSLO(mode scenarios.Mode) bool {
	if g == nil {
		return true
	}
	if g.IgnoreSLO {
		return false
	}
	if len(g.SLOModes) == 0 {
		return true
	}
	for _, m := range g.SLOModes {
		if m == mode {
			return true
		}
	}
	return false
}

// ruleFor is the last rule for metric in mode.
func ruleFor(rules []GateRule, metric string, mode scenarios.Mode) (GateRule, bool) {
	var found GateRule
	ok := false
	for _, r := range rules {
		if r.Metric != metric {
			continue
		}
		if len(r.Modes) > 0 {
			in := false
			for _, m := range r.Modes {
				in = in || m == mode
			}
			if !in {
				continue
			}
		}
		found, ok = r, true
	}
	return found, ok && !found.Disabled
}

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

// UnusableInputError says the runs cannot be compared (different
// scenarios, partial runs, nothing to compare).
type UnusableInputError struct {
	Problems []string
}

func (e *UnusableInputError) Error() string {
	return "cannot compare: " + strings.Join(e.Problems, "; ")
}

// Gate compares current runs with baseline runs, mode by mode and metric by
// metric, with the medians of each side. It returns an *UnusableInputError
// when the runs cannot be compared.
func Gate(baseline, current []*Results, rules *GateRules) (*GateReport, error) {
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
		return nil, &UnusableInputError{Problems: problems}
	}
	report := &GateReport{}
	all := append(append([]*Results{}, baseline...), current...)
	ref := all[0].Run
	backends := map[string]bool{}
	for i, r := range all {
		side, idx := "current", i-len(baseline)
		if i < len(baseline) {
			side, idx = "baseline", i
		}
		// A sweep names a resized scenario "<name>@<nodes>"; nodes are
		// compared below.
		if baseScenario(r.Run.Scenario) != baseScenario(ref.Scenario) {
			problems = append(problems, fmt.Sprintf("%s[%d] ran scenario %q, %s ran %q", side, idx, r.Run.Scenario, "baseline[0]", ref.Scenario))
		}
		if r.Run.Nodes != ref.Nodes || r.Run.Pods != ref.Pods {
			problems = append(problems, fmt.Sprintf("%s[%d] has %d nodes/%d pods, baseline[0] %d/%d", side, idx, r.Run.Nodes, r.Run.Pods, ref.Nodes, ref.Pods))
		}
		backends[fmt.Sprintf("%s API server, %s datapath, %d cores", r.Run.Backend.Name, r.Run.Datapath.Effective, r.Run.Machine.Cores)] = true
		for _, m := range r.Modes {
			switch m.Status {
			case StatusIncomplete, StatusPending, StatusRunning:
				problems = append(problems, fmt.Sprintf("%s[%d] mode %s is %s (partial results cannot be judged)", side, idx, m.Mode, m.Status))
			}
		}
	}
	if len(problems) > 0 {
		return nil, &UnusableInputError{Problems: problems}
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
	for _, mode := range modeOrder(all) {
		base := modesOf(baseline, mode)
		cur := modesOf(current, mode)
		if len(cur) == 0 {
			if len(base) > 0 {
				report.Notes = append(report.Notes, fmt.Sprintf("%s: in the baseline but not in the current runs", mode))
			}
			continue
		}
		if failedModes := withStatus(cur, StatusFailed); len(failedModes) > 0 {
			report.Rows = append(report.Rows, GateRow{Mode: mode, Metric: "status", Baseline: statusList(base), Current: statusList(cur),
				Verdict: VerdictFail, Why: "mode failed: " + failedModes[0].Reason})
			continue
		}
		if len(withStatus(cur, StatusSkipped)) == len(cur) {
			report.Rows = append(report.Rows, GateRow{Mode: mode, Metric: "status", Baseline: statusList(base), Current: statusList(cur),
				Verdict: VerdictSkipped, Why: cur[0].Reason})
			continue
		}
		cur = withStatus(cur, StatusOK)
		base = withStatus(base, StatusOK)
		for _, c := range cur {
			if p := summaryOf(c).Probe; p != nil && !p.HeldRate {
				report.Notes = append(report.Notes, fmt.Sprintf("%s: the probe did not hold its rate in a current run; latencies understate", mode))
				break
			}
		}
		for _, metric := range Metrics() {
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
		return nil, &UnusableInputError{Problems: []string{"no mode has measurements on both sides"}}
	}
	return report, nil
}

func baseScenario(name string) string {
	if i := strings.IndexByte(name, '@'); i >= 0 {
		return name[:i]
	}
	return name
}

func modeOrder(rs []*Results) []scenarios.Mode {
	seen := map[scenarios.Mode]bool{}
	var out []scenarios.Mode
	for _, m := range scenarios.AllModes {
		for _, r := range rs {
			for _, mr := range r.Modes {
				if mr.Mode == m && !seen[m] {
					seen[m] = true
					out = append(out, m)
				}
			}
		}
	}
	return out
}

func modesOf(rs []*Results, m scenarios.Mode) []*ModeResult {
	var out []*ModeResult
	for _, r := range rs {
		for i := range r.Modes {
			if r.Modes[i].Mode == m {
				out = append(out, &r.Modes[i])
			}
		}
	}
	return out
}

func withStatus(ms []*ModeResult, s Status) []*ModeResult {
	var out []*ModeResult
	for _, m := range ms {
		if m.Status == s {
			out = append(out, m)
		}
	}
	return out
}

func statusList(ms []*ModeResult) string {
	if len(ms) == 0 {
		return missing
	}
	var s []string
	for _, m := range ms {
		s = append(s, string(m.Status))
	}
	return strings.Join(s, ",")
}

func values(ms []*ModeResult, metric Metric) []float64 {
	var out []float64
	for _, m := range ms {
		if v := metric.Value(m); !math.IsNaN(v) && !math.IsInf(v, 0) {
			out = append(out, v)
		}
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// spread is (max-min)/|median| (0 for one value).
func spread(v []float64) float64 {
	if len(v) < 2 {
		return 0
	}
	lo, hi := v[0], v[0]
	for _, x := range v {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	if hi == lo {
		return 0
	}
	m := math.Abs(median(v))
	if m == 0 {
		return math.Inf(1)
	}
	return (hi - lo) / m
}

func sideCell(metric Metric, v []float64) string {
	if len(v) == 0 {
		return missing
	}
	s := metric.Format(median(v))
	if len(v) > 1 {
		s += fmt.Sprintf(" (n=%d, ±%s%%)", len(v), trimFloat(spread(v)*50))
	}
	return s
}

func ruleCell(metric Metric, r GateRule) string {
	var parts []string
	if r.MaxIncrease != nil {
		parts = append(parts, "+"+trimFloat(*r.MaxIncrease*100)+"%")
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

func judge(mode scenarios.Mode, metric Metric, rule GateRule, base, cur []float64, spreadLimit float64) (GateRow, bool) {
	if len(base) == 0 && len(cur) == 0 {
		return GateRow{}, false
	}
	row := GateRow{Mode: mode, Metric: metric.Name, Baseline: sideCell(metric, base), Current: sideCell(metric, cur), Rule: ruleCell(metric, rule), Change: missing}
	if len(cur) == 0 {
		row.Verdict = VerdictMissing
		row.Why = "measured in the baseline, not in the current runs"
		return row, true
	}
	cm := median(cur)
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
	bm := median(base)
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
	if sb, sc := spread(base), spread(cur); sb > spreadLimit || sc > spreadLimit {
		row.Verdict = VerdictNoisy
		row.Why = fmt.Sprintf("spread of the runs (baseline %s%%, current %s%%) exceeds %s%%", trimFloat(sb*100), trimFloat(sc*100), trimFloat(spreadLimit*100))
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

func formatChange(metric Metric, delta, rel float64) string {
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
	return fmt.Sprintf("%s%s%% (%s%s)", sign, trimFloat(math.Abs(rel)*100), sign, abs)
}

// sloRows are the hard SLO limits of the current runs (median of the
// judged values against the limit).
func sloRows(mode scenarios.Mode, cur []*ModeResult) []GateRow {
	type acc struct {
		limit float64
		unit  string
		vals  []float64
	}
	byName := map[string]*acc{}
	var names []string
	for _, m := range cur {
		for _, v := range summaryOf(m).SLO {
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
		metric := Metric{Name: "slo: " + n, Unit: a.unit}
		cm := median(a.vals)
		row := GateRow{Mode: mode, Metric: metric.Name, Baseline: missing, Current: sideCell(metric, a.vals), Change: missing,
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
	d := &document{}
	var rows [][]string
	for _, r := range g.Rows {
		v := r.Verdict
		if v == VerdictFail {
			v = "**FAIL**"
		}
		rows = append(rows, []string{string(r.Mode), r.Metric, r.Baseline, r.Current, r.Change, r.Rule, v})
	}
	d.table([]string{"mode", "metric", "baseline", "current", "change", "threshold", "verdict"}, rows)
	if f := g.Failures(); len(f) > 0 {
		d.p("**Failures**")
		d.list(f...)
	}
	if len(g.Notes) > 0 {
		d.p("Notes")
		d.list(g.Notes...)
	}
	verdict := "PASS"
	if g.Failed() {
		verdict = "FAIL"
	}
	d.title = "Stampede gate: " + verdict
	return d.markdown()
}

// ErrNoResults is returned by ReadResultsFiles for an empty list.
var ErrNoResults = errors.New("no results files given")

// ReadResultsFiles reads and validates several results files.
func ReadResultsFiles(paths []string) ([]*Results, error) {
	if len(paths) == 0 {
		return nil, ErrNoResults
	}
	var out []*Results
	for _, p := range paths {
		r, err := ReadFile(p)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
