package reports

import (
	"fmt"
	"math"
	"strings"

	"github.com/stampede-sim/stampede/reports/capacity"
	"github.com/stampede-sim/stampede/reports/internal/document"
	"github.com/stampede-sim/stampede/reports/internal/format"
)

// capacityBreakRules is the "how to read" item on breaking points.
func capacityBreakRules(rep *capacity.CapacityReport) string {
	return fmt.Sprintf("A breaking point (the node count at which a mode breaks an SLO) is stated only from runs against a server whose latency is a kube-apiserver's: "+
		"a real kube-apiserver, or the fake API server with a capacity model (api.capacity, --api-cores); never from the fake without one, whose latency is the simulator's on this machine. "+
		"It is stated only for modes whose agents talk to the API server (xds agents never do), and only within %s× the largest measured node count, "+
		"with the 95 %% interval of the node count at which the fit's prediction interval reaches the limit. "+
		"Anything else is reported as beyond what the data supports, with the runs that would settle it.", format.TrimFloat(rep.MaxExtrapolation))
}

// capacityVerdicts writes the per mode and API server answer: the
// smallest stated breaking point, or why there is none.
func capacityVerdicts(d *document.Document, rep *capacity.CapacityReport) {
	d.H(2, "How big must the API server be")
	d.P("Per mode and API server, the first SLO the relabel breaks as the cluster grows (%s pods per node).", format.Sig3(rep.PodsPerNode))
	var rows [][]string
	for _, v := range rep.Verdicts {
		rows = append(rows, append([]string{string(v.Mode), v.API.Label(), orMissing(v.SLO)}, breakCells(v.Break)...))
	}
	d.Table([]string{"mode", "API server", "SLO", "breaks at", "95 % interval", "how", "to settle it"}, rows)
}

// capacityBreaks writes every SLO's breaking point.
func capacityBreaks(d *document.Document, rep *capacity.CapacityReport) {
	d.H(2, "SLO breaking points")
	var rows [][]string
	for _, f := range rep.Fits {
		if f.Limit == nil {
			continue
		}
		row := []string{string(f.Mode), f.API.Label(), strings.TrimPrefix(f.Metric.Name, "slo: "), f.Metric.Format(*f.Limit)}
		rows = append(rows, append(row, breakCells(f.Break)...))
	}
	if len(rows) == 0 {
		d.P("The results hold no SLO verdicts.")
		return
	}
	d.Table([]string{"mode", "API server", "SLO", "limit", "breaks at", "95 % interval", "how", "to settle it"}, rows)
}

// capacityPublished puts the verdicts beside the published breaking point.
func capacityPublished(d *document.Document, rep *capacity.CapacityReport) {
	p := capacity.Issue38030
	d.H(2, "Beside the published breaking point")
	d.P("%s: %s. Nothing here is tuned towards it; the comparison says how far apart the two are. "+
		"This sweep measured %s pods per node, largest %s nodes.", p.Source, p.What, format.Sig3(rep.PodsPerNode), fmtNodes(rep.Nodes[len(rep.Nodes)-1]))
	var items []string
	for _, v := range rep.Verdicts {
		if v.Mode == p.Mode {
			items = append(items, fmt.Sprintf("%s, %s: %s", v.Mode, v.API.Label(), p.Compare(v)))
		}
	}
	if len(items) == 0 {
		items = []string{fmt.Sprintf("the sweep did not run %s mode, the mode of the published case", p.Mode)}
	}
	d.List(items...)
}

// breakCells are the "breaks at", interval, how and settle cells of b;
// only a stated breaking point is in bold.
func breakCells(b capacity.BreakingPoint) []string {
	at, interval := format.Missing, format.Missing
	if b.Stated() {
		at = "**" + fmtNodes(int(math.Round(b.Nodes))) + " nodes**"
		hi := "beyond the allowed extrapolation"
		if !math.IsInf(b.Hi, 1) {
			hi = fmtNodes(int(math.Round(b.Hi)))
		}
		interval = fmt.Sprintf("%s to %s", fmtNodes(int(math.Round(b.Lo))), hi)
		switch {
		case b.Kind == capacity.BreakMeasured && b.Lo == 0:
			at = "**at most " + fmtNodes(int(math.Round(b.Nodes))) + " nodes**"
			interval = "at or below the smallest size measured"
		case b.Kind == capacity.BreakMeasured:
			interval = fmt.Sprintf("between %s and %s (measured)", fmtNodes(int(math.Round(b.Lo))), hi)
		}
	} else if b.Kind == capacity.BreakBeyond {
		at = "beyond what the data supports"
	}
	return []string{at, interval, b.Reason, settleText(b)}
}

func settleText(b capacity.BreakingPoint) string {
	var parts []string
	if len(b.Settle) > 0 {
		var ns []string
		for _, n := range b.Settle {
			ns = append(ns, fmt.Sprint(n))
		}
		parts = append(parts, "also run --nodes "+strings.Join(ns, ",")+" on the same API server")
	}
	if b.SettleNote != "" {
		parts = append(parts, b.SettleNote)
	}
	if len(parts) == 0 {
		return format.Missing
	}
	return strings.Join(parts, "; ")
}

func orMissing(s string) string {
	if s == "" {
		return format.Missing
	}
	return s
}
