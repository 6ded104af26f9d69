package agentsim

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/policykey"
	"github.com/stampede-sim/stampede/scenarios"
)

// refusingDP refuses every policy update as too large while refuse is set,
// as a datapath does when an endpoint's allowed set exceeds its policy map.
type refusingDP struct {
	datapath.Datapath
	refuse *atomic.Bool
}

func (d refusingDP) ReplacePolicy(ep netip.Addr, allowed []policykey.Key) error {
	return d.ReplacePolicyGroup([]netip.Addr{ep}, allowed)
}

func (d refusingDP) ReplacePolicyGroup(eps []netip.Addr, allowed []policykey.Key) error {
	if d.refuse.Load() {
		return fmt.Errorf("test: %d keys: %w", len(allowed), datapath.ErrPolicyOverflow)
	}
	return d.Datapath.ReplacePolicyGroup(eps, allowed)
}

// TestPolicyMapOverflow checks that an agent whose datapath refuses
// endpoint policies as too large does not report them as converged, counts
// the refusals, and converges once a later policy fits.
func TestPolicyMapOverflow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := smallScenario(t, scenarios.ModeCRD, true)
	c := startCluster(t, s)
	c.setup(ctx)
	var refuse atomic.Bool
	refuse.Store(true)
	cfg := c.fleetConfig(scenarios.ModeCRD)
	open := cfg.NewDatapath
	cfg.NewDatapath = func(ctx context.Context, node string) (datapath.Datapath, error) {
		d, err := open(ctx, node)
		return refusingDP{d, &refuse}, err
	}
	f := runFleet(t, ctx, cfg)
	for {
		sts := f.Statuses()
		all := len(sts) == s.Cluster.Nodes
		for _, st := range sts {
			if st.LocalEndpoints == 0 || st.PolicyOverflow != st.LocalEndpoints || !strings.Contains(st.PolicyDigest, "overflow") {
				all = false
			}
		}
		if all {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("agents did not report every endpoint overflowing: %+v", sts[0])
		case <-time.After(100 * time.Millisecond):
		}
	}
	if n := counterValue(t, f.m.policyOverflows); n < float64(len(c.topo.Pods)) {
		t.Errorf("policy map overflows counted %g, want at least one per pod (%d)", n, len(c.topo.Pods))
	}
	// Policies fit again: the relabel's new policies are written and the
	// agents converge with no overflow left.
	refuse.Store(false)
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	c.waitConverged(ctx, f, "after relabel")
	for _, st := range f.Statuses() {
		if st.PolicyOverflow != 0 {
			t.Errorf("%s: %d endpoints still overflowing", st.Node, st.PolicyOverflow)
		}
	}
}
