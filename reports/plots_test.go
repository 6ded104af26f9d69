package reports

import (
	"bytes"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"

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

// TestAPIFiguresSayWhichAPIServer: every figure that shows the API server's
// latency, CPU, writes or watch delivery names the API server it stands for
// in its caption, and the drawn caption, wrapped to the figure's width,
// carries all of it.
func TestAPIFiguresSayWhichAPIServer(t *testing.T) {
	for _, tt := range []struct {
		name string
		r    *results.Results
		want string
	}{
		{"capacity", fixture.Full(t), "API server: fake with capacity 8 cores of Test CPU @ 2.00GHz (profile kube-apiserver-v1.36.3, measured 2026-12-03 on a 2-core machine) — modelled kube-apiserver v1.36.3 + etcd"},
		{"no model", fixture.Partial(t), "API server: fake without capacity model — the simulator's own latency, not a kube-apiserver's"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			api := 0
			for _, f := range Figures(tt.r) {
				isAPI := strings.HasSuffix(f.Name, "-api-latency") || strings.HasSuffix(f.Name, "-cpu-memory") ||
					strings.HasSuffix(f.Name, "-writes") || strings.HasSuffix(f.Name, "-watch") || (strings.HasPrefix(f.Name, "compare-") && f.Name != "compare-agent-work")
				if has := strings.Contains(f.Caption, tt.want); has != isAPI {
					t.Errorf("%s: caption names the API server: %v, want %v (caption %q)", f.Name, has, isAPI, f.Caption)
				}
				if isAPI {
					api++
				}
			}
			if api == 0 {
				t.Fatal("no API figure drawn")
			}
		})
	}
	f := Figures(fixture.Full(t))[0]
	svg, err := f.Encode("svg")
	if err != nil {
		t.Fatal(err)
	}
	// The account is wider than the figure: it is drawn on more than one
	// line, every word of it.
	drawn := string(svg)
	for _, word := range []string{"capacity", "kube-apiserver-v1.36.3,", "2026-12-03", "modelled"} {
		if !strings.Contains(drawn, word) {
			t.Errorf("%s.svg lacks %q of the caption", f.Name, word)
		}
	}
	sty := plot.New().Title.TextStyle
	sty.Font.Size = vg.Points(10)
	lines := wrapCaption(sty, f.Caption, 10*vg.Inch-vg.Points(24))
	if len(lines) < 3 {
		t.Errorf("caption of %s in %d lines, want the API server line wrapped: %q", f.Name, len(lines), lines)
	}
	for _, l := range lines {
		if w := sty.Width(l); w > 10*vg.Inch-vg.Points(24) && strings.Contains(l, " ") {
			t.Errorf("line %q is %v wide, over the figure", l, w)
		}
	}
}

// TestPresetsHaveTheirOwnColours: every preset is drawn in a colour no
// other preset has (ces-slim and mesh once shared the fallback grey), and
// a mode a scenario names keeps its colour.
func TestPresetsHaveTheirOwnColours(t *testing.T) {
	seen := map[color.RGBA]string{}
	for _, p := range scenarios.Presets() {
		m := string(p.Name)
		c := modeColor(m)
		if other, ok := seen[c]; ok {
			t.Errorf("modes %s and %s share the colour %v", other, m, c)
		}
		seen[c] = m
	}
	if len(seen) < 7 {
		t.Errorf("%d presets coloured, want the seven", len(seen))
	}
	if modeColor("mesh-from-ces") != modeColor("mesh-from-ces") {
		t.Error("a custom mode's colour changes between calls")
	}
}
