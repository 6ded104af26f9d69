package agentsim

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/controlplane"
	"github.com/stampede-sim/stampede/internal/ready"
	"github.com/stampede-sim/stampede/scenarios"
)

// startControlPlane runs the project's control plane (controlplane.Run) in
// mode against the test cluster until the test's cleanup, and returns its
// announcement; edits change its Config.
func (c *testCluster) startControlPlane(t *testing.T, mode scenarios.Mode, edits ...func(*controlplane.Config)) ready.Announcement {
	t.Helper()
	readyFile := filepath.Join(t.TempDir(), "cp.ready")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	cfg := controlplane.Config{
		Mode: mode, Scenario: c.s, REST: c.api.RESTConfig(), ReadyFile: readyFile, Logger: testLogger(t),
	}
	for _, e := range edits {
		e(&cfg)
	}
	go func() {
		errc <- controlplane.Run(ctx, cfg)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	a, err := ready.Wait(wctx, readyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestXDSModeWithControlPlane: agents with no API server access converge
// from what the project's xDS control plane pushes, before and after a
// relabel.
func TestXDSModeWithControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := smallScenario(t, scenarios.ModeXDS, true)
	c := startCluster(t, s)
	c.setup(ctx)
	a := c.startControlPlane(t, scenarios.ModeXDS)
	addr := a.Endpoints["xds"]
	if addr == "" {
		t.Fatalf("control plane announced no xds endpoint: %+v", a)
	}
	cfg := c.fleetConfig(scenarios.ModeXDS)
	cfg.REST = nil
	cfg.XDS = addr
	f := runFleet(t, ctx, cfg)
	c.waitConverged(ctx, f, "after setup")
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	c.waitConverged(ctx, f, "after relabel")
	c.checkWork(ctx, f, scenarios.ModeXDS)
}

// TestOperatorModeWithControlPlane: the project's operator creates the
// identities; agents only wait for them, so there are no duplicates.
func TestOperatorModeWithControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := smallScenario(t, scenarios.ModeOperator, true)
	c := startCluster(t, s)
	c.setup(ctx)
	c.startControlPlane(t, scenarios.ModeOperator)
	f := runFleet(t, ctx, c.fleetConfig(scenarios.ModeOperator))
	c.waitConverged(ctx, f, "after setup")
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	c.waitConverged(ctx, f, "after relabel")
	for _, st := range f.Statuses() {
		if st.IdentitiesMade != 0 {
			t.Errorf("%s created %d identities; in operator mode agents create none", st.Node, st.IdentitiesMade)
		}
	}
	for _, l := range c.labelSets() {
		if n := c.cidsByKey(ctx)[l.Key()]; n != 1 {
			t.Errorf("%d CiliumIdentities for %s, want 1", n, l.Key())
		}
	}
}

// TestCESModeWithControlPlane: agents learn remote endpoints only from the
// slices the project's CES controller writes.
func TestCESModeWithControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := smallScenario(t, scenarios.ModeCES, true)
	c := startCluster(t, s)
	c.setup(ctx)
	c.startControlPlane(t, scenarios.ModeCES)
	f := runFleet(t, ctx, c.fleetConfig(scenarios.ModeCES))
	c.waitConverged(ctx, f, "after setup")
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	c.waitConverged(ctx, f, "after relabel")
	if n := len(c.list(ctx, pathCESs)); n == 0 {
		t.Error("no CiliumEndpointSlices")
	}
	c.checkWork(ctx, f, scenarios.ModeCES)
}
