package calibrate

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// TestLeastSquaresRecoversKnownCoefficients fits synthetic phases made
// from known costs plus noise of a known size, and checks that the fit
// recovers the costs within a few standard errors and that the standard
// errors are of the size the noise implies.
func TestLeastSquaresRecoversKnownCoefficients(t *testing.T) {
	tests := []struct {
		name  string
		truth []float64
		noise float64 // relative, per row
		xs    func(r *rand.Rand) []float64
	}{
		{"request base+perObject+perKiB", []float64{400e-6, 12e-6, 30e-6}, 0.02, func(r *rand.Rand) []float64 {
			n := float64(50 + r.IntN(500))
			objs := []float64{1, 10, 100, 1000}[r.IntN(4)]
			kib := []float64{0.8, 6}[r.IntN(2)]
			return []float64{n, n * objs, n * objs * kib}
		}},
		{"watch encode+deliver", []float64{150e-6, 10e-6, 20e-6, 4e-6}, 0.03, func(r *rand.Rand) []float64 {
			e := float64(100 + r.IntN(400))
			w := []float64{1, 5, 10, 25, 50}[r.IntN(5)]
			kib := []float64{0.8, 6}[r.IntN(2)]
			return []float64{e, e * kib, e * w, e * w * kib}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var rows []Row
			for range 200 {
				x := tt.xs(r)
				var y float64
				for j := range x {
					y += tt.truth[j] * x[j]
				}
				y *= 1 + tt.noise*r.NormFloat64()
				rows = append(rows, Row{X: x, Y: y, Weight: 1 / (y * y)})
			}
			fit, err := LeastSquares(rows)
			if err != nil {
				t.Fatal(err)
			}
			for j, want := range tt.truth {
				got, se := fit.Coef[j], fit.StdErr[j]
				if se <= 0 || se > 0.2*want {
					t.Errorf("coef %d: stderr %g, want positive and below 20%% of %g", j, se, want)
				}
				if math.Abs(got-want) > 4*se {
					t.Errorf("coef %d = %g ± %g, want %g (within 4 stderr)", j, got, se, want)
				}
			}
			if fit.R2 < 0.9 || fit.R2 > 1 {
				t.Errorf("R2 = %v, want in [0.9, 1]", fit.R2)
			}
			if fit.MaxRelResidual <= 0 || fit.MaxRelResidual > 6*tt.noise {
				t.Errorf("MaxRelResidual = %v, want in (0, %v]", fit.MaxRelResidual, 6*tt.noise)
			}
		})
	}
}

// TestLeastSquaresExact checks the solver on data without noise, with
// columns of very different magnitudes.
func TestLeastSquaresExact(t *testing.T) {
	truth := []float64{2, -3e-3, 5e4}
	var rows []Row
	for i := range 10 {
		x := []float64{1, float64(i*i) * 1000, float64(i%3) * 1e-4}
		rows = append(rows, Row{X: x, Y: truth[0]*x[0] + truth[1]*x[1] + truth[2]*x[2]})
	}
	fit, err := LeastSquares(rows)
	if err != nil {
		t.Fatal(err)
	}
	for j := range truth {
		if math.Abs(fit.Coef[j]-truth[j]) > 1e-9*math.Abs(truth[j]) {
			t.Errorf("coef %d = %v, want %v", j, fit.Coef[j], truth[j])
		}
		if fit.StdErr[j] > 1e-9*math.Abs(truth[j]) {
			t.Errorf("stderr %d = %v, want ~0 for exact data", j, fit.StdErr[j])
		}
	}
	if math.Abs(fit.R2-1) > 1e-12 {
		t.Errorf("R2 = %v, want 1", fit.R2)
	}
}

func TestLeastSquaresRejectsUnidentifiable(t *testing.T) {
	tests := []struct {
		name string
		rows []Row
	}{
		{"no rows", nil},
		{"as many rows as coefficients", []Row{{X: []float64{1, 2}, Y: 1}, {X: []float64{2, 1}, Y: 1}}},
		{"collinear", []Row{{X: []float64{1, 2}, Y: 1}, {X: []float64{2, 4}, Y: 2}, {X: []float64{3, 6}, Y: 3}}},
		{"zero column", []Row{{X: []float64{1, 0}, Y: 1}, {X: []float64{2, 0}, Y: 2}, {X: []float64{3, 0}, Y: 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := LeastSquares(tt.rows); !errors.Is(err, ErrUnderdetermined) {
				t.Fatalf("err = %v, want ErrUnderdetermined", err)
			}
		})
	}
	if _, err := LeastSquares([]Row{{X: []float64{1}, Y: 1}, {X: []float64{1, 2}, Y: 1}}); err == nil {
		t.Error("ragged rows: no error")
	}
}

// TestFitPositiveHoldsNonPositive checks that a coefficient fitting below
// zero is held at Floor, named, and the others refitted without it.
func TestFitPositiveHoldsNonPositive(t *testing.T) {
	var rows []Row
	for i := range 20 {
		x := []float64{1, float64(i), float64(i * i % 7)}
		// The true second coefficient is negative: it cannot be a cost.
		rows = append(rows, Row{X: x, Y: 5*x[0] - 0.01*x[1] + 2*x[2]})
	}
	f, err := FitPositive(rows)
	if err != nil {
		t.Fatal(err)
	}
	if f.Coef[1] != Floor || f.Held[1] == "" || f.Held[0] != "" || f.Held[2] != "" {
		t.Fatalf("coef %v held %q, want only coefficient 1 held at %g", f.Coef, f.Held, Floor)
	}
	for j := range f.Coef {
		if f.Coef[j] <= 0 {
			t.Errorf("coef %d = %v, want positive", j, f.Coef[j])
		}
	}
	if math.Abs(f.Coef[2]-2) > 0.1 {
		t.Errorf("coef 2 = %v, want about 2 after the refit", f.Coef[2])
	}
	// All positive already: the same as LeastSquares.
	var exact []Row
	for i := range 10 {
		x := []float64{1, float64(i)}
		exact = append(exact, Row{X: x, Y: 3 + 0.5*x[1]})
	}
	g, err := FitPositive(exact)
	if err != nil || math.Abs(g.Coef[0]-3) > 1e-9 || math.Abs(g.Coef[1]-0.5) > 1e-9 {
		t.Fatalf("FitPositive = %v, %v, want [3 0.5]", g.Coef, err)
	}
}
