package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/scenarios"
)

// A local kube-apiserver that is not a child of the test process: Run
// checks, after every mode, that the harness's process has no child left,
// and a kube-apiserver the test started itself would be one. The test
// binary re-executes itself with localHelperEnv set; init below then runs
// the local backend until SIGTERM instead of the tests. The helper is
// started through a shell that exits at once, so its parent is not the
// test.
const (
	localHelperEnv    = "STAMPEDE_TEST_LOCAL_HELPER_DIR"
	localHelperKASEnv = "STAMPEDE_TEST_LOCAL_HELPER_KAS"
	localHelperExeEnv = "STAMPEDE_TEST_LOCAL_HELPER_EXE"
)

func init() {
	if dir := os.Getenv(localHelperEnv); dir != "" {
		os.Exit(runLocalHelper(dir))
	}
}

// runLocalHelper is the helper process's main.
func runLocalHelper(dir string) int {
	sig, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx := context.Background()
	b := NewLocalBackend(LocalConfig{KubeAPIServer: os.Getenv(localHelperKASEnv), Progress: io.Discard, EtcdUnsafeNoFsync: true})
	api, err := b.Start(ctx, BackendEnv{Dir: dir, Mode: scenarios.ModeCRD, Users: localUsers(scenarios.ModeCRD), Executable: os.Getenv(localHelperExeEnv)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start local:", err)
		return 1
	}
	code := 0
	if data, err := json.Marshal(api); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	} else if err := os.WriteFile(filepath.Join(dir, "api.json.tmp"), data, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	} else if err := os.Rename(filepath.Join(dir, "api.json.tmp"), filepath.Join(dir, "api.json")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	if code == 0 {
		<-sig.Done()
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := b.Stop(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "stop local:", err)
		return 1
	}
	return code
}

// startDetachedLocal starts a local kube-apiserver in a helper process
// that is not the test's child, waits until it serves, and stops it (by
// its PID) when the test ends.
func startDetachedLocal(ctx context.Context, t *testing.T, kas, exe string) *APIServer {
	t.Helper()
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", `"$0" -test.run='^$' >"$1" 2>&1 & echo $!`, self, filepath.Join(dir, "helper.log"))
	cmd.Env = append(os.Environ(), localHelperEnv+"="+dir, localHelperKASEnv+"="+kas, localHelperExeEnv+"="+exe)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("start helper: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("helper PID %q: %v", out, err)
	}
	t.Cleanup(func() { stopDetached(t, pid, filepath.Join(dir, "helper.log")) })
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "api.json")); err == nil {
			var api APIServer
			if err := json.Unmarshal(data, &api); err != nil {
				t.Fatal(err)
			}
			return &api
		}
		if !alive(pid) {
			log, _ := os.ReadFile(filepath.Join(dir, "helper.log"))
			t.Fatalf("local kube-apiserver helper exited: %s", log)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("local kube-apiserver helper not ready: %v", ctx.Err())
		case <-tick.C:
		}
	}
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// stopDetached sends the helper SIGTERM and waits for it to stop its
// kube-apiserver and etcd (SIGKILL after a minute).
func stopDetached(t *testing.T, pid int, logFile string) {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return
	}
	deadline := time.Now().Add(time.Minute)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			log, _ := os.ReadFile(logFile)
			t.Errorf("local kube-apiserver helper %d did not stop within a minute: %s", pid, log)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
