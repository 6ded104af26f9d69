package reports

import (
	"image/color"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"

	"github.com/stampede-sim/stampede/reports/internal/format"
	"github.com/stampede-sim/stampede/reports/results"
)

// modePlots draws the figures of one mode over the seconds since the mode
// started, with the timeline's events marked. Each method draws one
// figure and returns nil when the mode has nothing to show in it.
type modePlots struct {
	m    *results.ModeResult
	mode string
	// caption is for figures of the agents, kvstore and xDS; apiCaption,
	// which also names the API server, for those the API server shapes.
	caption, apiCaption string
	x                   []float64
	ms                  []eventMarker
}

// modeFigures draws the figures of mode m, in the order the report shows
// them.
func modeFigures(r *results.Results, m *results.ModeResult) []*Figure {
	if m.Series.Len() == 0 {
		return nil
	}
	mp := &modePlots{m: m, mode: string(m.Mode), caption: Caption(r), apiCaption: APICaption(r), x: m.Series.T, ms: markers(m, 0)}
	var figs []*Figure
	for _, f := range []*Figure{mp.apiLatency(), mp.processes(), mp.perAgent(), mp.watch(), mp.writes(), mp.kvstoreLatency(), mp.xdsLatency()} {
		if f != nil {
			figs = append(figs, f)
		}
	}
	return figs
}

// apiLatency is the probe's latency per second, log scale, with the
// server's own p99 where the backend exports it.
func (mp *modePlots) apiLatency() *Figure {
	p := newPlot(mp.mode+": API server latency per second (probe)", xSinceStart, "latency (log scale)")
	drawn := false
	drawn = addLine(p, "max", mp.x, column(mp.m, results.SeriesAPILatencyMax), true, color.Gray{Y: 150}, vg.Points(1), []vg.Length{vg.Points(3), vg.Points(2)}) || drawn
	drawn = addLine(p, "p99", mp.x, column(mp.m, results.SeriesAPILatencyP99), true, palette[3], vg.Points(1.8), nil) || drawn
	drawn = addLine(p, "p50", mp.x, column(mp.m, results.SeriesAPILatencyP50), true, palette[0], vg.Points(1.5), nil) || drawn
	drawn = addLine(p, "p99 (server's own histogram)", mp.x, column(mp.m, results.SeriesServerLatencyP99), true, palette[2], vg.Points(1.2), []vg.Length{vg.Points(1), vg.Points(2)}) || drawn
	if drawn {
		addMarkers(p, mp.ms)
		setLogY(p, formatSeconds)
		return &Figure{Caption: mp.apiCaption, Name: mp.mode + "-api-latency", Title: mp.mode + ": API server latency (p50/p99/max per second, log scale)", Mode: mp.mode, rows: [][]*plot.Plot{{p}}}
	}
	return nil
}

// processes is CPU and resident memory per process, the agent shards
// summed.
func (mp *modePlots) processes() *Figure {
	cpu, cpuNames := processSeries(mp.m, results.SeriesCPU)
	rss, rssNames := processSeries(mp.m, results.SeriesRSS)
	if len(cpuNames) > 0 || len(rssNames) > 0 {
		pc := newPlot(mp.mode+": CPU per process", xSinceStart, "CPU (cores)")
		drawnC, drawnM := false, false
		for i, n := range cpuNames {
			drawnC = addLine(pc, processLabel(n), mp.x, cpu[n], false, processColor(n, i), vg.Points(1.5), nil) || drawnC
		}
		linearY(pc)
		addMarkers(pc, mp.ms)
		var maxRSS float64
		for _, n := range rssNames {
			maxRSS = math.Max(maxRSS, nanZero(colMax(rss[n])))
		}
		unit, div := format.ByteUnit(maxRSS)
		pm := newPlot(mp.mode+": resident memory per process", xSinceStart, "RSS ("+unit+")")
		for i, n := range rssNames {
			drawnM = addLine(pm, processLabel(n), mp.x, scaled(rss[n], div), false, processColor(n, i), vg.Points(1.5), nil) || drawnM
		}
		linearY(pm)
		addMarkers(pm, mp.ms)
		noSamples(pc, mp.x, drawnC)
		noSamples(pm, mp.x, drawnM)
		if drawnC || drawnM {
			return &Figure{Caption: mp.apiCaption, Name: mp.mode + "-cpu-memory", Title: mp.mode + ": CPU and memory per process", Mode: mp.mode, rows: [][]*plot.Plot{{pc, pm}}, width: 12 * vg.Inch}
		}
	}
	return nil
}

// perAgent is the cost of one agent: the mean across shards with a
// min-max band.
func (mp *modePlots) perAgent() *Figure {
	mean, lo, hi := column(mp.m, results.SeriesAgentsCPUMean), column(mp.m, results.SeriesAgentsCPUMin), column(mp.m, results.SeriesAgentsCPUMax)
	rmean, rlo, rhi := column(mp.m, results.SeriesAgentsRSSMean), column(mp.m, results.SeriesAgentsRSSMin), column(mp.m, results.SeriesAgentsRSSMax)
	if mean != nil || rmean != nil {
		c := processColors["agents"]
		pc := newPlot(mp.mode+": simulator's CPU per agent ("+simulatorCost+")", xSinceStart, "CPU per agent (% of one core)")
		if lo != nil && hi != nil {
			addBand(pc, "min-max across shards", mp.x, scaled(lo, 0.01), scaled(hi, 0.01), c)
		}
		drawnC := addLine(pc, "mean", mp.x, scaled(mean, 0.01), false, c, vg.Points(1.5), nil)
		linearY(pc)
		addMarkers(pc, mp.ms)
		unit, div := format.ByteUnit(nanZero(colMax(rhi, rmean)))
		pm := newPlot(mp.mode+": simulator's memory per agent ("+simulatorCost+")", xSinceStart, "RSS per agent ("+unit+")")
		if rlo != nil && rhi != nil {
			addBand(pm, "min-max across shards", mp.x, scaled(rlo, div), scaled(rhi, div), c)
		}
		drawnM := addLine(pm, "mean", mp.x, scaled(rmean, div), false, c, vg.Points(1.5), nil)
		linearY(pm)
		addMarkers(pm, mp.ms)
		noSamples(pc, mp.x, drawnC)
		noSamples(pm, mp.x, drawnM)
		if drawnC || drawnM {
			return &Figure{Caption: mp.caption, Name: mp.mode + "-agents", Title: mp.mode + ": the simulator's CPU and memory per agent, " + simulatorCost + " (mean, min-max band across shards)", Mode: mp.mode, rows: [][]*plot.Plot{{pc, pm}}, width: 12 * vg.Inch}
		}
	}
	return nil
}

// watch is the watch events and bytes per second the agents received.
func (mp *modePlots) watch() *Figure {
	ev, by := column(mp.m, results.SeriesWatchEventsRate), column(mp.m, results.SeriesWatchBytesRate)
	if ev != nil || by != nil {
		pe := newPlot(mp.mode+": watch events delivered", xSinceStart, "events/s")
		drawnE := addLine(pe, "", mp.x, ev, false, palette[0], vg.Points(1.5), nil)
		linearY(pe)
		addMarkers(pe, mp.ms)
		unit, div := format.ByteUnit(nanZero(colMax(by)))
		pb := newPlot(mp.mode+": watch bytes delivered", xSinceStart, unit+"/s")
		drawnB := addLine(pb, "", mp.x, scaled(by, div), false, palette[1], vg.Points(1.5), nil)
		linearY(pb)
		addMarkers(pb, mp.ms)
		noSamples(pe, mp.x, drawnE)
		noSamples(pb, mp.x, drawnB)
		if drawnE || drawnB {
			return &Figure{Caption: mp.apiCaption, Name: mp.mode + "-watch", Title: mp.mode + ": watch events/s and bytes/s delivered", Mode: mp.mode, rows: [][]*plot.Plot{{pe, pb}}, width: 12 * vg.Inch}
		}
	}
	return nil
}

// writes is the API writes per second by type, beside the identities
// that exist.
func (mp *modePlots) writes() *Figure {
	pw := newPlot(mp.mode+": API writes by type", xSinceStart, "writes/s")
	drawnW := false
	i := 0
	for _, name := range mp.m.Series.Names() {
		b, labels, err := results.ParseSeriesName(name)
		if err != nil || b != results.SeriesAPIWritesRate || len(labels) == 0 {
			continue
		}
		drawnW = addLine(pw, labels[0].Value, mp.x, mp.m.Series.Values[name], false, colorAt(i), vg.Points(1.4), nil) || drawnW
		i++
	}
	linearY(pw)
	addMarkers(pw, mp.ms)
	pi := newPlot(mp.mode+": identities", xSinceStart, "identities")
	drawnI := addLine(pi, "existing", mp.x, column(mp.m, results.SeriesIdentities), false, palette[4], vg.Points(1.5), nil)
	linearY(pi)
	addMarkers(pi, mp.ms)
	noSamples(pw, mp.x, drawnW)
	noSamples(pi, mp.x, drawnI)
	if drawnW || drawnI {
		return &Figure{Caption: mp.apiCaption, Name: mp.mode + "-writes", Title: mp.mode + ": API writes per second by type, and identities", Mode: mp.mode, rows: [][]*plot.Plot{{pw, pi}}, width: 12 * vg.Inch}
	}
	return nil
}

// latSeries is one family of latency series in a latency figure.
type latSeries struct {
	base, legend string
	dashes       []vg.Length
}

var (
	dashed = []vg.Length{vg.Points(4), vg.Points(2)}
	dotted = []vg.Length{vg.Points(1), vg.Points(2)}
)

// kvstoreLatency is the kvstore's p99 by operation as the agents saw it
// (solid) and as the harness's own probe saw it (dotted).
func (mp *modePlots) kvstoreLatency() *Figure {
	return mp.latency("kvstore-latency", "kvstore latency p99 per second, by operation", []latSeries{
		{results.SeriesKVStoreLatencyP99, "agents", nil},
		{results.SeriesKVStoreProbeLatencyP99, "harness probe", dotted},
	})
}

// xdsLatency is the xDS push latency, p99 solid and p50 dashed.
func (mp *modePlots) xdsLatency() *Figure {
	return mp.latency("xds-latency", "xDS push latency (change to ACK)", []latSeries{
		{results.SeriesXDSPushLatencyP99, "p99", nil},
		{results.SeriesXDSPushLatencyP50, "p50", dashed},
	})
}

// latency draws every labelled series of the given families on a log
// scale, one colour per operation across the families.
func (mp *modePlots) latency(name, title string, series []latSeries) *Figure {
	p := newPlot(mp.mode+": "+title, xSinceStart, "latency (log scale)")
	drawn := false
	colors := map[string]color.Color{}
	for _, ls := range series {
		for _, sname := range mp.m.Series.Names() {
			b, labels, err := results.ParseSeriesName(sname)
			if err != nil || b != ls.base {
				continue
			}
			legend := ls.legend
			key := ""
			for _, l := range labels {
				legend += " " + l.Value
				key += l.Value
			}
			c, ok := colors[key]
			if !ok {
				c = opColor(key, len(colors))
				colors[key] = c
			}
			drawn = addLine(p, legend, mp.x, mp.m.Series.Values[sname], true, c, vg.Points(1.5), ls.dashes) || drawn
		}
	}
	if !drawn {
		return nil
	}
	addMarkers(p, mp.ms)
	setLogY(p, formatSeconds)
	return &Figure{Caption: mp.caption, Name: mp.mode + "-" + name, Title: mp.mode + ": " + title + " (log scale)", Mode: mp.mode, rows: [][]*plot.Plot{{p}}}
}
