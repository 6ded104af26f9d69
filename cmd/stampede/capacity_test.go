package main

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestCapacityFromResults(t *testing.T) {
	var files []string
	for _, n := range []float64{20, 40, 80, 160} {
		files = append(files, gateFixture(t, "nodes.json", func(m map[string]any) {
			run := m["run"].(map[string]any)
			run["nodes"] = n
			run["pods"] = 100 * n
			run["scenario"] = "relabel-small@" + strconv.Itoa(int(n))
			for _, mode := range m["modes"].([]any) {
				s := mode.(map[string]any)["summary"].(map[string]any)
				w := s["watch"].(map[string]any)
				w["events"] = math.Round(w["events"].(float64) * (n / 20) * (n / 20))
			}
		}))
	}
	out := t.TempDir()
	text, err := runCLI(t, "capacity", "--results", strings.Join(files, ","), "--out", out, "--modes", "crd,xds")
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	for _, want := range []string{"capacity model of relabel-small from 4 runs at [20 40 80 160] nodes", "slo: mutating p99", "capacity.html"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "capacity.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "n^2.00") || strings.Contains(string(md), "| ces |") {
		t.Errorf("capacity.md: want a quadratic watch.events fit and no ces rows:\n%s", md)
	}

	_, err = runCLI(t, "capacity", "--results", files[0], "--out", t.TempDir())
	if exitCode(t.Context(), err) != 2 {
		t.Errorf("one size: exit %d (%v), want 2", exitCode(t.Context(), err), err)
	}
	_, err = runCLI(t, "capacity", "--results", files[0], "--modes", "crd,nope")
	if exitCode(t.Context(), err) != 2 || !strings.Contains(err.Error(), `unknown mode "nope"`) {
		t.Errorf("bad mode: %v", err)
	}
}
