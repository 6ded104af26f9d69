package results_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/reports/internal/fixture"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// BenchmarkWriterFlush measures one rewrite of results.json late in a large
// run: five modes of 240 s each at 1 s resolution with 80 series per mode
// (the size of `make bench scenario=relabel`). The harness flushes at most
// every WriterConfig.MinInterval, so ms/op over that interval is the
// writer's share of a core.
func BenchmarkWriterFlush(b *testing.B) {
	r := &results.Results{Run: results.Run{Scenario: "relabel", Started: fixture.Start, Backend: results.Backend{Name: "fake"},
		Machine: results.Machine{Cores: 2, MemoryBytes: 24 << 30, Kernel: "6"}, Datapath: results.Datapath{Requested: "auto", Effective: "mem"}}}
	for _, m := range scenarios.PresetNames()[:5] {
		mr := r.Mode(m)
		mr.Status = results.StatusOK
		for sec := range 240 {
			row := map[string]float64{}
			for k := range 80 {
				row[fmt.Sprintf("series.%d{process=agents-%d}", k, k%8)] = float64(sec*k) * 1.000001
			}
			mr.AppendSample(fixture.Start.Add(time.Duration(sec)*time.Second), row)
		}
	}
	w, err := results.NewWriter(results.WriterConfig{Path: filepath.Join(b.TempDir(), "results.json")}, r)
	if err != nil {
		b.Fatal(err)
	}
	data, err := results.Encode(r)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := w.Update(func(*results.Results) {}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data))/(1<<20), "MiB/file")
}
