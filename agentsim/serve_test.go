package agentsim

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/internal/ready"
	"github.com/stampede-sim/stampede/scenarios"
)

// TestServeAnnouncesAndServesAgents runs a shard process (xds mode, its
// control plane unreachable: the agents keep retrying) and checks the
// announcement, /metrics and GET /agents, then that Serve returns once
// its context ends.
func TestServeAnnouncesAndServesAgents(t *testing.T) {
	s := smallScenario(t, scenarios.ModeXDS, true)
	rf := filepath.Join(t.TempDir(), "ready.json")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		done <- Serve(ctx, ServeConfig{
			Fleet:     Config{Scenario: s, Mode: scenarios.ModeXDS, Shard: 1, Shards: 2, XDS: "127.0.0.1:1", Log: testLogger(t)},
			ReadyFile: rf,
		})
		close(exited)
	}()
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	a, err := ready.Wait(wctx, rf, exited)
	if err != nil {
		t.Fatalf("wait: %v (serve: %v)", err, <-done)
	}
	if a.Component != "agents" || a.Extra["shard"] != "1/2" || a.Extra["agents"] != "5" || a.Extra["mode"] != "xds" {
		t.Errorf("announcement = %+v, want agents, shard 1/2, 5 agents, mode xds", a)
	}
	base := a.Endpoints["metrics"]
	resp, err := http.Get(base + "/agents")
	if err != nil {
		t.Fatal(err)
	}
	var st []Status
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || len(st) != 5 {
		t.Errorf("GET /agents = %d statuses, %v; want 5", len(st), err)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /metrics = %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve = %v, want nil after the context ended", err)
	}
}

func TestServeBadMetricsListen(t *testing.T) {
	s := smallScenario(t, scenarios.ModeXDS, true)
	err := Serve(t.Context(), ServeConfig{
		Fleet:         Config{Scenario: s, Mode: scenarios.ModeXDS, XDS: "127.0.0.1:1", Log: testLogger(t)},
		MetricsListen: "127.0.0.1:notaport",
	})
	if err == nil || !strings.Contains(err.Error(), "agents: metrics listen") {
		t.Fatalf("Serve = %v, want a metrics listen error", err)
	}
}
