package calibrate

import (
	"errors"
	"fmt"
	"math"
)

// Row is one observation of a linear model: the regressors X (one per
// coefficient) and the observed value Y. Weight scales the row's squared
// residual (1 when zero).
type Row struct {
	X      []float64
	Y      float64
	Weight float64
}

// FitResult is a least-squares fit.
type FitResult struct {
	// Coef are the fitted coefficients and StdErr their standard errors
	// (from the residual variance and (XᵀWX)⁻¹).
	Coef   []float64
	StdErr []float64
	// R2 is the (weighted) coefficient of determination: 1 - RSS/TSS,
	// with TSS taken around the weighted mean of Y.
	R2 float64
	// MaxRelResidual is the largest |residual|/|Y| over the rows.
	MaxRelResidual float64
	// Samples is the number of rows.
	Samples int
}

// ErrUnderdetermined is returned when there are no more rows than
// coefficients, or the regressors are (numerically) collinear.
var ErrUnderdetermined = errors.New("fit: not enough independent observations")

// LeastSquares fits Y ≈ X·b by weighted least squares. It solves the
// normal equations after scaling every column to unit norm, which keeps
// them well conditioned for the handful of coefficients a cost model has
// (regressors in requests, objects and KiB differ by orders of magnitude).
func LeastSquares(rows []Row) (FitResult, error) {
	if len(rows) == 0 {
		return FitResult{}, ErrUnderdetermined
	}
	p := len(rows[0].X)
	if p == 0 {
		return FitResult{}, errors.New("fit: rows have no regressors")
	}
	n := len(rows)
	if n <= p {
		return FitResult{}, fmt.Errorf("%w: %d rows for %d coefficients", ErrUnderdetermined, n, p)
	}
	w := make([]float64, n)
	for i, r := range rows {
		if len(r.X) != p {
			return FitResult{}, fmt.Errorf("fit: row %d has %d regressors, want %d", i, len(r.X), p)
		}
		w[i] = r.Weight
		if w[i] == 0 {
			w[i] = 1
		}
		if w[i] < 0 || math.IsNaN(w[i]) || math.IsInf(w[i], 0) || math.IsNaN(r.Y) || math.IsInf(r.Y, 0) {
			return FitResult{}, fmt.Errorf("fit: row %d: weight %v, y %v", i, r.Weight, r.Y)
		}
	}
	// Column scales.
	scale := make([]float64, p)
	for j := range p {
		var s float64
		for i, r := range rows {
			s += w[i] * r.X[j] * r.X[j]
		}
		if s == 0 {
			return FitResult{}, fmt.Errorf("%w: regressor %d is zero in every row", ErrUnderdetermined, j)
		}
		scale[j] = math.Sqrt(s)
	}
	// A = XsᵀWXs, c = XsᵀWy.
	a := make([][]float64, p)
	c := make([]float64, p)
	for j := range p {
		a[j] = make([]float64, p)
	}
	for i, r := range rows {
		for j := range p {
			xj := r.X[j] / scale[j]
			c[j] += w[i] * xj * r.Y
			for k := range p {
				a[j][k] += w[i] * xj * r.X[k] / scale[k]
			}
		}
	}
	inv, err := invertSPD(a)
	if err != nil {
		return FitResult{}, err
	}
	bs := make([]float64, p)
	for j := range p {
		for k := range p {
			bs[j] += inv[j][k] * c[k]
		}
	}
	res := FitResult{Coef: make([]float64, p), StdErr: make([]float64, p), Samples: n}
	for j := range p {
		res.Coef[j] = bs[j] / scale[j]
	}
	var rss, wsum, wy float64
	for i, r := range rows {
		wsum += w[i]
		wy += w[i] * r.Y
	}
	mean := wy / wsum
	var tss float64
	for i, r := range rows {
		var pred float64
		for j := range p {
			pred += res.Coef[j] * r.X[j]
		}
		e := r.Y - pred
		rss += w[i] * e * e
		tss += w[i] * (r.Y - mean) * (r.Y - mean)
		if r.Y != 0 {
			res.MaxRelResidual = math.Max(res.MaxRelResidual, math.Abs(e/r.Y))
		}
	}
	if tss > 0 {
		res.R2 = 1 - rss/tss
	} else {
		res.R2 = 1
	}
	s2 := rss / float64(n-p)
	for j := range p {
		res.StdErr[j] = math.Sqrt(s2*inv[j][j]) / scale[j]
	}
	return res, nil
}

// invertSPD inverts a symmetric positive definite matrix by Cholesky
// decomposition; it fails when the matrix is (numerically) singular.
func invertSPD(a [][]float64) ([][]float64, error) {
	p := len(a)
	l := make([][]float64, p)
	for i := range p {
		l[i] = make([]float64, p)
	}
	for i := range p {
		for j := 0; j <= i; j++ {
			s := a[i][j]
			for k := range j {
				s -= l[i][k] * l[j][k]
			}
			if i == j {
				// The columns are unit-norm, so the diagonal starts at 1;
				// what is left of it measures how independent column i is.
				if s <= 1e-10 {
					return nil, fmt.Errorf("%w: regressor %d is a combination of the others", ErrUnderdetermined, i)
				}
				l[i][i] = math.Sqrt(s)
			} else {
				l[i][j] = s / l[j][j]
			}
		}
	}
	// inv = L⁻ᵀ L⁻¹, column by column.
	inv := make([][]float64, p)
	for i := range p {
		inv[i] = make([]float64, p)
	}
	for col := range p {
		// Solve L z = e_col, then Lᵀ x = z.
		z := make([]float64, p)
		for i := range p {
			s := 0.0
			if i == col {
				s = 1
			}
			for k := range i {
				s -= l[i][k] * z[k]
			}
			z[i] = s / l[i][i]
		}
		x := make([]float64, p)
		for i := p - 1; i >= 0; i-- {
			s := z[i]
			for k := i + 1; k < p; k++ {
				s -= l[k][i] * x[k]
			}
			x[i] = s / l[i][i]
		}
		for i := range p {
			inv[i][col] = x[i]
		}
	}
	return inv, nil
}
