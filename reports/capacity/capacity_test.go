package capacity

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stampede-sim/stampede/reports/internal/fixture"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestFitPowerRecoversExponent(t *testing.T) {
	tests := []struct {
		name  string
		a, b  float64
		noise float64
	}{
		{"linear", 3, 1, 0},
		{"quadratic", 0.02, 2, 0},
		{"sqrt with noise", 40, 0.5, 0.05},
		{"n^1.5 with noise", 1e-4, 1.5, 0.08},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n, y []float64
			for _, x := range []float64{25, 50, 100, 200, 400} {
				for range 3 {
					n = append(n, x)
					y = append(y, tt.a*math.Pow(x, tt.b)*(1+tt.noise*(2*rng.Float64()-1)))
				}
			}
			f, err := fitPower(n, y)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(f.B - tt.b); d > 0.05+tt.noise {
				t.Errorf("exponent %.3f, want %.3f", f.B, tt.b)
			}
			if tt.noise == 0 {
				if math.Abs(f.A/tt.a-1) > 1e-9 || f.R2 < 1-1e-12 || f.RelRMSE > 1e-9 {
					t.Errorf("exact data: got %v", f)
				}
			} else if f.R2 < 0.95 {
				t.Errorf("R² %.3f too low for %g%% noise", f.R2, tt.noise*100)
			}
			if s := f.BStdErr; !(s > 0) && tt.noise > 0 {
				t.Errorf("no standard error: %v", s)
			}
			// The prediction interval at 10x the data holds the truth.
			lo, hi := f.Interval(4000)
			truth := tt.a * math.Pow(4000, tt.b)
			if tt.noise > 0 && (truth < lo || truth > hi) {
				t.Errorf("truth %g outside [%g, %g]", truth, lo, hi)
			}
		})
	}
}

func TestFitBestChoosesModel(t *testing.T) {
	n := []float64{25, 50, 100, 200, 400}
	apply := func(f func(float64) float64) []float64 {
		var y []float64
		for _, x := range n {
			y = append(y, f(x))
		}
		return y
	}
	tests := []struct {
		name  string
		y     []float64
		model string
	}{
		{"power", apply(func(x float64) float64 { return 2 * x * x }), ModelPower},
		{"offset linear", apply(func(x float64) float64 { return 5000 + 3*x }), ModelLinear},
		{"zeros", []float64{0, 0, 1, 2, 4}, ModelLinear},
		{"constant", []float64{7, 7, 7, 7, 7}, ModelConstant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _, err := fitBest(n, tt.y)
			if err != nil {
				t.Fatal(err)
			}
			if f.Model != tt.model {
				t.Errorf("model %s (%v), want %s", f.Model, f, tt.model)
			}
		})
	}
	if _, err := fitPower([]float64{10, 10}, []float64{1, 2}); err == nil {
		t.Error("fit at one node count succeeded")
	}
	if _, err := fitPower([]float64{10, 20}, []float64{1, -2}); err == nil {
		t.Error("power fit of a negative value succeeded")
	}
}

func findFit(t *testing.T, rep *CapacityReport, mode scenarios.Mode, metric string) CapacityFit {
	t.Helper()
	for _, f := range rep.Fits {
		if f.Mode == mode && f.Metric.Name == metric {
			return f
		}
	}
	t.Fatalf("no fit for %s %s", mode, metric)
	return CapacityFit{}
}

// onAPI records in rs that they ran on backend with a capacity model of
// cores (0: none), as the harness records the effective scenario.
func onAPI(rs []*results.Results, backend scenarios.BackendType, cores float64) []*results.Results {
	for _, r := range rs {
		r.Run.Backend.Name = string(backend)
		sc := &scenarios.Scenario{API: scenarios.API{Backend: backend}}
		if cores > 0 {
			sc.API.Capacity = &scenarios.Capacity{Cores: cores}
		}
		r.Run.EffectiveScenario = sc
	}
	return rs
}

func TestBuildCapacity(t *testing.T) {
	rep, err := BuildCapacity(onAPI(fixture.Sweep(t, 25, 50, 100, 200), scenarios.BackendFake, 4), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scenario != "relabel" || rep.PodsPerNode != 100 || rep.MaxExtrapolation != DefaultMaxExtrapolation {
		t.Errorf("scenario %q, pods/node %g, reach %g", rep.Scenario, rep.PodsPerNode, rep.MaxExtrapolation)
	}
	tests := []struct {
		mode   scenarios.Mode
		metric string
		b      float64
	}{
		{scenarios.ModeCRD, "watch.events", 2},
		{scenarios.ModeCRD, "api.p99", 1.5},
		{scenarios.ModeCRD, "agent.rss.peak", 0.3},
		{scenarios.ModeCRD, "agent.rss.per.pod", 0.3},
		{scenarios.ModeCRD, "converge.max", 1},
		{scenarios.ModeXDS, "watch.events", 1},
	}
	for _, tt := range tests {
		f := findFit(t, rep, tt.mode, tt.metric)
		if f.Fit.Model != ModelPower || math.Abs(f.Fit.B-tt.b) > 0.1 {
			t.Errorf("%s %s: %v, want exponent %g", tt.mode, tt.metric, f.Fit, tt.b)
		}
		if len(f.Projections) != 4 || f.Projections[3].Nodes != 50000 || f.Projections[3].Factor != 250 {
			t.Errorf("%s %s projections: %+v", tt.mode, tt.metric, f.Projections)
		}
	}
	slo := findFit(t, rep, scenarios.ModeCRD, "slo: mutating p99")
	if want := math.Pow(1e4, 1/1.5); math.Abs(slo.Break.Nodes/want-1) > 0.15 {
		t.Errorf("crd breaks the SLO at %g nodes, want about %g (%+v)", slo.Break.Nodes, want, slo.Break)
	}
	if len(rep.Verdicts) != 2 || rep.Verdicts[0].Mode != scenarios.ModeCRD || rep.Verdicts[0].SLO != "mutating p99" || !rep.Verdicts[0].Break.Stated() {
		t.Errorf("verdicts: %+v", rep.Verdicts)
	}
}

// TestBreakingPointRules: a breaking point is stated only from a server
// that models a kube-apiserver, only for modes whose agents use it, and
// only within the allowed extrapolation, with its interval.
func TestBreakingPointRules(t *testing.T) {
	xdsOverLimit := func(rs []*results.Results) []*results.Results {
		for _, r := range rs {
			r.Modes[1].Summary.SLO[0].Value = 5 // measured above the 1 s limit
		}
		return rs
	}
	tests := []struct {
		name      string
		rs        []*results.Results
		reach     float64
		mode      scenarios.Mode
		kind      BreakKind
		reason    string
		settle    []int
		lo, hi    float64 // bounds of the stated node count's interval, if stated
		wantFinHi bool
	}{
		{name: "fake without capacity refused", rs: onAPI(fixture.Sweep(t, 25, 50, 100, 200), scenarios.BackendFake, 0),
			mode: scenarios.ModeCRD, kind: BreakNoModel, reason: "simulator's"},
		{name: "fake without capacity refused although measured above the limit", rs: onAPI(fixture.Sweep(t, 100, 200, 400, 800), scenarios.BackendFake, 0),
			mode: scenarios.ModeCRD, kind: BreakNoModel, reason: "not a kube-apiserver's"},
		{name: "xds agents give no API breaking point", rs: xdsOverLimit(onAPI(fixture.Sweep(t, 25, 50, 100, 200), scenarios.BackendFake, 4)),
			mode: scenarios.ModeXDS, kind: BreakNotApplicable, reason: "never talk to the API server"},
		{name: "beyond 10x reported as beyond", rs: onAPI(fixture.Sweep(t, 5, 10, 20), scenarios.BackendFake, 4),
			mode: scenarios.ModeCRD, kind: BreakBeyond, reason: "beyond what the data supports (largest measured 20 nodes)", settle: []int{40, 80}},
		{name: "within 10x stated with interval", rs: onAPI(fixture.Sweep(t, 25, 50, 100, 200), scenarios.BackendFake, 4),
			mode: scenarios.ModeCRD, kind: BreakProjected, reason: "2.26× the largest measured 200 nodes", lo: 300, hi: 700, wantFinHi: true},
		{name: "a smaller reach refuses the same fit", rs: onAPI(fixture.Sweep(t, 25, 50, 100, 200), scenarios.BackendFake, 4), reach: 2,
			mode: scenarios.ModeCRD, kind: BreakBeyond, reason: "within 2× that", settle: []int{400}},
		{name: "kube-apiserver backend stated", rs: onAPI(fixture.Sweep(t, 25, 50, 100, 200), scenarios.BackendLocal, 0),
			mode: scenarios.ModeCRD, kind: BreakProjected, lo: 300, hi: 700, wantFinHi: true},
		{name: "measured above the limit", rs: onAPI(fixture.Sweep(t, 100, 200, 400, 800), scenarios.BackendFake, 8),
			mode: scenarios.ModeCRD, kind: BreakMeasured, reason: "within the limit at 400", lo: 400, hi: 800, wantFinHi: true},
		{name: "two node counts give no interval", rs: onAPI(fixture.Sweep(t, 100, 200), scenarios.BackendFake, 4),
			mode: scenarios.ModeCRD, kind: BreakNoInterval, reason: "2 node counts give no error estimate", settle: []int{400, 800}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := BuildCapacity(tt.rs, Options{MaxExtrapolation: tt.reach})
			if err != nil {
				t.Fatal(err)
			}
			b := findFit(t, rep, tt.mode, "slo: mutating p99").Break
			if b.Kind != tt.kind || !strings.Contains(b.Reason, tt.reason) {
				t.Fatalf("got %s (%s), want %s with %q", b.Kind, b.Reason, tt.kind, tt.reason)
			}
			if tt.settle != nil && !slices.Equal(b.Settle, tt.settle) {
				t.Errorf("settle with %v, want %v", b.Settle, tt.settle)
			}
			if !b.Stated() {
				if !math.IsNaN(b.Nodes) {
					t.Errorf("not stated, yet Nodes = %g", b.Nodes)
				}
				return
			}
			if !(b.Lo >= tt.lo && b.Lo <= b.Nodes && b.Nodes <= b.Hi) || tt.wantFinHi && !(b.Hi <= tt.hi) {
				t.Errorf("stated %g in [%g, %g], want within [%g, %g]", b.Nodes, b.Lo, b.Hi, tt.lo, tt.hi)
			}
		})
	}
	// Every run of crd failed: nothing measured, nothing to settle.
	failed := onAPI(fixture.Sweep(t, 3, 6), scenarios.BackendFake, 4)
	for _, r := range failed {
		r.Modes[0].Status = results.StatusFailed
	}
	rep, err := BuildCapacity(failed, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b := rep.Verdicts[0].Break; b.Kind != BreakNoFit || len(b.Settle) != 0 || !strings.Contains(b.Reason, "nothing measured") {
		t.Errorf("crd failed everywhere: %+v", b)
	}
	if _, err := BuildCapacity(fixture.Sweep(t, 25, 50), Options{MaxExtrapolation: 0.5}); err == nil || !strings.Contains(err.Error(), "max extrapolation") {
		t.Errorf("reach 0.5: %v", err)
	}
}

// TestBuildCapacityPerAPIServer: runs at two API sizes are fitted apart
// and get one verdict per mode and size; the published comparison says
// how far the stated one lies from 3,000 nodes.
func TestBuildCapacityPerAPIServer(t *testing.T) {
	rs := append(onAPI(fixture.Sweep(t, 25, 50, 100, 200), scenarios.BackendFake, 2), onAPI(fixture.Sweep(t, 5, 10, 20), scenarios.BackendFake, 16)...)
	rep, err := BuildCapacity(rs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.APIServers) != 2 || rep.APIServers[0].Cores != 2 || rep.APIServers[1].Label() != "16 cores" {
		t.Fatalf("API servers %+v", rep.APIServers)
	}
	if len(rep.Verdicts) != 4 {
		t.Fatalf("%d verdicts, want 4: %+v", len(rep.Verdicts), rep.Verdicts)
	}
	for _, f := range rep.Fits {
		if f.Metric.Name == "watch.events" && f.API.Cores == 16 && len(f.Points) != 3 {
			t.Errorf("16-core fit has %d points", len(f.Points))
		}
	}
	two, sixteen := rep.Verdicts[0], rep.Verdicts[1]
	if two.API.Cores != 2 || two.Break.Kind != BreakProjected || sixteen.Break.Kind != BreakBeyond {
		t.Errorf("crd verdicts: %+v / %+v", two, sixteen)
	}
	if c := Issue38030.Compare(two); !strings.Contains(c, "× below the published 3,000 nodes") {
		t.Errorf("comparison %q", c)
	}
	if c := Issue38030.Compare(sixteen); !strings.HasPrefix(c, "nothing to compare: beyond") {
		t.Errorf("comparison %q", c)
	}
	if c := Issue38030.Compare(rep.Verdicts[2]); !strings.Contains(c, "not comparable") {
		t.Errorf("xds comparison %q", c)
	}
}

func TestAPIServerOf(t *testing.T) {
	tests := []struct {
		name string
		run  results.Run
		want APIServer
	}{
		{"scenario", results.Run{Backend: results.Backend{Name: "fake"}, EffectiveScenario: &scenarios.Scenario{API: scenarios.API{Capacity: &scenarios.Capacity{Cores: 4, Profile: "p"}}}},
			APIServer{Backend: "fake", Cores: 4, Profile: "p"}},
		{"fact", results.Run{Backend: results.Backend{Name: "fake", Facts: map[string]string{"capacity": "2.5 cores of X (2-core 6.1), profile kube-apiserver-v1.36.3"}}},
			APIServer{Backend: "fake", Cores: 2.5, Profile: "kube-apiserver-v1.36.3"}},
		{"no capacity fact", results.Run{Backend: results.Backend{Name: "fake", Facts: map[string]string{"capacity": "none (no capacity model)"}}},
			APIServer{Backend: "fake"}},
		{"local", results.Run{Backend: results.Backend{Name: "local"}}, APIServer{Backend: "local"}},
		{"run.apiServer", results.Run{Backend: results.Backend{Name: "fake"}, APIServer: &results.APIServer{Backend: "fake", Model: results.ModelCapacity,
			Capacity: &results.APICapacity{Cores: 8, Profile: "kube-apiserver-v1.36.3"}}}, APIServer{Backend: "fake", Cores: 8, Profile: "kube-apiserver-v1.36.3"}},
		{"run.apiServer without a model wins over the scenario", results.Run{Backend: results.Backend{Name: "fake"}, APIServer: &results.APIServer{Backend: "fake", Model: results.ModelNone},
			EffectiveScenario: &scenarios.Scenario{API: scenarios.API{Capacity: &scenarios.Capacity{Cores: 4}}}}, APIServer{Backend: "fake"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := apiServerOf(&results.Results{Run: tt.run}); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestBuildCapacityUnusable(t *testing.T) {
	mixed := fixture.Sweep(t, 25, 50)
	mixed[1].Run.Scenario = "other@50"
	for name, rs := range map[string][]*results.Results{
		"none":      nil,
		"one size":  fixture.Sweep(t, 50, 50),
		"mixed":     mixed,
		"node-less": {{Run: results.Run{Scenario: "relabel"}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := BuildCapacity(rs, Options{})
			var ue *results.UnusableInputError
			if !errors.As(err, &ue) {
				t.Errorf("got %v, want *UnusableInputError", err)
			}
		})
	}
}

func TestSweep(t *testing.T) {
	sc, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	var asked []int
	runner := func(ctx context.Context, s *scenarios.Scenario, nodes int, modes []scenarios.Mode) (*results.Results, error) {
		asked = append(asked, nodes)
		return fixture.Sweep(t, nodes)[0], nil
	}
	rs, err := Sweep(context.Background(), SweepConfig{Scenario: sc, Nodes: []int{100, 25, 50, 200}, Run: runner})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 || asked[0] != 25 || asked[3] != 200 {
		t.Fatalf("sweep ran %v", asked)
	}
	if _, err := BuildCapacity(rs, Options{}); err != nil {
		t.Fatal(err)
	}
	// A runner that fails outright stops the sweep with what it has.
	failing := func(ctx context.Context, s *scenarios.Scenario, nodes int, modes []scenarios.Mode) (*results.Results, error) {
		if nodes > 50 {
			return nil, errors.New("boom")
		}
		return fixture.Sweep(t, nodes)[0], nil
	}
	rs, err = Sweep(context.Background(), SweepConfig{Scenario: sc, Nodes: []int{25, 50, 100}, Run: failing})
	if err == nil || len(rs) != 2 || !strings.Contains(err.Error(), "100 nodes") {
		t.Errorf("got %d results, %v", len(rs), err)
	}
}

// TestSweepAPICores: with API sizes, every node count runs once per size,
// each with api.capacity.cores set and the scenario itself left alone.
func TestSweepAPICores(t *testing.T) {
	sc, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	sc.API.Capacity = nil // the sweep's sizes are the only capacity
	type point struct {
		cores   float64
		profile string
		nodes   int
	}
	var asked []point
	runner := func(ctx context.Context, s *scenarios.Scenario, nodes int, modes []scenarios.Mode) (*results.Results, error) {
		if s.API.Capacity == nil {
			t.Fatalf("run at %d nodes without api.capacity", nodes)
		}
		asked = append(asked, point{s.API.Capacity.Cores, s.API.Capacity.Profile, nodes})
		return onAPI(fixture.Sweep(t, nodes), scenarios.BackendFake, s.API.Capacity.Cores)[0], nil
	}
	rs, err := Sweep(context.Background(), SweepConfig{Scenario: sc, Nodes: []int{10, 5}, APICores: []float64{8, 2}, APIProfile: "my.yaml", Run: runner})
	if err != nil {
		t.Fatal(err)
	}
	want := []point{{2, "my.yaml", 5}, {2, "my.yaml", 10}, {8, "my.yaml", 5}, {8, "my.yaml", 10}}
	if !slices.Equal(asked, want) || len(rs) != 4 {
		t.Errorf("ran %v, want %v", asked, want)
	}
	if sc.API.Capacity != nil {
		t.Error("Sweep changed the scenario it was given")
	}
	rep, err := BuildCapacity(rs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.APIServers) != 2 {
		t.Errorf("API servers %+v", rep.APIServers)
	}
	for _, bad := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if _, err := Sweep(context.Background(), SweepConfig{Scenario: sc, Nodes: []int{5}, APICores: []float64{bad}, Run: runner}); err == nil {
			t.Errorf("API size %g accepted", bad)
		}
	}
}

// TestVerdictPrefersStatements: the verdict of a mode is its stated
// breaking point at the fewest nodes, else the SLO closest to one.
func TestVerdictPrefersStatements(t *testing.T) {
	api := APIServer{Backend: "fake", Cores: 4}
	fit := func(slo string, b BreakingPoint) CapacityFit {
		lim := 1.0
		return CapacityFit{Metric: results.Metric{Name: "slo: " + slo}, Limit: &lim, Break: b}
	}
	nan := math.NaN()
	beyond := BreakingPoint{Kind: BreakBeyond, Nodes: nan}
	noInterval := BreakingPoint{Kind: BreakNoInterval, Nodes: nan}
	at := func(n float64) BreakingPoint {
		return BreakingPoint{Kind: BreakProjected, Nodes: n, Lo: n / 2, Hi: n * 2}
	}
	tests := []struct {
		name string
		fits []CapacityFit
		slo  string
	}{
		{"fewest nodes", []CapacityFit{fit("mutating p99", at(500)), fit("read p99", at(300)), fit("list p99", beyond)}, "read p99"},
		{"stated over unstated", []CapacityFit{fit("mutating p99", beyond), fit("read p99", noInterval), fit("list p99", at(900))}, "list p99"},
		{"no interval over beyond", []CapacityFit{fit("mutating p99", beyond), fit("read p99", noInterval)}, "read p99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if v := verdictOf(scenarios.ModeCRD, api, tt.fits); v.SLO != tt.slo {
				t.Errorf("verdict on %q (%+v), want %q", v.SLO, v.Break, tt.slo)
			}
		})
	}
	if v := verdictOf(scenarios.ModeCRD, api, nil); v.Break.Kind != BreakNoFit {
		t.Errorf("no SLOs: %+v", v)
	}
}

func TestAPIServerOfIgnoresCapacityOffTheFake(t *testing.T) {
	r := &results.Results{Run: results.Run{Backend: results.Backend{Name: "local"},
		EffectiveScenario: &scenarios.Scenario{API: scenarios.API{Capacity: &scenarios.Capacity{Cores: 4}}}}}
	if got := apiServerOf(r); got != (APIServer{Backend: "local"}) {
		t.Errorf("got %+v", got)
	}
}
