package agentsim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/policykey"
	"github.com/stampede-sim/stampede/internal/truth"
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
	// Node is the node's name; NodeIP its InternalIP.
	Node   string
	NodeIP netip.Addr
	// Mode is crd, ces, kvstore or operator (xds agents are built by
	// NewXDSAgent).
	Mode scenarios.Mode
	// Cluster is the Cilium cluster name.
	Cluster string
	// Knobs are the scenario's agent settings (defaulted).
	Knobs scenarios.AgentKnobs
	// Filter is the identity label filter.
	Filter *identity.Filter
	// REST is the API server configuration (without the agent's token);
	// Token, if set, replaces its credentials.
	REST  *rest.Config
	Token string
	// KVStore lists the etcd endpoints (kvstore mode).
	KVStore []string
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
	// RegenInterval is the minimum time between two policy
	// recomputations of the agent's endpoints (default 250ms): identity
	// and policy events arriving meanwhile are handled together.
	RegenInterval time.Duration
	// XDSStateOfTheWorld selects state-of-the-world ADS instead of delta
	// (xds mode).
	XDSStateOfTheWorld bool
	// Workers is the number of endpoints synchronised concurrently
	// (default 8; cilium-agent regenerates endpoints in parallel, bounded
	// by its client rate limiter).
	Workers int
}

func (c *AgentConfig) setDefaults() {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.RegenInterval == 0 {
		c.RegenInterval = 250 * time.Millisecond
	}
	if c.Interner == nil {
		// The agent keeps decoded strings through it: without one they
		// would pin their whole watch frames.
		c.Interner = &identity.Interner{}
	}
	if c.Workers == 0 {
		c.Workers = 8
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
	if c.Knobs.LeaseTTL.Duration == 0 {
		c.Knobs.LeaseTTL.Duration = scenarios.DefaultLeaseTTL
	}
}

func (c *AgentConfig) validate() error {
	if c.Node == "" {
		return errors.New("agent: Node must be set")
	}
	switch c.Mode {
	case scenarios.ModeCRD, scenarios.ModeCES, scenarios.ModeOperator:
	case scenarios.ModeKVStore:
		if len(c.KVStore) == 0 {
			return fmt.Errorf("agent %s: kvstore mode needs kvstore endpoints", c.Node)
		}
	case scenarios.ModeXDS:
		return fmt.Errorf("agent %s: xds agents have no API client; use NewXDSAgent", c.Node)
	default:
		return fmt.Errorf("agent %s: unknown mode %q", c.Node, c.Mode)
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
type Agent struct {
	cfg AgentConfig
	kc  *kubeClient
	kv  *kvClient
	m   *Metrics
	log *slog.Logger

	mu         sync.Mutex
	namespaces map[string]map[string]string
	nodes      map[string]netip.Addr
	pods       map[string]*localPod
	ids        map[identity.ID]*idEntry
	// sets holds the agent's identities by label key (idsOf).
	sets      map[string]*labelSet
	idRefs    map[identity.ID]int32
	ipcache   map[uint32]ipEntry
	ipDigest  truth.Digest
	ipDirty   bool
	used      map[truth.LabelsHash]int32
	polDigest truth.Digest
	polDirty  bool
	// overflow holds the endpoints whose current policy the datapath
	// refused as larger than an endpoint's policy map: they still enforce
	// an older policy, so the agent does not report their new one.
	overflow   map[netip.Addr]struct{}
	rules      map[string][]policy.Rule
	slices     map[string][]sliceEntry
	createdIDs map[identity.ID]bool
	dupCounted map[identity.ID]bool
	lastChange atomic.Pointer[time.Time]
	nextEPID   int64
	pcache     *policy.Cache
	rulesDirty bool

	queue    *workQueue
	regenSig chan struct{}
	dpOps    []dpOp
	dpSig    chan struct{}
	dpMu     sync.Mutex
	synced   atomic.Bool

	// status is the last computed Status: handlers serve it when the
	// agent's lock is busy (statusRefreshing: a refresh is under way).
	status           atomic.Pointer[Status]
	dpStats          atomic.Pointer[datapath.Stats]
	statusRefreshing atomic.Bool
	// digestAt is when the digests were last recomputed and digestCost
	// what that took (see digestBudget); under mu.
	digestAt   time.Time
	digestCost time.Duration
	// entriesGen numbers policyEntries' conversions (labelSet.gen).
	entriesGen uint64

	created      atomic.Uint64
	duplicates   atomic.Uint64
	allocRetries atomic.Uint64
	events       atomic.Uint64
}

// idEntry is one cached identity. labels are shared (interned).
type idEntry struct {
	labels identity.Labels
	key    string
	lh     truth.LabelsHash
	// set is shared by the agent's identities of one label set.
	set *labelSet
}

// labelSet is one label set the agent has identities for: ids, ascending
// (duplicates after the first), and what the policy digest notes about
// the set while it converts an allowed set (see policyEntries), so that
// duplicates of one label set are found without a lookup per key.
type labelSet struct {
	ids []identity.ID
	// gen is the conversion the fields below belong to.
	gen uint64
	// used says some ipcache entry carries the label set; ports are the
	// (port<<8 | proto) already entered for it.
	used  bool
	ports []uint32
}

// ipEntry is one ipcache entry: identity and the endpoint that owns it.
type ipEntry struct {
	id    identity.ID
	owner uint32
}

// sliceEntry is one endpoint carried by a CiliumEndpointSlice.
type sliceEntry struct {
	ip    uint32
	id    identity.ID
	owner uint32
}

// localPod is a pod on the agent's node and its endpoint.
type localPod struct {
	ns, name, uid string
	ip            netip.Addr
	sa            string
	labels        map[string]string
	epID          int64

	want    identity.Labels
	wantKey string
	// id is the identity the endpoint uses; pendingID one allocated for
	// new labels that awaits the identity-change grace period.
	id        identity.ID
	pendingID identity.ID
	grace     *time.Timer
	// cepID is the identity the CiliumEndpoint carries; cepCreated says
	// whether it was created.
	cepID      identity.ID
	cepCreated bool
	// allowed is the policy pushed to the datapath (nil: none yet).
	allowed []policykey.Key
	deleted bool
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
	return a, nil
}

func newAgentState(cfg AgentConfig) *Agent {
	a := &Agent{
		cfg:        cfg,
		m:          cfg.Metrics,
		log:        cfg.Log.With("node", cfg.Node),
		namespaces: map[string]map[string]string{},
		nodes:      map[string]netip.Addr{},
		pods:       map[string]*localPod{},
		ids:        map[identity.ID]*idEntry{},
		sets:       map[string]*labelSet{},
		idRefs:     map[identity.ID]int32{},
		ipcache:    map[uint32]ipEntry{},
		used:       map[truth.LabelsHash]int32{},
		rules:      map[string][]policy.Rule{},
		slices:     map[string][]sliceEntry{},
		createdIDs: map[identity.ID]bool{},
		dupCounted: map[identity.ID]bool{},
		overflow:   map[netip.Addr]struct{}{},
		pcache:     policy.NewCache(),
		queue:      newWorkQueue(),
		regenSig:   make(chan struct{}, 1),
		dpSig:      make(chan struct{}, 1),
	}
	// Until the first report is computed, a busy agent reports itself
	// not synced rather than making Status wait.
	a.status.Store(&Status{Node: cfg.Node, Mode: string(cfg.Mode)})
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
		a.queue.shutdown()
		wg.Wait()
		if a.kv != nil {
			a.kv.close()
		}
		if a.kc != nil {
			a.kc.close()
		}
		a.closeDatapath()
	}()
	if a.cfg.Mode == scenarios.ModeKVStore {
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
	var syncs []chan struct{}
	watch := func(r interface {
		run(context.Context)
	}, synced chan struct{}) {
		syncs = append(syncs, synced)
		goRun(r.run)
	}
	nodeSel := map[string]string{"fieldSelector": "spec.nodeName=" + a.cfg.Node}
	{
		r := newReflector[slimNamespace](a, resourceSpec{name: "namespaces", path: pathNamespaces}, handler[slimNamespace]{replace: a.replaceNamespaces, event: a.onNamespace}, a.cfg.Frames)
		watch(r, r.synced)
	}
	{
		r := newReflector[slimPod](a, resourceSpec{name: "pods", path: pathPods, params: nodeSel}, handler[slimPod]{replace: a.replacePods, event: a.onPod}, nil)
		watch(r, r.synced)
	}
	{
		r := newReflector[slimNode](a, resourceSpec{name: "nodes", path: pathNodes}, handler[slimNode]{replace: a.replaceNodes, event: a.onNode}, a.cfg.Frames)
		watch(r, r.synced)
	}
	{
		r := newReflector[slimCNP](a, resourceSpec{name: "ciliumnetworkpolicies", path: pathCNPs}, handler[slimCNP]{replace: a.replacePolicies, event: a.onPolicy}, a.cfg.Frames)
		watch(r, r.synced)
	}
	switch a.cfg.Mode {
	case scenarios.ModeCRD, scenarios.ModeOperator, scenarios.ModeCES:
		r := newReflector[slimCID](a, resourceSpec{name: "ciliumidentities", path: pathCIDs}, handler[slimCID]{replace: a.replaceCIDs, event: a.onCID}, a.cfg.Frames)
		watch(r, r.synced)
	case scenarios.ModeKVStore:
		syncs = append(syncs, a.kv.identitiesSynced, a.kv.ipcacheSynced)
		goRun(a.kv.watchIdentities)
		goRun(a.kv.watchIPCache)
		goRun(a.kv.keepAlive)
		goRun(a.kv.syncLocalKeys)
	}
	switch a.cfg.Mode {
	case scenarios.ModeCRD, scenarios.ModeOperator:
		r := newReflector[slimCEP](a, resourceSpec{name: "ciliumendpoints", path: pathCEPs}, handler[slimCEP]{replace: a.replaceCEPs, event: a.onCEP}, a.cfg.Frames)
		watch(r, r.synced)
	case scenarios.ModeCES:
		r := newReflector[slimCES](a, resourceSpec{name: "ciliumendpointslices", path: pathCESs}, handler[slimCES]{replace: a.replaceSlices, event: a.onSlice}, a.cfg.Frames)
		watch(r, r.synced)
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
	a.mu.Lock()
	for k := range a.pods {
		a.queue.add(k)
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

// datapathStats returns the datapath's counters. While the datapath
// writer applies a batch (which can take seconds in a storm of large
// policy updates), it returns the counters of the last call instead of
// waiting, so that /metrics answers at once.
func (a *Agent) datapathStats() (datapath.Stats, bool) {
	if !a.dpMu.TryLock() {
		if st := a.dpStats.Load(); st != nil {
			return *st, true
		}
		a.dpMu.Lock()
	}
	defer a.dpMu.Unlock()
	if a.cfg.Datapath == nil {
		return datapath.Stats{}, false
	}
	st := a.cfg.Datapath.Stats()
	a.dpStats.Store(&st)
	return st, true
}

// --- namespaces ---

func (a *Agent) internLabels(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[a.cfg.Interner.String(k)] = a.cfg.Interner.String(v)
	}
	return out
}

func (a *Agent) replaceNamespaces(items []slimNamespace) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[string]bool, len(items))
	for i := range items {
		seen[items[i].Metadata.Name] = true
		a.upsertNamespace(&items[i])
	}
	for n := range a.namespaces {
		if !seen[n] {
			delete(a.namespaces, n)
		}
	}
}

func (a *Agent) onNamespace(typ string, ns *slimNamespace) {
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if typ == evDeleted {
		delete(a.namespaces, ns.Metadata.Name)
		return
	}
	a.upsertNamespace(ns)
}

func (a *Agent) upsertNamespace(ns *slimNamespace) {
	name := ns.Metadata.Name
	old, ok := a.namespaces[name]
	if ok && mapsEqual(old, ns.Metadata.Labels) {
		return
	}
	a.namespaces[a.cfg.Interner.String(name)] = a.internLabels(ns.Metadata.Labels)
	for k, p := range a.pods {
		if p.ns == name {
			a.computeWant(p)
			a.queue.add(k)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// --- nodes ---

func nodeAddr(n *slimNode) netip.Addr {
	for _, ad := range n.Status.Addresses {
		if ad.Type == "InternalIP" {
			if ip, err := netip.ParseAddr(ad.Address); err == nil {
				return ip
			}
		}
	}
	return netip.Addr{}
}

func (a *Agent) replaceNodes(items []slimNode) {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.nodes)
	for i := range items {
		a.nodes[a.cfg.Interner.String(items[i].Metadata.Name)] = nodeAddr(&items[i])
	}
}

func (a *Agent) onNode(typ string, n *slimNode) {
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if typ == evDeleted {
		delete(a.nodes, n.Metadata.Name)
		return
	}
	a.nodes[a.cfg.Interner.String(n.Metadata.Name)] = nodeAddr(n)
}

// --- local pods ---

func podKey(ns, name string) string { return ns + "/" + name }

func (a *Agent) replacePods(items []slimPod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[string]bool, len(items))
	for i := range items {
		seen[podKey(items[i].Metadata.Namespace, items[i].Metadata.Name)] = true
		a.upsertPod(&items[i])
	}
	for k, p := range a.pods {
		if !seen[k] {
			a.removePod(k, p)
		}
	}
}

func (a *Agent) onPod(typ string, p *slimPod) {
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	k := podKey(p.Metadata.Namespace, p.Metadata.Name)
	if typ == evDeleted {
		if lp, ok := a.pods[k]; ok {
			a.removePod(k, lp)
		}
		return
	}
	a.upsertPod(p)
}

func (a *Agent) upsertPod(p *slimPod) {
	if p.Spec.NodeName != a.cfg.Node {
		return
	}
	ip, err := netip.ParseAddr(p.Status.PodIP)
	if err != nil {
		// No IP yet: the CNI has not run; nothing to do.
		return
	}
	k := podKey(p.Metadata.Namespace, p.Metadata.Name)
	lp, ok := a.pods[k]
	if ok && lp.ip == ip && lp.sa == p.Spec.ServiceAccountName && mapsEqual(lp.labels, p.Metadata.Labels) {
		return
	}
	if !ok {
		a.nextEPID++
		lp = &localPod{
			ns:   a.cfg.Interner.String(p.Metadata.Namespace),
			name: strings.Clone(p.Metadata.Name),
			uid:  strings.Clone(p.Metadata.UID),
			epID: a.nextEPID,
		}
		a.pods[k] = lp
	}
	lp.ip = ip
	lp.sa = a.cfg.Interner.String(p.Spec.ServiceAccountName)
	lp.labels = a.internLabels(p.Metadata.Labels)
	a.computeWant(lp)
	a.queue.add(k)
}

func (a *Agent) computeWant(p *localPod) {
	l := identity.PodLabels(a.cfg.Filter, identity.PodInfo{
		Cluster: a.cfg.Cluster, Namespace: p.ns, ServiceAccount: p.sa,
		PodLabels: p.labels, NamespaceLabels: a.namespaces[p.ns],
	}, a.cfg.Interner)
	key := l.Key()
	if key == p.wantKey {
		return
	}
	p.want = a.cfg.Interner.Labels(l, key)
	p.wantKey = a.cfg.Interner.String(key)
}

func (a *Agent) removePod(k string, p *localPod) {
	delete(a.pods, k)
	p.deleted = true
	if p.grace != nil {
		p.grace.Stop()
	}
	if p.allowed != nil {
		a.queueDP(dpOp{kind: dpDeleteEndpoint, ep: p.ip})
		delete(a.overflow, p.ip)
		a.polDirty = true
		a.changed()
	}
	if p.cepCreated {
		a.queue.addDelete(k, p)
	}
}

// --- identities ---

// prepare parses the identity's number and labels once per decoded
// object (agents of a shard share it).
func (c *slimCID) prepare() {
	c.id, c.idErr = identity.ParseID(c.Metadata.Name)
	if c.idErr != nil {
		return
	}
	c.labels, c.labelErr = identity.FromSecurityLabels(c.SecurityLabels)
	if c.labelErr == nil {
		c.key = c.labels.Key()
	}
}

func (a *Agent) replaceCIDs(items []slimCID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[identity.ID]bool, len(items))
	for i := range items {
		c := &items[i]
		if c.idErr != nil {
			continue
		}
		seen[c.id] = true
		a.upsertCID(c)
	}
	for id := range a.ids {
		if !seen[id] && !a.createdIDs[id] {
			a.deleteIdentity(id)
		}
	}
}

func (a *Agent) onCID(typ string, c *slimCID) {
	a.events.Add(1)
	if c.idErr != nil {
		a.log.Debug("ignoring CiliumIdentity with a non-numeric name", "name", c.Metadata.Name)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if typ == evDeleted {
		a.deleteIdentity(c.id)
		return
	}
	a.upsertCID(c)
}

// upsertCID adds or updates a received CiliumIdentity (caller holds mu).
func (a *Agent) upsertCID(c *slimCID) {
	if c.labelErr != nil {
		a.log.Debug("ignoring CiliumIdentity with bad labels", "id", c.id, "err", c.labelErr)
		return
	}
	a.upsertIdentity(c.id, c.labels, c.key)
}

// upsertIdentity adds an identity to the cache (caller holds mu).
func (a *Agent) upsertIdentity(id identity.ID, l identity.Labels, key string) {
	if e, ok := a.ids[id]; ok {
		if e.key == key {
			return
		}
		a.deleteIdentity(id)
	}
	key = a.cfg.Interner.String(key)
	set := a.sets[key]
	if set == nil {
		set = &labelSet{}
		a.sets[key] = set
	}
	e := &idEntry{labels: a.cfg.Interner.Labels(l, key), key: key, lh: truth.HashLabelKey(key), set: set}
	a.ids[id] = e
	a.pcache.UpsertIdentity(id, e.labels)
	ids := append(set.ids, id)
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	set.ids = ids
	a.countDuplicates(ids)
	if a.idRefs[id] > 0 {
		a.ipDirty = true
		a.changed()
	}
	a.polDirty = true
	a.triggerRegen()
	// Local endpoints waiting for this label set (operator mode, or a
	// lost allocation race) can proceed.
	for k, p := range a.pods {
		if p.wantKey == key && p.id != id && p.pendingID == 0 {
			a.queue.add(k)
		}
	}
}

// idsOf returns the agent's identities of a label key, ascending (caller
// holds mu).
func (a *Agent) idsOf(key string) []identity.ID {
	if s := a.sets[key]; s != nil {
		return s.ids
	}
	return nil
}

// countDuplicates counts identities this agent created for a label set
// that also has a lower (older) identity.
func (a *Agent) countDuplicates(ids []identity.ID) {
	if len(ids) < 2 {
		return
	}
	for _, id := range ids[1:] {
		if a.createdIDs[id] && !a.dupCounted[id] {
			a.dupCounted[id] = true
			a.duplicates.Add(1)
			a.m.duplicates.Inc()
		}
	}
}

func (a *Agent) deleteIdentity(id identity.ID) {
	e, ok := a.ids[id]
	if !ok {
		return
	}
	delete(a.ids, id)
	a.pcache.DeleteIdentity(id)
	if i := slices.Index(e.set.ids, id); i >= 0 {
		e.set.ids = append(e.set.ids[:i:i], e.set.ids[i+1:]...)
	}
	if len(e.set.ids) == 0 {
		delete(a.sets, e.key)
	}
	if a.idRefs[id] > 0 {
		a.ipDirty = true
		a.changed()
	}
	a.polDirty = true
	a.triggerRegen()
	for k, p := range a.pods {
		if p.id == id || p.pendingID == id {
			a.queue.add(k)
		}
	}
}

// --- ipcache ---

func addrKey(ip netip.Addr) (uint32, bool) {
	if !ip.Is4() {
		return 0, false
	}
	b := ip.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), true
}

func keyAddr(k uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})
}

// ownerHash identifies the endpoint that wrote an ipcache entry (32 bits:
// a collision only matters if two endpoints hash alike and one's delete
// arrives after the other took the IP over).
func ownerHash(ns, name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(ns))
	h.Write([]byte{'/'})
	h.Write([]byte(name))
	return h.Sum32()
}

// contribute adds (sign 1) or removes (-1) an ipcache entry's share of
// the digest (caller holds mu).
func (a *Agent) contribute(ip uint32, id identity.ID, sign int32) {
	a.idRefs[id] += sign
	if a.idRefs[id] == 0 {
		delete(a.idRefs, id)
	}
	e, ok := a.ids[id]
	if !ok {
		return
	}
	h := truth.IPCacheEntry(keyAddr(ip), e.lh)
	if sign > 0 {
		a.ipDigest.Add(h)
	} else {
		a.ipDigest.Remove(h)
	}
	before := a.used[e.lh]
	a.used[e.lh] = before + sign
	if a.used[e.lh] == 0 {
		delete(a.used, e.lh)
	}
	if (before == 0) != (a.used[e.lh] == 0) {
		a.polDirty = true
	}
}

// setIP maps ip to id for owner (caller holds mu).
func (a *Agent) setIP(ip uint32, id identity.ID, owner uint32) {
	old, ok := a.ipcache[ip]
	if ok && old.id == id && old.owner == owner {
		return
	}
	if ok {
		a.contribute(ip, old.id, -1)
	}
	a.ipcache[ip] = ipEntry{id: id, owner: owner}
	a.contribute(ip, id, 1)
	a.changed()
	if !ok || old.id != id {
		a.queueDP(dpOp{kind: dpUpsertIP, ip: ip, id: id})
	}
}

// deleteIP removes ip if owner still owns it (caller holds mu).
func (a *Agent) deleteIP(ip uint32, owner uint32) {
	old, ok := a.ipcache[ip]
	if !ok || old.owner != owner {
		return
	}
	a.contribute(ip, old.id, -1)
	delete(a.ipcache, ip)
	a.changed()
	a.queueDP(dpOp{kind: dpDeleteIP, ip: ip})
}

// recomputeIPDigest rebuilds the ipcache digest and the used label sets
// after identities that ipcache entries refer to came or went.
func (a *Agent) recomputeIPDigest() {
	a.ipDigest = truth.Digest{}
	clear(a.used)
	for ip, e := range a.ipcache {
		if ie, ok := a.ids[e.id]; ok {
			a.ipDigest.Add(truth.IPCacheEntry(keyAddr(ip), ie.lh))
			a.used[ie.lh]++
		}
	}
	a.ipDirty = false
	a.polDirty = true
}

// --- CiliumEndpoints ---

func cepIP(c *slimCEP) (uint32, bool) {
	for _, ad := range c.Status.Networking.Addressing {
		if ip, err := netip.ParseAddr(ad.IPv4); err == nil {
			return addrKey(ip)
		}
	}
	return 0, false
}

func (a *Agent) replaceCEPs(items []slimCEP) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[uint32]bool, len(items))
	for i := range items {
		c := &items[i]
		ip, ok := cepIP(c)
		if !ok || c.Status.Identity.ID <= 0 {
			continue
		}
		seen[ip] = true
		a.setIP(ip, identity.ID(c.Status.Identity.ID), ownerHash(c.Metadata.Namespace, c.Metadata.Name))
	}
	for ip, e := range a.ipcache {
		if !seen[ip] {
			a.deleteIP(ip, e.owner)
		}
	}
}

func (a *Agent) onCEP(typ string, c *slimCEP) {
	a.events.Add(1)
	ip, ok := cepIP(c)
	if !ok {
		return
	}
	owner := ownerHash(c.Metadata.Namespace, c.Metadata.Name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if typ == evDeleted {
		a.deleteIP(ip, owner)
		return
	}
	if c.Status.Identity.ID <= 0 {
		return
	}
	a.setIP(ip, identity.ID(c.Status.Identity.ID), owner)
}

// --- CiliumEndpointSlices ---

// prepare derives the slice's ipcache entries once per decoded object
// (agents of a shard share it) and drops the decoded endpoints.
func (s *slimCES) prepare() {
	s.entries = make([]sliceEntry, 0, len(s.Endpoints))
	for _, ep := range s.Endpoints {
		if ep.ID <= 0 {
			continue
		}
		for _, ad := range ep.Networking.Addressing {
			ip, err := netip.ParseAddr(ad.IPv4)
			if err != nil {
				continue
			}
			k, ok := addrKey(ip)
			if !ok {
				continue
			}
			s.entries = append(s.entries, sliceEntry{ip: k, id: identity.ID(ep.ID), owner: ownerHash(s.Namespace, ep.Name)})
			break
		}
	}
	s.Endpoints = nil
}

func (a *Agent) replaceSlices(items []slimCES) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[string]bool, len(items))
	for i := range items {
		seen[items[i].Metadata.Name] = true
		a.applySlice(items[i].Metadata.Name, items[i].entries)
	}
	for name := range a.slices {
		if !seen[name] {
			a.applySlice(name, nil)
		}
	}
}

func (a *Agent) onSlice(typ string, s *slimCES) {
	a.events.Add(1)
	entries := s.entries
	if typ == evDeleted {
		entries = nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applySlice(s.Metadata.Name, entries)
}

// applySlice replaces what a slice carries: endpoints no longer in it are
// deleted, the others set.
func (a *Agent) applySlice(name string, entries []sliceEntry) {
	old := a.slices[name]
	keep := make(map[uint32]bool, len(entries))
	for _, e := range entries {
		keep[e.owner] = true
	}
	for _, e := range old {
		if !keep[e.owner] {
			a.deleteIP(e.ip, e.owner)
		}
	}
	for _, e := range entries {
		a.setIP(e.ip, e.id, e.owner)
	}
	if len(entries) == 0 {
		delete(a.slices, name)
	} else {
		// Interned: a map assignment stores the key it is given, and the
		// decoded name shares the memory of its whole watch frame
		// (goccy/go-json), 15 KiB for a full slice.
		a.slices[a.cfg.Interner.String(name)] = entries
	}
}

// --- policies ---

// slimCNP is a CiliumNetworkPolicy as received.
type slimCNP struct {
	watchStatus
	policy.CiliumNetworkPolicy
}

func (o *slimCNP) resourceVersion() string { return o.Metadata.ResourceVersion }

func (a *Agent) compilePolicy(c *slimCNP) ([]policy.Rule, bool) {
	rules, err := policy.Compile(&c.CiliumNetworkPolicy)
	if err != nil {
		a.log.Warn("ignoring invalid CiliumNetworkPolicy", "err", err)
		return nil, false
	}
	return rules, true
}

func (a *Agent) replacePolicies(items []slimCNP) {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.rules)
	for i := range items {
		if r, ok := a.compilePolicy(&items[i]); ok {
			a.rules[podKey(items[i].Metadata.Namespace, items[i].Metadata.Name)] = r
		}
	}
	a.rulesDirty = true
	a.triggerRegen()
}

func (a *Agent) onPolicy(typ string, c *slimCNP) {
	a.events.Add(1)
	k := podKey(c.Metadata.Namespace, c.Metadata.Name)
	var rules []policy.Rule
	ok := false
	if typ != evDeleted {
		rules, ok = a.compilePolicy(c)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if ok {
		a.rules[k] = rules
	} else {
		delete(a.rules, k)
	}
	a.rulesDirty = true
	a.triggerRegen()
}
