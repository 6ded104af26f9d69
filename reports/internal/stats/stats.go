// Package stats holds the few statistics the gate, the capacity model and
// the plots share: the median and the relative spread of repeated
// measurements. It has no state and imports nothing from this module.
package stats

import (
	"math"
	"sort"
)

// Median is the middle of v (the mean of the middle two for an even
// count), NaN for none. v is not changed.
func Median(v []float64) float64 {
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

// Spread is (max-min)/|median| (0 for one value).
func Spread(v []float64) float64 {
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
	m := math.Abs(Median(v))
	if m == 0 {
		return math.Inf(1)
	}
	return (hi - lo) / m
}
