package harness

import (
	"sort"

	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/reports/results"
)

// agentWorkSummary aggregates the agents' reports of what they received,
// hold and did (agentcontract.Work) into the mode's summary: for each
// figure the sum over agents and the p50, p99 and maximum of one agent's.
// An agent without a resource counts zero for it; "*" sums an agent's
// resources. Agents that sent no report are left out; nil if none did.
func agentWorkSummary(reports []*agentcontract.Work) *results.AgentWorkSummary {
	var ws []*agentcontract.Work
	for _, w := range reports {
		if w != nil {
			ws = append(ws, w)
		}
	}
	if len(ws) == 0 {
		return nil
	}
	of := func(f func(w *agentcontract.Work) float64) results.PerAgent {
		v := make([]float64, len(ws))
		for i, w := range ws {
			v[i] = f(w)
		}
		return perAgent(v)
	}
	out := &results.AgentWorkSummary{Agents: len(ws)}
	received, cached := map[string]bool{}, map[string]bool{}
	kinds := map[string]int{}
	kernel := 0
	for _, w := range ws {
		for r := range w.Received {
			received[r] = true
		}
		for r := range w.Cached {
			cached[r] = true
		}
		kinds[w.Datapath]++
		if w.KernelMapBytes != nil {
			kernel++
		}
	}
	if len(kinds) == 1 {
		out.Datapath = ws[0].Datapath
	}
	if len(received) > 0 {
		out.Received = map[string]results.TrafficPerAgent{}
		for r := range received {
			out.Received[r] = results.TrafficPerAgent{
				Events: of(func(w *agentcontract.Work) float64 { return float64(w.Received[r].Events) }),
				Bytes:  of(func(w *agentcontract.Work) float64 { return float64(w.Received[r].Bytes) }),
			}
		}
		out.Received["*"] = results.TrafficPerAgent{
			Events: of(func(w *agentcontract.Work) float64 {
				return sumOver(w.Received, func(t agentcontract.Traffic) float64 { return float64(t.Events) })
			}),
			Bytes: of(func(w *agentcontract.Work) float64 {
				return sumOver(w.Received, func(t agentcontract.Traffic) float64 { return float64(t.Bytes) })
			}),
		}
	}
	if len(cached) > 0 {
		out.Cached = map[string]results.HoldingPerAgent{}
		for r := range cached {
			out.Cached[r] = results.HoldingPerAgent{
				Objects: of(func(w *agentcontract.Work) float64 { return float64(w.Cached[r].Objects) }),
				Bytes:   of(func(w *agentcontract.Work) float64 { return float64(w.Cached[r].Bytes) }),
			}
		}
		out.Cached["*"] = results.HoldingPerAgent{
			Objects: of(func(w *agentcontract.Work) float64 {
				return sumOver(w.Cached, func(h agentcontract.Holding) float64 { return float64(h.Objects) })
			}),
			Bytes: of(func(w *agentcontract.Work) float64 {
				return sumOver(w.Cached, func(h agentcontract.Holding) float64 { return float64(h.Bytes) })
			}),
		}
	}
	out.Identities = of(func(w *agentcontract.Work) float64 { return float64(w.Identities) })
	out.PolicyRecomputations = of(func(w *agentcontract.Work) float64 { return float64(w.PolicyRecomputations) })
	out.EndpointPolicyChanges = of(func(w *agentcontract.Work) float64 { return float64(w.EndpointPolicyChanges) })
	out.PolicyMapKeys = of(func(w *agentcontract.Work) float64 { return float64(w.PolicyMapKeys) })
	out.DatapathUpdates = of(func(w *agentcontract.Work) float64 { return float64(w.DatapathUpdates) })
	out.MapWrites = of(func(w *agentcontract.Work) float64 { return float64(w.MapWrites) })
	// Kernel memory only when every agent has kernel maps: a figure over
	// some agents would read as the whole mode's.
	if kernel == len(ws) {
		k := of(func(w *agentcontract.Work) float64 { return float64(*w.KernelMapBytes) })
		out.KernelMapBytes = &k
	}
	return out
}

func sumOver[V any](m map[string]V, f func(V) float64) float64 {
	var s float64
	for _, v := range m {
		s += f(v)
	}
	return s
}

// perAgent is the sum and the p50, p99 (nearest rank) and maximum of v.
func perAgent(v []float64) results.PerAgent {
	sort.Float64s(v)
	var sum float64
	for _, x := range v {
		sum += x
	}
	return results.PerAgent{Sum: sum, P50: quantileSorted(v, 0.50), P99: quantileSorted(v, 0.99), Max: quantileSorted(v, 1)}
}
