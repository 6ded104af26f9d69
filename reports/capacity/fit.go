package capacity

import (
	"fmt"
	"math"

	"github.com/stampede-sim/stampede/reports/internal/format"
)

// Model names of a Fit.
const (
	ModelPower    = "power"    // y = a * n^b, least squares in log-log
	ModelLinear   = "linear"   // y = a + b*n, least squares
	ModelConstant = "constant" // every point is the same value
)

// Fit is a least-squares model of a cost y against the node count n.
type Fit struct {
	// Model is power, linear or constant.
	Model string
	// A and B are the parameters: y = A*n^B (power) or y = A + B*n
	// (linear); A alone for constant.
	A, B float64
	// BStdErr is the standard error of B (NaN with two points).
	BStdErr float64
	// R2 is the coefficient of determination, in log-log space for the
	// power law and in linear space for the linear model.
	R2 float64
	// RelRMSE is the root mean square of the relative residuals
	// (prediction/measurement - 1) over the measured points.
	RelRMSE float64
	// LOOError is the mean absolute relative error of leave-one-out
	// predictions (NaN with fewer than four points); it decides between
	// models.
	LOOError float64
	// Points is the number of points fitted.
	Points int

	// For prediction intervals: residual standard error, mean and spread
	// of the regressor (log n for the power law).
	s, xbar, sxx float64
}

// fitPower fits y = a*n^b by least squares on (ln n, ln y). Every y must
// be positive.
func fitPower(n, y []float64) (Fit, error) {
	if len(n) < 2 {
		return Fit{}, fmt.Errorf("power fit: need at least 2 points, have %d", len(n))
	}
	lx := make([]float64, len(n))
	ly := make([]float64, len(n))
	for i := range n {
		if !(n[i] > 0) || !(y[i] > 0) {
			return Fit{}, fmt.Errorf("power fit: values must be positive (n=%g, y=%g)", n[i], y[i])
		}
		lx[i], ly[i] = math.Log(n[i]), math.Log(y[i])
	}
	a, b, s, xbar, sxx, r2, err := ols(lx, ly)
	if err != nil {
		return Fit{}, fmt.Errorf("power fit: %w", err)
	}
	f := Fit{Model: ModelPower, A: math.Exp(a), B: b, R2: r2, Points: len(n), s: s, xbar: xbar, sxx: sxx}
	f.BStdErr = math.NaN()
	if len(n) > 2 {
		f.BStdErr = s / math.Sqrt(sxx)
	}
	f.RelRMSE = relRMSE(f, n, y)
	return f, nil
}

// fitLinear fits y = a + b*n by least squares.
func fitLinear(n, y []float64) (Fit, error) {
	if len(n) < 2 {
		return Fit{}, fmt.Errorf("linear fit: need at least 2 points, have %d", len(n))
	}
	a, b, s, xbar, sxx, r2, err := ols(n, y)
	if err != nil {
		return Fit{}, fmt.Errorf("linear fit: %w", err)
	}
	f := Fit{Model: ModelLinear, A: a, B: b, R2: r2, Points: len(n), s: s, xbar: xbar, sxx: sxx}
	f.BStdErr = math.NaN()
	if len(n) > 2 {
		f.BStdErr = s / math.Sqrt(sxx)
	}
	f.RelRMSE = relRMSE(f, n, y)
	return f, nil
}

// ols is ordinary least squares of y on x: intercept a, slope b, residual
// standard error s, mean of x, sum of squares of x about its mean, R^2.
func ols(x, y []float64) (a, b, s, xbar, sxx, r2 float64, err error) {
	k := float64(len(x))
	var ybar float64
	for i := range x {
		xbar += x[i]
		ybar += y[i]
	}
	xbar /= k
	ybar /= k
	var sxy, syy float64
	for i := range x {
		dx, dy := x[i]-xbar, y[i]-ybar
		sxx += dx * dx
		sxy += dx * dy
		syy += dy * dy
	}
	if sxx == 0 {
		return 0, 0, 0, 0, 0, 0, fmt.Errorf("all points at the same node count")
	}
	b = sxy / sxx
	a = ybar - b*xbar
	var sse float64
	for i := range x {
		r := y[i] - (a + b*x[i])
		sse += r * r
	}
	if len(x) > 2 {
		s = math.Sqrt(sse / (k - 2))
	}
	r2 = 1.0
	if syy > 0 {
		r2 = 1 - sse/syy
	}
	return a, b, s, xbar, sxx, r2, nil
}

// Predict is the model's value at n.
func (f Fit) Predict(n float64) float64 {
	switch f.Model {
	case ModelPower:
		return f.A * math.Pow(n, f.B)
	case ModelLinear:
		return f.A + f.B*n
	}
	return f.A
}

// Interval is the 95 % prediction interval at n (NaN bounds when the fit
// has no error estimate: two points, or a constant).
func (f Fit) Interval(n float64) (lo, hi float64) {
	if f.Points <= 2 || f.Model == ModelConstant {
		return math.NaN(), math.NaN()
	}
	t := tQuantile975(f.Points - 2)
	x := n
	if f.Model == ModelPower {
		x = math.Log(n)
	}
	se := f.s * math.Sqrt(1+1/float64(f.Points)+(x-f.xbar)*(x-f.xbar)/f.sxx)
	if f.Model == ModelPower {
		c := math.Log(f.Predict(n))
		return math.Exp(c - t*se), math.Exp(c + t*se)
	}
	c := f.Predict(n)
	return c - t*se, c + t*se
}

// Solve is the node count at which the model reaches y (NaN if it never
// does while growing).
func (f Fit) Solve(y float64) float64 {
	switch f.Model {
	case ModelPower:
		if f.B <= 0 || f.A <= 0 || y <= 0 {
			return math.NaN()
		}
		return math.Pow(y/f.A, 1/f.B)
	case ModelLinear:
		if f.B <= 0 {
			return math.NaN()
		}
		return (y - f.A) / f.B
	}
	return math.NaN()
}

// String states the model with its error.
func (f Fit) String() string {
	switch f.Model {
	case ModelPower:
		s := fmt.Sprintf("%.4g·n^%.2f", f.A, f.B)
		if !math.IsNaN(f.BStdErr) {
			s += fmt.Sprintf(" (exponent ±%.2f)", f.BStdErr)
		}
		return s + fmt.Sprintf(", R²=%.3f in log-log, RMSE %s%%", f.R2, format.TrimFloat(f.RelRMSE*100))
	case ModelLinear:
		return fmt.Sprintf("%.4g + %.4g·n, R²=%.3f, RMSE %s%%", f.A, f.B, f.R2, format.TrimFloat(f.RelRMSE*100))
	}
	return fmt.Sprintf("constant %.4g", f.A)
}

// Growth describes how the model grows with n, in words.
func (f Fit) Growth() string {
	switch f.Model {
	case ModelConstant:
		return "constant"
	case ModelLinear:
		if f.B <= 0 {
			return "flat or falling"
		}
		return "linear with an offset"
	}
	b := f.B
	switch {
	case b < 0.2:
		return "about constant"
	case b < 0.8:
		return "sublinear"
	case b < 1.2:
		return "about linear"
	case b < 1.8:
		return "superlinear"
	case b < 2.2:
		return "about quadratic"
	}
	return "faster than quadratic"
}

func relRMSE(f Fit, n, y []float64) float64 {
	var ss float64
	k := 0
	for i := range n {
		if y[i] == 0 {
			continue
		}
		r := f.Predict(n[i])/y[i] - 1
		ss += r * r
		k++
	}
	if k == 0 {
		return math.NaN()
	}
	return math.Sqrt(ss / float64(k))
}

// looError is the mean absolute relative error of predicting each point
// from a fit of the others.
func looError(n, y []float64, fitter func(n, y []float64) (Fit, error)) float64 {
	if len(n) < 4 {
		return math.NaN()
	}
	var sum float64
	k := 0
	for i := range n {
		var nn, yy []float64
		for j := range n {
			if j != i {
				nn, yy = append(nn, n[j]), append(yy, y[j])
			}
		}
		f, err := fitter(nn, yy)
		if err != nil || y[i] == 0 {
			continue
		}
		sum += math.Abs(f.Predict(n[i])/y[i] - 1)
		k++
	}
	if k == 0 {
		return math.NaN()
	}
	return sum / float64(k)
}

// fitBest fits the models that apply and picks one: a constant when every
// value is equal; a linear model when some value is zero (a power law
// cannot pass through zero); otherwise the power law, unless the linear
// model predicts left-out points clearly better (four or more points).
// alt is the other model when there is one.
func fitBest(n, y []float64) (best Fit, alt *Fit, err error) {
	if len(n) == 0 {
		return Fit{}, nil, fmt.Errorf("no points")
	}
	same := true
	positive := true
	for i := range y {
		same = same && y[i] == y[0]
		positive = positive && y[i] > 0
	}
	if same {
		return Fit{Model: ModelConstant, A: y[0], Points: len(n), BStdErr: math.NaN(), R2: 1, LOOError: math.NaN()}, nil, nil
	}
	lin, lerr := fitLinear(n, y)
	if lerr == nil {
		lin.LOOError = looError(n, y, fitLinear)
	}
	if !positive {
		if lerr != nil {
			return Fit{}, nil, lerr
		}
		return lin, nil, nil
	}
	pow, perr := fitPower(n, y)
	if perr != nil {
		return Fit{}, nil, perr
	}
	pow.LOOError = looError(n, y, fitPower)
	if lerr != nil {
		return pow, nil, nil
	}
	if !math.IsNaN(pow.LOOError) && !math.IsNaN(lin.LOOError) && lin.LOOError < 0.5*pow.LOOError {
		return lin, &pow, nil
	}
	return pow, &lin, nil
}

// tQuantile975 is the 97.5 % quantile of Student's t with df degrees of
// freedom (two-sided 95 %).
func tQuantile975(df int) float64 {
	table := []float64{math.NaN(), 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
		2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086}
	switch {
	case df <= 0:
		return math.NaN()
	case df < len(table):
		return table[df]
	case df < 30:
		return 2.05
	case df < 60:
		return 2.01
	}
	return 1.96
}
