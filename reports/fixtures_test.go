package reports

import (
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stampede-sim/stampede/scenarios"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run go test -update): %v", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

var fixtureStart = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

// modeShape scales the synthetic measurements of one mode so that modes
// differ the way the published results say they do.
type modeShape struct {
	latency    float64 // API p99 peak during the relabel, seconds
	apiCPU     float64 // cores at peak
	agentCPU   float64 // cores per agent at peak
	agentRSS   float64 // bytes per agent
	events     float64 // watch events/s at peak
	kvLatency  float64 // seconds, kvstore mode only
	xdsLatency float64 // seconds, xds mode only
	duplicates int64
	converge   float64 // seconds
}

var shapes = map[scenarios.Mode]modeShape{
	scenarios.ModeCRD:      {latency: 12, apiCPU: 1.8, agentCPU: 0.015, agentRSS: 6e6, events: 18000, duplicates: 1450, converge: 95},
	scenarios.ModeCES:      {latency: 4, apiCPU: 1.2, agentCPU: 0.010, agentRSS: 4.5e6, events: 8000, duplicates: 1300, converge: 60},
	scenarios.ModeKVStore:  {latency: 0.04, apiCPU: 0.5, agentCPU: 0.008, agentRSS: 3e6, events: 2500, kvLatency: 0.9, converge: 22},
	scenarios.ModeOperator: {latency: 3, apiCPU: 1.0, agentCPU: 0.009, agentRSS: 4.8e6, events: 9000, converge: 40},
	scenarios.ModeXDS:      {latency: 0.02, apiCPU: 0.3, agentCPU: 0.004, agentRSS: 2e6, events: 1200, xdsLatency: 0.35, converge: 8},
}

// fixtureResults builds deterministic results of a complete relabel-small
// run in every mode (crd's run of duration secs, 1 s samples).
func fixtureResults(t testing.TB) *Results {
	t.Helper()
	sc, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	fin := fixtureStart.Add(15 * time.Minute)
	r := &Results{
		SchemaVersion: SchemaVersion,
		Run: Run{
			Scenario:          sc.Name,
			EffectiveScenario: sc,
			Seed:              sc.Seed,
			Nodes:             sc.Cluster.Nodes,
			Pods:              sc.PodCount(),
			StampedeVersion:   "v0.0.0-test",
			GoVersion:         "go1.26.8",
			Command:           []string{"stampede", "run", "--scenario", "relabel-small"},
			Started:           fixtureStart,
			Finished:          &fin,
			Complete:          true,
			Backend:           Backend{Name: "fake", Facts: map[string]string{"apf": "disabled", "etcd.fsync": "n/a"}},
			Machine:           Machine{Cores: 2, MemoryBytes: 24 << 30, Kernel: "6.8.0-test", OS: "linux", Arch: "amd64"},
			Datapath:          Datapath{Requested: "auto", Effective: "mem", Reason: "no CAP_BPF in the test"},
		},
	}
	for i, m := range scenarios.AllModes {
		start := fixtureStart.Add(time.Duration(i) * 3 * time.Minute)
		r.Modes = append(r.Modes, fixtureMode(m, start, 180, sc.Cluster.Nodes, shapes[m]))
	}
	return r
}

// fixtureMode synthesises one mode: setup at 0 s, relabel at 60 s.
func fixtureMode(m scenarios.Mode, start time.Time, secs, agents int, s modeShape) ModeResult {
	end := start.Add(time.Duration(secs) * time.Second)
	relabel := start.Add(60 * time.Second)
	at := func(sec int) *time.Time { t := start.Add(time.Duration(sec) * time.Second); return &t }
	mr := ModeResult{
		Mode: m, Status: StatusOK, Started: &start, Finished: &end, Shards: 2, Agents: agents,
		Steps: []StepResult{
			{Index: 0, Kind: "setup", Start: start, End: at(10), Outcome: OutcomeOK},
			{Index: 1, Kind: "waitConverged", Start: *at(10), End: at(30), Outcome: OutcomeOK, Detail: fmt.Sprintf("converged %d/%d", agents, agents)},
			{Index: 2, Kind: "observe", Start: *at(30), End: at(60), Outcome: OutcomeOK},
			{Index: 3, Kind: "relabel", Start: relabel, End: at(62), Outcome: OutcomeOK},
			{Index: 4, Kind: "waitConverged", Start: *at(62), End: at(62 + int(s.converge)), Outcome: OutcomeOK},
			{Index: 5, Kind: "observe", Start: *at(62 + int(s.converge)), End: &end, Outcome: OutcomeOK},
		},
	}
	for sec := 0; sec < secs; sec++ {
		// A bump after setup (t=5) and a bigger one after the relabel (t=60).
		x := bump(sec, 5, 10)*0.3 + bump(sec, 60, s.converge/2+3)
		v := map[string]float64{
			SeriesAPILatencyP50: 0.002 + s.latency*0.2*x,
			SeriesAPILatencyP99: 0.005 + s.latency*x,
			SeriesAPILatencyMax: 0.008 + s.latency*1.3*x,
			SeriesName(SeriesAPILatencyP99, "verb", "PATCH", "resource", "ciliumendpoints"): 0.006 + s.latency*1.1*x,
			SeriesName(SeriesCPU, "process", "apiserver"):                                   0.05 + s.apiCPU*x,
			SeriesName(SeriesRSS, "process", "apiserver"):                                   200e6 + 300e6*x,
			SeriesName(SeriesCPU, "process", "controlplane"):                                0.02 + 0.2*x,
			SeriesName(SeriesRSS, "process", "controlplane"):                                60e6 + 40e6*x,
			SeriesName(SeriesCPU, "process", "harness"):                                     0.03,
			SeriesName(SeriesRSS, "process", "harness"):                                     80e6,
			SeriesAgentsCPUMean:   s.agentCPU * (0.1 + x),
			SeriesAgentsCPUMin:    s.agentCPU * (0.08 + 0.8*x),
			SeriesAgentsCPUMax:    s.agentCPU * (0.12 + 1.25*x),
			SeriesAgentsRSSMean:   s.agentRSS * (1 + 0.5*x),
			SeriesAgentsRSSMin:    s.agentRSS * (0.9 + 0.4*x),
			SeriesAgentsRSSMax:    s.agentRSS * (1.1 + 0.6*x),
			SeriesWatchEventsRate: 50 + s.events*x,
			SeriesWatchBytesRate:  (50 + s.events*x) * 1100,
			SeriesAgentsConverged: float64(agents) * (1 - x*0.9),
			SeriesProbeRate:       20,
			SeriesIdentities:      10 + float64(s.duplicates)*math.Min(1, math.Max(0, float64(sec-60)/s.converge)),
			SeriesName(SeriesAPIWritesRate, "type", "patch ciliumendpoints"):   400 * bump(sec, 60, 8) / 8,
			SeriesName(SeriesAPIWritesRate, "type", "create ciliumidentities"): float64(s.duplicates) * bump(sec, 60, 4) / 4 / 2.718,
		}
		for sh := 0; sh < 2; sh++ {
			v[SeriesName(SeriesCPU, "process", fmt.Sprintf("agents-%d", sh))] = float64(agents/2) * s.agentCPU * (0.1 + x)
			v[SeriesName(SeriesRSS, "process", fmt.Sprintf("agents-%d", sh))] = float64(agents/2) * s.agentRSS * (1 + 0.5*x)
		}
		if m == scenarios.ModeKVStore {
			v[SeriesName(SeriesCPU, "process", "kvstore")] = 0.05 + 0.6*x
			v[SeriesName(SeriesRSS, "process", "kvstore")] = 50e6 + 30e6*x
			v[SeriesName(SeriesKVStoreLatencyP50, "op", "get")] = 0.001 + s.kvLatency*0.1*x
			v[SeriesName(SeriesKVStoreLatencyP99, "op", "get")] = 0.003 + s.kvLatency*0.5*x
			v[SeriesName(SeriesKVStoreLatencyP50, "op", "put")] = 0.002 + s.kvLatency*0.2*x
			v[SeriesName(SeriesKVStoreLatencyP99, "op", "put")] = 0.006 + s.kvLatency*x
		}
		if m == scenarios.ModeXDS {
			v[SeriesXDSPushLatencyP50] = 0.003 + s.xdsLatency*0.3*x
			v[SeriesXDSPushLatencyP99] = 0.01 + s.xdsLatency*x
			delete(v, SeriesName(SeriesAPILatencyP99, "verb", "PATCH", "resource", "ciliumendpoints"))
		}
		if sec == 17 {
			// A failed scrape: the probe missed this second.
			delete(v, SeriesAPILatencyP50)
			delete(v, SeriesAPILatencyP99)
			delete(v, SeriesAPILatencyMax)
		}
		mr.AppendSample(start.Add(time.Duration(sec)*time.Second), v)
	}
	lat := func(verb, res string, scale float64) LatencySummary {
		return LatencySummary{Verb: verb, Resource: res, P50: 0.002 + scale*0.05, P90: 0.004 + scale*0.4, P99: 0.005 + scale, Max: 0.008 + scale*1.3, Count: 2400, Errors: int64(scale)}
	}
	sum := &Summary{
		APILatency: []LatencySummary{
			lat("*", "*", s.latency),
			lat("GET", "pods", s.latency*0.6),
			lat("LIST", "ciliumidentities", s.latency*0.9),
			lat("PATCH", "ciliumendpoints", s.latency*1.1),
		},
		Processes: []ProcessSummary{
			{Name: "apiserver", CPUSeconds: round(s.apiCPU*40, 2), PeakCPU: s.apiCPU + 0.05, PeakRSS: 500e6, MeanRSS: 260e6},
			{Name: "controlplane", CPUSeconds: 6.1, PeakCPU: 0.22, PeakRSS: 100e6, MeanRSS: 70e6},
			{Name: "agents-0", CPUSeconds: round(float64(agents/2)*s.agentCPU*40, 2), PeakCPU: float64(agents/2) * s.agentCPU * 1.1, PeakRSS: int64(float64(agents/2) * s.agentRSS * 1.5), MeanRSS: int64(float64(agents/2) * s.agentRSS * 1.1)},
			{Name: "agents-1", CPUSeconds: round(float64(agents/2)*s.agentCPU*42, 2), PeakCPU: float64(agents/2) * s.agentCPU * 1.1, PeakRSS: int64(float64(agents/2) * s.agentRSS * 1.5), MeanRSS: int64(float64(agents/2) * s.agentRSS * 1.1)},
			{Name: "harness", CPUSeconds: 3.6, PeakCPU: 0.04, PeakRSS: 80e6, MeanRSS: 80e6},
		},
		Agents: &AgentSummary{
			Count: agents, Shards: 2,
			CPUSeconds: Spread{Mean: round(s.agentCPU*41, 4), Min: round(s.agentCPU*40, 4), Max: round(s.agentCPU*42, 4)},
			MeanCPU:    Spread{Mean: s.agentCPU * 0.35, Min: s.agentCPU * 0.3, Max: s.agentCPU * 0.4},
			PeakCPU:    Spread{Mean: s.agentCPU * 1.1, Min: s.agentCPU, Max: s.agentCPU * 1.35},
			PeakRSS:    Spread{Mean: s.agentRSS * 1.5, Min: s.agentRSS * 1.3, Max: s.agentRSS * 1.7},
			MeanRSS:    Spread{Mean: s.agentRSS * 1.1, Min: s.agentRSS, Max: s.agentRSS * 1.2},
		},
		Watch: &WatchSummary{
			Events: int64(s.events * 30), Bytes: int64(s.events * 30 * 1100),
			PeakEventsPerSecond: s.events + 50, PeakBytesPerSecond: (s.events + 50) * 1100,
		},
		Writes:     map[string]int64{"create ciliumendpoints": 400, "patch ciliumendpoints": 400, "create ciliumidentities": 10 + 2*s.duplicates},
		Throttling: &ThrottlingSummary{HTTP429: s.duplicates / 10, ClientThrottledRequests: s.duplicates, ClientThrottledSeconds: float64(s.duplicates) / 100},
		Identities: &IdentitySummary{Created: 10 + s.duplicates, Duplicates: s.duplicates, Final: 20},
		Datapath:   &DatapathSummary{Updates: int64(agents) * 400 * 2, ByMap: map[string]int64{"ipcache": int64(agents) * 400, "policy": int64(agents) * 400}},
		Convergence: []ConvergenceSummary{
			{Step: 1, Trigger: "setup", Agents: agents, Converged: agents, P50: 8, P99: 14, Max: 15},
			{Step: 4, Trigger: "relabel", Agents: agents, Converged: agents, P50: s.converge * 0.5, P99: s.converge * 0.95, Max: s.converge},
		},
		Memory:  &MemorySummary{PeakProcessesRSS: 6 << 30, PeakMachineUsed: 7 << 30, MachineUsedAtStart: 1 << 30, MachineTotal: 24 << 30},
		Harness: &HarnessSummary{CPUSeconds: 3.6, FractionOfTotal: 0.06, AgentDigestSeconds: 0.4},
		Probe:   &ProbeSummary{TargetRate: 20, AchievedRate: 19.9, HeldRate: true},
	}
	if s.duplicates > 0 {
		// Each duplicate came after a create that lost the race (409).
		sum.WritesRejected = map[string]int64{"create ciliumidentities": s.duplicates}
		// A shard too busy to answer some scrapes.
		sum.Scrapes = []ScrapeSummary{{Component: "agents-0", Answered: secs, MaxGapSeconds: 1.1}, {Component: "agents-1", Answered: secs - 40, Failed: 2, MaxGapSeconds: 41.5}}
	}
	if m == scenarios.ModeKVStore {
		sum.KVStoreLatency = []LatencySummary{lat("get", "", s.kvLatency*0.5), lat("put", "", s.kvLatency)}
		sum.Processes = append(sum.Processes, ProcessSummary{Name: "kvstore", CPUSeconds: 9.5, PeakCPU: 0.65, PeakRSS: 80e6, MeanRSS: 60e6})
		sum.Writes = map[string]int64{"create ciliumendpoints": 400, "patch ciliumendpoints": 400}
	}
	if m == scenarios.ModeXDS {
		sum.XDSPushLatency = []LatencySummary{lat("push", "*", s.xdsLatency)}
		sum.Writes = nil
		sum.Throttling = nil
	}
	sloPass := s.latency*1.1+0.005 <= 1
	sum.SLO = []SLOVerdict{
		{Name: "mutating p99", Limit: 1, Value: round(0.005+s.latency*1.1, 4), Unit: "s", Pass: sloPass},
		{Name: "read p99", Limit: 1, Value: round(0.005+s.latency*0.6, 4), Unit: "s", Pass: 0.005+s.latency*0.6 <= 1},
		{Name: "list p99", Limit: 30, Value: round(0.005+s.latency*0.9, 4), Unit: "s", Pass: true},
	}
	mr.Summary = sum
	return mr
}

func bump(sec int, at, width float64) float64 {
	d := float64(sec) - at
	if d < 0 {
		return 0
	}
	return (d / width) * math.Exp(1-d/width)
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

// partialResults is the fixture cut short: crd done, ces interrupted at
// 70 s, kvstore skipped, operator failed, xds pending.
func partialResults(t testing.TB) *Results {
	r := fixtureResults(t)
	r.Run.Complete = false
	r.Run.Finished = nil
	r.Run.IncompleteReason = "interrupted (SIGINT)"
	ces := &r.Modes[1]
	ces.Status = StatusIncomplete
	ces.Reason = "interrupted (SIGINT) during step 4 (waitConverged)"
	ces.Finished = nil
	ces.Steps = ces.Steps[:5]
	ces.Steps[4].End = nil
	ces.Steps[4].Outcome = OutcomeInterrupted
	cut := 70
	ces.Series.T = ces.Series.T[:cut]
	for n, c := range ces.Series.Values {
		ces.Series.Values[n] = c[:cut]
	}
	// Interrupted while waiting after the relabel: some agents had not
	// converged, three of them refusing a policy larger than their map.
	relabel := &ces.Summary.Convergence[1]
	relabel.Converged = relabel.Agents - 5
	relabel.PolicyOverflow = 3
	ces.Summary.SLO = nil
	kv := &r.Modes[2]
	*kv = ModeResult{Mode: scenarios.ModeKVStore, Status: StatusSkipped, Reason: "kvstore etcd could not start: port exhaustion (test)"}
	started := fixtureStart.Add(9 * time.Minute)
	r.Modes[3] = ModeResult{Mode: scenarios.ModeOperator, Status: StatusFailed, Started: &started, Reason: "controlplane exited: exit status 2 (test)"}
	r.Modes[4] = ModeResult{Mode: scenarios.ModeXDS, Status: StatusPending}
	return r
}
