package gate

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/stampede-sim/stampede/reports/results"
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
		if !m.ValidName() {
			p = append(p, fmt.Sprintf("sloModes[%d]: invalid mode name %q (a preset, %v, or a scenario's own mode name)", i, m, scenarios.PresetNames()))
		}
	}
	for i, r := range g.Rules {
		at := fmt.Sprintf("rules[%d]", i)
		if r.Metric == "" {
			p = append(p, at+".metric: required")
		} else if _, ok := results.MetricByName(r.Metric); !ok {
			p = append(p, fmt.Sprintf("%s.metric: unknown metric %q (known: %s)", at, r.Metric, strings.Join(results.MetricNames(), ", ")))
		}
		for j, m := range r.Modes {
			if !m.ValidName() {
				p = append(p, fmt.Sprintf("%s.modes[%d]: invalid mode name %q (a preset, %v, or a scenario's own mode name)", at, j, m, scenarios.PresetNames()))
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
