package agentsim

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stampede-sim/stampede/controlplane"
	"github.com/stampede-sim/stampede/scenarios"
)

// requestsTo sums the fake API server's apiserver_request_total for a
// resource, over every verb and user.
func (c *testCluster) requestsTo(ctx context.Context, resource string) float64 {
	c.t.Helper()
	raw, err := c.admin.do(ctx, http.MethodGet, "/metrics", "", nil, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	var n float64
	if fam := fams["apiserver_request_total"]; fam != nil {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "resource" && l.GetValue() == resource {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// With NoCEPWrites (disable-endpoint-crd as cilium/cilium PR #45698 made
// it, beside slim CiliumEndpointSlices) the agents make no CiliumEndpoint
// request of any verb, as counted by the API server, while every local
// endpoint still resolves its identity; without it the same agents write
// their CiliumEndpoints, so the count is not empty by construction.
func TestNoCEPWritesMakesNoCiliumEndpointRequest(t *testing.T) {
	for _, noCEPs := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoCEPWrites=%v", noCEPs), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s := tinyScenario(t, scenarios.ModeCES)
			s.Agent.EndpointSyncInterval = scenarios.D(100 * time.Millisecond)
			c := startCluster(t, s)
			c.setup(ctx)
			cfg := c.fleetConfig(scenarios.ModeCES)
			cfg.NoCEPWrites = noCEPs
			f := runFleet(t, ctx, cfg)
			for {
				resolved := 0
				for _, st := range f.Statuses() {
					if st.Synced && st.PendingIdentity == 0 {
						resolved += st.LocalEndpoints
					}
				}
				if resolved == len(c.topo.Pods) {
					break
				}
				select {
				case <-ctx.Done():
					t.Fatalf("%d of %d endpoints resolved their identity", resolved, len(c.topo.Pods))
				case <-time.After(20 * time.Millisecond):
				}
			}
			// Several endpoint sync intervals with nothing left to do.
			time.Sleep(5 * s.Agent.EndpointSyncInterval.Duration)
			if n := c.requestsTo(ctx, "ciliumidentities"); n == 0 {
				t.Error("no request for ciliumidentities: the count saw nothing")
			}
			n := c.requestsTo(ctx, "ciliumendpoints")
			switch {
			case noCEPs && n != 0:
				t.Errorf("%g CiliumEndpoint requests, want none", n)
			case !noCEPs && n < float64(len(c.topo.Pods)):
				t.Errorf("%g CiliumEndpoint requests, want at least one per pod (%d)", n, len(c.topo.Pods))
			}
		})
	}
}

// Agents that write no CiliumEndpoints beside the control plane's slim
// CES controller (slices built from pods, cilium/cilium PR #38388 with
// #45698) converge before and after a relabel from the slices alone: the
// slices need the CiliumNodes the agents create, and no CiliumEndpoint
// request of any verb reaches the API server.
func TestSlimCESWithControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := smallScenario(t, scenarios.ModeCES, true)
	c := startCluster(t, s)
	c.setup(ctx)
	c.startControlPlane(t, scenarios.ModeCES, func(cfg *controlplane.Config) { cfg.CESSource = controlplane.CESSourcePods })
	var log requestLog
	cfg := c.fleetConfig(scenarios.ModeCES)
	cfg.REST = log.wrap(cfg.REST)
	cfg.NoCEPWrites = true
	f := runFleet(t, ctx, cfg)
	c.waitConverged(ctx, f, "after setup")
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	c.waitConverged(ctx, f, "after relabel")
	if n := len(c.list(ctx, pathCESs)); n == 0 {
		t.Error("no CiliumEndpointSlices")
	}
	if n := len(c.list(ctx, pathCiliumNodes)); n != len(c.topo.Nodes) {
		t.Errorf("%d CiliumNodes, want one per node (%d)", n, len(c.topo.Nodes))
	}
	// The control plane's identity GC lists and watches CiliumEndpoints,
	// so the agents' own requests are counted on their side.
	reqs := log.snapshot()
	for _, r := range reqs {
		if slices.Contains(strings.Split(r.path, "/"), "ciliumendpoints") {
			t.Errorf("agent request %s %s", r.method, r.path)
		}
	}
	if len(reqs) == 0 {
		t.Error("no agent request logged")
	}
}
