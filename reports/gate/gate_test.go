package gate

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stampede-sim/stampede/reports/internal/fixture"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// jitter scales the fixture's summary figures by f, as run-to-run noise.
func jitter(r *results.Results, f float64) *results.Results {
	for i := range r.Modes {
		s := r.Modes[i].Summary
		if s == nil {
			continue
		}
		for j := range s.APILatency {
			s.APILatency[j].P99 *= f
			s.APILatency[j].Max *= f
		}
		for j := range s.KVStoreLatency {
			s.KVStoreLatency[j].P99 *= f
		}
		for j := range s.Processes {
			s.Processes[j].CPUSeconds *= f
		}
		if s.Agents != nil {
			s.Agents.PeakCPU.Mean *= f
			s.Agents.PeakRSS.Mean *= f
		}
		if s.Watch != nil {
			s.Watch.Events = int64(float64(s.Watch.Events) * f)
		}
		for j := range s.Convergence {
			s.Convergence[j].P99 *= f
			s.Convergence[j].Max *= f
		}
	}
	return r
}

func runs(t *testing.T, factors ...float64) []*results.Results {
	var out []*results.Results
	for _, f := range factors {
		out = append(out, jitter(fixture.Full(t), f))
	}
	return out
}

// relaxSLO raises every SLO limit so that the fixture meets them.
func relaxSLO(rs []*results.Results) []*results.Results {
	for _, r := range rs {
		for i := range r.Modes {
			if s := r.Modes[i].Summary; s != nil {
				for j := range s.SLO {
					s.SLO[j].Limit = 60
					s.SLO[j].Pass = true
				}
			}
		}
	}
	return rs
}

func TestGateGolden(t *testing.T) {
	tests := []struct {
		name     string
		baseline []*results.Results
		current  []*results.Results
		rules    string
		failed   bool
	}{
		{name: "pass", baseline: runs(t, 1.0, 0.98, 1.02), current: relaxSLO(runs(t, 1.01, 0.99, 1.03))},
		{name: "single-run-pass", baseline: runs(t, 1.0), current: runs(t, 1.05), rules: "sloModes: [kvstore, xds]\n"},
		{
			name:     "regression",
			baseline: runs(t, 1.0, 0.98, 1.02),
			current: func() []*results.Results {
				rs := runs(t, 1.0, 1.01, 0.99)
				for i, r := range rs {
					// crd: API p99 up 40 %, a regression.
					r.Modes[0].Summary.APILatency[0].P99 *= 1.4
					// ces: watch events all over the place, can't judge.
					r.Modes[1].Summary.Watch.Events = []int64{100000, 240000, 400000}[i]
					// kvstore: one agent never converged (hard limit).
					r.Modes[2].Summary.Convergence[1].Converged--
				}
				return rs
			}(),
			failed: true,
		},
		{
			name:     "rules-file",
			baseline: runs(t, 1.0),
			current:  runs(t, 1.1),
			rules: `
spreadLimit: 0.3
rules:
- metric: apiserver.cpu
  maxIncrease: 0.05
  maxIncreaseAbs: 0.5
- metric: api.p99
  modes: [crd]
  limit: 5
- metric: watch.events
  disabled: true
ignoreSLO: true
`,
			failed: true,
		},
		{
			name:     "mode-failed",
			baseline: runs(t, 1.0),
			current: func() []*results.Results {
				r := fixture.Full(t)
				r.Modes[4] = results.ModeResult{Mode: scenarios.ModeXDS, Axes: presetAxes(scenarios.ModeXDS), Status: results.StatusFailed, Reason: "controlplane exited: exit status 1"}
				r.Modes[3] = results.ModeResult{Mode: scenarios.ModeOperator, Axes: presetAxes(scenarios.ModeOperator), Status: results.StatusSkipped, Reason: "no operator in this test"}
				r.Run.Complete = false
				return []*results.Results{r}
			}(),
			failed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rules *GateRules
			if tt.rules != "" {
				var err error
				if rules, err = ParseGateRules("rules.yaml", []byte(tt.rules)); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := Gate(tt.baseline, tt.current, rules)
			if err != nil {
				t.Fatal(err)
			}
			fixture.Golden(t, "gate-"+tt.name+".txt", []byte(rep.Table()))
			if rep.Failed() != tt.failed {
				t.Errorf("Failed() = %v, want %v", rep.Failed(), tt.failed)
			}
			var re *RegressionError
			if got := errors.As(rep.Err(), &re); got != tt.failed {
				t.Errorf("Err() = %v", rep.Err())
			}
		})
	}
}

func TestGateUnusable(t *testing.T) {
	other := fixture.Full(t)
	other.Run.Scenario = "relabel"
	partial := fixture.Partial(t)
	apiServer := func(edit func(a *results.APIServer)) []*results.Results {
		r := fixture.Full(t)
		a := *r.Run.APIServer
		c := *a.Capacity
		a.Capacity = &c
		edit(&a)
		r.Run.APIServer = &a
		return []*results.Results{r}
	}
	fourCores := apiServer(func(a *results.APIServer) { a.Capacity.Cores = 4 })
	otherProfile := apiServer(func(a *results.APIServer) { a.Capacity.Profile = "mine" })
	noModel := apiServer(func(a *results.APIServer) { a.Model, a.Capacity = results.ModelNone, nil })
	local := apiServer(func(a *results.APIServer) {
		*a = results.APIServer{Backend: "local", Model: results.ModelKubeAPIServer, KubernetesVersion: "v1.36.3"}
	})
	local[0].Run.Backend.Name = "local"
	// Results written before run.apiServer: the fake had no model then.
	old := fixture.Full(t)
	old.Run.APIServer = nil
	// A "ces" whose slices come from Pods is not the baseline's "ces".
	otherAxes := fixture.Full(t)
	for i := range otherAxes.Modes {
		if otherAxes.Modes[i].Mode == scenarios.ModeCES {
			otherAxes.Modes[i].Axes.Endpoints = scenarios.EndpointsCESSlim
		}
	}
	tests := []struct {
		name              string
		baseline, current []*results.Results
		want              string
	}{
		{name: "other cores", baseline: runs(t, 1), current: fourCores,
			want: "current[0] ran against API server fake with capacity 4 cores (profile kube-apiserver-v1.36.3 measured 2026-12-03T09:00:00Z), baseline[0] against fake with capacity 8 cores (profile kube-apiserver-v1.36.3 measured 2026-12-03T09:00:00Z): figures of different API servers are not comparable"},
		{name: "other profile", baseline: runs(t, 1), current: otherProfile, want: "current[0] ran against API server fake with capacity 8 cores (profile mine measured"},
		{name: "capacity against none", baseline: noModel, current: runs(t, 1, 1),
			want: "current[1] ran against API server fake with capacity 8 cores (profile kube-apiserver-v1.36.3 measured 2026-12-03T09:00:00Z), baseline[0] against fake without capacity model"},
		{name: "fake against local", baseline: local, current: noModel,
			want: "current[0] ran against API server fake without capacity model, baseline[0] against kube-apiserver v1.36.3 + etcd (local backend)"},
		{name: "old fake results against capacity", baseline: []*results.Results{old}, current: runs(t, 1), want: "baseline[0] against fake without capacity model"},
		{name: "no baseline", current: runs(t, 1), want: "no baseline results"},
		{name: "no current", baseline: runs(t, 1), want: "no current results"},
		{name: "different scenario", baseline: runs(t, 1), current: []*results.Results{other}, want: `current[0] ran scenario "relabel"`},
		{name: "partial", baseline: runs(t, 1), current: []*results.Results{partial}, want: "current[0] mode ces is incomplete"},
		{name: "same name, other axes", baseline: runs(t, 1), current: []*results.Results{otherAxes},
			want: `mode "ces": axes differ (baseline[0] agent/ces/apiserver, current[0] agent/ces-slim/apiserver)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Gate(tt.baseline, tt.current, nil)
			var ue *results.UnusableInputError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v, want *UnusableInputError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestParseGateRules(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // substrings of the error; none: valid
	}{
		{name: "empty", in: ""},
		{name: "valid", in: "rules:\n- metric: api.p99\n  maxIncrease: 0.1\n"},
		{name: "unknown top field", in: "spredLimit: 1\n", want: []string{"spredLimit: unknown field"}},
		{name: "unknown rule field", in: "rules:\n- metric: api.p99\n- metric: api.max\n  maxIncrese: 0.1\n", want: []string{"rules[1].maxIncrese: unknown field"}},
		{name: "wrong type", in: "rules:\n- metric: api.p99\n  maxIncrease: lots\n", want: []string{`rules[0].maxIncrease: want a number, got the string "lots"`}},
		{name: "unknown metric", in: "rules:\n- metric: api.p100\n  limit: 1\n", want: []string{`rules[0].metric: unknown metric "api.p100"`}},
		{name: "bad mode name", in: "rules:\n- metric: api.p99\n  modes: [crd, CNI_1]\n  limit: 1\n", want: []string{`rules[0].modes[1]: invalid mode name "CNI_1"`}},
		{name: "negative", in: "rules:\n- metric: api.p99\n  maxIncrease: -1\n", want: []string{"rules[0].maxIncrease: must be >= 0"}},
		{name: "no threshold", in: "rules:\n- metric: api.p99\n", want: []string{"rules[0]: sets no threshold"}},
		{name: "bad spread", in: "spreadLimit: 0\n", want: []string{"spreadLimit: must be > 0"}},
		{name: "bad slo mode", in: "sloModes: [crd, -nope]\n", want: []string{`sloModes[1]: invalid mode name "-nope"`}},
		{name: "not a mapping", in: "- a\n- b\n", want: []string{"top level: want a mapping"}},
		{name: "bad yaml", in: "rules: [\n", want: []string{"rules.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseGateRules("rules.yaml", []byte(tt.in))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestGateSweepName(t *testing.T) {
	cur := fixture.Full(t)
	cur.Run.Scenario += "@20"
	if _, err := Gate(runs(t, 1), []*results.Results{cur}, nil); err != nil {
		t.Errorf("a sweep's resized scenario at the same size should compare: %v", err)
	}
	cur.Run.Nodes = 40
	if _, err := Gate(runs(t, 1), []*results.Results{cur}, nil); err == nil {
		t.Error("different node counts compared")
	}
}

func presetAxes(m scenarios.Mode) scenarios.Axes {
	p, _ := scenarios.Preset(m)
	return p.Axes
}

// TestGateV1BaselineAgainstV2: a baseline read from a v1 file (upgraded,
// preset axes) compares with a v2 run of the same presets.
func TestGateV1BaselineAgainstV2(t *testing.T) {
	v1, err := results.ReadFile(filepath.Join("..", "results", "testdata", "v1-relabel-small-run.json"))
	if err != nil {
		t.Fatal(err)
	}
	if v1.UpgradedFrom != results.SchemaVersionV1 {
		t.Fatalf("not read as v1: %q", v1.UpgradedFrom)
	}
	cur, err := results.ReadFile(filepath.Join("..", "results", "testdata", "v1-relabel-small-run.json"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := results.Encode(cur) // written as v2
	if err != nil {
		t.Fatal(err)
	}
	v2, err := results.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Gate([]*results.Results{v1}, []*results.Results{v2}, nil)
	if err != nil {
		t.Fatalf("v1 baseline against v2 run: %v", err)
	}
	if len(rep.Rows) == 0 {
		t.Fatal("no rows compared")
	}
}
