package reports

import (
	"image/color"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/stampede-sim/stampede/reports/capacity"
	"github.com/stampede-sim/stampede/reports/internal/format"
	"github.com/stampede-sim/stampede/reports/results"
)

func capacityFigureName(metric string) string {
	r := strings.NewReplacer(": ", "-", " ", "-", ".", "-")
	return "capacity-" + r.Replace(metric)
}

// capacityFigures draws one figure per cost: every mode's measured points,
// the fitted curve over the measured range (solid) and its extrapolation
// to the largest target (dashed, with the 95 % prediction band shaded),
// on log-log axes.
func capacityFigures(rep *capacity.CapacityReport) []*Figure {
	byMetric := map[string][]capacity.CapacityFit{}
	var order []string
	for _, f := range rep.Fits {
		if _, ok := byMetric[f.Metric.Name]; !ok {
			order = append(order, f.Metric.Name)
		}
		byMetric[f.Metric.Name] = append(byMetric[f.Metric.Name], f)
	}
	minN := float64(rep.Nodes[0])
	maxN := float64(rep.Nodes[len(rep.Nodes)-1])
	maxT := maxN
	for _, t := range rep.Targets {
		maxT = math.Max(maxT, float64(t))
	}
	var apis []string
	for _, a := range rep.APIServers {
		apis = append(apis, a.Label())
	}
	caption := "scenario " + rep.Scenario + " · measured at " + joinNodes(rep.Nodes) + " nodes · API server: " + strings.Join(apis, ", ") + " · solid: fit over the measured range, dashed + band: extrapolation (95 % prediction interval)"
	var figs []*Figure
	for _, name := range order {
		fits := byMetric[name]
		metric := fits[0].Metric
		unit, div := metricAxis(metric, fits)
		p := newPlot(name+": "+metric.Help, "nodes (log scale)", unit+" (log scale)")
		drawn := false
		inf := math.Inf(1)
		// The axis covers the points, the fitted curves and the limit; a
		// prediction band wider than that is clipped at the axis (the
		// tables give the intervals in full).
		yLo, yHi := inf, 0.0
		widen := func(v float64) {
			if v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
				yLo, yHi = math.Min(yLo, v), math.Max(yHi, v)
			}
		}
		for _, f := range fits {
			for _, pt := range f.Points {
				widen(pt.Value / div)
			}
			if f.Err == "" {
				_, xsOut := fitRange(f, maxT)
				for _, v := range apply(f.Fit.Predict, xsOut) {
					widen(v / div)
				}
			}
			if f.Limit != nil {
				widen(*f.Limit / div)
			}
		}
		if yHi == 0 {
			continue
		}
		clip := func(v float64) float64 {
			switch {
			case math.IsNaN(v):
				return v
			case v < yLo/3:
				return yLo / 3
			case v > yHi*3:
				return yHi * 3
			}
			return v
		}
		for _, f := range fits {
			c := modeColor(string(f.Mode))
			var px, py []float64
			for _, pt := range f.Points {
				px = append(px, float64(pt.Nodes))
				py = append(py, pt.Value/div)
			}
			if f.Err == "" {
				xsIn, xsOut := fitRange(f, maxT)
				lo, hi := make([]float64, len(xsOut)), make([]float64, len(xsOut))
				for i, x := range xsOut {
					l, h := f.Fit.Interval(x)
					lo[i], hi[i] = clip(l/div), clip(h/div)
				}
				addBandGap(p, "", xsOut, lo, hi, c, inf)
				addLineGap(p, "", xsIn, scaled(apply(f.Fit.Predict, xsIn), div), true, c, vg.Points(1.8), nil, inf)
				addLineGap(p, "", xsOut, scaled(apply(f.Fit.Predict, xsOut), div), true, c, vg.Points(1.4), []vg.Length{vg.Points(5), vg.Points(3)}, inf)
			}
			if sc := scatter(px, py, c); sc != nil {
				sc.GlyphStyle.Shape = apiGlyph(rep, f.API)
				p.Add(sc)
				label := string(f.Mode)
				if len(rep.APIServers) > 1 {
					label += ", " + f.API.Label()
				}
				if f.Err == "" && f.Fit.Model == capacity.ModelPower {
					label += " (n^" + format.TrimFloat(f.Fit.B) + ")"
				} else if f.Err == "" && f.Fit.Model == capacity.ModelLinear {
					label += " (linear)"
				}
				p.Legend.Add(label, sc, &plotter.Line{LineStyle: draw.LineStyle{Color: c, Width: vg.Points(1.8)}})
				drawn = true
			}
			if f.Limit != nil {
				p.Add(hMarker{Y: *f.Limit / div, Label: "SLO limit " + metric.Format(*f.Limit), Color: color.RGBA{200, 30, 30, 255}})
			}
		}
		p.Y.Min, p.Y.Max = yLo/3, yHi*3
		if !drawn {
			continue
		}
		p.Add(eventMarker{X: maxN, Label: "measured range ends", Color: color.Gray{Y: 90}})
		p.X.Min, p.X.Max = minN*0.8, maxT*1.2
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = logTicks{format: func(v float64) string { return format.Count(v) }}
		p.Legend.Left = true
		if !setLogY(p, func(v float64) string { return format.Count(v) }) {
			linearY(p)
		}
		figs = append(figs, &Figure{Name: capacityFigureName(name), Title: name + " against nodes: measured, fitted and extrapolated", Caption: caption,
			rows: [][]*plot.Plot{{p}}, width: 11 * vg.Inch, panelRow: 5 * vg.Inch})
	}
	return figs
}

// fitRange are the node counts to draw f at: over its own measured range
// (solid) and from its largest measured count to maxT (dashed); each API
// server's runs may cover other node counts.
func fitRange(f capacity.CapacityFit, maxT float64) (in, out []float64) {
	lo, hi := float64(f.Points[0].Nodes), float64(f.Points[len(f.Points)-1].Nodes)
	return logSpace(lo, hi, 40), logSpace(hi, maxT, 60)
}

// apiGlyph tells API servers apart in a figure where a mode's colour
// appears once per API server.
func apiGlyph(rep *capacity.CapacityReport, a capacity.APIServer) draw.GlyphDrawer {
	shapes := []draw.GlyphDrawer{draw.CircleGlyph{}, draw.TriangleGlyph{}, draw.SquareGlyph{}, draw.PyramidGlyph{}, draw.RingGlyph{}, draw.BoxGlyph{}, draw.CrossGlyph{}, draw.PlusGlyph{}}
	for i, b := range rep.APIServers {
		if a == b {
			return shapes[i%len(shapes)]
		}
	}
	return shapes[0]
}

func joinNodes(ns []int) string {
	var s []string
	for _, n := range ns {
		s = append(s, fmtNodes(n))
	}
	return strings.Join(s, ", ")
}

// metricAxis picks the axis unit and divisor for a metric's values.
func metricAxis(m results.Metric, fits []capacity.CapacityFit) (string, float64) {
	var maxV float64
	for _, f := range fits {
		for _, p := range f.Points {
			maxV = math.Max(maxV, p.Value)
		}
	}
	switch m.Unit {
	case "bytes":
		return format.ByteUnit(maxV)
	case "s":
		return "seconds", 1
	case "cores":
		return "% of a core", 0.01
	case "count":
		return "count", 1
	}
	return m.Unit, 1
}

func logSpace(lo, hi float64, n int) []float64 {
	out := make([]float64, n)
	if n == 1 || hi <= lo {
		for i := range out {
			out[i] = lo
		}
		return out
	}
	a, b := math.Log(lo), math.Log(hi)
	for i := range out {
		out[i] = math.Exp(a + (b-a)*float64(i)/float64(n-1))
	}
	return out
}

func apply(f func(float64) float64, xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

func scatter(x, y []float64, c color.Color) *plotter.Scatter {
	var pts plotter.XYs
	for i := range x {
		if y[i] > 0 && !math.IsNaN(y[i]) && !math.IsInf(y[i], 0) {
			pts = append(pts, plotter.XY{X: x[i], Y: y[i]})
		}
	}
	if len(pts) == 0 {
		return nil
	}
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return nil
	}
	sc.GlyphStyle.Color = c
	sc.GlyphStyle.Radius = vg.Points(3.5)
	sc.GlyphStyle.Shape = draw.CircleGlyph{}
	return sc
}

// hMarker draws a labelled horizontal line at Y over the data area.
type hMarker struct {
	Y     float64
	Label string
	Color color.Color
}

// Plot implements plot.Plotter.
func (m hMarker) Plot(c draw.Canvas, plt *plot.Plot) {
	if m.Y < plt.Y.Min || m.Y > plt.Y.Max || m.Y <= 0 && plt.Y.Scale == (plot.LogScale{}) {
		return
	}
	y := c.Y(plt.Y.Norm(m.Y))
	ls := draw.LineStyle{Color: m.Color, Width: vg.Points(1), Dashes: []vg.Length{vg.Points(2), vg.Points(2)}}
	c.StrokeLine2(ls, c.Min.X, y, c.Max.X, y)
	sty := plt.Legend.TextStyle
	sty.Color = m.Color
	sty.Font.Size = vg.Points(9)
	sty.XAlign = draw.XRight
	sty.YAlign = draw.YBottom
	c.FillText(sty, vg.Point{X: c.Max.X - vg.Points(3), Y: y + vg.Points(2)}, m.Label)
}

// DataRange implements plot.DataRanger so that the limit stays in view.
func (m hMarker) DataRange() (xmin, xmax, ymin, ymax float64) {
	return math.Inf(1), math.Inf(-1), m.Y, m.Y
}
