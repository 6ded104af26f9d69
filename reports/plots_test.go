package reports

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/reports/internal/fixture"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// TestFiguresRender draws every figure of the full and the partial
// fixture, and of degenerate input, in PNG and SVG. Set
// STAMPEDE_PLOTS_DIR to keep the images for a look.
func TestFiguresRender(t *testing.T) {
	empty := fixture.Full(t)
	for i := range empty.Modes {
		m := &empty.Modes[i]
		// Every sample missing, zeros on a log axis, one sample only.
		switch i {
		case 0:
			for n, c := range m.Series.Values {
				for j := range c {
					c[j] = math.NaN()
				}
				m.Series.Values[n] = c
			}
		case 1:
			for n, c := range m.Series.Values {
				for j := range c {
					c[j] = 0
				}
				m.Series.Values[n] = c
			}
		case 2:
			m.Series.T = m.Series.T[:1]
			for n, c := range m.Series.Values {
				m.Series.Values[n] = c[:1]
			}
		}
	}
	tests := []struct {
		name string
		r    *results.Results
		want []string
	}{
		{name: "full", r: fixture.Full(t), want: []string{
			"crd-api-latency", "crd-cpu-memory", "crd-agents", "crd-watch", "crd-writes",
			"kvstore-kvstore-latency", "xds-xds-latency",
			"compare-api-latency", "compare-resources", "compare-watch", "compare-summary",
		}},
		{name: "partial", r: fixture.Partial(t), want: []string{"crd-api-latency", "ces-api-latency", "compare-api-latency", "compare-summary"}},
		{name: "degenerate", r: empty},
		{name: "nothing", r: &results.Results{SchemaVersion: results.SchemaVersion, Run: results.Run{Scenario: "x", Started: time.Unix(0, 0)},
			Modes: []results.ModeResult{{Mode: scenarios.ModeCRD, Status: results.StatusSkipped, Reason: "no"}}}},
	}
	keep := os.Getenv("STAMPEDE_PLOTS_DIR")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			figs := Figures(tt.r)
			var names []string
			for _, f := range figs {
				names = append(names, f.Name)
				// TestRenderGolden draws the full and partial fixtures;
				// here only the odd cases are drawn, unless kept.
				if keep == "" && (tt.name == "full" || tt.name == "partial") {
					continue
				}
				formats := []string{"png", "svg"}
				if tt.name == "degenerate" && keep == "" {
					formats = formats[:1]
				}
				for _, format := range formats {
					data, err := f.Encode(format)
					if err != nil {
						t.Errorf("%s.%s: %v", f.Name, format, err)
						continue
					}
					magic := map[string][]byte{"png": []byte("\x89PNG"), "svg": []byte("<svg")}[format]
					if !bytes.Contains(data[:min(len(data), 200)], magic) {
						t.Errorf("%s.%s: not a %s image", f.Name, format, format)
					}
					if keep != "" {
						dir := filepath.Join(keep, tt.name)
						os.MkdirAll(dir, 0o755)
						os.WriteFile(filepath.Join(dir, f.Name+"."+format), data, 0o644)
					}
				}
			}
			for _, w := range tt.want {
				if !slices.Contains(names, w) {
					t.Errorf("figure %s missing; got %v", w, names)
				}
			}
		})
	}
}
