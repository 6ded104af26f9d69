package harness

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestProgressPlainAndLive(t *testing.T) {
	now := time.Unix(100, 0)
	clock := func() time.Time { return now }
	tests := []struct {
		live      bool
		wantLines int
		want      []string
	}{
		// Plain: a line per step change, converged updates within 10 s
		// are folded, and a final line.
		{live: false, wantLines: 3, want: []string{"[crd] step 2/6 waitConverged", "agents converged 7/20", "elapsed 5s", "events/s 120"}},
		// Live: every update rewrites the line in place.
		{live: true, wantLines: 1, want: []string{"\r\033[K[crd] step 2/6 waitConverged", "agents converged 7/20"}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		now = time.Unix(100, 0)
		p := newProgress(&buf, tt.live, scenarios.ModeCRD, 6, 20, clock)
		p.set("setup", 0)
		now = now.Add(5 * time.Second)
		p.set("waitConverged", 1)
		p.converged(7, 20)
		p.events(120, 999)
		p.finish()
		out := buf.String()
		if n := strings.Count(out, "\n"); n != tt.wantLines {
			t.Errorf("live=%v: %d lines, want %d:\n%q", tt.live, n, tt.wantLines, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("live=%v: output lacks %q:\n%q", tt.live, w, out)
			}
		}
	}
}

func TestWriteSummaryTable(t *testing.T) {
	r := &results.Results{Modes: []results.ModeResult{
		{Mode: scenarios.ModeCRD, Status: results.StatusOK, Summary: &results.Summary{
			APILatency:     []results.LatencySummary{{Verb: "*", Resource: "*", P99: 2.5, Count: 10}},
			KVStoreLatency: []results.LatencySummary{{Verb: "put", P99: 0.015}},
			Agents:         &results.AgentSummary{MeanCPU: results.Spread{Mean: 1.5}, PeakCPU: results.Spread{Max: 2}, MeanRSS: results.Spread{Mean: 1 << 30}, PeakRSS: results.Spread{Max: 2 << 30}},
			Watch:          &results.WatchSummary{Events: 1234},
			Memory:         &results.MemorySummary{PeakProcessesRSS: 3 << 30, PeakMachineUsed: 5 << 29},
			Writes:         map[string]int64{"create ciliumidentities": 5, "patch ciliumendpoints": 10},
			Identities:     &results.IdentitySummary{Duplicates: 4999},
			Convergence:    []results.ConvergenceSummary{{Agents: 200, Converged: 200, P50: 1, P99: 2, Max: 3}},
		}},
		{Mode: scenarios.ModeKVStore, Status: results.StatusSkipped, Reason: "no docker"},
	}}
	var buf bytes.Buffer
	if err := WriteSummaryTable(&buf, r); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, w := range []string{"2.50s", "put 15.0ms", "150.0%/200.0%", "1.0GiB/2.0GiB", "3.0GiB/2.5GiB", "1234", "15", "4999", "1.00s/2.00s/3.00s (200/200)", "skipped", "no docker"} {
		if !strings.Contains(out, w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}
}
