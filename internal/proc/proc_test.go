package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/stampede-sim/stampede/internal/ready"
)

const helperEnv = "PROC_TEST_HELPER"

// TestMain doubles as the child: with PROC_TEST_HELPER set, the test binary
// behaves as the requested kind of child process.
func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode))
	}
	goleak.VerifyTestMain(m)
}

func helper(mode string) int {
	readyFile := os.Getenv("PROC_TEST_READY")
	switch mode {
	case "serve": // announce, then wait for SIGTERM
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		if err := ready.Announce(readyFile, os.Stdout, ready.Announcement{Component: "helper", Endpoints: map[string]string{"metrics": "http://127.0.0.1:1"}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "helper serving")
		<-sig
		fmt.Fprintln(os.Stderr, "helper got SIGTERM")
		return 0
	case "stubborn": // ignore SIGTERM, with a grandchild in the group
		signal.Ignore(syscall.SIGTERM)
		gc := exec.Command(os.Args[0], "-test.run=^$")
		gc.Env = append(os.Environ(), helperEnv+"=sleep")
		if err := gc.Start(); err != nil {
			return 1
		}
		_ = ready.Announce(readyFile, os.Stdout, ready.Announcement{Component: "stubborn", Extra: map[string]string{"grandchild": fmt.Sprint(gc.Process.Pid)}})
		select {}
	case "sleep":
		signal.Ignore(syscall.SIGTERM)
		select {}
	case "crash":
		fmt.Fprintln(os.Stderr, "helper: boom")
		return 3
	case "burn": // use CPU until killed
		_ = ready.Announce(readyFile, os.Stdout, ready.Announcement{Component: "burn"})
		x := 0
		for {
			x++
		}
	}
	return 2
}

func spec(t *testing.T, mode string) Spec {
	dir := t.TempDir()
	rf := filepath.Join(dir, mode+".ready")
	return Spec{
		Name:      mode,
		Path:      os.Args[0],
		Args:      []string{"-test.run=^$"},
		Env:       []string{helperEnv + "=" + mode, "PROC_TEST_READY=" + rf},
		LogFile:   filepath.Join(dir, mode+".log"),
		ReadyFile: rf,
		Grace:     500 * time.Millisecond,
	}
}

func TestStartReadyStop(t *testing.T) {
	ctx := context.Background()
	sp := spec(t, "serve")
	sp.Grace = 20 * time.Second // a race-enabled child can take a while to exit
	p, err := Start(ctx, sp)
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.WaitReady(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a.PID != p.PID() || a.Endpoints["metrics"] == "" {
		t.Errorf("announcement = %+v, want pid %d and a metrics endpoint", a, p.PID())
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Err(); err != nil {
		log, _ := os.ReadFile(p.LogFile())
		t.Errorf("exit after SIGTERM: %v, want clean exit; log:\n%s", err, log)
	}
	log, _ := os.ReadFile(p.LogFile())
	for _, want := range []string{"helper serving", "helper got SIGTERM", `"component":"helper"`} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if err := p.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStopKillsStubbornGroup(t *testing.T) {
	ctx := context.Background()
	p, err := Start(ctx, spec(t, "stubborn"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.WaitReady(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var gc int
	fmt.Sscan(a.Extra["grandchild"], &gc)
	if gc == 0 {
		t.Fatalf("no grandchild in %+v", a)
	}
	start := time.Now()
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("Stop took %v, want at least the grace period", d)
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) {
		t.Errorf("exit error = %v, want killed", p.Err())
	}
	if left := GroupMembers(p.PID()); len(left) != 0 {
		t.Errorf("group members left: %v", left)
	}
	if _, err := ReadStat(gc); !errors.Is(err, ErrNoProcess) {
		t.Errorf("grandchild %d: %v, want gone", gc, err)
	}
}

func TestCrashBeforeReady(t *testing.T) {
	ctx := context.Background()
	p, err := Start(ctx, spec(t, "crash"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.WaitReady(ctx)
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), p.LogFile()) {
		t.Errorf("WaitReady = %v, want an error naming the exit and the log file", err)
	}
	if !strings.Contains(p.Tail(100), "boom") {
		t.Errorf("Tail = %q, want the child's output", p.Tail(100))
	}
	if err := p.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestContextEndStopsChild(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Start(ctx, spec(t, "serve"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("child still running 10s after its context ended")
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"no name", Spec{Path: "/bin/true", LogFile: filepath.Join(dir, "l")}, "Name is empty"},
		{"no path", Spec{Name: "x", LogFile: filepath.Join(dir, "l")}, "Path is empty"},
		{"no log", Spec{Name: "x", Path: "/bin/true"}, "LogFile is empty"},
		{"missing binary", Spec{Name: "x", Path: filepath.Join(dir, "nope"), LogFile: filepath.Join(dir, "l")}, "start x"},
		{"bad log dir", Spec{Name: "x", Path: "/bin/true", LogFile: filepath.Join(dir, "no", "l")}, "open log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(ctx, tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestTreeUsageSeesCPU(t *testing.T) {
	ctx := context.Background()
	p, err := Start(ctx, spec(t, "burn"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(ctx)
	if _, err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait for the burner's CPU time to advance (a condition, not a sleep).
	deadline := time.Now().Add(20 * time.Second)
	for {
		u, err := TreeUsage(p.PID())
		if err != nil {
			t.Fatal(err)
		}
		if u.RSS == 0 || u.Processes != 1 {
			t.Fatalf("usage = %+v, want RSS > 0 and 1 process", u)
		}
		if u.CPU >= 50*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU still %v after 20s of burning", u.CPU)
		}
		runtime_Gosched()
	}
}
