package agentsim

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/stampede-sim/stampede/scenarios"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/pkg/v3/schedule.(*fifo).run"),
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
		// client-go's global rate-limit and connection-rotation helpers.
		goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run"),
	)
}

// runFleet starts a fleet in the background; the test's cleanup stops it
// and waits.
func runFleet(t testing.TB, ctx context.Context, cfg Config) *Fleet { //nolint:revive // ctx bounds New
	t.Helper()
	f, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(fctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return f
}

func TestCRDRelabelConverges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := smallScenario(t, scenarios.ModeCRD, true)
	c := startCluster(t, s)
	start := time.Now()
	c.setup(ctx)
	t.Logf("setup written in %v", time.Since(start))
	start = time.Now()
	f := runFleet(t, ctx, c.fleetConfig(scenarios.ModeCRD))
	c.waitConverged(ctx, f, "after setup")
	t.Logf("converged after setup in %v", time.Since(start))
	before := c.cidsByKey(ctx)
	start = time.Now()
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	c.waitConverged(ctx, f, "after relabel")
	t.Logf("converged after relabel in %v", time.Since(start))

	after := c.cidsByKey(ctx)
	// Every CID beyond the first of a label set is a duplicate that the
	// agent which created it counts once it has seen the older one.
	var allExtra int
	for _, n := range after {
		allExtra += n - 1
	}
	created, dups := c.waitDuplicates(ctx, f, uint64(allExtra))
	var cids, extra int
	for _, l := range c.labelSets() {
		n := after[l.Key()]
		if n == 0 {
			t.Errorf("no CiliumIdentity for %s", l.Key())
		}
		extra += n - 1
	}
	for _, n := range after {
		cids += n
	}
	t.Logf("crd: %d identities created by agents, %d CiliumIdentities (%d before relabel), %d duplicates counted by agents, %d extra CIDs for current label sets",
		created, cids, len(before), dups, extra)
	if created != uint64(cids) {
		t.Errorf("agents created %d identities, the API server holds %d", created, cids)
	}
	if dups != uint64(allExtra) {
		t.Errorf("agents counted %d duplicates, the API server holds %d", dups, allExtra)
	}
	c.checkObjects(ctx)
	c.checkWork(ctx, f, scenarios.ModeCRD)
	t.Logf("429s: %v", counterValue(t, f.m.tooMany))
	// Every namespace's policies allow the same peers, so each agent's
	// endpoints share one policy set, updated in place: the datapath
	// writes far less than per-endpoint maps would.
	var upd, writes uint64
	for _, a := range f.agents {
		st, _ := a.datapathStats()
		if st.PolicySets != 1 {
			t.Errorf("%s: %d policy sets, want 1 (every endpoint has the same policy)", a.Node(), st.PolicySets)
		}
		upd += st.Updates
		writes += st.MapWrites
	}
	t.Logf("datapath: %d updates (per-endpoint maps), %d map writes", upd, writes)
	if writes*5 > upd {
		t.Errorf("datapath wrote %d map elements for %d per-endpoint updates: policy sets are not shared", writes, upd)
	}
}

// checkObjects validates every CiliumEndpoint and CiliumIdentity against
// the reference CRDs.
func (c *testCluster) checkObjects(ctx context.Context) {
	t := c.t
	ceps := c.list(ctx, pathCEPs)
	if len(ceps) != len(c.topo.Pods) {
		t.Errorf("%d CiliumEndpoints, want one per pod (%d)", len(ceps), len(c.topo.Pods))
	}
	cepSchema := requireRefCRD(t, "ciliumendpoints.yaml")
	for i, raw := range ceps {
		if errs := validateObject(t, cepSchema, raw); len(errs) > 0 {
			t.Errorf("CiliumEndpoint %d invalid: %v\n%s", i, errs, raw)
			break
		}
	}
	cidSchema := requireRefCRD(t, "ciliumidentities.yaml")
	for i, raw := range c.list(ctx, pathCIDs) {
		if errs := validateObject(t, cidSchema, raw); len(errs) > 0 {
			t.Errorf("CiliumIdentity %d invalid: %v\n%s", i, errs, raw)
			break
		}
	}
}

// waitDuplicates waits until the agents' duplicate counts sum to want (or
// ctx ends) and returns the identities created and duplicates counted.
func (c *testCluster) waitDuplicates(ctx context.Context, f *Fleet, want uint64) (created, dups uint64) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		created, dups = 0, 0
		for _, st := range f.Statuses() {
			created += st.IdentitiesMade
			dups += st.Duplicates
		}
		if dups == want {
			return created, dups
		}
		select {
		case <-wctx.Done():
			return created, dups
		case <-tick.C:
		}
	}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func counterVecSum(t testing.TB, v *prometheus.CounterVec) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { v.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		sum += d.GetCounter().GetValue()
	}
	return sum
}
