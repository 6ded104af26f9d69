// Package testenv lets tests that need something this machine may lack
// (root, BPF, a built kube-apiserver, kubectl) skip with a clear reason,
// while CI, which sets STAMPEDE_STRICT_SKIPS=1 in .ci/run, turns every such
// skip into a failure so that a missing capability cannot pass silently.
package testenv

import (
	"os"
	"testing"
)

// StrictEnv is the environment variable that turns Skip into a failure.
const StrictEnv = "STAMPEDE_STRICT_SKIPS"

// Strict reports whether skips are failures in this run.
func Strict() bool { return os.Getenv(StrictEnv) == "1" }

// Skip skips the test because of a missing capability, or fails it when
// STAMPEDE_STRICT_SKIPS=1.
func Skip(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if Strict() {
		tb.Fatalf("required capability missing ("+StrictEnv+"=1): "+format, args...)
	}
	tb.Skipf(format, args...)
}

// RequireRoot skips (or fails, in strict mode) unless the test runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Skip(tb, "needs root (running as uid %d)", os.Geteuid())
	}
}
