package agentsim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stampede-sim/stampede/internal/agentcontract"
)

// Resource names of the mesh read path in agentWork and the metrics.
const (
	meshIdentities = "mesh-identities"
	meshIPCache    = "mesh-ipcache"
	meshNodes      = "mesh-nodes"
)

// errClusterIDChanged is a response from another etcd than the one the
// session started with.
var errClusterIDChanged = errors.New("etcd cluster ID changed")

// meshConfig configures an agent's mesh client.
type meshConfig struct {
	// Replicas are the client URLs of the replicas' etcds, in replica
	// order (required).
	Replicas []string
	// Index is the agent's global node index: it starts on replica
	// Index mod len(Replicas).
	Index int
	// Cluster is the cluster whose canaries it waits for (default: the
	// agent's cluster).
	Cluster string
	// The connection is checked with a read of the cluster configuration
	// (see replicaCheck): every ProbeInterval while checks pass and every
	// ProbeIntervalFailing after one failed; a check fails when the read
	// takes longer than ProbeTimeout; the replica is lost after more than
	// MaxConsecutiveErrors failed checks in a row. Defaults are Cilium's
	// (checkPolicyFor); tests shorten them.
	ProbeInterval        time.Duration
	ProbeIntervalFailing time.Duration
	ProbeTimeout         time.Duration
	MaxConsecutiveErrors int
	// ClusterNodes is the cluster's node count, which stretches Cilium's
	// check intervals.
	ClusterNodes int
	// APIServerFallback: while no replica answers, read Cilium's
	// resources from the API server (meshFallback); otherwise wait for a
	// replica.
	APIServerFallback bool
}

// meshClient is an agent's read-only client of the ClusterMesh etcd
// mirror, the read path of CFP-44774 ("Cilium Control Plane at Scale",
// sections "Horizontal scaling" and "Non-Persistent etcd and
// Reconciliation"; a proposal, not upstream). It reads identities, ipcache
// entries and nodes from one replica with the same kvReader kvstore mode
// uses:
//   - sticky: it starts on replica Index mod N and stays while the
//     connection lives (Cilium spreads agents through a Service);
//   - it starts each prefix's watch only once the replica has written that
//     prefix's sync canary, as a WatchStoreManager in sync mode does
//     (pkg/kvstore/store/watchstoremgr.go wsmSync);
//   - the first response's etcd cluster ID is compared with every later
//     one; a different ID is another etcd, handled as a lost connection
//     (ClusterMesh validates the cluster ID, cilium commit 174e721c);
//   - on a lost connection it moves to the next replica and lists every
//     prefix again; the lists replace what the agent held, so keys the new
//     replica lacks are dropped, as restartableWatchStore.Watch marks all
//     keys stale and drainKeys deletes those the new list did not carry
//     (pkg/kvstore/store/watchstore.go).
//
// With APIServerFallback, once every replica failed in a row the agent
// reads from the API server until a replica answers (meshfallback.go).
type meshClient struct {
	a   *Agent
	cfg meshConfig

	identitiesSynced chan struct{}
	ipcacheSynced    chan struct{}
	nodesSynced      chan struct{}
	syncOnce         [meshGroups]sync.Once

	fb *meshFallback // nil without APIServerFallback

	replica   atomic.Int64 // replica in use, -1 while none
	failovers atomic.Uint64
	sessions  atomic.Uint64 // sessions that listed everything

	// fallbackTime is the API server fallback's time, for the
	// agent-seconds metric.
	fallbackTime fallbackClock
}

// fallbackClock sums the periods spent on the API server fallback; one
// lock, so that a scrape never sees a period both ended and not added.
type fallbackClock struct {
	mu    sync.Mutex
	spent time.Duration
	since time.Time // start of the running period; zero while none runs
}

func (c *fallbackClock) start(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.since.IsZero() {
		c.since = now
	}
}

func (c *fallbackClock) stop(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.since.IsZero() {
		c.spent += max(0, now.Sub(c.since))
		c.since = time.Time{}
	}
}

// total is the time spent until now.
func (c *fallbackClock) total(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.spent
	if !c.since.IsZero() {
		d += max(0, now.Sub(c.since))
	}
	return d
}

// fallbackSeconds is the time spent on the API server fallback until now.
func (m *meshClient) fallbackSeconds(now time.Time) float64 {
	return m.fallbackTime.total(now).Seconds()
}

// newMeshClient builds the mesh client of agent a. Run it with run; the
// agent waits for the three channels of synced before its endpoints
// start.
func newMeshClient(a *Agent, cfg meshConfig) (*meshClient, error) {
	if len(cfg.Replicas) == 0 {
		return nil, errors.New("mesh: replicas: none")
	}
	for i, u := range cfg.Replicas {
		if u == "" {
			return nil, fmt.Errorf("mesh: replicas[%d]: empty URL", i)
		}
	}
	if cfg.Index < 0 {
		return nil, fmt.Errorf("mesh: index: %d is negative", cfg.Index)
	}
	if cfg.Cluster == "" {
		cfg.Cluster = a.cfg.Cluster
	}
	def := checkPolicyFor(cfg.ClusterNodes)
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = def.ProbeInterval
	}
	if cfg.ProbeIntervalFailing <= 0 {
		cfg.ProbeIntervalFailing = min(def.ProbeIntervalFailing, cfg.ProbeInterval)
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = def.ProbeTimeout
	}
	if cfg.MaxConsecutiveErrors <= 0 {
		cfg.MaxConsecutiveErrors = def.MaxConsecutiveErrors
	}
	m := &meshClient{
		a: a, cfg: cfg,
		identitiesSynced: make(chan struct{}), ipcacheSynced: make(chan struct{}), nodesSynced: make(chan struct{}),
	}
	m.replica.Store(-1)
	if cfg.APIServerFallback {
		m.fb = newMeshFallback(m)
	}
	return m, nil
}

// synced are the channels closed once each prefix was first listed.
func (m *meshClient) synced() []chan struct{} {
	return []chan struct{}{m.identitiesSynced, m.ipcacheSynced, m.nodesSynced}
}

// markSynced closes group g's synced channel, once: a replica's first
// list or the fallback's first list of it.
func (m *meshClient) markSynced(g meshGroup) {
	m.syncOnce[g].Do(func() { close(m.synced()[g]) })
}

// current is the replica in use, or -1.
func (m *meshClient) current() int { return int(m.replica.Load()) }

// run reads from the replicas until ctx ends.
func (m *meshClient) run(ctx context.Context) {
	n := len(m.cfg.Replicas)
	i := m.cfg.Index % n
	b := newBackoff(200*time.Millisecond, 10*time.Second)
	failedInRow := 0
	if m.fb != nil {
		defer m.fb.stop()
	}
	for ctx.Err() == nil {
		listed, err := m.session(ctx, i)
		if ctx.Err() != nil {
			return
		}
		m.replica.Store(-1)
		m.a.m.kvOps.WithLabelValues("mesh-session", "lost").Inc()
		m.a.log.Warn("mesh replica lost; moving to the next", "replica", i, "err", err)
		m.failovers.Add(1)
		i = (i + 1) % n
		if listed {
			failedInRow = 0
			b.reset()
			continue
		}
		failedInRow++
		// Every replica failed once in a row, or the fallback runs and a
		// replica that had taken part of it over is gone again: read from
		// the API server until a session lists everything.
		if m.fb != nil && (failedInRow >= n || m.fb.running()) {
			m.fb.start(ctx)
		}
		// A full round without a replica that answered: wait a little
		// before the next round.
		if failedInRow%n == 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(b.next()):
			}
		}
	}
}

// session reads from replica i until its connection is lost or ctx ends;
// listed tells whether it got as far as listing.
func (m *meshClient) session(ctx context.Context, i int) (listed bool, err error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{m.cfg.Replicas[i]}, DialTimeout: m.cfg.ProbeTimeout, Logger: zap.NewNop(), Context: ctx,
	})
	if err != nil {
		return false, fmt.Errorf("mesh client: %w", err)
	}
	defer cli.Close()
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	// First contact: the cluster configuration, and the cluster ID.
	configKey := agentcontract.KVClusterConfigPrefix + m.cfg.Cluster
	pctx, pcancel := context.WithTimeout(sctx, m.cfg.ProbeTimeout)
	resp, err := cli.Get(pctx, configKey)
	pcancel()
	if err != nil {
		return false, fmt.Errorf("replica %d: %w", i, err)
	}
	clusterID := resp.Header.ClusterId
	check := func(h *etcdserverpb.ResponseHeader) error {
		if h != nil && h.ClusterId != clusterID {
			return fmt.Errorf("%w: %x, was %x", errClusterIDChanged, h.ClusterId, clusterID)
		}
		return nil
	}
	m.replica.Store(int64(i))
	r := &kvReader{
		a: m.a, cli: cli, check: check,
		observe: func(op string, start time.Time, err error) {
			outcome := "ok"
			if err != nil {
				outcome = "error"
			}
			m.a.m.kvOps.WithLabelValues("mesh-"+op, outcome).Inc()
			m.a.m.kvLatency.WithLabelValues("mesh-" + op).Observe(time.Since(start).Seconds())
		},
		fail: func(err error) { cancel(err) },
		// Each connection is an etcd client of its own with its own
		// etcd.qps limiter, as the agent's clustermesh connections are
		// kvstore clients built with the same options
		// (pkg/clustermesh/common remoteCluster, pkg/kvstore newClient).
		lim: newKVLimiter(m.a.cfg.Knobs.KVStoreQPS, m.a.m),
	}

	var wg sync.WaitGroup
	// listedNow are closed by this session's first list of each prefix.
	var listedNow [meshGroups]chan struct{}
	for g := range listedNow {
		listedNow[g] = make(chan struct{})
	}
	watch := func(g meshGroup, canary string, run func(context.Context, chan struct{})) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.waitCanary(sctx, cli, check, agentcontract.SyncedKey(m.cfg.Cluster, canary)); err != nil {
				cancel(err)
				return
			}
			if m.fb != nil {
				m.fb.handOver(g)
			}
			run(sctx, listedNow[g])
		}()
	}
	watch(groupIdentities, agentcontract.KVSyncedIdentities, func(ctx context.Context, synced chan struct{}) {
		r.watchIdentities(ctx, meshIdentities, synced)
	})
	watch(groupIPCache, agentcontract.KVSyncedIPCache, func(ctx context.Context, synced chan struct{}) {
		r.watchIPCache(ctx, meshIPCache, synced)
	})
	watch(groupNodes, agentcontract.KVSyncedNodes, func(ctx context.Context, synced chan struct{}) {
		r.watchNodes(ctx, meshNodes, m.cfg.Cluster, synced)
	})
	// Each first list syncs the agent's caches; once all three are
	// listed the replica carries everything and the fallback stops.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for g, ch := range listedNow {
			select {
			case <-sctx.Done():
				return
			case <-ch:
				m.markSynced(meshGroup(g))
			}
		}
		if m.fb != nil {
			m.fb.stop()
		}
	}()

	// The connection is checked by reading the cluster configuration:
	// an etcd client's watches survive a dead server silently (they
	// reconnect in the background), so only failed reads say the
	// replica is gone. A response from another etcd (cluster ID) ends
	// the session at once, as Cilium's clusterLock errors do.
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := replicaCheck(sctx, m.cfg, func(ctx context.Context) error {
			pctx, pcancel := context.WithTimeout(ctx, m.cfg.ProbeTimeout)
			defer pcancel()
			resp, err := cli.Get(pctx, configKey)
			if err != nil {
				return err
			}
			if err := check(resp.Header); err != nil {
				return errFatalCheck{err}
			}
			return nil
		}, time.After)
		if err != nil {
			cancel(fmt.Errorf("replica %d: %w", i, err))
		}
	}()
	<-sctx.Done()
	wg.Wait()
	for _, ch := range listedNow {
		select {
		case <-ch:
		default:
			return false, context.Cause(sctx)
		}
	}
	m.sessions.Add(1)
	if m.fb != nil {
		// Listed, though sctx ended before the goroutine above saw it.
		m.fb.stop()
	}
	return true, context.Cause(sctx)
}

// waitCanary returns once key exists (wsmSync: a prefix is watched only
// after the replica finished its first synchronization of it).
func (m *meshClient) waitCanary(ctx context.Context, cli *clientv3.Client, check func(*etcdserverpb.ResponseHeader) error, key string) error {
	resp, err := cli.Get(ctx, key)
	if err == nil {
		err = check(resp.Header)
	}
	if err != nil {
		return fmt.Errorf("canary %s: %w", key, err)
	}
	if len(resp.Kvs) > 0 {
		return nil
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1)) {
		if err := wr.Err(); err != nil {
			return fmt.Errorf("canary %s: %w", key, err)
		}
		if err := check(&wr.Header); err != nil {
			return fmt.Errorf("canary %s: %w", key, err)
		}
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypePut {
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("canary %s: watch closed", key)
}

// watchNodes counts and holds the node entries of the cluster
// (KVNodesPrefix/<cluster>/, NodeValue values). What an agent does with
// remote nodes (tunnels, routes, node IPs in the ipcache) is not
// modelled; the agent's work figures show what it received and holds.
func (k *kvReader) watchNodes(ctx context.Context, name, cluster string, synced chan struct{}) {
	k.watchPrefix(ctx, name, agentcontract.KVNodesPrefix+cluster+"/", synced,
		func([]kvPair) {},
		func(bool, string, []byte) { k.a.events.Add(1) })
}

// checkPolicyFor is Cilium's etcd status checking for a cluster of nodes
// nodes, as a clustermesh connection uses it:
//   - a check every ExtraOptions.StatusCheckInterval: 30s while all is
//     well and 5s while checks fail (pkg/kvstore/kvstore.go), each
//     stretched by the cluster size: interval x ln(1+nodes), the base
//     interval itself for 0 nodes (pkg/backoff/backoff.go
//     ClusterSizeDependantInterval);
//   - a check may take statusCheckTimeout, 10s (pkg/kvstore/etcd.go);
//   - statusChecker reports an error only after more than
//     KVstoreMaxConsecutiveQuorumErrors (pkg/defaults, 2) failed checks
//     in a row, and remoteCluster.watchdog then reconnects
//     (pkg/clustermesh/common/remote_cluster.go).
//
// Read at v1.16/v1.17-era revisions through the search tool; not re-read
// for 1.20, whose mesh read path is a proposal (CFP-44774).
func checkPolicyFor(nodes int) meshConfig {
	stretch := 1.0
	if nodes > 0 {
		stretch = math.Log1p(float64(nodes))
	}
	return meshConfig{
		ProbeInterval:        time.Duration(stretch * float64(30*time.Second)),
		ProbeIntervalFailing: time.Duration(stretch * float64(5*time.Second)),
		ProbeTimeout:         10 * time.Second,
		MaxConsecutiveErrors: 2,
	}
}

// errFatalCheck is a check failure that ends the session at once.
type errFatalCheck struct{ err error }

func (e errFatalCheck) Error() string { return e.err.Error() }
func (e errFatalCheck) Unwrap() error { return e.err }

// replicaCheck runs check on the schedule of cfg until the replica is
// lost, returning the last error, or ctx ends (nil). after is time.After
// (tests replace it).
func replicaCheck(ctx context.Context, cfg meshConfig, check func(context.Context) error, after func(time.Duration) <-chan time.Time) error {
	failed := 0
	for {
		wait := cfg.ProbeInterval
		if failed > 0 {
			wait = cfg.ProbeIntervalFailing
		}
		select {
		case <-ctx.Done():
			return nil
		case <-after(wait):
		}
		err := check(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var fatal errFatalCheck
		switch {
		case err == nil:
			failed = 0
		case errors.As(err, &fatal):
			return fatal.err
		default:
			failed++
			if failed > cfg.MaxConsecutiveErrors {
				return fmt.Errorf("%d failed checks in a row: %w", failed, err)
			}
		}
	}
}
