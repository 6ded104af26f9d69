package capacity

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
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

func TestBuildCapacity(t *testing.T) {
	rep, err := BuildCapacity(fixture.Sweep(t, 25, 50, 100, 200), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Scenario != "relabel" || rep.PodsPerNode != 100 {
		t.Errorf("scenario %q, pods/node %g", rep.Scenario, rep.PodsPerNode)
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
	if want := math.Pow(1e4, 1/1.5); math.Abs(slo.BreaksAt/want-1) > 0.15 {
		t.Errorf("crd breaks the SLO at %g nodes, want about %g (%s)", slo.BreaksAt, want, slo.BreakNote)
	}
	if xs := findFit(t, rep, scenarios.ModeXDS, "slo: mutating p99"); !math.IsNaN(xs.BreaksAt) && xs.BreaksAt < 1e6 {
		t.Errorf("xds breaks the SLO at %g nodes: %s", xs.BreaksAt, xs.BreakNote)
	}
	// Measured beyond the limit: the measurement says so.
	rep2, err := BuildCapacity(fixture.Sweep(t, 100, 200, 400, 800), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := findFit(t, rep2, scenarios.ModeCRD, "slo: mutating p99"); s.BreaksAt != 800 || !strings.Contains(s.BreakNote, "measured") {
		t.Errorf("breaks at %g: %s", s.BreaksAt, s.BreakNote)
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
			_, err := BuildCapacity(rs, nil)
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
	if _, err := BuildCapacity(rs, nil); err != nil {
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
