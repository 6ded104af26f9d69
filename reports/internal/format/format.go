// Package format writes the numbers of results for people: seconds,
// bytes, counts and rates with about three significant digits, the way
// every table, label and gate row of the reports tree shows them. It has
// no state and imports nothing from this module.
package format

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Missing is how every table and label writes a value that was not
// measured.
const Missing = "-"

// Sec writes seconds with a unit that keeps three digits (µs, ms, s).
func Sec(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Missing
	}
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0 s"
	case a < 1e-3:
		return strconv.FormatFloat(v*1e6, 'f', 0, 64) + " µs"
	case a < 1:
		return Sig3(v*1e3) + " ms"
	default:
		return Sig3(v) + " s"
	}
}

// Sig3 writes v with about three significant digits.
func Sig3(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// Bytes writes bytes in B, KiB, MiB or GiB.
func Bytes(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Missing
	}
	unit, div := ByteUnit(v)
	if unit == "B" {
		return strconv.FormatFloat(v, 'f', 0, 64) + " B"
	}
	return Sig3(v/div) + " " + unit
}

// Int writes an integer with thousands separators (12,345).
func Int(v int64) string {
	s := strconv.FormatInt(v, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Float writes a plain number with about three significant digits.
func Float(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Missing
	}
	return Sig3(v)
}

// CorePct writes cores as percent of one core (Cilium's convention).
func CorePct(cores float64) string {
	if math.IsNaN(cores) {
		return Missing
	}
	return Sig3(cores*100) + " %"
}

// Duration writes d rounded to the second.
func Duration(d time.Duration) string {
	if d < 0 {
		return Missing
	}
	return d.Round(time.Second).String()
}

// Rate writes a rate with its unit.
func Rate(v float64, unit string) string {
	if math.IsNaN(v) {
		return Missing
	}
	return Sig3(v) + " " + unit
}

// TrimFloat writes v with at most two decimals and no trailing zeros.
func TrimFloat(v float64) string {
	if math.Abs(v) >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	s := strconv.FormatFloat(v, 'f', 2, 64)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// ByteUnit picks a unit for byte values up to maxV.
func ByteUnit(maxV float64) (string, float64) {
	switch {
	case maxV >= 1<<30:
		return "GiB", 1 << 30
	case maxV >= 1<<20:
		return "MiB", 1 << 20
	case maxV >= 1<<10:
		return "KiB", 1 << 10
	}
	return "B", 1
}

// Count writes a count or amount compactly (12.3k, 4.5M).
func Count(v float64) string {
	a := math.Abs(v)
	switch {
	case a > 0 && a < 0.01:
		return strconv.FormatFloat(v, 'g', 2, 64)
	case a >= 1e9:
		return TrimFloat(v/1e9) + "G"
	case a >= 1e6:
		return TrimFloat(v/1e6) + "M"
	case a >= 1e4:
		return TrimFloat(v/1e3) + "k"
	}
	return TrimFloat(v)
}
