package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRunGraceFlag(t *testing.T) {
	_, err := runCLI(t, "run", "--scenario", "relabel-small", "--grace", "-1s", "--out", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--grace") || !strings.Contains(err.Error(), "-1s") {
		t.Errorf("--grace -1s: got %v, want an error naming the flag and the value", err)
	}
}

func TestRunRefusesUsedOutDir(t *testing.T) {
	out := t.TempDir()
	if err := os.WriteFile(filepath.Join(out, "results.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := runCLI(t, "run", "--scenario", "relabel-small", "--out", out)
	if err == nil || !strings.Contains(err.Error(), "--out") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("run into a used --out: got %v, want an error naming --out and --force", err)
	}
	if err := checkOutEmpty(out, true); err != nil {
		t.Errorf("checkOutEmpty(force) = %v, want nil", err)
	}
	if err := checkOutEmpty(filepath.Join(out, "new"), false); err != nil {
		t.Errorf("checkOutEmpty(missing dir) = %v, want nil", err)
	}
	if err := checkOutEmpty(t.TempDir(), false); err != nil {
		t.Errorf("checkOutEmpty(empty dir) = %v, want nil", err)
	}
}

func TestDefaultOutStaysUnderOut(t *testing.T) {
	for _, name := range []string{"../../x", "a/b", `a\b`} {
		if got, err := defaultOut("", name); err == nil {
			t.Errorf("defaultOut(%q) = %q, want an error", name, got)
		}
	}
	got, err := defaultOut("capacity-", "relabel@50")
	if err != nil || !strings.HasPrefix(got, filepath.Join("out", "capacity-relabel@50-")) {
		t.Errorf("defaultOut = %q, %v; want out/capacity-relabel@50-<time>", got, err)
	}
}

func TestExitCode(t *testing.T) {
	signalled := func(sig syscall.Signal) context.Context {
		ctx, cancel := context.WithCancelCause(t.Context())
		cancel(interrupted{sig: sig})
		return ctx
	}
	boom := errors.New("boom")
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{"success", t.Context(), nil, 0},
		{"failure", t.Context(), boom, 1},
		{"exit error", t.Context(), &exitError{code: 2, err: boom}, 2},
		{"ctrl-c", signalled(syscall.SIGINT), boom, 130},
		{"sigterm", signalled(syscall.SIGTERM), boom, 143},
		{"signal, clean stop", signalled(syscall.SIGTERM), nil, 0},
	}
	for _, tt := range tests {
		if got := exitCode(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: exitCode = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestInterruptedRunExits130 runs `stampede run` with Ctrl-C already
// pressed: it must still write results.json (marked incomplete) and exit
// 130, not 1.
func TestInterruptedRunExits130(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(interrupted{sig: syscall.SIGINT})
	out := filepath.Join(t.TempDir(), "run")
	root := newRootCmd()
	root.SetOut(&strings.Builder{})
	root.SetErr(&strings.Builder{})
	root.SetArgs([]string{"run", "--scenario", "relabel-small", "--out", out, "--no-report"})
	err := root.ExecuteContext(ctx)
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, want an interruption", err)
	}
	if code := exitCode(ctx, err); code != 130 {
		t.Errorf("exit code = %d, want 130", code)
	}
	data, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatalf("results.json: %v", err)
	}
	var res struct {
		Run struct {
			Complete         bool   `json:"complete"`
			IncompleteReason string `json:"incompleteReason"`
		} `json:"run"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	if res.Run.Complete || !strings.Contains(res.Run.IncompleteReason, "interrupt") {
		t.Errorf("results run = %+v, want incomplete and interrupted", res.Run)
	}
}
