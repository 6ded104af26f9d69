package reports

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"image/color"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/stampede-sim/stampede/reports/internal/format"
	"github.com/stampede-sim/stampede/reports/internal/stats"
)

// This file holds the plotting building blocks: colours, gap-aware lines and
// bands, event markers, log ticks in human units and figure encoding.

// Figure is one image of a report: one or more panels drawn on a canvas.
type Figure struct {
	// Name is the file name without extension ("crd-api-latency").
	Name string
	// Title is a short human title, used as the image's alt text.
	Title string
	// Mode is the mode the figure is about ("" for figures across modes).
	Mode string
	// Caption is drawn above the panels (the scenario and environment).
	Caption string

	rows     [][]*plot.Plot
	width    vg.Length
	height   vg.Length
	panelRow vg.Length // height per row when height is 0
}

// wrapCaption splits a caption into lines no wider than width, breaking
// its own lines at spaces: the account of the API server alone can be
// wider than a figure.
func wrapCaption(sty draw.TextStyle, caption string, width vg.Length) []string {
	var out []string
	for _, line := range strings.Split(caption, "\n") {
		cur := ""
		for _, word := range strings.Fields(line) {
			next := word
			if cur != "" {
				next = cur + " " + word
			}
			if cur != "" && sty.Width(next) > width {
				out = append(out, cur)
				next = word
			}
			cur = next
		}
		out = append(out, cur)
	}
	return out
}

// Encode draws the figure as "png" or "svg".
func (f *Figure) Encode(format string) (data []byte, err error) {
	defer func() {
		// gonum/plot panics on some degenerate input (log of zero); a
		// report must not crash on odd data.
		if r := recover(); r != nil {
			data, err = nil, fmt.Errorf("plot %s: %v", f.Name, r)
		}
	}()
	w, h := f.width, f.height
	if w == 0 {
		w = 10 * vg.Inch
	}
	if h == 0 {
		ph := f.panelRow
		if ph == 0 {
			ph = 4.2 * vg.Inch
		}
		h = ph * vg.Length(len(f.rows))
	}
	c, err := draw.NewFormattedCanvas(w, h, format)
	if err != nil {
		return nil, fmt.Errorf("plot %s: %w", f.Name, err)
	}
	dc := draw.New(c)
	if f.Caption != "" {
		sty := plot.New().Title.TextStyle
		sty.Font.Size = vg.Points(10)
		sty.Color = color.Gray{Y: 60}
		sty.XAlign = draw.XCenter
		sty.YAlign = draw.YTop
		lines := wrapCaption(sty, f.Caption, w-vg.Points(24))
		dc.FillText(sty, vg.Point{X: (dc.Min.X + dc.Max.X) / 2, Y: dc.Max.Y - vg.Points(4)}, strings.Join(lines, "\n"))
		dc.Max.Y -= vg.Points(18) + vg.Length(len(lines)-1)*sty.Height("M")
	}
	cols := 0
	for _, r := range f.rows {
		cols = max(cols, len(r))
	}
	if len(f.rows) == 1 && cols == 1 {
		f.rows[0][0].Draw(dc)
	} else {
		grid := make([][]*plot.Plot, len(f.rows))
		for i, r := range f.rows {
			grid[i] = make([]*plot.Plot, cols)
			copy(grid[i], r)
		}
		tiles := draw.Tiles{Rows: len(grid), Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
			PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
		canvases := plot.Align(grid, tiles, dc)
		for i := range grid {
			for j := range grid[i] {
				if grid[i][j] != nil {
					grid[i][j].Draw(canvases[i][j])
				}
			}
		}
	}
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return nil, fmt.Errorf("plot %s: %w", f.Name, err)
	}
	return b.Bytes(), nil
}

// Colours: one per mode, the same in every figure, and a palette for
// processes and other series.
var (
	modeColors = map[string]color.RGBA{
		"crd":      {31, 119, 180, 255},
		"ces":      {255, 127, 14, 255},
		"kvstore":  {44, 160, 44, 255},
		"operator": {214, 39, 40, 255},
		"xds":      {148, 103, 189, 255},
		"ces-slim": {140, 86, 75, 255},
		"mesh":     {227, 119, 194, 255},
	}
	// otherModeColors are for modes a scenario names itself, chosen by
	// the name so that a mode keeps its colour from figure to figure.
	otherModeColors = []color.RGBA{{188, 189, 34, 255}, {23, 190, 207, 255}, {127, 127, 127, 255}}
	palette         = []color.RGBA{
		{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255},
		{148, 103, 189, 255}, {140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255},
		{188, 189, 34, 255}, {23, 190, 207, 255},
	}
	processColors = map[string]color.RGBA{
		"apiserver":    palette[0],
		"etcd":         palette[1],
		"kvstore":      palette[2],
		"controlplane": palette[4],
		"agents":       palette[3],
		"harness":      palette[7],
	}
)

func modeColor(m string) color.RGBA {
	if c, ok := modeColors[m]; ok {
		return c
	}
	h := fnv.New32a()
	h.Write([]byte(m))
	return otherModeColors[h.Sum32()%uint32(len(otherModeColors))]
}

func colorAt(i int) color.RGBA { return palette[i%len(palette)] }

func withAlpha(c color.RGBA, a uint8) color.RGBA {
	// color.RGBA is alpha-premultiplied.
	f := float64(a) / 255
	return color.RGBA{uint8(float64(c.R) * f), uint8(float64(c.G) * f), uint8(float64(c.B) * f), a}
}

// newPlot makes a plot with the house style.
func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(12)
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.X.Label.TextStyle.Font.Size = vg.Points(10)
	p.Y.Label.TextStyle.Font.Size = vg.Points(10)
	p.Legend.Top = true
	p.Legend.Left = false
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Legend.ThumbnailWidth = vg.Points(16)
	p.Legend.Padding = vg.Points(1.5)
	p.Y.Tick.Marker = countTicks{}
	grid := plotter.NewGrid()
	grid.Vertical.Color = color.Gray{Y: 225}
	grid.Horizontal.Color = color.Gray{Y: 225}
	p.Add(grid)
	return p
}

// segments splits (x, y) at NaN (and, for log axes, non-positive) values
// and where samples are missing (a gap in x of more than three typical
// steps) into runs that can be drawn as lines, so that a line never
// pretends to know what happened where nothing was sampled.
func segments(x []float64, y []float64, logY bool) []plotter.XYs {
	return segmentsGap(x, y, logY, 3*typicalStep(x))
}

// segmentsGap is segments with an explicit largest gap (+Inf: never split
// on gaps, for curves sampled on purpose at uneven steps).
func segmentsGap(x []float64, y []float64, logY bool, maxGap float64) []plotter.XYs {
	var out []plotter.XYs
	var cur plotter.XYs
	n := min(len(x), len(y))
	for i := 0; i < n; i++ {
		v := y[i]
		if len(cur) > 0 && x[i]-cur[len(cur)-1].X > maxGap {
			out = append(out, cur)
			cur = nil
		}
		if math.IsNaN(v) || math.IsInf(v, 0) || math.IsNaN(x[i]) || (logY && v <= 0) {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, plotter.XY{X: x[i], Y: v})
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// typicalStep is the median step of x (+Inf when there is none, so that
// nothing is split).
func typicalStep(x []float64) float64 {
	var d []float64
	for i := 1; i < len(x); i++ {
		if s := x[i] - x[i-1]; s > 0 {
			d = append(d, s)
		}
	}
	if len(d) == 0 {
		return math.Inf(1)
	}
	return stats.Median(d)
}

// addLine draws y over x with gaps where values are missing; it adds a
// legend entry when name is not empty and returns whether anything was
// drawn.
func addLine(p *plot.Plot, name string, x, y []float64, logY bool, c color.Color, width vg.Length, dashes []vg.Length) bool {
	return addLineGap(p, name, x, y, logY, c, width, dashes, 3*typicalStep(x))
}

// addLineGap is addLine with an explicit largest gap (see segmentsGap).
func addLineGap(p *plot.Plot, name string, x, y []float64, logY bool, c color.Color, width vg.Length, dashes []vg.Length, maxGap float64) bool {
	segs := segmentsGap(x, y, logY, maxGap)
	drawn := false
	var first *plotter.Line
	for _, s := range segs {
		if len(s) == 1 {
			// A lone point still shows as a dot.
			sc, err := plotter.NewScatter(s)
			if err == nil {
				sc.GlyphStyle.Color = c
				sc.GlyphStyle.Radius = width
				sc.GlyphStyle.Shape = draw.CircleGlyph{}
				p.Add(sc)
				drawn = true
			}
			continue
		}
		l, err := plotter.NewLine(s)
		if err != nil {
			continue
		}
		l.LineStyle.Color = c
		l.LineStyle.Width = width
		l.LineStyle.Dashes = dashes
		p.Add(l)
		if first == nil {
			first = l
		}
		drawn = true
	}
	if drawn && name != "" {
		if first != nil {
			p.Legend.Add(name, first)
		} else {
			l := &plotter.Line{LineStyle: draw.LineStyle{Color: c, Width: width, Dashes: dashes}}
			p.Legend.Add(name, l)
		}
	}
	return drawn
}

// addBand shades the area between lo and hi over x (gaps where either is
// missing).
func addBand(p *plot.Plot, name string, x, lo, hi []float64, c color.RGBA) bool {
	return addBandGap(p, name, x, lo, hi, c, 3*typicalStep(x[:min(len(x), len(lo), len(hi))]))
}

// addBandGap is addBand with an explicit largest gap (see segmentsGap).
func addBandGap(p *plot.Plot, name string, x, lo, hi []float64, c color.RGBA, maxGap float64) bool {
	n := min(len(x), len(lo), len(hi))
	drawn := false
	var poly *plotter.Polygon
	start := -1
	flush := func(end int) {
		if start < 0 || end-start < 2 {
			start = -1
			return
		}
		pts := make(plotter.XYs, 0, 2*(end-start))
		for i := start; i < end; i++ {
			pts = append(pts, plotter.XY{X: x[i], Y: hi[i]})
		}
		for i := end - 1; i >= start; i-- {
			pts = append(pts, plotter.XY{X: x[i], Y: lo[i]})
		}
		pg, err := plotter.NewPolygon(pts)
		if err == nil {
			pg.Color = withAlpha(c, 70)
			pg.LineStyle.Width = 0
			p.Add(pg)
			poly = pg
			drawn = true
		}
		start = -1
	}
	for i := 0; i < n; i++ {
		ok := !math.IsNaN(lo[i]) && !math.IsNaN(hi[i]) && !math.IsNaN(x[i]) && !math.IsInf(lo[i], 0) && !math.IsInf(hi[i], 0)
		if start >= 0 && i > 0 && x[i]-x[i-1] > maxGap {
			flush(i)
		}
		if ok && start < 0 {
			start = i
		}
		if !ok {
			flush(i)
		}
	}
	flush(n)
	if drawn && name != "" {
		p.Legend.Add(name, poly)
	}
	return drawn
}

// eventMarker draws a labelled vertical line at X over the whole data area.
type eventMarker struct {
	X     float64
	Label string
	Color color.Color
}

// Plot implements plot.Plotter.
func (m eventMarker) Plot(c draw.Canvas, plt *plot.Plot) {
	if m.X < plt.X.Min || m.X > plt.X.Max {
		return
	}
	x := c.X(plt.X.Norm(m.X))
	ls := draw.LineStyle{Color: m.Color, Width: vg.Points(1.2), Dashes: []vg.Length{vg.Points(5), vg.Points(3)}}
	c.StrokeLine2(ls, x, c.Min.Y, x, c.Max.Y)
	if m.Label != "" {
		sty := plt.Legend.TextStyle
		sty.Color = m.Color
		sty.Font.Size = vg.Points(9)
		sty.YAlign = draw.YTop
		sty.XAlign = draw.XLeft
		at := x + vg.Points(3)
		if x > c.Min.X+(c.Max.X-c.Min.X)*0.85 {
			// Near the right edge: write the label to the left.
			sty.XAlign = draw.XRight
			at = x - vg.Points(3)
		}
		c.FillText(sty, vg.Point{X: at, Y: c.Max.Y - vg.Points(3)}, m.Label)
	}
}

// DataRange implements plot.DataRanger so that a marker keeps its time in
// view.
func (m eventMarker) DataRange() (xmin, xmax, ymin, ymax float64) {
	return m.X, m.X, math.Inf(1), math.Inf(-1)
}

// logTicks labels a log axis at 1-2-5 steps in a unit's formatting.
type logTicks struct {
	format func(float64) string
}

// Ticks implements plot.Ticker.
func (t logTicks) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= 0 || math.IsNaN(lo) || math.IsNaN(hi) {
		return nil
	}
	decades := math.Log10(hi) - math.Log10(lo)
	labelled := map[int]bool{1: true}
	if decades < 2.5 {
		labelled[2], labelled[5] = true, true
	}
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		base := math.Pow(10, e)
		for m := 1; m < 10; m++ {
			v := base * float64(m)
			if v < lo*(1-1e-9) || v > hi*(1+1e-9) {
				continue
			}
			tk := plot.Tick{Value: v}
			if labelled[m] {
				tk.Label = t.format(v)
			}
			ticks = append(ticks, tk)
		}
	}
	return ticks
}

// countTicks are the default linear ticks labelled compactly (600k, not
// 600000).
type countTicks struct{}

// Ticks implements plot.Ticker.
func (countTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = format.Count(ticks[i].Value)
		}
	}
	return ticks
}

// setLogY makes the Y axis logarithmic when the plot has positive data;
// it reports false (and leaves the axis linear) otherwise.
func setLogY(p *plot.Plot, format func(float64) string) bool {
	if !(p.Y.Min > 0) || !(p.Y.Max > 0) || math.IsInf(p.Y.Min, 0) || math.IsInf(p.Y.Max, 0) {
		return false
	}
	// Keep at least a factor of ~3 so the axis is readable.
	if p.Y.Max/p.Y.Min < 3 {
		mid := math.Sqrt(p.Y.Max * p.Y.Min)
		p.Y.Min, p.Y.Max = mid/2, mid*2
	}
	p.Y.Max *= 2.5 // room for the legend above the data
	p.Y.Min /= 1.5
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = logTicks{format: format}
	return true
}

// formatSeconds writes a duration in seconds with a readable unit.
func formatSeconds(v float64) string {
	a := math.Abs(v)
	switch {
	case v == 0:
		return "0"
	case a < 1e-3:
		return format.TrimFloat(v*1e6) + "µs"
	case a < 1:
		return format.TrimFloat(v*1e3) + "ms"
	case a < 120:
		return format.TrimFloat(v) + "s"
	default:
		return format.TrimFloat(v/60) + "min"
	}
}

// scaled returns v divided by div (a copy).
func scaled(v []float64, div float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x / div
	}
	return out
}

// colMax is the largest non-NaN value (NaN when none).
func colMax(cols ...[]float64) float64 {
	m := math.NaN()
	for _, c := range cols {
		for _, v := range c {
			if !math.IsNaN(v) && !math.IsInf(v, 0) && (math.IsNaN(m) || v > m) {
				m = v
			}
		}
	}
	return m
}
