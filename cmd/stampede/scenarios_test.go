package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestScenariosShow(t *testing.T) {
	out, err := runCLI(t, "scenarios", "show", "relabel")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: relabel", "nodes: 200", "replicas: 80", "maxEndpointsPerSlice: 100", "identityChangeGracePeriod: 5s"} {
		if !strings.Contains(out, want) {
			t.Errorf("show relabel lacks %q", want)
		}
	}
	// The knobs follow, each with its source: the scenario's own
	// identity GC, the release's client rate.
	for _, want := range []string{
		"#   controlPlane.identityGC.interval = 30s  (scenario)",
		"#   agent.clientQPS = 10  (Cilium ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show relabel lacks the knob line %q", want)
		}
	}
	old, err := runCLI(t, "scenarios", "show", "relabel-1.17")
	if err != nil || !strings.Contains(old, "# Knobs of Cilium 1.17") {
		t.Errorf("show relabel-1.17 does not resolve Cilium 1.17: %v\n%s", err, old)
	}
}

func TestScenariosValidateExitCode(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: x\ncluster: {nodes: 0, colour: red}\nsteps: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runCLI(t, "scenarios", "validate", bad)
	if err == nil {
		t.Fatal("validate of a bad file succeeded")
	}
	if code := exitCode(t.Context(), err); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(err.Error(), "cluster.colour: unknown field") {
		t.Errorf("error does not name the field: %v", err)
	}

	good := filepath.Join(t.TempDir(), "good.yaml")
	out, _ := runCLI(t, "scenarios", "show", "relabel-small")
	if err := os.WriteFile(good, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "scenarios", "validate", good); err != nil || !strings.Contains(out, "valid") {
		t.Errorf("validate of the effective relabel-small: %q, %v", out, err)
	}
}

func TestScenariosList(t *testing.T) {
	out, err := runCLI(t, "scenarios", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"relabel ", "relabel-1k", "relabel-small"} {
		if !strings.Contains(out, name) {
			t.Errorf("list lacks %s:\n%s", name, out)
		}
	}
}
