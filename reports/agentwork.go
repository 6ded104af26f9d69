package reports

import (
	"math"
	"sort"

	"github.com/stampede-sim/stampede/reports/internal/document"
	"github.com/stampede-sim/stampede/reports/internal/format"
	"github.com/stampede-sim/stampede/reports/results"
)

// Labels of the two kinds of agent figures: the simulated agents' CPU and
// memory are the simulator's (slim types, shared decoding), the work
// figures are what a cilium-agent would receive and hold.
const (
	simulatorCost   = "simulator's cost, not a cilium-agent's"
	ciliumAgentWork = "what a cilium-agent would receive and hold"
	workMeasured    = "measured from the simulated agents' real traffic and state"
)

// perAgentCell is "p50 / p99 / max" of one agent's figure.
func perAgentCell(v results.PerAgent, f func(float64) string) string {
	return f(v.P50) + " / " + f(v.P99) + " / " + f(v.Max)
}

func countCell(v float64) string { return format.Int(int64(math.Round(v))) }

// agentWorkTable is, per mode, what one agent received and holds
// (p50 / p99 / max over agents).
func agentWorkTable(d *document.Document, r *results.Results) {
	var rows [][]string
	for i := range r.Modes {
		m := &r.Modes[i]
		if m.Summary == nil || m.Summary.AgentWork == nil {
			continue
		}
		w := m.Summary.AgentWork
		rcv, held := w.Received["*"], w.Cached["*"]
		kernel := format.Missing
		switch {
		case w.KernelMapBytes != nil:
			kernel = perAgentCell(*w.KernelMapBytes, format.Bytes)
		case w.Datapath == "mem":
			kernel = "none: mem datapath (no kernel maps)"
		}
		rows = append(rows, []string{
			string(m.Mode), format.Int(int64(w.Agents)),
			perAgentCell(rcv.Events, countCell), perAgentCell(rcv.Bytes, format.Bytes),
			perAgentCell(held.Objects, countCell), perAgentCell(held.Bytes, format.Bytes),
			perAgentCell(w.Identities, countCell),
			perAgentCell(w.PolicyRecomputations, countCell), perAgentCell(w.PolicyMapKeys, countCell),
			perAgentCell(w.DatapathUpdates, countCell) + " (simulator: " + countCell(w.MapWrites.P50) + ")",
			kernel,
		})
	}
	if len(rows) == 0 {
		return
	}
	d.H(3, "Per agent: "+ciliumAgentWork)
	d.P("Per agent, p50 / p99 / max over agents, %s, counted from the agent's start to the end of the mode (held: at the end). "+
		"Events are watch events (kvstore puts and deletes, xDS resources); bytes are every list and watch answer as received; "+
		"held bytes are the held objects' size as received, which a cilium-agent keeps decoded (its heap holds a multiple of it). "+
		"BPF map writes are those Cilium's per-endpoint policy maps need (the simulator's shared policy sets write fewer: p50 in brackets). "+
		"The simulated agents' CPU and RSS above are the %s.", workMeasured, simulatorCost)
	d.Table([]string{"mode", "agents", "events received", "bytes received", "objects held", "bytes held", "identities known",
		"policy recomputations", "policy-map keys (all endpoints)", "BPF map writes", "kernel memory of its BPF maps"}, rows)
}

// agentWorkByResource is a mode's table of what one agent received and
// holds of each resource.
func agentWorkByResource(d *document.Document, w *results.AgentWorkSummary) {
	names := map[string]bool{}
	for n := range w.Received {
		names[n] = true
	}
	for n := range w.Cached {
		names[n] = true
	}
	delete(names, "*")
	order := make([]string, 0, len(names)+1)
	for n := range names {
		order = append(order, n)
	}
	sort.Strings(order)
	order = append(order, "*")
	var rows [][]string
	for _, n := range order {
		label := n
		if n == "*" {
			label = "all resources"
		}
		rcv, okR := w.Received[n]
		held, okH := w.Cached[n]
		row := []string{label, format.Missing, format.Missing, format.Missing, format.Missing, format.Missing}
		if okR {
			row[1], row[2], row[3] = perAgentCell(rcv.Events, countCell), perAgentCell(rcv.Bytes, format.Bytes), format.Bytes(rcv.Bytes.Sum)
		}
		if okH {
			row[4], row[5] = perAgentCell(held.Objects, countCell), perAgentCell(held.Bytes, format.Bytes)
		}
		rows = append(rows, row)
	}
	d.H(3, "Per agent: "+ciliumAgentWork+", by resource")
	datapath := w.Datapath
	if datapath == "" {
		datapath = "unknown"
	}
	d.P("%d agents, %s datapath; p50 / p99 / max over agents, %s.", w.Agents, datapath, workMeasured)
	d.Table([]string{"resource", "events received", "bytes received", "bytes received, all agents", "objects held", "bytes held"}, rows)
}

// agentWorkMetrics are the bar panels of the agent figure: the simulator's
// own cost per agent first, then what a cilium-agent would receive and
// hold (p50 over agents).
func agentWorkMetrics() []summaryMetric {
	work := func(f func(w *results.AgentWorkSummary) float64) func(m *results.ModeResult) float64 {
		return func(m *results.ModeResult) float64 {
			if m.Summary == nil || m.Summary.AgentWork == nil {
				return math.NaN()
			}
			return f(m.Summary.AgentWork)
		}
	}
	const mib = 1 << 20
	return []summaryMetric{
		{"simulator's peak CPU per agent\n(" + simulatorCost + ")", "% of one core", format.Count, func(m *results.ModeResult) float64 {
			if m.Summary == nil || m.Summary.Agents == nil {
				return math.NaN()
			}
			return m.Summary.Agents.PeakCPU.Mean * 100
		}},
		{"simulator's peak RSS per agent\n(" + simulatorCost + ")", "MiB", format.Count, func(m *results.ModeResult) float64 {
			if m.Summary == nil || m.Summary.Agents == nil {
				return math.NaN()
			}
			return m.Summary.Agents.PeakRSS.Mean / mib
		}},
		{"events received per agent (p50)", "events", format.Count, work(func(w *results.AgentWorkSummary) float64 { return w.Received["*"].Events.P50 })},
		{"bytes received per agent (p50)", "MiB", format.Count, work(func(w *results.AgentWorkSummary) float64 { return w.Received["*"].Bytes.P50 / mib })},
		{"objects held per agent (p50)", "objects", format.Count, work(func(w *results.AgentWorkSummary) float64 { return w.Cached["*"].Objects.P50 })},
		{"bytes held per agent, as received (p50)", "MiB", format.Count, work(func(w *results.AgentWorkSummary) float64 { return w.Cached["*"].Bytes.P50 / mib })},
		{"identities known per agent (p50)", "identities", format.Count, work(func(w *results.AgentWorkSummary) float64 { return w.Identities.P50 })},
		{"policy recomputations per agent (p50)", "recomputations", format.Count, work(func(w *results.AgentWorkSummary) float64 { return w.PolicyRecomputations.P50 })},
		{"policy-map keys per agent (p50)", "keys", format.Count, work(func(w *results.AgentWorkSummary) float64 { return w.PolicyMapKeys.P50 })},
		{"BPF map writes per agent, Cilium's layout (p50)", "writes", format.Count, work(func(w *results.AgentWorkSummary) float64 { return w.DatapathUpdates.P50 })},
		{"kernel memory of BPF maps per agent (p50)\nbpf datapath only: none with mem", "MiB", format.Count, work(func(w *results.AgentWorkSummary) float64 {
			if w.KernelMapBytes == nil {
				return math.NaN()
			}
			return w.KernelMapBytes.P50 / mib
		})},
	}
}

// agentWorkBars is the figure of what a cilium-agent would receive and
// hold per mode, beside the simulator's own CPU and memory per agent.
func agentWorkBars(r *results.Results) *Figure {
	have := false
	for i := range r.Modes {
		if s := r.Modes[i].Summary; s != nil && s.AgentWork != nil {
			have = true
		}
	}
	if !have {
		return nil
	}
	f := barsFigure(r, agentWorkMetrics())
	if f == nil {
		return nil
	}
	f.Caption = Caption(r) + "\n" + ciliumAgentWork + " per agent, " + workMeasured + "; the first two panels are the " + simulatorCost
	f.Name = "compare-agent-work"
	f.Title = ciliumAgentWork + " per agent (p50 over agents), beside the simulator's own CPU and memory per agent (" + simulatorCost + ")"
	return f
}
