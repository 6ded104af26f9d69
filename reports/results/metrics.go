package results

import (
	"math"
	"sort"

	"github.com/stampede-sim/stampede/reports/internal/format"
)

// Metric is one scalar a mode's summary yields, for the gate and the
// capacity model. All metrics are costs: higher is worse.
type Metric struct {
	// Name is how rules and reports refer to it ("api.p99").
	Name string
	// Unit is the unit of its values ("s", "bytes", "cores", "CPU-s",
	// "count").
	Unit string
	// Help says what it is.
	Help string
	// Value extracts it from a mode (NaN: not measured).
	Value func(m *ModeResult) float64
}

// Format writes a value of the metric for people.
func (m Metric) Format(v float64) string {
	switch m.Unit {
	case "s":
		return format.Sec(v)
	case "bytes":
		return format.Bytes(v)
	case "cores":
		if math.IsNaN(v) {
			return format.Missing
		}
		return format.Sig3(v*100) + "% of a core"
	case "count":
		if math.IsNaN(v) {
			return format.Missing
		}
		if math.Abs(v) >= 1e7 {
			return format.Count(v)
		}
		if v == math.Trunc(v) || math.Abs(v) >= 100 {
			return format.Int(int64(math.Round(v)))
		}
		return format.Sig3(v)
	}
	if math.IsNaN(v) {
		return format.Missing
	}
	return format.Sig3(v) + " " + m.Unit
}

var nan = math.NaN()

func latencyOr(l *LatencySummary, f func(*LatencySummary) float64) float64 {
	if l == nil {
		return nan
	}
	return f(l)
}

// Metrics is the catalogue, sorted by name.
func Metrics() []Metric {
	var ms []Metric
	for _, group := range [][]Metric{latencyMetrics(), costMetrics(), trafficMetrics(), convergenceMetrics()} {
		ms = append(ms, group...)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	return ms
}

// MetricByName finds a metric of the catalogue.
func MetricByName(name string) (Metric, bool) {
	for _, m := range Metrics() {
		if m.Name == name {
			return m, true
		}
	}
	return Metric{}, false
}

// MetricNames lists the catalogue's names.
func MetricNames() []string {
	var out []string
	for _, m := range Metrics() {
		out = append(out, m.Name)
	}
	return out
}

// latencyMetrics are the metrics of latencies: the probe's, the server's, the kvstore's and xDS's.
func latencyMetrics() []Metric {
	p99 := func(l *LatencySummary) float64 { return l.P99 }
	return []Metric{
		{"api.p99", "s", "API latency p99 over all probe requests", func(m *ModeResult) float64 {
			return latencyOr(FindLatency(SummaryOf(m).APILatency, "*", "*"), p99)
		}},
		{"api.max", "s", "API latency max over all probe requests", func(m *ModeResult) float64 {
			return latencyOr(FindLatency(SummaryOf(m).APILatency, "*", "*"), func(l *LatencySummary) float64 { return l.Max })
		}},
		{"api.errors", "count", "probe requests that failed", func(m *ModeResult) float64 {
			return latencyOr(FindLatency(SummaryOf(m).APILatency, "*", "*"), func(l *LatencySummary) float64 { return float64(l.Errors) })
		}},
		{"server.p99", "s", "server-side latency p99, worst verb/resource", func(m *ModeResult) float64 {
			return latencyOr(WorstP99(SummaryOf(m).ServerLatency), p99)
		}},
		{"kvstore.p99", "s", "kvstore latency p99, worst operation", func(m *ModeResult) float64 {
			return latencyOr(WorstP99(SummaryOf(m).KVStoreLatency), p99)
		}},
		{"xds.p99", "s", "xDS push latency p99, worst type", func(m *ModeResult) float64 {
			return latencyOr(WorstP99(SummaryOf(m).XDSPushLatency), p99)
		}},
	}
}

// costMetrics are the metrics of the CPU and memory of the processes and of one agent.
func costMetrics() []Metric {
	return []Metric{
		{"apiserver.cpu", "CPU-s", "API server CPU-seconds over the mode", func(m *ModeResult) float64 {
			return ProcessCPU(m.Summary, "apiserver")
		}},
		{"apiserver.rss", "bytes", "API server peak RSS", func(m *ModeResult) float64 {
			if p := FindProcess(SummaryOf(m), "apiserver"); p != nil {
				return float64(p.PeakRSS)
			}
			return nan
		}},
		{"kvstore.cpu", "CPU-s", "kvstore etcd CPU-seconds over the mode", func(m *ModeResult) float64 {
			return ProcessCPU(m.Summary, "kvstore")
		}},
		{"controlplane.cpu", "CPU-s", "control plane CPU-seconds over the mode", func(m *ModeResult) float64 {
			return ProcessCPU(m.Summary, "controlplane")
		}},
		{"agent.cpu.peak", "cores", "peak CPU per agent, mean across shards", func(m *ModeResult) float64 {
			if a := SummaryOf(m).Agents; a != nil {
				return a.PeakCPU.Mean
			}
			return nan
		}},
		{"agent.cpu.seconds", "CPU-s", "CPU-seconds per agent, mean across shards", func(m *ModeResult) float64 {
			if a := SummaryOf(m).Agents; a != nil {
				return a.CPUSeconds.Mean
			}
			return nan
		}},
		{"agent.rss.peak", "bytes", "peak RSS per agent, mean across shards", func(m *ModeResult) float64 {
			if a := SummaryOf(m).Agents; a != nil {
				return a.PeakRSS.Mean
			}
			return nan
		}},
	}
}

// trafficMetrics are the metrics of what the cluster carried: watch traffic, writes, throttling, identities and datapath updates.
func trafficMetrics() []Metric {
	return []Metric{
		{"watch.events", "count", "watch events delivered", func(m *ModeResult) float64 {
			if w := SummaryOf(m).Watch; w != nil {
				return float64(w.Events)
			}
			return nan
		}},
		{"watch.bytes", "bytes", "watch bytes delivered", func(m *ModeResult) float64 {
			if w := SummaryOf(m).Watch; w != nil {
				return float64(w.Bytes)
			}
			return nan
		}},
		{"watch.events.peak", "count", "peak watch events per second", func(m *ModeResult) float64 {
			if w := SummaryOf(m).Watch; w != nil {
				return w.PeakEventsPerSecond
			}
			return nan
		}},
		{"writes.total", "count", "API writes of every type", func(m *ModeResult) float64 {
			s := SummaryOf(m)
			if s.Writes == nil {
				return nan
			}
			n, _ := s.WriteTotals()
			return float64(n)
		}},
		{"writes.rejected", "count", "API writes not answered with a 2xx (409, 429, ...)", func(m *ModeResult) float64 {
			s := SummaryOf(m)
			if s.Writes == nil {
				return nan
			}
			_, n := s.WriteTotals()
			return float64(n)
		}},
		{"http429", "count", "429 responses", func(m *ModeResult) float64 {
			if t := SummaryOf(m).Throttling; t != nil {
				return float64(t.HTTP429)
			}
			return nan
		}},
		{"identities.duplicates", "count", "identities created for a label set that had one", func(m *ModeResult) float64 {
			if id := SummaryOf(m).Identities; id != nil {
				return float64(id.Duplicates)
			}
			return nan
		}},
		{"datapath.updates", "count", "datapath map updates across agents", func(m *ModeResult) float64 {
			if d := SummaryOf(m).Datapath; d != nil {
				return float64(d.Updates)
			}
			return nan
		}},
	}
}

// convergenceMetrics are the metrics of how fast and how completely the agents converged.
func convergenceMetrics() []Metric {
	return []Metric{
		{"converge.p99", "s", "time to converge after the relabel, p99 over agents", func(m *ModeResult) float64 {
			if c := RelabelConvergence(m.Summary); c != nil {
				return c.P99
			}
			return nan
		}},
		{"converge.max", "s", "time to converge after the relabel, max over agents", func(m *ModeResult) float64 {
			if c := RelabelConvergence(m.Summary); c != nil {
				return c.Max
			}
			return nan
		}},
		{"agents.unconverged", "count", "agents that never converged, summed over convergence steps", func(m *ModeResult) float64 {
			s := SummaryOf(m)
			if len(s.Convergence) == 0 {
				return nan
			}
			n := 0
			for _, c := range s.Convergence {
				n += c.Agents - c.Converged
			}
			return float64(n)
		}},
	}
}
