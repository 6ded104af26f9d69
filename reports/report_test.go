package reports

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stampede-sim/stampede/reports/internal/fixture"
	"github.com/stampede-sim/stampede/reports/results"
)

func TestRenderGolden(t *testing.T) {
	for name, r := range map[string]*results.Results{
		"full":    fixture.Full(t),
		"partial": fixture.Partial(t),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if k := os.Getenv("STAMPEDE_REPORT_DIR"); k != "" {
				dir = filepath.Join(k, name)
			}
			formats := []string{"png", "svg"}
			if name == "full" {
				formats = []string{"png"} // keeps the race-detector run short
			}
			out, err := Render(context.Background(), RenderConfig{Dir: dir, Formats: formats}, r)
			if err != nil {
				t.Fatal(err)
			}
			if len(out.FigureErrors) > 0 {
				t.Errorf("figures not drawn: %v", out.FigureErrors)
			}
			md, err := os.ReadFile(out.Markdown)
			if err != nil {
				t.Fatal(err)
			}
			fixture.Golden(t, "report-"+name+".md", md)
			// Every image the Markdown links exists.
			for _, line := range strings.Split(string(md), "\n") {
				if i := strings.Index(line, "](plots/"); i >= 0 {
					file := strings.TrimSuffix(line[i+2:], ")")
					if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
						t.Errorf("report.md links %s: %v", file, err)
					}
				}
			}
			page, err := os.ReadFile(out.HTML)
			if err != nil {
				t.Fatal(err)
			}
			html := string(page)
			if got, want := strings.Count(html, `src="data:image/png;base64,`), strings.Count(string(md), "](plots/"); got != want || got == 0 {
				t.Errorf("report.html embeds %d images, report.md links %d", got, want)
			}
			for _, ext := range []string{`src="http`, `href="http`, `src="plots/`} {
				if strings.Contains(html, ext) {
					t.Errorf("report.html is not self-contained: contains %s", ext)
				}
			}
		})
	}
}

func TestRenderConfig(t *testing.T) {
	if _, err := Render(context.Background(), RenderConfig{}, fixture.Full(t)); err == nil {
		t.Error("Render without a directory succeeded")
	}
	if _, err := Render(context.Background(), RenderConfig{Dir: t.TempDir(), Formats: []string{"gif"}}, fixture.Full(t)); err == nil || !strings.Contains(err.Error(), "formats[0]") {
		t.Errorf("bad format: got %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Render(ctx, RenderConfig{Dir: t.TempDir()}, fixture.Full(t)); err == nil {
		t.Error("Render with a cancelled context succeeded")
	}
}

// TestRenderV1Run renders a results.json of a real run written by the v1
// code: it loads, is upgraded, and the modes table shows each mode's axes.
func TestRenderV1Run(t *testing.T) {
	r, err := results.ReadFile(filepath.Join("results", "testdata", "v1-relabel-small-run.json"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(context.Background(), RenderConfig{Dir: t.TempDir(), Formats: []string{"svg"}}, r)
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(out.Markdown)
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range []string{
		"| crd | agent | cep | apiserver | preset |",
		"| kvstore | kvstore | kvstore | kvstore | preset |",
		"| xds | central | xds | xds | preset |",
	} {
		if !strings.Contains(string(md), row) {
			t.Errorf("report lacks the modes row %q", row)
		}
	}
}
