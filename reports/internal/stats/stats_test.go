package stats

import (
	"testing"
)

func TestMedianSpread(t *testing.T) {
	tests := []struct {
		in          []float64
		med, spread float64
	}{
		{[]float64{3}, 3, 0},
		{[]float64{1, 3}, 2, 1},
		{[]float64{10, 9, 11}, 10, 0.2},
		{[]float64{0, 0}, 0, 0},
	}
	for _, tt := range tests {
		if got := Median(tt.in); got != tt.med {
			t.Errorf("Median(%v) = %g, want %g", tt.in, got, tt.med)
		}
		if got := Spread(tt.in); got < tt.spread-1e-12 || got > tt.spread+1e-12 {
			t.Errorf("Spread(%v) = %g, want %g", tt.in, got, tt.spread)
		}
	}
}
