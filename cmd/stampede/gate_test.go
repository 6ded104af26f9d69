package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// gateFixture writes a copy of the reports fixture, edited by edit.
func gateFixture(t *testing.T, name string, edit func(m map[string]any)) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "reports", "results", "testdata", "results-full.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGateExitCodes(t *testing.T) {
	base := gateFixture(t, "base.json", nil)
	slower := gateFixture(t, "slower.json", func(m map[string]any) {
		crd := m["modes"].([]any)[0].(map[string]any)
		lat := crd["summary"].(map[string]any)["apiLatency"].([]any)[0].(map[string]any)
		lat["p99"] = lat["p99"].(float64) * 2
	})
	partial := gateFixture(t, "partial.json", func(m map[string]any) {
		crd := m["modes"].([]any)[0].(map[string]any)
		crd["status"] = "incomplete"
		crd["reason"] = "interrupted"
	})
	invalid := gateFixture(t, "invalid.json", func(m map[string]any) { delete(m, "run") })
	fourCores := gateFixture(t, "four-cores.json", func(m map[string]any) {
		m["run"].(map[string]any)["apiServer"].(map[string]any)["capacity"].(map[string]any)["cores"] = 4
	})
	dir := t.TempDir()
	noSLO := filepath.Join(dir, "noslo.yaml")
	if err := os.WriteFile(noSLO, []byte("ignoreSLO: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badRules := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badRules, []byte("rules:\n- metric: api.p99\n  maxIncrese: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	summary := filepath.Join(dir, "summary.md")
	tests := []struct {
		name string
		args []string
		code int // -1: success
		want string
	}{
		{"pass", []string{"--baseline", base, "--current", base + "," + base, "--rules", noSLO, "--markdown", summary}, -1, "gate: PASS"},
		{"slo breach", []string{"--baseline", base, "--current", base}, 1, "slo: mutating p99"},
		{"regression", []string{"--baseline", base, "--current", slower, "--rules", noSLO}, 1, "crd api.p99"},
		{"partial", []string{"--baseline", base, "--current", partial}, 2, "incomplete"},
		{"invalid", []string{"--baseline", invalid, "--current", base}, 2, "missing property 'run'"},
		{"other API server capacity", []string{"--baseline", base, "--current", fourCores}, 2, "current[0] ran against API server fake with capacity 4 cores"},
		{"missing file", []string{"--baseline", filepath.Join(dir, "nope.json"), "--current", base}, 2, "nope.json"},
		{"no current", []string{"--baseline", base}, 2, "--current"},
		{"bad rules", []string{"--baseline", base, "--current", base, "--rules", badRules}, 2, "rules[0].maxIncrese"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCLI(t, append([]string{"gate"}, tt.args...)...)
			text := out
			if err != nil {
				text += err.Error()
			}
			if tt.code < 0 {
				if err != nil {
					t.Fatalf("gate failed: %v\n%s", err, out)
				}
			} else if err == nil {
				t.Fatalf("gate passed, want exit %d\n%s", tt.code, out)
			} else if got := exitCode(t.Context(), err); got != tt.code {
				t.Fatalf("exit %d, want %d: %v", got, tt.code, err)
			}
			if !strings.Contains(text, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, text)
			}
		})
	}
	md, err := os.ReadFile(summary)
	if err != nil || !strings.Contains(string(md), "# Stampede gate: PASS") {
		t.Errorf("--markdown file: %v %q", err, md)
	}
}

func TestGatePrintRulesRoundTrip(t *testing.T) {
	out, err := runCLI(t, "gate", "--print-rules")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	base := gateFixture(t, "base.json", nil)
	if _, err := runCLI(t, "gate", "--baseline", base, "--current", base, "--rules", path); exitCode(t.Context(), err) != 1 || err == nil {
		// The fixture breaks crd's SLO: the printed rules must load and judge.
		t.Fatalf("gate with printed rules: %v", err)
	}
}
