package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/internal/testenv"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// requireSubcommands skips (fails under STAMPEDE_STRICT_SKIPS=1) when the
// binary lacks a component the run starts.
func requireSubcommands(t *testing.T, bin string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := exec.Command(bin, n, "--help").Run(); err != nil {
			testenv.Skip(t, "stampede has no %q subcommand yet (%v)", n, err)
		}
	}
}

func runE2E(t *testing.T, backend Backend, modes []scenarios.Mode) (*results.Results, string) {
	t.Helper()
	bin := stampedeBinary(t)
	requireSubcommands(t, bin, "fakeapi", "etcd", "controlplane", "agents")
	sc, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{
		Scenario: sc, Backend: backend, Modes: modes, Out: out, Executable: bin,
		Progress: testWriter{t}, Grace: 5 * time.Second, AgentNice: AgentNiceAuto,
	})
	if err != nil {
		t.Errorf("run: %v", err)
	}
	if res == nil {
		t.Fatal("no results")
	}
	if left := liveChildren(); len(left) > 0 {
		t.Errorf("children still running after the run: %v", left)
	}
	data, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := results.Validate(data); err != nil {
		t.Errorf("results.json does not validate: %v", err)
	}
	return res, out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", p)
	return len(p), nil
}

func checkModes(t *testing.T, res *results.Results, modes []scenarios.Mode) {
	t.Helper()
	if !res.Run.Complete {
		t.Errorf("run incomplete: %s", res.Run.IncompleteReason)
	}
	if len(res.Modes) != len(modes) {
		t.Fatalf("%d modes in results, want %d", len(res.Modes), len(modes))
	}
	for _, m := range res.Modes {
		if m.Status != results.StatusOK {
			t.Errorf("mode %s: %s: %s", m.Mode, m.Status, m.Reason)
			continue
		}
		if want := agentNice(AgentNiceAuto, presetAxes(t, m.Mode)); m.AgentNice != want {
			t.Errorf("mode %s: agentNice %d, want %d", m.Mode, m.AgentNice, want)
		}
		s := m.Summary
		if s == nil || len(s.Convergence) == 0 {
			t.Errorf("mode %s: no convergence summary", m.Mode)
			continue
		}
		for _, c := range s.Convergence {
			if c.Converged != c.Agents || c.Agents != 20 {
				t.Errorf("mode %s: step %d: converged %d/%d, want 20/20", m.Mode, c.Step, c.Converged, c.Agents)
			}
		}
		if s.Probe == nil || len(s.APILatency) == 0 {
			t.Errorf("mode %s: no probe results", m.Mode)
		}
		if s.Agents == nil || s.Agents.Count != 20 {
			t.Errorf("mode %s: agent summary %+v, want 20 agents", m.Mode, s.Agents)
		}
		if w := s.AgentWork; w == nil || w.Agents != 20 || w.Received["*"].Bytes.P50 == 0 || w.Cached["*"].Objects.P50 == 0 || w.Identities.P50 == 0 {
			t.Errorf("mode %s: agents' work %+v, want what 20 agents received and hold", m.Mode, w)
		}
		if m.Series == nil || m.Series.Len() == 0 {
			t.Errorf("mode %s: no series", m.Mode)
		}
	}
}

// TestRelabelSmallAllModesFake is the end-to-end test: relabel-small in
// every mode against the fake API server.
func TestRelabelSmallAllModesFake(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run; -short")
	}
	start := time.Now()
	// The five presets whose components exist; ces-slim and mesh are
	// wired after issue 22's other parts land.
	modes := scenarios.PresetNames()[:5]
	res, out := runE2E(t, &FakeBackend{}, modes)
	checkModes(t, res, modes)
	t.Logf("relabel-small, all modes, fake backend: %v (output %s)", time.Since(start).Round(time.Second), out)
}

// TestRelabelSmallLocal runs one mode against a real kube-apiserver.
func TestRelabelSmallLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end run; -short")
	}
	kas := requireKubeAPIServer(t)
	b := NewLocalBackend(LocalConfig{KubeAPIServer: kas})
	res, _ := runE2E(t, b, []scenarios.Mode{scenarios.ModeCRD})
	checkModes(t, res, []scenarios.Mode{scenarios.ModeCRD})
}
