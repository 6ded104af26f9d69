package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/stampede-sim/stampede/internal/ready"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start runs Run in the background and waits for its announcement.
func start(t *testing.T, ctx context.Context, cfg Config, parts ...Part) (ready.Announcement, <-chan error) {
	t.Helper()
	cfg.ReadyFile = filepath.Join(t.TempDir(), "ready.json")
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		done <- Run(ctx, cfg, parts...)
		close(exited)
	}()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	a, err := ready.Wait(wctx, cfg.ReadyFile, exited)
	if err != nil {
		t.Fatalf("wait for announcement: %v", err)
	}
	return a, done
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestRunServesAnnouncesAndWaits(t *testing.T) {
	reg := NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "daemon_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stopped := make(chan struct{})
	var stdout strings.Builder
	a, done := start(t, ctx, Config{
		Component: "test",
		Gatherer:  reg,
		Handlers:  map[string]http.Handler{"GET /hello": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hi") })},
		Endpoints: map[string]string{"xds": "127.0.0.1:1"},
		Extra:     map[string]string{"mode": "crd"},
		Stdout:    &stdout,
	}, Part{Name: "worker", Run: func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return ctx.Err()
	}})
	if a.Component != "test" || a.Endpoints["xds"] != "127.0.0.1:1" || a.Extra["mode"] != "crd" {
		t.Errorf("announcement = %+v", a)
	}
	base := a.Endpoints[MetricsEndpoint]
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("metrics endpoint = %q, want http://127.0.0.1:<port>", base)
	}
	for _, tc := range []struct{ path, want string }{
		{"/metrics", "daemon_test_total 1"},
		{"/metrics", "go_goroutines"},
		{"/metrics", "process_cpu_seconds_total"},
		{"/debug/pprof/", "goroutine"},
		{"/hello", "hi"},
	} {
		code, body := get(t, base+tc.path)
		if code != http.StatusOK || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d, want 200 with %q", tc.path, code, tc.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil after the context ended", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("Run returned before its part stopped")
	}
	var printed ready.Announcement
	if err := json.Unmarshal([]byte(stdout.String()), &printed); err != nil || printed.Endpoints[MetricsEndpoint] != base {
		t.Errorf("stdout = %q (%v), want the announcement", stdout.String(), err)
	}
	if _, err := http.Get(base + "/metrics"); err == nil {
		t.Error("diagnostics server still serves after Run returned")
	}
}

func TestRunPartFailureStopsTheOthers(t *testing.T) {
	boom := errors.New("boom")
	release := make(chan struct{})
	otherStopped := make(chan struct{})
	_, done := start(t, t.Context(), Config{Component: "test", Gatherer: NewRegistry()},
		Part{Name: "other", Run: func(ctx context.Context) error {
			<-ctx.Done()
			close(otherStopped)
			return nil
		}},
		Part{Name: "gc", Run: func(context.Context) error {
			<-release
			return boom
		}},
	)
	close(release)
	err := <-done
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "gc: boom") {
		t.Fatalf("Run = %v, want the part's error named gc", err)
	}
	select {
	case <-otherStopped:
	default:
		t.Fatal("Run returned before the other part stopped")
	}
}

func TestRunPartThatFinishesEndsRun(t *testing.T) {
	release := make(chan struct{})
	_, done := start(t, t.Context(), Config{Component: "test", Gatherer: NewRegistry()},
		Part{Name: "fleet", Run: func(context.Context) error { <-release; return nil }})
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

func TestRunErrors(t *testing.T) {
	part := Part{Name: "p", Run: func(ctx context.Context) error { <-ctx.Done(); return nil }}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no component", Config{Gatherer: NewRegistry()}, "no component name"},
		{"no gatherer", Config{Component: "c"}, "c: no metrics gatherer"},
		{"bad listen", Config{Component: "c", Gatherer: NewRegistry(), MetricsListen: "127.0.0.1:notaport"}, "c: metrics listen"},
		{"unwritable ready file", Config{Component: "c", Gatherer: NewRegistry(), ReadyFile: filepath.Join(t.TempDir(), "missing", "ready.json")}, "write ready file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Run(t.Context(), tt.cfg, part)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
