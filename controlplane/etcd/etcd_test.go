package etcd

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/stampede-sim/stampede/internal/ready"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// etcd and grpc keep a few package-level goroutines alive.
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/pkg/v3/schedule.(*fifo).run"),
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	)
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no dir", Config{}, "data dir is empty"},
		{"not loopback", Config{Dir: "x", Host: "10.0.0.1"}, `host "10.0.0.1" is not a loopback`},
		{"bad level", Config{Dir: "x", LogLevel: "loud"}, `log level "loud"`},
		{"negative quota", Config{Dir: "x", QuotaBackendBytes: -1}, "quota backend bytes -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(t.Context(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start() error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestRunServesAndAnnounces(t *testing.T) {
	for _, unsafe := range []bool{false, true} {
		t.Run("unsafe="+map[bool]string{false: "false", true: "true"}[unsafe], func(t *testing.T) {
			dir := t.TempDir()
			readyFile := filepath.Join(dir, "ready.json")
			ctx, cancel := context.WithCancel(t.Context())
			var stdout bytes.Buffer
			done := make(chan error, 1)
			go func() {
				done <- Run(ctx, Config{Dir: filepath.Join(dir, "data"), UnsafeNoFsync: unsafe, LogLevel: "fatal"}, RunConfig{ReadyFile: readyFile, Stdout: &stdout}) // etcd logs errors when it closes its listeners
			}()
			waitCtx, waitCancel := context.WithTimeout(ctx, 60*time.Second)
			defer waitCancel()
			a, err := ready.Wait(waitCtx, readyFile, nil)
			if err != nil {
				cancel()
				t.Fatalf("ready.Wait: %v (run: %v)", err, <-done)
			}
			if a.Component != "etcd" || a.PID != os.Getpid() {
				t.Errorf("announcement = %+v, want component etcd and our pid", a)
			}
			if got, want := a.Extra["fsync"], map[bool]string{false: "true", true: "false"}[unsafe]; got != want {
				t.Errorf("fsync = %q, want %q", got, want)
			}
			for _, name := range []string{"client", "metrics"} {
				if !strings.HasPrefix(a.Endpoints[name], "http://127.0.0.1:") {
					t.Errorf("endpoint %s = %q, want http://127.0.0.1:<port>", name, a.Endpoints[name])
				}
			}

			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{a.Endpoints["client"]}, DialTimeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cli.Put(waitCtx, "/stampede/k", "v"); err != nil {
				t.Fatalf("put: %v", err)
			}
			resp, err := cli.Get(waitCtx, "/stampede/k")
			if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
				t.Fatalf("get = %v, %v; want v", resp, err)
			}
			cli.Close()

			body := httpGet(t, a.Endpoints["metrics"]+"/metrics")
			if !strings.Contains(body, "etcd_disk_wal_fsync_duration_seconds") {
				t.Errorf("metrics lack etcd_disk_wal_fsync_duration_seconds")
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
			var printed ready.Announcement
			if err := json.Unmarshal(stdout.Bytes(), &printed); err != nil {
				t.Fatalf("stdout is not one announcement: %v: %q", err, stdout.String())
			}
		})
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

// TestClusterTokenAndEphemeral: two servers with distinct tokens have
// distinct cluster IDs, which a client sees in every response header; an
// ephemeral data directory is fresh under Dir and gone after Close.
func TestClusterTokenAndEphemeral(t *testing.T) {
	parent := t.TempDir()
	ids := map[uint64]bool{}
	for _, token := range []string{"stampede-mesh-0", "stampede-mesh-1"} {
		s, err := Start(t.Context(), Config{Dir: parent, Ephemeral: true, InitialClusterToken: token, UnsafeNoFsync: true, LogLevel: "fatal"})
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(s.DataDir()) != parent {
			t.Errorf("data dir %s is not under %s", s.DataDir(), parent)
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.ClientURL()}, DialTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := cli.Get(t.Context(), "k")
		cli.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.ClusterId != s.ClusterID() {
			t.Errorf("header cluster ID %x, server says %x", resp.Header.ClusterId, s.ClusterID())
		}
		ids[s.ClusterID()] = true
		s.Close()
		if _, err := os.Stat(s.DataDir()); !os.IsNotExist(err) {
			t.Errorf("ephemeral data dir %s still there after Close (%v)", s.DataDir(), err)
		}
	}
	if len(ids) != 2 {
		t.Errorf("cluster IDs %v: want two distinct", ids)
	}
}
