package reports

import (
	"fmt"
	"image/color"
	"math"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/stampede-sim/stampede/reports/internal/format"
	"github.com/stampede-sim/stampede/reports/results"
)

// Figures builds every figure of a report: per mode (API latency, CPU and
// memory per process, per-agent cost with its spread, watch traffic,
// kvstore and xDS latency where measured) and across modes (the same
// series overlaid, and bar charts of the summaries). Modes without samples
// get no per-mode figures; the report says why.
func Figures(r *results.Results) []*Figure {
	var out []*Figure
	for i := range r.Modes {
		out = append(out, modeFigures(r, &r.Modes[i])...)
	}
	out = append(out, compareFigures(r)...)
	return out
}

// Caption is the line that says what a figure measured.
func Caption(r *results.Results) string {
	parts := []string{"scenario " + r.Run.Scenario}
	if r.Run.Nodes > 0 {
		parts = append(parts, fmt.Sprintf("%d nodes", r.Run.Nodes))
	}
	if r.Run.Pods > 0 {
		parts = append(parts, fmt.Sprintf("%d pods", r.Run.Pods))
	}
	if r.Run.Backend.Name != "" {
		parts = append(parts, r.Run.Backend.Name+" API server")
	}
	if r.Run.Datapath.Effective != "" {
		parts = append(parts, r.Run.Datapath.Effective+" datapath")
	}
	if !r.Run.Started.IsZero() {
		parts = append(parts, r.Run.Started.UTC().Format("2006-01-02 15:04 UTC"))
	}
	if !r.Run.Complete {
		parts = append(parts, "INCOMPLETE RUN")
	}
	return strings.Join(parts, " · ")
}

// APICaption is Caption with a second line that says which API server the
// figure's API figures stand for: a kube-apiserver, or the fake with or
// without a capacity model (whose latency is then the simulator's own).
func APICaption(r *results.Results) string {
	return Caption(r) + "\n" + apiServerLine(r)
}

// apiServerLine names the API server r's API figures stand for.
func apiServerLine(r *results.Results) string {
	return "API server: " + results.APIServerOf(r).Describe()
}

// column returns a series' values, or nil.
func column(m *results.ModeResult, name string) []float64 {
	if m.Series == nil {
		return nil
	}
	return m.Series.Values[name]
}

// markers are the steps that changed the cluster, as offsets into the
// mode's series.
func markers(m *results.ModeResult, offset float64) []eventMarker {
	if m.Series == nil {
		return nil
	}
	var out []eventMarker
	for _, s := range m.Steps {
		switch s.Kind {
		case "relabel", "scale", "deletePods", "scaleAll":
			out = append(out, eventMarker{
				X:     s.Start.Sub(m.Series.Start).Seconds() - offset,
				Label: s.Kind,
				Color: color.RGBA{200, 30, 30, 255},
			})
		}
	}
	return out
}

func addMarkers(p *plot.Plot, ms []eventMarker) {
	for _, m := range ms {
		p.Add(m)
	}
}

// relabelOffset is the time of the mode's first relabel in its series (0
// when it has none).
func relabelOffset(m *results.ModeResult) (float64, bool) {
	if m.Series == nil {
		return 0, false
	}
	for _, s := range m.Steps {
		if s.Kind == "relabel" {
			return s.Start.Sub(m.Series.Start).Seconds(), true
		}
	}
	return 0, false
}

const xSinceStart = "time since the mode started (s)"

// processOrder sorts process names the way reports list them.
func processOrder(names []string) {
	rank := map[string]int{"apiserver": 0, "etcd": 1, "kvstore": 2, "controlplane": 3, "agents": 4, "harness": 5}
	sort.Slice(names, func(i, j int) bool {
		ri, oki := rank[names[i]]
		rj, okj := rank[names[j]]
		switch {
		case oki && okj:
			return ri < rj
		case oki != okj:
			return oki
		}
		return names[i] < names[j]
	})
}

// processSeries groups base{process=...} columns by process, summing the
// agent shards (agents-<i>) into "agents" (a gap if any shard is missing).
func processSeries(m *results.ModeResult, base string) (map[string][]float64, []string) {
	out := map[string][]float64{}
	if m.Series == nil {
		return out, nil
	}
	for _, name := range m.Series.Names() {
		b, labels, err := results.ParseSeriesName(name)
		if err != nil || b != base || len(labels) != 1 || labels[0].Name != "process" {
			continue
		}
		proc := labels[0].Value
		col := m.Series.Values[name]
		if strings.HasPrefix(proc, "agents-") {
			acc, ok := out["agents"]
			if !ok {
				acc = make([]float64, len(col))
			}
			for i := range acc {
				acc[i] += col[i] // NaN propagates: a gap
			}
			out["agents"] = acc
			continue
		}
		out[proc] = col
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	processOrder(names)
	return out, names
}

func processLabel(p string) string {
	if p == "agents" {
		return "agents (all shards)"
	}
	return p
}

func processColor(p string, i int) color.Color {
	if c, ok := processColors[p]; ok {
		return c
	}
	return colorAt(i + 8)
}

var opColors = map[string]color.RGBA{
	"get": palette[0], "put": palette[3], "txn": palette[2], "lock": palette[4], "unlock": palette[6],
	"create": palette[5], "delete": palette[7], "": palette[0],
}

func opColor(key string, i int) color.Color {
	if c, ok := opColors[key]; ok {
		return c
	}
	return colorAt(i + 8)
}

func nanZero(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}

// comparedModes are the modes that have samples.
func comparedModes(r *results.Results) []*results.ModeResult {
	var out []*results.ModeResult
	for i := range r.Modes {
		if r.Modes[i].Series.Len() > 0 {
			out = append(out, &r.Modes[i])
		}
	}
	return out
}

func compareFigures(r *results.Results) []*Figure {
	modes := comparedModes(r)
	var figs []*Figure
	caption := APICaption(r)
	if len(modes) >= 2 {
		// Align every mode at its relabel so the storms line up.
		aligned := true
		for _, m := range modes {
			if _, ok := relabelOffset(m); !ok {
				aligned = false
			}
		}
		xLabel := "time since the relabel started (s)"
		if !aligned {
			xLabel = xSinceStart
		}
		xOf := func(m *results.ModeResult) []float64 {
			off := 0.0
			if aligned {
				off, _ = relabelOffset(m)
			}
			return shift(m.Series.T, off)
		}
		overlay := func(title, yLabel string, logY bool, yOf func(m *results.ModeResult) []float64) *plot.Plot {
			p := newPlot(title, xLabel, yLabel)
			for _, m := range modes {
				addLine(p, string(m.Mode), xOf(m), yOf(m), logY, modeColor(string(m.Mode)), vg.Points(1.6), nil)
			}
			if aligned {
				p.Add(eventMarker{X: 0, Label: "relabel", Color: color.RGBA{200, 30, 30, 255}})
			}
			if logY {
				setLogY(p, formatSeconds)
			} else {
				linearY(p)
			}
			return p
		}
		lat := overlay("API server latency p99 per second (probe), all modes", "p99 latency (log scale)", true,
			func(m *results.ModeResult) []float64 { return column(m, results.SeriesAPILatencyP99) })
		figs = append(figs, &Figure{Caption: caption, Name: "compare-api-latency", Title: "API server latency p99 per second, all modes (log scale)", rows: [][]*plot.Plot{{lat}}})

		apiCPUTitle, apiCPUSeries := "API server CPU, all modes", results.SeriesName(results.SeriesCPU, "process", "apiserver")
		switch results.APIServerOf(r).Model {
		case results.ModelCapacity:
			apiCPUTitle, apiCPUSeries = "API server CPU, all modes (modelled kube-apiserver + etcd)", results.SeriesAPIServerModelledCPU
		case results.ModelNone:
			apiCPUTitle = "API server CPU, all modes (the fake's own process: the simulator's cost)"
		}
		apiCPU := overlay(apiCPUTitle, "CPU (cores)", false,
			func(m *results.ModeResult) []float64 { return column(m, apiCPUSeries) })
		var maxAPIRSS, maxAgentRSS float64
		for _, m := range modes {
			maxAPIRSS = math.Max(maxAPIRSS, nanZero(colMax(column(m, results.SeriesName(results.SeriesRSS, "process", "apiserver")))))
			maxAgentRSS = math.Max(maxAgentRSS, nanZero(colMax(column(m, results.SeriesAgentsRSSMean))))
		}
		apiUnit, apiDiv := format.ByteUnit(maxAPIRSS)
		apiRSS := overlay("API server memory, all modes", "RSS ("+apiUnit+")", false,
			func(m *results.ModeResult) []float64 {
				return scaled(column(m, results.SeriesName(results.SeriesRSS, "process", "apiserver")), apiDiv)
			})
		agentCPU := overlay("simulator's CPU per agent ("+simulatorCost+"), mean across shards", "CPU per agent (% of one core)", false,
			func(m *results.ModeResult) []float64 { return scaled(column(m, results.SeriesAgentsCPUMean), 0.01) })
		agUnit, agDiv := format.ByteUnit(maxAgentRSS)
		agentRSS := overlay("simulator's memory per agent ("+simulatorCost+"), mean across shards", "RSS per agent ("+agUnit+")", false,
			func(m *results.ModeResult) []float64 { return scaled(column(m, results.SeriesAgentsRSSMean), agDiv) })
		figs = append(figs, &Figure{Caption: caption, Name: "compare-resources", Title: "CPU and memory of the API server and of the simulator per agent (" + simulatorCost + "), all modes",
			rows: [][]*plot.Plot{{apiCPU, apiRSS}, {agentCPU, agentRSS}}, width: 12 * vg.Inch, panelRow: 4 * vg.Inch})

		ev := overlay("watch events delivered, all modes", "events/s", false,
			func(m *results.ModeResult) []float64 { return column(m, results.SeriesWatchEventsRate) })
		var maxBytes float64
		for _, m := range modes {
			maxBytes = math.Max(maxBytes, nanZero(colMax(column(m, results.SeriesWatchBytesRate))))
		}
		bu, bd := format.ByteUnit(maxBytes)
		by := overlay("watch bytes delivered, all modes", bu+"/s", false,
			func(m *results.ModeResult) []float64 { return scaled(column(m, results.SeriesWatchBytesRate), bd) })
		figs = append(figs, &Figure{Caption: caption, Name: "compare-watch", Title: "watch events/s and bytes/s, all modes", rows: [][]*plot.Plot{{ev, by}}, width: 12 * vg.Inch})
	}
	if bars := summaryBars(r); bars != nil {
		figs = append(figs, bars)
	}
	if bars := agentWorkBars(r); bars != nil {
		figs = append(figs, bars)
	}
	return figs
}

// noSamples marks a panel that has nothing to show, keeping the time axis
// of its neighbour.
func noSamples(p *plot.Plot, x []float64, drawn bool) {
	if drawn {
		return
	}
	if len(x) > 0 {
		p.X.Min, p.X.Max = x[0], x[len(x)-1]
	}
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(centeredNote{Text: "no samples"})
}

// centeredNote writes a line of text in the middle of the data area.
type centeredNote struct{ Text string }

// Plot implements plot.Plotter.
func (n centeredNote) Plot(c draw.Canvas, plt *plot.Plot) {
	sty := plt.Legend.TextStyle
	sty.Font.Size = vg.Points(12)
	sty.Color = color.Gray{Y: 110}
	sty.XAlign = draw.XCenter
	sty.YAlign = draw.YCenter
	c.FillText(sty, vg.Point{X: (c.Min.X + c.Max.X) / 2, Y: (c.Min.Y + c.Max.Y) / 2}, n.Text)
}

// linearY starts a linear Y axis at 0 and leaves room for the legend.
func linearY(p *plot.Plot) {
	p.Y.Min = 0
	if p.Y.Max > 0 && !math.IsInf(p.Y.Max, 0) {
		p.Y.Max *= 1.2
	}
}

func shift(v []float64, off float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x - off
	}
	return out
}

// summaryMetric is one bar panel of the across-modes summary.
type summaryMetric struct {
	title, unit string
	format      func(float64) string
	value       func(*results.ModeResult) float64 // NaN: not measured
}

func summaryMetrics(r *results.Results) []summaryMetric {
	api := results.APIServerOf(r)
	_, apiWhat := results.APIServerCPU(api, nil)
	return []summaryMetric{
		{"API latency p99 (probe, whole mode)", "seconds", formatSeconds, func(m *results.ModeResult) float64 { return apiP99(m.Summary) }},
		{"API server CPU (" + strings.TrimSuffix(apiWhat, " (not recorded)") + ")", "CPU-seconds", format.Count, func(m *results.ModeResult) float64 {
			v, _ := results.APIServerCPU(api, m.Summary)
			return v
		}},
		{"simulator's peak CPU per agent\n(" + simulatorCost + ")", "% of one core", format.Count, func(m *results.ModeResult) float64 {
			if m.Summary == nil || m.Summary.Agents == nil {
				return math.NaN()
			}
			return m.Summary.Agents.PeakCPU.Mean * 100
		}},
		{"simulator's peak memory per agent\n(" + simulatorCost + ")", "MiB", format.Count, func(m *results.ModeResult) float64 {
			if m.Summary == nil || m.Summary.Agents == nil {
				return math.NaN()
			}
			return m.Summary.Agents.PeakRSS.Mean / (1 << 20)
		}},
		{"watch events delivered", "events", format.Count, func(m *results.ModeResult) float64 {
			if m.Summary == nil || m.Summary.Watch == nil {
				return math.NaN()
			}
			return float64(m.Summary.Watch.Events)
		}},
		{"watch bytes delivered", "MiB", format.Count, func(m *results.ModeResult) float64 {
			if m.Summary == nil || m.Summary.Watch == nil {
				return math.NaN()
			}
			return float64(m.Summary.Watch.Bytes) / (1 << 20)
		}},
		{"time to converge after relabel (max over agents)", "seconds", formatSeconds, func(m *results.ModeResult) float64 {
			c := results.RelabelConvergence(m.Summary)
			if c == nil {
				return math.NaN()
			}
			return c.Max
		}},
		{"duplicate identities", "identities", format.Count, func(m *results.ModeResult) float64 {
			if m.Summary == nil || m.Summary.Identities == nil {
				return math.NaN()
			}
			return float64(m.Summary.Identities.Duplicates)
		}},
	}
}

// summaryBars is a grid of bar charts, one per summary metric, one bar per
// mode that has a summary.
func summaryBars(r *results.Results) *Figure { return barsFigure(r, summaryMetrics(r)) }

// barsFigure is a grid of bar charts, one per metric, one bar per mode
// that has a summary, named and captioned as the summary bars (callers
// rename it).
func barsFigure(r *results.Results, metrics []summaryMetric) *Figure {
	var modes []*results.ModeResult
	for i := range r.Modes {
		if r.Modes[i].Summary != nil {
			modes = append(modes, &r.Modes[i])
		}
	}
	if len(modes) == 0 {
		return nil
	}
	names := make([]string, len(modes))
	for i, m := range modes {
		names[i] = string(m.Mode)
		if m.Status != results.StatusOK {
			names[i] += " (" + string(m.Status) + ")"
		}
	}
	const cols = 4
	var rows [][]*plot.Plot
	for i, sm := range metrics {
		if i%cols == 0 {
			rows = append(rows, nil)
		}
		p := newPlot(sm.title, "", sm.unit)
		p.Title.TextStyle.Font.Size = vg.Points(10)
		p.Legend.Top = true
		var lx plotter.XYs
		var ll []string
		maxV := 0.0
		for j, m := range modes {
			v := sm.value(m)
			label := "n/a"
			h := 0.0
			if !math.IsNaN(v) {
				h = v
				label = sm.format(v)
				maxV = math.Max(maxV, v)
			}
			bc, err := plotter.NewBarChart(plotter.Values{h}, vg.Points(22))
			if err != nil {
				continue
			}
			bc.XMin = float64(j)
			bc.Color = modeColor(string(m.Mode))
			bc.LineStyle.Width = 0
			p.Add(bc)
			lx = append(lx, plotter.XY{X: float64(j), Y: h})
			ll = append(ll, label)
		}
		if maxV == 0 {
			maxV = 1
		}
		p.Y.Min = 0
		p.Y.Max = maxV * 1.18 // room for the value labels
		if lbl, err := plotter.NewLabels(plotter.XYLabels{XYs: lx, Labels: ll}); err == nil {
			for k := range lbl.TextStyle {
				lbl.TextStyle[k].XAlign = draw.XCenter
				lbl.TextStyle[k].Font.Size = vg.Points(8)
			}
			lbl.Offset = vg.Point{Y: vg.Points(2)}
			p.Add(lbl)
		}
		p.NominalX(names...)
		p.X.Min, p.X.Max = -0.6, float64(len(modes))-0.4
		rows[len(rows)-1] = append(rows[len(rows)-1], p)
	}
	return &Figure{Caption: APICaption(r), Name: "compare-summary", Title: "summary per mode (bar charts)", rows: rows, width: 14 * vg.Inch, panelRow: 3.6 * vg.Inch}
}

// apiP99 is the p99 over all probe requests ("*"), NaN if unknown.
func apiP99(s *results.Summary) float64 {
	if l := results.FindLatency(apiLatency(s), "*", "*"); l != nil {
		return l.P99
	}
	return math.NaN()
}

// apiLatency is s's probe latencies; s may be nil.
func apiLatency(s *results.Summary) []results.LatencySummary {
	if s == nil {
		return nil
	}
	return s.APILatency
}
