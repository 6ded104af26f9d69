package agentsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// API paths an agent lists and watches.
const (
	pathPods       = "/api/v1/pods"
	pathNamespaces = "/api/v1/namespaces"
	pathNodes      = "/api/v1/nodes"
	pathCIDs       = "/apis/cilium.io/v2/ciliumidentities"
	pathCEPs       = "/apis/cilium.io/v2/ciliumendpoints"
	pathCESs       = "/apis/cilium.io/v2alpha1/ciliumendpointslices"
	pathCNPs       = "/apis/cilium.io/v2/ciliumnetworkpolicies"
)

// AgentConfig configures one Agent. Fleet fills it for each node.
type AgentConfig struct {
	// Node is the node's name; NodeIP its InternalIP; PodCIDR the pod
	// CIDR of its Node object (written into its CiliumNode).
	Node    string
	NodeIP  netip.Addr
	PodCIDR netip.Prefix
	// Mode is the mode's name, shown in status and metrics.
	Mode scenarios.Mode
	// Axes decide what the agent does (xds agents are built by
	// NewXDSAgent). Zero: the axes of the preset Mode names.
	Axes scenarios.Axes
	// Cluster is the Cilium cluster name.
	Cluster string
	// Knobs are the scenario's agent settings (defaulted).
	Knobs scenarios.AgentKnobs
	// Release is the Cilium release the agent follows (default: the
	// newest profile).
	Release *scenarios.Release
	// Filter is the identity label filter.
	Filter *identity.Filter
	// REST is the API server configuration (without the agent's token);
	// Token, if set, replaces its credentials.
	REST  *rest.Config
	Token string
	// KVStore lists the etcd endpoints (kvstore mode).
	KVStore []string
	// Mesh lists the client URLs of the ClusterMesh etcd mirrors, in
	// replica order (the mesh read path); Index is the node's global
	// index, which chooses the replica the agent starts on (Index mod
	// len(Mesh)).
	Mesh  []string
	Index int
	// MeshProbeInterval, if set, replaces how often the mesh client checks
	// its replica, healthy or failing, and makes a check time out after
	// a second (meshConfig; tests shorten them).
	MeshProbeInterval time.Duration
	// ClusterNodes is the cluster's node count (Cilium stretches its
	// kvstore status checks by it).
	ClusterNodes int
	// MeshAPIServerFallback: while no mirror replica answers, the agent
	// reads CiliumIdentities, its endpoint source and CiliumNodes from the
	// API server (controlPlane.mesh.apiServerFallback; meshfallback.go).
	MeshAPIServerFallback bool
	// Datapath receives the agent's state; the agent closes it.
	Datapath datapath.Datapath
	// Interner shares immutable strings between the agents of a process.
	Interner *identity.Interner
	// Frames shares decoded watch frames between the process's agents
	// (nil: each agent decodes its own).
	Frames *frameCache
	// DigestBudget spaces the status digests of the process's agents
	// (nil: recomputed on every report that finds the state changed).
	DigestBudget *digestBudget
	// Metrics are the shard's metrics.
	Metrics *Metrics
	// Log receives the agent's logs.
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// RegenInterval, if set, replaces Knobs.PolicyTriggerInterval, the
	// minimum time between two policy recomputations of the agent's
	// endpoints: identity and policy events arriving meanwhile are
	// handled together (tests shorten it).
	RegenInterval time.Duration
	// XDSStateOfTheWorld selects state-of-the-world ADS instead of delta
	// (xds mode).
	XDSStateOfTheWorld bool
	// Workers, if set, replaces Knobs.EndpointWorkers, the number of
	// endpoints synchronised concurrently.
	Workers int
	// NoCEPWrites: the agent makes no CiliumEndpoint request of any verb
	// but keeps its watches (slim CiliumEndpointSlices; see syncCEP).
	NoCEPWrites bool
}

func (c *AgentConfig) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.RegenInterval == 0 {
		c.RegenInterval = c.Knobs.PolicyTriggerInterval.Duration
	}
	if c.RegenInterval == 0 {
		c.RegenInterval = scenarios.DefaultPolicyTriggerInterval
	}
	if c.Interner == nil {
		// The agent keeps decoded strings through it: without one they
		// would pin their whole watch frames.
		c.Interner = &identity.Interner{}
	}
	if c.Workers == 0 {
		c.Workers = c.Knobs.EndpointWorkers
	}
	if c.Workers == 0 {
		c.Workers = scenarios.DefaultEndpointWorkers
	}
	if c.Filter == nil {
		c.Filter = identity.DefaultFilter()
	}
	if c.Cluster == "" {
		c.Cluster = scenarios.DefaultClusterName
	}
	if c.Knobs.AllocationAttempts == 0 {
		c.Knobs.AllocationAttempts = scenarios.DefaultAllocationAttempts
	}
	if c.Knobs.AllocationBackoff.Duration == 0 {
		c.Knobs.AllocationBackoff.Duration = scenarios.DefaultAllocationBackoff
	}
	if c.Knobs.ClientQPS == 0 {
		c.Knobs.ClientQPS = scenarios.DefaultClientQPS
	}
	if c.Knobs.ClientBurst == 0 {
		c.Knobs.ClientBurst = scenarios.DefaultClientBurst
	}
	if c.Release == nil {
		c.Release, _ = scenarios.LookupRelease(scenarios.VersionLatest)
	}
	if c.Axes == (scenarios.Axes{}) {
		if p, ok := scenarios.Preset(c.Mode); ok {
			c.Axes = p.Axes
		}
	}
	if c.Knobs.EndpointSyncInterval.Duration == 0 {
		c.Knobs.EndpointSyncInterval = c.Release.Agent.EndpointSyncInterval
	}
	if c.Knobs.LeaseTTL.Duration == 0 {
		c.Knobs.LeaseTTL.Duration = scenarios.DefaultLeaseTTL
	}
	if c.Knobs.KVStoreLockLeaseTTL.Duration == 0 {
		c.Knobs.KVStoreLockLeaseTTL.Duration = scenarios.DefaultKVStoreLockLeaseTTL
	}
}

func (c *AgentConfig) validate() error {
	if c.Node == "" {
		return errors.New("agent: Node must be set")
	}
	switch c.Axes.ReadPath {
	case scenarios.ReadAPIServer:
	case scenarios.ReadKVStore:
		if len(c.KVStore) == 0 {
			return fmt.Errorf("agent %s: mode %s reads the kvstore and needs kvstore endpoints", c.Node, c.Mode)
		}
	case scenarios.ReadXDS:
		return fmt.Errorf("agent %s: xds agents have no API client; use NewXDSAgent", c.Node)
	case scenarios.ReadMesh:
		if len(c.Mesh) == 0 {
			return fmt.Errorf("agent %s: mode %s reads the mesh mirrors and needs their etcd URLs", c.Node, c.Mode)
		}
		if c.Index < 0 {
			return fmt.Errorf("agent %s: index %d is negative", c.Node, c.Index)
		}
	default:
		return fmt.Errorf("agent %s: mode %q has no read path (axes %s)", c.Node, c.Mode, c.Axes)
	}
	if c.REST == nil {
		return fmt.Errorf("agent %s: REST config must be set in mode %s", c.Node, c.Mode)
	}
	if c.Datapath == nil {
		return fmt.Errorf("agent %s: Datapath must be set", c.Node)
	}
	if c.Metrics == nil {
		return fmt.Errorf("agent %s: Metrics must be set", c.Node)
	}
	return nil
}

// Agent is one simulated cilium-agent. Create it with NewAgent, run it
// with Run; it stops when the context ends.
//
// Its state is split by subsystem, as cilium-agent's is, each a small type
// in its own file that the Agent owns; the Agent composes them and passes
// each change on to the subsystems that depend on it:
//
//   - k8sCache (k8scache.go): namespace labels and nodes;
//   - endpointManager (pods.go): the local endpoints and their work queue,
//     synchronised by the endpoint workers (endpoint.go);
//   - identityCache (identities.go): identities by ID and label set, and
//     allocation (allocate.go, with kvClient for the kvstore);
//   - ipcache (ipcache.go): IP -> identity, fed by endpoints, slices, the
//     kvstore or xDS;
//   - policyRegen (policy.go): rules, selector cache and regeneration;
//   - datapathWriter (dpwriter.go): the queue of datapath writes;
//   - digests and statusCache (digest.go, status.go): what the agent reports.
//
// Locking. The subsystems share one lock, mu, instead of a lock each,
// because one step usually changes several of them together: an identity
// event changes the identity cache, the ipcache digest, the selector cache
// and the endpoints waiting for its label set; an ipcache entry changes the
// label sets the policy digest counts; a regeneration reads the endpoints
// and the identity cache and writes the datapath queue; and a status
// report must see the digests, LastChange and the counts of one moment.
// With a lock per subsystem each of those steps would take several locks
// in a fixed order, and Status all of them. The other locks are taken
// before mu or are leaves:
//
//   - kvClient.pathLocks and keyLocks (one per kvstore key) may be held
//     while taking mu, never taken under it;
//   - workQueue.mu is taken under mu (queueing an endpoint), never the
//     other way round;
//   - datapathWriter.mu, kvClient.mu and kvClient.sessMu are never waited
//     for under mu (Status only tries datapathWriter.mu: peekStats).
type Agent struct {
	cfg  AgentConfig
	kc   *kubeClient
	kv   *kvClient
	mesh *meshClient // the mesh read path
	m    *Metrics
	log  *slog.Logger

	// mu guards the state of every subsystem below (see Locking).
	mu  sync.Mutex
	k8s *k8sCache
	eps *endpointManager
	ids *identityCache
	ipc *ipcache
	pol *policyRegen
	dp  *datapathWriter
	dig digests

	// work counts what the agent received, holds and did (atomics, read
	// without mu); moreWork, if set, adds what other parts count (the
	// xDS client).
	work     *agentWork
	moreWork func(*agentcontract.Work)

	// Read without mu.
	status     statusCache
	lastChange atomic.Pointer[time.Time]
	synced     atomic.Bool
	events     atomic.Uint64
}

// NewAgent validates cfg and builds an agent with its own API client.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	a := newAgentState(cfg)
	kc, err := newKubeClient(cfg.REST, cfg.Token, cfg.Node, float32(cfg.Knobs.ClientQPS), cfg.Knobs.ClientBurst, cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", cfg.Node, err)
	}
	a.kc = kc
	if cfg.Axes.HasMesh() {
		mc := meshConfig{
			Replicas: cfg.Mesh, Index: cfg.Index, ClusterNodes: cfg.ClusterNodes, APIServerFallback: cfg.MeshAPIServerFallback,
		}
		if d := cfg.MeshProbeInterval; d > 0 {
			mc.ProbeInterval, mc.ProbeIntervalFailing, mc.ProbeTimeout = d, d, time.Second
		}
		m, err := newMeshClient(a, mc)
		if err != nil {
			kc.close()
			return nil, fmt.Errorf("agent %s: %w", cfg.Node, err)
		}
		a.mesh = m
	}
	return a, nil
}

func newAgentState(cfg AgentConfig) *Agent {
	log := cfg.Log.With("node", cfg.Node)
	ids := newIdentityCache(cfg.Interner, cfg.Metrics)
	a := &Agent{
		cfg: cfg,
		m:   cfg.Metrics,
		log: log,
		k8s: newK8sCache(),
		eps: newEndpointManager(),
		ids: ids,
		ipc: newIPCache(ids),
		pol: newPolicyRegen(),
		dp:  newDatapathWriter(cfg.Datapath, log, cfg.Metrics),

		work: newAgentWork(),
	}
	// Until the first report is computed, a busy agent reports itself
	// not synced rather than making Status wait.
	a.status.last.Store(&Status{Node: cfg.Node, Mode: string(cfg.Mode)})
	return a
}

// Node is the agent's node name.
func (a *Agent) Node() string { return a.cfg.Node }

// Run runs the agent until ctx ends, then releases its resources.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer func() {
		cancel()
		a.eps.queue.shutdown()
		wg.Wait()
		if a.kv != nil {
			a.kv.close()
		}
		if a.kc != nil {
			a.kc.close()
		}
		a.closeDatapath()
	}()
	if a.cfg.Axes.HasKVStore() {
		kv, err := newKVClient(ctx, a)
		if err != nil {
			return fmt.Errorf("agent %s: %w", a.cfg.Node, err)
		}
		a.kv = kv
	}
	goRun := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	goRun(a.ensureCiliumNode) // ciliumnode.go
	var syncs []chan struct{}
	a.startWatches(func(run func(context.Context), synced chan struct{}) {
		syncs = append(syncs, synced)
		goRun(run)
	})
	if a.cfg.Axes.HasKVStore() {
		syncs = append(syncs, a.kv.identitiesSynced, a.kv.ipcacheSynced)
		goRun(a.kv.watchIdentities)
		goRun(a.kv.watchIPCache)
		goRun(a.kv.keepAlive)
		goRun(a.kv.syncLocalKeys)
	}
	if a.mesh != nil {
		// Identities, ipcache entries and nodes come from a mirror
		// replica instead of the API server (agentWatches leaves those
		// watches out); the agent still writes its CiliumNode there.
		syncs = append(syncs, a.mesh.synced()...)
		goRun(a.mesh.run)
	}
	goRun(a.regenLoop)
	goRun(a.dpWriter)
	// Endpoint workers start once every cache synced, as cilium-agent
	// waits for its caches before restoring and creating endpoints.
	for _, s := range syncs {
		select {
		case <-ctx.Done():
			return nil
		case <-s:
		}
	}
	a.synced.Store(true)
	a.log.Debug("caches synced")
	for i := 0; i < a.cfg.Workers; i++ {
		goRun(a.worker)
	}
	goRun(a.periodicEndpointSync)
	a.mu.Lock()
	for k := range a.eps.pods {
		a.eps.queue.add(k)
	}
	a.mu.Unlock()
	a.triggerRegen()
	<-ctx.Done()
	return nil
}

func (a *Agent) now() time.Time { return a.cfg.Now() }

// changed records a state change (caller holds mu).
func (a *Agent) changed() {
	t := a.now()
	a.lastChange.Store(&t)
}

// LastChange is when the agent's ipcache or policy state last changed.
func (a *Agent) LastChange() time.Time {
	if t := a.lastChange.Load(); t != nil {
		return *t
	}
	return time.Time{}
}

// datapathStats returns the datapath's counters (see datapathWriter.stats).
func (a *Agent) datapathStats() (datapath.Stats, bool) { return a.dp.stats() }
