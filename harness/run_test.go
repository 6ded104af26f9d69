package harness

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestDefaultShards(t *testing.T) {
	maxShards := 2 * runtime.NumCPU()
	tests := []struct{ agents, want int }{
		{1, 1}, {20, 1}, {250, 1}, {251, min(2, maxShards)}, {1000, min(4, maxShards)}, {100000, maxShards},
	}
	for _, tt := range tests {
		if got := DefaultShards(tt.agents); got != tt.want {
			t.Errorf("DefaultShards(%d) = %d, want %d", tt.agents, got, tt.want)
		}
	}
}

func TestShardSize(t *testing.T) {
	total := 0
	for i := 0; i < 3; i++ {
		total += shardSize(10, 3, i)
	}
	if total != 10 || shardSize(10, 3, 0) != 4 || shardSize(10, 3, 2) != 3 {
		t.Errorf("shard sizes of 10 over 3: %d %d %d", shardSize(10, 3, 0), shardSize(10, 3, 1), shardSize(10, 3, 2))
	}
}

func TestShardMemoryLimit(t *testing.T) {
	const gib = int64(1) << 30
	if got := shardMemoryLimit(24*gib, 4); got != 3*gib {
		t.Errorf("24 GiB over 4 shards: %d, want 3 GiB", got)
	}
	if got := shardMemoryLimit(24*gib, 1); got != 12*gib {
		t.Errorf("24 GiB over 1 shard: %d, want 12 GiB", got)
	}
	if got := shardMemoryLimit(0, 4); got != 0 {
		t.Errorf("unknown machine memory: %d, want 0 (no limit)", got)
	}
}

func TestMetricsURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:1":          "http://127.0.0.1:1/metrics",
		"http://127.0.0.1:1/":         "http://127.0.0.1:1/metrics",
		"https://127.0.0.1:1/metrics": "https://127.0.0.1:1/metrics",
	} {
		if got := metricsURL(in); got != want {
			t.Errorf("metricsURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseBackend(t *testing.T) {
	tests := []struct {
		spec, name, wantErr string
	}{
		{spec: "fake", name: "fake"},
		{spec: "local", name: "local"},
		{spec: "kind", name: "kind"},
		{spec: "kubeconfig=/x", name: "kubeconfig"},
		{spec: "kubeconfig", wantErr: "needs a path"},
		{spec: "fake=1", wantErr: "takes no argument"},
		{spec: "local=x", wantErr: "takes no argument"},
		{spec: "minikube", wantErr: `unknown backend "minikube"`},
	}
	for _, tt := range tests {
		b, err := ParseBackend(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseBackend(%q) = %v, want error %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil || b.Name() != tt.name {
			t.Errorf("ParseBackend(%q) = %v, %v; want %s", tt.spec, b, err, tt.name)
		}
	}
}

// TestRunSkipsUnavailableBackend: a backend that cannot run here makes
// every mode skipped with the reason, and the run is still complete.
func TestRunSkipsUnavailableBackend(t *testing.T) {
	sc := smallScenario(t, "steps: [{setup: {}}]")
	out := t.TempDir()
	res, err := Run(context.Background(), Config{
		Scenario: sc, Backend: unavailableBackend{name: "kind", reason: "no Docker here"},
		Modes: []scenarios.Mode{scenarios.ModeCRD, scenarios.ModeXDS}, Out: out, Executable: "/bin/false", NoReport: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Run.Complete || len(res.Modes) != 2 {
		t.Fatalf("run = %+v", res.Run)
	}
	for _, m := range res.Modes {
		if m.Status != results.StatusSkipped || !strings.Contains(m.Reason, "no Docker here") {
			t.Errorf("mode %s: %s %q, want skipped with the reason", m.Mode, m.Status, m.Reason)
		}
	}
}

// TestRunFailedComponent: a component that cannot start fails its mode
// with an error naming it and its log; the run goes on to the next mode.
func TestRunFailedComponent(t *testing.T) {
	sc := smallScenario(t, "steps: [{setup: {}}]")
	res, err := Run(context.Background(), Config{
		Scenario: sc, Backend: &FakeBackend{}, Modes: []scenarios.Mode{scenarios.ModeCRD, scenarios.ModeCES},
		Out: t.TempDir(), Executable: "/bin/false", NoReport: true, Grace: time.Second,
	})
	if err == nil || !strings.Contains(err.Error(), "2 of 2 modes failed") {
		t.Errorf("err = %v, want both modes failed", err)
	}
	for _, m := range res.Modes {
		if m.Status != results.StatusFailed || !strings.Contains(m.Reason, "exited before it was ready") || !strings.Contains(m.Reason, "fakeapi.log") {
			t.Errorf("mode %s: %s %q", m.Mode, m.Status, m.Reason)
		}
	}
	if res.Run.Complete {
		t.Error("run with failed modes marked complete")
	}
}

func TestRunConfigErrors(t *testing.T) {
	sc := smallScenario(t, "steps: [{setup: {}}]")
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Backend: &FakeBackend{}, Out: "x"}, "no scenario"},
		{Config{Scenario: sc, Out: "x"}, "no backend"},
		{Config{Scenario: sc, Backend: &FakeBackend{}}, "no output directory"},
		{Config{Scenario: sc, Backend: &FakeBackend{}, Out: "x", Modes: []scenarios.Mode{"cdr"}}, `has no mode "cdr"`},
		{Config{Scenario: sc, Backend: &FakeBackend{}, Out: "x", Shards: -1}, "shards must be >= 0"},
		{Config{Scenario: sc, Backend: &FakeBackend{}, Out: "x", AgentNice: 20}, "agent nice value must be 0 to 19"},
		{Config{Scenario: sc, Backend: &FakeBackend{}, Out: "x", AgentNice: -2}, "agent nice value must be 0 to 19"},
	}
	for _, tt := range tests {
		_, err := Run(context.Background(), tt.cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run = %v, want %q", err, tt.want)
		}
	}
	var se *SkipError
	if !errors.As(error(&SkipError{Reason: "x"}), &se) {
		t.Error("SkipError is not matchable")
	}
}

func TestAgentNicePerMode(t *testing.T) {
	if got := agentNice(AgentNiceAuto, presetAxes(t, scenarios.ModeKVStore)); got != DefaultAgentNice {
		t.Errorf("kvstore default: %d, want %d", got, DefaultAgentNice)
	}
	for _, m := range []scenarios.Mode{scenarios.ModeCRD, scenarios.ModeCES, scenarios.ModeOperator, scenarios.ModeXDS} {
		if got := agentNice(AgentNiceAuto, presetAxes(t, m)); got != 0 {
			t.Errorf("%s default: %d, want 0", m, got)
		}
		if got := agentNice(5, presetAxes(t, m)); got != 5 {
			t.Errorf("%s with 5 configured: %d", m, got)
		}
	}
	if got := agentNice(0, presetAxes(t, scenarios.ModeKVStore)); got != 0 {
		t.Errorf("kvstore with 0 configured: %d", got)
	}
}

func presetAxes(t testing.TB, m scenarios.Mode) scenarios.Axes {
	t.Helper()
	p, ok := scenarios.Preset(m)
	if !ok {
		t.Fatalf("no preset %s", m)
	}
	return p.Axes
}

// TestAcceptsMeshModes: modes on the mesh read path, the preset and a
// combination of the scenario's own, are accepted now that the harness
// starts their replicas.
func TestAcceptsMeshModes(t *testing.T) {
	sc, err := scenarios.Parse("t", []byte(`name: t
cilium: {version: "1.20"}
cluster:
  nodes: 2
  namespaces: [{name: a}]
  workloads: {deploymentsPerNamespace: 1, replicas: 1}
modes: [crd, ces-slim, mesh, {name: mesh-ces, identity: operator, endpoints: ces, readPath: mesh}]
steps: [{setup: {}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Scenario: sc, Backend: &FakeBackend{}, Modes: []scenarios.Mode{scenarios.ModeCRD, scenarios.ModeCESSlim, scenarios.ModeMesh, "mesh-ces"}, Out: t.TempDir()}
	if err := cfg.defaults(); err != nil {
		t.Errorf("crd, ces-slim, mesh, mesh-ces: %v", err)
	}
	cfg = Config{Scenario: sc, Backend: &FakeBackend{}, Modes: []scenarios.Mode{"meshh"}, Out: t.TempDir()}
	if err := cfg.defaults(); err == nil || !strings.Contains(err.Error(), `no mode "meshh"`) {
		t.Errorf("unknown mode: got %v", err)
	}
}
