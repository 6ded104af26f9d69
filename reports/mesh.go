package reports

import (
	"fmt"
	"math"
	"strconv"

	"github.com/stampede-sim/stampede/reports/internal/document"
	"github.com/stampede-sim/stampede/reports/internal/format"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// meshSection is a mode's ClusterMesh mirror replicas: the mirror lag the
// harness's probe measured, for all replicas and per replica, what the
// replicas served the agents, and the agents' failovers and fallback.
func meshSection(d *document.Document, m *results.ModeResult) {
	ms := m.Summary.Mesh
	d.H(3, "Mesh replicas")
	d.P("%d replicas (each a mirror and its etcd). Mirror lag: from the API server's answer to the harness's create of a probe CiliumIdentity to its key's arrival in each replica's etcd; "+
		"for all replicas a probe counts its last replica's lag, and a probe missing from any replica within 30 s is an error.", ms.Replicas)
	lagRow := func(name string, l results.LagStats) []string {
		return []string{name, format.Sec(l.P50), format.Sec(l.P90), format.Sec(l.P99), format.Sec(l.Max), format.Int(l.Count), format.Int(l.Errors)}
	}
	rows := [][]string{lagRow("all replicas", ms.MirrorLag.LagStats)}
	for _, r := range ms.MirrorLag.PerReplica {
		rows = append(rows, lagRow("replica "+strconv.Itoa(r.Replica), r.LagStats))
	}
	d.Table([]string{"mirror lag", "p50", "p90", "p99", "max", "probes", "errors"}, rows)
	served := fmt.Sprintf("served to the agents: %s events, %s (mesh-identities, mesh-ipcache, mesh-nodes)", format.Int(ms.Served.Events), format.Bytes(float64(ms.Served.Bytes)))
	if ms.ProbeEventsPerAgent > 0 && m.Agents > 0 {
		served += fmt.Sprintf("; of the events about %s are the probe's (%s per agent)", format.Int(ms.ProbeEventsPerAgent*int64(m.Agents)), format.Int(ms.ProbeEventsPerAgent))
	}
	agentFacts := fmt.Sprintf("failovers to another replica: %s; agent-seconds on the API server fallback: %s", format.Int(ms.Failovers), format.Sec(ms.FallbackAgentSeconds))
	if !ms.AgentMetrics {
		agentFacts = "failovers and fallback: not measured (the agents export neither counter)"
	}
	d.List(served, agentFacts)
}

// The figures CFP-44774 ("Cilium Control Plane at Scale", Test Results)
// publishes for its ClusterMesh KVStore mode against its CRD mode
// (operator identities, slim CiliumEndpointSlices): API server CPU
// "dropped by over 50%", watch connections "dropped by 50%", watch events
// per minute "dropped by more than 95%".
var cfpRatios = []struct{ figure, published string }{
	{"API server CPU", "< 0.5"},
	{"API watch connections (peak)", "0.5"},
	{"API server watch events per minute", "< 0.05"},
}

// cfpSection sets the mesh mode's figures over the ces-slim mode's beside
// CFP-44774's, when the run has both (by name: the CFP's two modes are
// these presets).
func cfpSection(d *document.Document, r *results.Results) {
	var slim, mesh *results.ModeResult
	for i := range r.Modes {
		switch m := &r.Modes[i]; m.Mode {
		case scenarios.ModeCESSlim:
			slim = m
		case scenarios.ModeMesh:
			mesh = m
		}
	}
	if slim == nil || mesh == nil || slim.Summary == nil || mesh.Summary == nil {
		return
	}
	api := results.APIServerOf(r)
	cpu := func(m *results.ModeResult) (float64, string) {
		v, what := results.APIServerCPU(api, m.Summary)
		return perMinute(v, m), what
	}
	conns := func(m *results.ModeResult) float64 {
		if w := m.Summary.Watch; w != nil && w.Connections != nil {
			return float64(w.Connections.Peak)
		}
		return math.NaN()
	}
	events := func(m *results.ModeResult) float64 {
		if w := m.Summary.Watch; w != nil && w.APIServerEvents > 0 {
			return perMinute(float64(w.APIServerEvents), m)
		}
		return math.NaN()
	}
	sc, cpuWhat := cpu(slim)
	mc, _ := cpu(mesh)
	figs := [][2]float64{{sc, mc}, {conns(slim), conns(mesh)}, {events(slim), events(mesh)}}
	units := []string{"CPU-s/min", "", "/min"}
	var rows [][]string
	for i, f := range figs {
		ratio := format.Missing
		if !math.IsNaN(f[0]) && !math.IsNaN(f[1]) && f[0] > 0 {
			ratio = fmt.Sprintf("%.2f", f[1]/f[0])
		}
		rows = append(rows, []string{cfpRatios[i].figure, withUnit(f[0], units[i]), withUnit(f[1], units[i]), ratio, cfpRatios[i].published})
	}
	d.H(2, "mesh against ces-slim beside CFP-44774")
	d.P("CFP-44774 measured its ClusterMesh KVStore mode against a baseline of operator identities and slim CiliumEndpointSlices, the presets `mesh` and `ces-slim`. "+
		"Per minute figures are over each mode's measured span (first to last sample). API server CPU here is %s.", cpuWhat)
	d.Table([]string{"figure", "ces-slim", "mesh", "mesh / ces-slim", "CFP-44774"}, rows)
	d.P("The ratios count the same metrics over a different population. The CFP's cluster had 1,000 nodes of kubelets, kube-proxies and other watchers of the API server, none of which Stampede runs; " +
		"here the watchers are the simulated agents (the watches the profiled release's agents open with Helm's defaults), the control plane, the mirrors and the harness. " +
		"The agents keep their watches of Kubernetes resources (pods, nodes, namespaces, services, policies) on the mesh read path and the mirrors add a few each, so the share that moving the Cilium watches removes is set by these watch lists, not by the CFP's cluster: the ratios are not expected to match its values. The CFP's CPU is a measured 8-vCPU kube-apiserver's; here it is what the line above says. " +
		"The mesh mode's figures include the harness's mirror-lag probe: one CiliumIdentity created and deleted per probe, whose events the API server sends to every CiliumIdentity watcher.")
}

// perMinute is v over m's measured span in minutes: from the first to
// the last sample, the span the summary's counters cover, or else from
// the mode's start to its end (NaN without either).
func perMinute(v float64, m *results.ModeResult) float64 {
	mins := 0.0
	if m.Series != nil && len(m.Series.T) >= 2 {
		t := m.Series.T
		mins = (t[len(t)-1] - t[0]) / 60
	} else if m.Started != nil && m.Finished != nil {
		mins = m.Finished.Sub(*m.Started).Minutes()
	}
	if mins <= 0 || math.IsNaN(v) {
		return math.NaN()
	}
	return v / mins
}

func withUnit(v float64, unit string) string {
	if math.IsNaN(v) {
		return format.Missing
	}
	if unit == "" {
		return format.Int(int64(math.Round(v)))
	}
	return format.Sig3(v) + " " + unit
}
