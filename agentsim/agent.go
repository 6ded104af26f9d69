package agentsim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/datapath"
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
	ids        *identityCache
	ipc        *ipcache
	pol        *policyRegen
	lastChange atomic.Pointer[time.Time]
	nextEPID   int64

	queue  *workQueue
	synced atomic.Bool

	dp     *datapathWriter
	dig    digests
	status statusCache

	events atomic.Uint64
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
	allowed []datapath.PolicyKey
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
	ids := newIdentityCache(cfg.Interner, cfg.Metrics)
	a := &Agent{
		cfg:        cfg,
		m:          cfg.Metrics,
		log:        cfg.Log.With("node", cfg.Node),
		namespaces: map[string]map[string]string{},
		nodes:      map[string]netip.Addr{},
		pods:       map[string]*localPod{},
		ids:        ids,
		ipc:        newIPCache(ids),
		pol:        newPolicyRegen(),
		queue:      newWorkQueue(),
		dp:         newDatapathWriter(cfg.Datapath, cfg.Log.With("node", cfg.Node), cfg.Metrics),
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

// datapathStats returns the datapath's counters (see datapathWriter.stats).
func (a *Agent) datapathStats() (datapath.Stats, bool) { return a.dp.stats() }

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
		delete(a.dp.overflow, p.ip)
		a.dig.policyStale = true
		a.changed()
	}
	if p.cepCreated {
		a.queue.addDelete(k, p)
	}
}
