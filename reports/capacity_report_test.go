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
)

// TestRenderCapacity renders the capacity report of a synthetic sweep
// (one run per node count, as capacity.Sweep collects them).
func TestRenderCapacity(t *testing.T) {
	var rs []*results.Results
	for _, n := range []int{25, 50, 100, 200} {
		rs = append(rs, fixture.Sweep(t, n)[0])
	}
	rep, err := capacity.BuildCapacity(rs, nil)
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
	for _, want := range []string{"SLO breaking points", "| crd | mutating p99 | 1.00 s | **", "50,000 nodes", "plots/capacity-watch-events.png", "Range of validity"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("capacity.md lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "plots", "capacity-watch-events.svg")); err != nil {
		t.Error(err)
	}
}
