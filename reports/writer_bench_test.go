package reports

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/scenarios"
)

// BenchmarkWriterFlush measures one rewrite of results.json late in a large
// run: five modes of 240 s each at 1 s resolution with 80 series per mode
// (the size of `make bench scenario=relabel`). The harness flushes at most
// every WriterConfig.MinInterval, so ms/op over that interval is the
// writer's share of a core.
func BenchmarkWriterFlush(b *testing.B) {
	r := &Results{Run: Run{Scenario: "relabel", Started: fixtureStart, Backend: Backend{Name: "fake"},
		Machine: Machine{Cores: 2, MemoryBytes: 24 << 30, Kernel: "6"}, Datapath: Datapath{Requested: "auto", Effective: "mem"}}}
	for _, m := range scenarios.AllModes {
		mr := r.Mode(m)
		mr.Status = StatusOK
		for sec := range 240 {
			row := map[string]float64{}
			for k := range 80 {
				row[fmt.Sprintf("series.%d{process=agents-%d}", k, k%8)] = float64(sec*k) * 1.000001
			}
			mr.AppendSample(fixtureStart.Add(time.Duration(sec)*time.Second), row)
		}
	}
	w, err := NewWriter(WriterConfig{Path: filepath.Join(b.TempDir(), "results.json")}, r)
	if err != nil {
		b.Fatal(err)
	}
	data, err := Encode(r)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := w.Update(func(*Results) {}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data))/(1<<20), "MiB/file")
}
