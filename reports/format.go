package reports

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// Formatting for tables. Missing values print as "-".

const missing = "-"

func fmtSec(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return missing
	}
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0 s"
	case a < 1e-3:
		return strconv.FormatFloat(v*1e6, 'f', 0, 64) + " µs"
	case a < 1:
		return sig3(v*1e3) + " ms"
	default:
		return sig3(v) + " s"
	}
}

// sig3 writes v with about three significant digits.
func sig3(v float64) string {
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

func fmtBytes(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return missing
	}
	unit, div := byteUnit(v)
	if unit == "B" {
		return strconv.FormatFloat(v, 'f', 0, 64) + " B"
	}
	return sig3(v/div) + " " + unit
}

func fmtInt(v int64) string {
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

func fmtFloat(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return missing
	}
	return sig3(v)
}

// fmtCorePct writes cores as percent of one core (Cilium's convention).
func fmtCorePct(cores float64) string {
	if math.IsNaN(cores) {
		return missing
	}
	return sig3(cores*100) + " %"
}

func fmtDuration(d time.Duration) string {
	if d < 0 {
		return missing
	}
	return d.Round(time.Second).String()
}

func fmtRate(v float64, unit string) string {
	if math.IsNaN(v) {
		return missing
	}
	return sig3(v) + " " + unit
}
