package reports

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stampede-sim/stampede/reports/capacity"
	"github.com/stampede-sim/stampede/reports/internal/fixture"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// onAPI records in rs that they ran on backend with a capacity model of
// cores (0: none), as the harness records the effective scenario.
func onAPI(rs []*results.Results, backend scenarios.BackendType, cores float64) []*results.Results {
	for _, r := range rs {
		r.Run.Backend.Name = string(backend)
		sc := &scenarios.Scenario{API: scenarios.API{Backend: backend}}
		if cores > 0 {
			sc.API.Capacity = &scenarios.Capacity{Cores: cores}
		}
		r.Run.EffectiveScenario = sc
	}
	return rs
}

// TestRenderCapacity renders the capacity report of a synthetic sweep over
// two API server sizes and the fake without a capacity model (one run per
// node count, as capacity.Sweep collects them) and compares capacity.md
// with testdata/capacity.golden.md (-update rewrites it).
func TestRenderCapacity(t *testing.T) {
	var rs []*results.Results
	rs = append(rs, onAPI(fixture.Sweep(t, 25, 50, 100, 200), scenarios.BackendFake, 2)...)
	rs = append(rs, onAPI(fixture.Sweep(t, 5, 10, 20), scenarios.BackendFake, 16)...)
	rs = append(rs, onAPI(fixture.Sweep(t, 5, 10, 20), scenarios.BackendFake, 0)...)
	rep, err := capacity.BuildCapacity(rs, capacity.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if k := os.Getenv("STAMPEDE_REPORT_DIR"); k != "" {
		dir = filepath.Join(k, "capacity")
	}
	out, err := RenderCapacity(context.Background(), CapacityConfig{Dir: dir}, rep)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.FigureErrors) > 0 {
		t.Errorf("figures: %v", out.FigureErrors)
	}
	md, err := os.ReadFile(out.Markdown)
	if err != nil {
		t.Fatal(err)
	}
	fixture.Golden(t, "capacity.golden.md", md)
	for _, want := range []string{
		"| crd | 2 cores | mutating p99 | 1.00 s | **",
		"| crd | 16 cores | mutating p99 | 1.00 s | beyond what the data supports | - | beyond what the data supports (largest measured 20 nodes)",
		"| crd | no capacity model | mutating p99 | 1.00 s | - | - | measured on the fake API server without a capacity model",
		"| xds | 2 cores | mutating p99 | 1.00 s | - | - | xds agents never talk to the API server",
		"cilium/cilium#38030", "× below the published 3,000 nodes",
		"50,000 nodes", "plots/capacity-watch-events.png", "Range of validity",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("capacity.md lacks %q", want)
		}
	}
	if strings.Count(string(md), "**") != 4 {
		t.Errorf("want exactly two bold breaking points (crd on 2 cores, in two tables), got %d bold marks", strings.Count(string(md), "**")/2)
	}
	if _, err := os.Stat(filepath.Join(dir, "plots", "capacity-watch-events.svg")); err != nil {
		t.Error(err)
	}
}
