package main

import (
	"strings"
	"testing"
)

func TestAgentsMemoryLimitFlag(t *testing.T) {
	for _, bad := range []string{"lots", "-1Gi", "0"} {
		_, err := runCLI(t, "agents", "--memory-limit", bad, "--scenario", "relabel-small", "--mode", "xds")
		if err == nil || !strings.Contains(err.Error(), "--memory-limit") || !strings.Contains(err.Error(), bad) {
			t.Errorf("--memory-limit %q: got %v, want an error naming the flag and the value", bad, err)
		}
	}
}

func TestRunCPUProfileFlag(t *testing.T) {
	_, err := runCLI(t, "run", "--scenario", "relabel-small", "--cpu-profile", "/nonexistent-dir/harness.prof")
	if err == nil || !strings.Contains(err.Error(), "--cpu-profile") {
		t.Errorf("got %v, want an error naming --cpu-profile", err)
	}
}
