package harness

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// BenchmarkRun runs a whole scenario (STAMPEDE_BENCH_SCENARIO, default
// relabel-small) in every mode against the fake API server, once per
// iteration, and reports per mode the figures that matter: time to
// converge after the relabel, probe API latency p99, agent CPU and memory,
// watch events and duplicate identities. Compare runs with benchstat:
//
//	go test ./harness -run '^$' -bench BenchmarkRun -benchtime 1x -count 3
func BenchmarkRun(b *testing.B) {
	name := os.Getenv("STAMPEDE_BENCH_SCENARIO")
	if name == "" {
		name = "relabel-small"
	}
	sc, err := scenarios.Resolve(name)
	if err != nil {
		b.Fatal(err)
	}
	bin := stampedeBinary(b)
	for i := 0; i < b.N; i++ {
		res, err := Run(context.Background(), Config{
			Scenario: sc, Backend: &FakeBackend{}, Out: filepath.Join(b.TempDir(), "out"), Executable: bin, NoReport: true,
		})
		if err != nil {
			b.Logf("run: %v", err)
		}
		if res == nil {
			b.Fatal("no results")
		}
		if i == b.N-1 {
			reportModes(b, res)
		}
	}
}

func reportModes(b *testing.B, res *results.Results) {
	for _, m := range res.Modes {
		s := m.Summary
		if m.Status != results.StatusOK || s == nil {
			b.Logf("mode %s: %s %s", m.Mode, m.Status, m.Reason)
			continue
		}
		p := string(m.Mode) + "-"
		if n := len(s.Convergence); n > 0 {
			b.ReportMetric(s.Convergence[n-1].P99, p+"converge-p99-s")
		}
		for _, l := range s.APILatency {
			if l.Verb == "*" {
				b.ReportMetric(l.P99*1000, p+"api-p99-ms")
			}
		}
		if a := s.Agents; a != nil {
			b.ReportMetric(100*a.MeanCPU.Mean, p+"agent-cpu-%")
			b.ReportMetric(a.PeakRSS.Max/(1<<20), p+"agent-rss-MiB")
		}
		if s.Watch != nil {
			b.ReportMetric(float64(s.Watch.Events), p+"watch-events")
		}
		if s.Identities != nil {
			b.ReportMetric(float64(s.Identities.Duplicates), p+"dup-identities")
		}
	}
}
