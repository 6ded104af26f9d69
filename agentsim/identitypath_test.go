package agentsim

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stampede-sim/stampede/agentsim/xdsclient"
	etcdserver "github.com/stampede-sim/stampede/controlplane/etcd"
	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// TestAgentConfigTakesKnobs checks that the policy trigger interval and
// the endpoint workers come from the scenario's agent knobs unless the
// AgentConfig overrides them, and from Cilium's defaults otherwise.
func TestAgentConfigTakesKnobs(t *testing.T) {
	tests := []struct {
		name        string
		knobs       scenarios.AgentKnobs
		regen       time.Duration
		workers     int
		wantRegen   time.Duration
		wantWorkers int
	}{
		{name: "knobs", knobs: scenarios.AgentKnobs{PolicyTriggerInterval: scenarios.D(3 * time.Second), EndpointWorkers: 5}, wantRegen: 3 * time.Second, wantWorkers: 5},
		{name: "override", knobs: scenarios.AgentKnobs{PolicyTriggerInterval: scenarios.D(3 * time.Second), EndpointWorkers: 5}, regen: 10 * time.Millisecond, workers: 2, wantRegen: 10 * time.Millisecond, wantWorkers: 2},
		{name: "defaults", wantRegen: scenarios.DefaultPolicyTriggerInterval, wantWorkers: scenarios.DefaultEndpointWorkers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := AgentConfig{Node: "n1", Knobs: tt.knobs, RegenInterval: tt.regen, Workers: tt.workers}
			cfg.setDefaults()
			if cfg.RegenInterval != tt.wantRegen || cfg.Workers != tt.wantWorkers {
				t.Errorf("regen %v, workers %d; want %v, %d", cfg.RegenInterval, cfg.Workers, tt.wantRegen, tt.wantWorkers)
			}
		})
	}
}

// TestRelabelJitterSpreadsIdentityCreations relabels namespaces whose
// pods each have a label set of their own, so that each new
// CiliumIdentity is created by one endpoint's resolution: with
// agent.identityMaxJitter the creations spread over about the jitter, as
// Cilium >= 1.18 spreads them (PR #38031); with 0 they come in one burst.
func TestRelabelJitterSpreadsIdentityCreations(t *testing.T) {
	const jitter = 4 * time.Second
	for _, tt := range []struct {
		name   string
		jitter time.Duration
	}{{"jitter", jitter}, {"off", 0}} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			s := smallScenario(t, scenarios.ModeCRD, true)
			s.Cluster.Nodes = 4
			s.Cluster.Workloads.DeploymentsPerNamespace = 6
			s.Cluster.Workloads.Replicas = 1
			j := scenarios.D(tt.jitter)
			s.Agent.IdentityMaxJitter = &j
			c := startCluster(t, s)
			c.setup(ctx)
			f := runFleet(t, ctx, c.fleetConfig(scenarios.ModeCRD))
			c.waitConverged(ctx, f, "after setup")
			before := map[string]bool{}
			for _, name := range c.cidNames(ctx) {
				before[name] = true
			}
			c.relabel(ctx, map[string]string{"env": "staging"})
			want := len(c.labelSets())
			// The time each new CiliumIdentity was first listed.
			seen := map[string]time.Time{}
			tick := time.NewTicker(25 * time.Millisecond)
			defer tick.Stop()
			for len(seen) < want {
				select {
				case <-ctx.Done():
					t.Fatalf("%d of %d new CiliumIdentities after the relabel", len(seen), want)
				case <-tick.C:
				}
				now := time.Now()
				for _, name := range c.cidNames(ctx) {
					if _, ok := seen[name]; !ok && !before[name] {
						seen[name] = now
					}
				}
			}
			var first, last time.Time
			for _, at := range seen {
				if first.IsZero() || at.Before(first) {
					first = at
				}
				if at.After(last) {
					last = at
				}
			}
			spread := last.Sub(first)
			t.Logf("jitter %v: %d CiliumIdentities created over %v", tt.jitter, len(seen), spread)
			if tt.jitter > 0 && spread < jitter*2/5 {
				t.Errorf("creations spread over %v, want most of the jitter %v", spread, tt.jitter)
			}
			if tt.jitter == 0 && spread >= jitter*2/5 {
				t.Errorf("creations spread over %v without jitter, want one burst (< %v)", spread, jitter*2/5)
			}
			c.waitConverged(ctx, f, "after relabel")
		})
	}
}

// cidNames lists the CiliumIdentities' names.
func (c *testCluster) cidNames(ctx context.Context) []string {
	var out []string
	for _, raw := range c.list(ctx, pathCIDs) {
		var cid slimCID
		if err := json.Unmarshal(raw, &cid); err != nil {
			c.t.Fatal(err)
		}
		out = append(out, cid.Metadata.Name)
	}
	return out
}

// TestAllocationJitterWaitsBeforeFirstAttempt checks Cilium 1.19's CRD
// allocator jitter (PR #42282): with agent.allocationJitter the first
// attempt waits at least the backoff; without it, it starts at once.
func TestAllocationJitterWaitsBeforeFirstAttempt(t *testing.T) {
	const backoff = 200 * time.Millisecond
	for _, on := range []bool{true, false} {
		cfg := AgentConfig{Node: "n1", Mode: scenarios.ModeCRD, Metrics: newMetrics(prometheus.NewRegistry(), nil)}
		cfg.Knobs.AllocationBackoff.Duration = backoff
		cfg.Knobs.AllocationJitter = &on
		cfg.setDefaults()
		a := newAgentState(cfg)
		start := time.Now()
		var waited time.Duration
		_, err := a.retryAllocation(t.Context(), "k8s:app=a;", a.allocationJitter(), func(context.Context) (identity.ID, error) {
			waited = time.Since(start)
			return 300, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if on && waited < backoff {
			t.Errorf("jitter on: first attempt after %v, want >= %v", waited, backoff)
		}
		if !on && waited >= backoff {
			t.Errorf("jitter off: first attempt after %v, want at once", waited)
		}
	}
}

// TestKVStoreFirstUseTakesLock checks Cilium's kvstore allocator
// (pkg/allocator lockedAllocate): a node's first use of a label set takes
// the label set's lock even when the ID is already known, a label set the
// node references takes none, and the lock key lives on the lock
// session's lease (agent.kvstoreLockLeaseTTL), not on the main session's.
func TestKVStoreFirstUseTakesLock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ectx, ecancel := context.WithCancel(context.Background())
	etcd, err := etcdserver.Start(ectx, etcdserver.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		ecancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		etcd.Close()
		ecancel()
	})
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	const lockTTL, mainTTL = 7, 60
	newAgent := func(node string) *Agent {
		cfg := AgentConfig{Node: node, Mode: scenarios.ModeKVStore, KVStore: []string{etcd.ClientURL()}, Metrics: newMetrics(prometheus.NewRegistry(), nil)}
		cfg.Knobs.LeaseTTL = scenarios.D(mainTTL * time.Second)
		cfg.Knobs.KVStoreLockLeaseTTL = scenarios.D(lockTTL * time.Second)
		cfg.setDefaults()
		a := newAgentState(cfg)
		kv, err := newKVClient(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(kv.close)
		a.kv = kv
		return a
	}
	a, b := newAgent("node-a"), newAgent("node-b")

	// Count the lock keys written, with their leases.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	start, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	wch := cli.Watch(wctx, agentcontract.KVLockPrefix, clientv3.WithPrefix(), clientv3.WithRev(start.Header.Revision+1))
	locks := make(chan int64, 16)
	go func() {
		for wr := range wch {
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypePut {
					locks <- ev.Kv.Lease
				}
			}
		}
		close(locks)
	}()

	l, err := identity.ParseKey("k8s:app=a;k8s:io.kubernetes.pod.namespace=ns-0;")
	if err != nil {
		t.Fatal(err)
	}
	key := l.Key()
	id, err := a.allocateIdentity(ctx, l, key)
	if err != nil {
		t.Fatal(err)
	}
	// b knows the identity (from its watch) but has not used it yet.
	b.mu.Lock()
	b.upsertIdentity(id, l, key)
	b.mu.Unlock()
	for i := 0; i < 2; i++ {
		got, err := b.kvReference(ctx, l, key, id)
		if err != nil || got != id {
			t.Fatalf("b's reference %d: %v, %v; want %v", i, got, err, id)
		}
	}
	if v, err := cli.Get(ctx, agentcontract.KVValuePrefix+key+"/node-b"); err != nil || len(v.Kvs) != 1 || string(v.Kvs[0].Value) != id.String() {
		t.Fatalf("b's value key: %v, %v", v, err)
	}

	mainLeases := map[int64]bool{int64(a.kv.session().Lease()): true, int64(b.kv.session().Lease()): true}
	var got []int64
	timeout := time.After(2 * time.Second)
collect:
	for len(got) < 3 {
		select {
		case lease := <-locks:
			got = append(got, lease)
		case <-timeout:
			break collect
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d lock acquisitions, want 2: a's allocation and b's first use of the known ID (not its second)", len(got))
	}
	for _, lease := range got {
		if mainLeases[lease] {
			t.Errorf("a lock key is on a main session's lease %x", lease)
		}
		ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(lease))
		if err != nil {
			t.Fatal(err)
		}
		if ttl.GrantedTTL != lockTTL {
			t.Errorf("lock lease %x granted %ds, want the lock TTL %ds", lease, ttl.GrantedTTL, lockTTL)
		}
	}
}

// TestXDSIdentityChangeWaitsGracePeriod checks that an xds agent applies a
// new identity of an existing endpoint after the identity-change grace
// period, as the other modes do, and a new endpoint's at once.
func TestXDSIdentityChangeWaitsGracePeriod(t *testing.T) {
	const grace = 300 * time.Millisecond
	dp, _, err := datapath.Open(t.Context(), datapath.Config{Kind: datapath.KindMem}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := AgentConfig{Node: "node-0", Datapath: dp, Metrics: newMetrics(prometheus.NewRegistry(), nil)}
	cfg.Knobs.IdentityChangeGracePeriod = scenarios.D(grace)
	x, err := NewXDSAgent(cfg, "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer x.a.closeDatapath()
	ep := xdsclient.Endpoint{Namespace: "ns", Name: "p", IP: netip.MustParseAddr("10.0.0.5"), Identity: 1000}
	ids := func() (id, pending, cep identity.ID) {
		x.a.mu.Lock()
		defer x.a.mu.Unlock()
		p := x.a.eps.pods[podKey("ns", "p")]
		return p.id, p.pendingID, p.cepID
	}
	if err := x.SetEndpoint(ep); err != nil {
		t.Fatal(err)
	}
	if id, _, _ := ids(); id != 1000 {
		t.Fatalf("new endpoint's identity %d, want 1000 at once", id)
	}
	ep.Identity = 2000
	start := time.Now()
	if err := x.SetEndpoint(ep); err != nil {
		t.Fatal(err)
	}
	if id, pending, _ := ids(); id != 1000 || pending != 2000 {
		t.Fatalf("right after the change: identity %d pending %d, want 1000 pending 2000", id, pending)
	}
	for {
		id, pending, cep := ids()
		if id == 2000 {
			if pending != 0 || cep != 2000 {
				t.Errorf("after the grace period: pending %d, endpoint identity %d", pending, cep)
			}
			if d := time.Since(start); d < grace {
				t.Errorf("new identity applied after %v, want >= the grace period %v", d, grace)
			}
			return
		}
		if time.Since(start) > 10*grace {
			t.Fatalf("identity still %d after %v", id, time.Since(start))
		}
		time.Sleep(10 * time.Millisecond) //nolint:forbidigo // waiting for the grace timer
	}
}
