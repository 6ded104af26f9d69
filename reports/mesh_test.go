package reports

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/reports/internal/fixture"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// meshRun is a run of ces-slim and mesh, ten minutes each, on the fake
// with a capacity model: mesh's API server costs 6 of ces-slim's 15
// modelled CPU-seconds, holds 90 of its 130 watch connections at peak and
// sends 500 of its 20,000 watch events.
func meshRun() *results.Results {
	start := fixture.Start
	mode := func(m scenarios.Mode, at time.Duration, cpu float64, conns, events int64) results.ModeResult {
		p, _ := scenarios.Preset(m)
		s, f := start.Add(at), start.Add(at+10*time.Minute)
		return results.ModeResult{Mode: m, Axes: p.Axes, Status: results.StatusOK, Started: &s, Finished: &f, Agents: 4, Shards: 1,
			Summary: &results.Summary{
				APIServerModel: &results.APIServerModelSummary{CPUSeconds: cpu},
				Watch: &results.WatchSummary{Events: events * 4, APIServerEvents: events,
					Connections: &results.WatchConnectionsSummary{Peak: conns, Mean: float64(conns) - 2, Samples: 600, ByResource: map[string]int64{"pods": 5}}},
			}}
	}
	r := &results.Results{SchemaVersion: results.SchemaVersion, Run: results.Run{Scenario: "relabel-small-mesh", Started: start, Complete: true,
		Backend:   results.Backend{Name: "fake"},
		APIServer: &results.APIServer{Backend: "fake", Model: results.ModelCapacity, Capacity: &results.APICapacity{Cores: 4, Profile: "kube-apiserver-v1.36.3"}}}}
	r.Modes = append(r.Modes, mode(scenarios.ModeCESSlim, 0, 15, 130, 20000), mode(scenarios.ModeMesh, 10*time.Minute, 6, 90, 500))
	r.Modes[1].Summary.Mesh = &results.MeshSummary{
		Replicas: 2, ProbeEventsPerAgent: 1200, Failovers: 3, FallbackAgentSeconds: 12.5, AgentMetrics: true,
		Served: results.TrafficSummary{Events: 9000, Bytes: 3 << 20},
		MirrorLag: results.MirrorLagSummary{
			LagStats: results.LagStats{P50: 0.012, P90: 0.03, P99: 0.09, Max: 0.2, Count: 598, Errors: 2},
			PerReplica: []results.ReplicaLag{
				{Replica: 0, LagStats: results.LagStats{P50: 0.01, P90: 0.02, P99: 0.05, Max: 0.1, Count: 600}},
				{Replica: 1, LagStats: results.LagStats{P50: 0.011, P90: 0.028, P99: 0.09, Max: 0.2, Count: 598, Errors: 2}},
			},
		},
	}
	return r
}

func TestMeshReport(t *testing.T) {
	md := buildDocument(meshRun(), nil, nil).Markdown()
	fixture.Golden(t, "report-mesh.md", []byte(md))
	for _, want := range []string{
		// The modes table's watch connections.
		"| ces-slim | operator | ces-slim | apiserver | preset | 130 |",
		"| mesh | operator | ces-slim | mesh | preset | 90 |",
		// The three ratios beside the CFP's: 6/15, 90/130, 500/20000.
		"| API server CPU | 1.50 CPU-s/min | 0.60 CPU-s/min | 0.40 | < 0.5 |",
		"| API watch connections (peak) | 130 | 90 | 0.69 | 0.5 |",
		"| API server watch events per minute | 2000 /min | 50.0 /min | 0.03 | < 0.05 |",
		"modelled kube-apiserver + etcd",
		"API server watch connections (apiserver_longrunning_requests{verb=\"WATCH\"}): peak 90",
		// The mesh section.
		"### Mesh replicas",
		"| all replicas | 12.0 ms | 30.0 ms | 90.0 ms | 200 ms | 598 | 2 |",
		"| replica 1 |",
		"failovers to another replica: 3",
		"about 4,800 are the probe's",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if n := strings.Count(md, "### Mesh replicas"); n != 1 {
		t.Errorf("%d mesh sections, want 1 (the mesh mode's)", n)
	}
}

// TestMeshReportWithoutPair: no ratios without both modes, and a mesh
// mode whose agents export no failover counters says so.
func TestMeshReportWithoutPair(t *testing.T) {
	r := meshRun()
	r.Modes = r.Modes[1:]
	r.Modes[0].Summary.Mesh.AgentMetrics = false
	r.Modes[0].Summary.Mesh.Failovers = 0
	md := buildDocument(r, nil, nil).Markdown()
	if strings.Contains(md, "CFP-44774") {
		t.Error("ratios without a ces-slim mode")
	}
	if !strings.Contains(md, "failovers and fallback: not measured") {
		t.Error("missing counters reported as measured")
	}
}

// TestPerMinute: over the samples' span when there are samples (the span
// the counters cover), else over the mode's start to end.
func TestPerMinute(t *testing.T) {
	m := meshRun().Modes[0] // ten minutes from start to end
	if got := perMinute(100, &m); got != 10 {
		t.Errorf("without samples: %v per minute, want 10", got)
	}
	m.Series = &results.Series{T: []float64{5, 65, 125}}
	if got := perMinute(100, &m); got != 50 {
		t.Errorf("over two minutes of samples: %v per minute, want 50", got)
	}
	m.Started, m.Series = nil, nil
	if got := perMinute(100, &m); !math.IsNaN(got) {
		t.Errorf("without a span: %v, want NaN", got)
	}
}
