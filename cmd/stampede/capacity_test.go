package main

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// capacitySweepFiles writes the results fixture at four node counts; with
// noCapacity the runs are made to have been on the fake without a capacity
// model.
func capacitySweepFiles(t *testing.T, noCapacity bool) []string {
	var files []string
	for _, n := range []float64{20, 40, 80, 160} {
		files = append(files, gateFixture(t, "nodes.json", func(m map[string]any) {
			run := m["run"].(map[string]any)
			run["nodes"] = n
			run["pods"] = 100 * n
			run["scenario"] = "relabel-small@" + strconv.Itoa(int(n))
			if noCapacity {
				run["apiServer"] = map[string]any{"backend": "fake", "model": "none"}
				delete(run["effectiveScenario"].(map[string]any)["api"].(map[string]any), "capacity")
			}
			for _, mode := range m["modes"].([]any) {
				s := mode.(map[string]any)["summary"].(map[string]any)
				w := s["watch"].(map[string]any)
				w["events"] = math.Round(w["events"].(float64) * (n / 20) * (n / 20))
			}
		}))
	}
	return files
}

func TestCapacityFromResults(t *testing.T) {
	// Without a capacity model no breaking point is stated; xds never has one.
	text, err := runCLI(t, "capacity", "--results", strings.Join(capacitySweepFiles(t, true), ","), "--out", t.TempDir(), "--modes", "crd,xds")
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	for _, want := range []string{"crd      no capacity model  mutating p99 no-capacity-model: measured on the fake API server without a capacity model",
		"xds      no capacity model  mutating p99 not-applicable: xds agents never talk to the API server"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// The fixture ran on the fake with an 8-core capacity model, and crd's
	// mutating p99 is over its limit at every size.
	files := capacitySweepFiles(t, false)
	out := t.TempDir()
	text, err = runCLI(t, "capacity", "--results", strings.Join(files, ","), "--out", out, "--modes", "crd,xds")
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	for _, want := range []string{"capacity model of relabel-small from 4 runs at [20 40 80 160] nodes",
		"crd      8 cores            breaks mutating p99 at 20 nodes or fewer: measured 13.2 s at 20 nodes, the smallest size measured",
		"to settle it, also run --nodes 5,10",
		"xds      8 cores            mutating p99 not-applicable", "capacity.html"} {
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
	_, err = runCLI(t, "capacity", "--results", files[0], "--modes", "crd,No_Pe")
	if exitCode(t.Context(), err) != 2 || !strings.Contains(err.Error(), `invalid mode name "No_Pe"`) {
		t.Errorf("bad mode: %v", err)
	}
}

// TestCapacityAPICoresFlag: --api-cores takes finite sizes above 0 and
// names itself, and the element, when a value is wrong; it makes sense
// only for a sweep on the fake API server.
func TestCapacityAPICoresFlag(t *testing.T) {
	good, err := parseAPICores(" 2, 4,8,16,0.5")
	if err != nil || !slices.Equal(good, []float64{2, 4, 8, 16, 0.5}) {
		t.Errorf("parse: %v, %v", good, err)
	}
	if none, err := parseAPICores(""); none != nil || err != nil {
		t.Errorf("empty: %v, %v", none, err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"zero", []string{"--api-cores", "0"}, "--api-cores[0]: 0 must be above 0 cores"},
		{"negative", []string{"--api-cores=4,-2"}, "--api-cores[1]: -2 must be above 0 cores"},
		{"NaN", []string{"--api-cores", "2,NaN"}, `--api-cores[1]: "NaN" must be a finite number of cores`},
		{"infinite", []string{"--api-cores", "+Inf"}, `--api-cores[0]: "+Inf" must be a finite number of cores`},
		{"garbage", []string{"--api-cores", "4,lots"}, `--api-cores[1]: "lots" is not a number of cores`},
		{"empty element", []string{"--api-cores", "4,,8"}, `--api-cores[1]: "" is not a number of cores`},
		{"twice", []string{"--api-cores", "4,8,4"}, "--api-cores[2]: 4 cores given twice"},
		{"not the fake", []string{"--api-cores", "4", "--api", "local"}, `--api-cores: the capacity model is the fake API server's; it needs --api fake, not "local"`},
		{"with results", []string{"--api-cores", "4", "--results", "x.json"}, "--api-cores: sizes a sweep's runs"},
		{"profile alone", []string{"--api-profile", "p.yaml"}, "--api-profile: only with --api-cores"},
		{"reach below 1", []string{"--max-extrapolation", "0.5"}, "--max-extrapolation: 0.5 must be a finite number of at least 1"},
		{"reach NaN", []string{"--max-extrapolation", "NaN"}, "--max-extrapolation: NaN must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"capacity", "--scenario", "relabel-small", "--nodes", "5,10", "--out", t.TempDir()}, tt.args...)
			_, err := runCLI(t, args...)
			if exitCode(t.Context(), err) != 2 || err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got exit %d: %v; want exit 2 with %q", exitCode(t.Context(), err), err, tt.want)
			}
		})
	}
}
