package agentsim

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/truth"
	"github.com/stampede-sim/stampede/scenarios"
)

// workQueue hands pod keys to the endpoint workers: a key is queued at most
// once and processed by one worker at a time.
type workQueue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	items      []string
	queued     map[string]bool
	processing map[string]bool
	redo       map[string]bool
	deletes    map[string]*localPod
	closed     bool
}

func newWorkQueue() *workQueue {
	q := &workQueue{queued: map[string]bool{}, processing: map[string]bool{}, redo: map[string]bool{}, deletes: map[string]*localPod{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *workQueue) add(k string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if q.processing[k] {
		q.redo[k] = true
		return
	}
	if !q.queued[k] {
		q.queued[k] = true
		q.items = append(q.items, k)
		q.cond.Signal()
	}
}

// addDelete queues the deletion of a removed pod's endpoint.
func (q *workQueue) addDelete(k string, p *localPod) {
	q.mu.Lock()
	q.deletes[k] = p
	q.mu.Unlock()
	q.add(k)
}

// get blocks for the next key; ok is false once the queue is shut down.
func (q *workQueue) get() (k string, del *localPod, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", nil, false
	}
	k = q.items[0]
	q.items = q.items[1:]
	delete(q.queued, k)
	q.processing[k] = true
	del = q.deletes[k]
	delete(q.deletes, k)
	return k, del, true
}

func (q *workQueue) done(k string) {
	q.mu.Lock()
	delete(q.processing, k)
	redo := q.redo[k]
	delete(q.redo, k)
	q.mu.Unlock()
	if redo {
		q.add(k)
	}
}

func (q *workQueue) shutdown() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *workQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// retryLater queues k again after d unless ctx ended.
func (a *Agent) retryLater(ctx context.Context, k string, d time.Duration) {
	t := time.AfterFunc(d, func() { a.queue.add(k) })
	context.AfterFunc(ctx, func() { t.Stop() })
}

func (a *Agent) worker(ctx context.Context) {
	for {
		k, del, ok := a.queue.get()
		if !ok {
			return
		}
		if del != nil {
			a.deleteCEP(ctx, k, del)
		}
		if err := a.syncPod(ctx, k); err != nil && ctx.Err() == nil {
			a.log.Debug("endpoint sync failed, retrying", "pod", k, "err", err)
			a.retryLater(ctx, k, time.Second+time.Duration(rand.Int64N(int64(time.Second))))
		}
		a.queue.done(k)
		if ctx.Err() != nil {
			return
		}
	}
}

// syncPod brings one local endpoint up to date: identity for its current
// labels (looked up, allocated or awaited, per mode), the identity-change
// grace period, then its CiliumEndpoint (and kvstore ipcache entry).
func (a *Agent) syncPod(ctx context.Context, k string) error {
	a.mu.Lock()
	p := a.pods[k]
	if p == nil {
		a.mu.Unlock()
		return nil
	}
	if p.wantKey == "" {
		a.computeWant(p)
	}
	want, wantKey := p.want, p.wantKey
	cur := a.ids.get(p.id)
	switch {
	case p.id != 0 && cur != nil && cur.key == wantKey:
		// The endpoint's identity is current.
		if p.pendingID != 0 {
			p.pendingID = 0
			if p.grace != nil {
				p.grace.Stop()
			}
		}
		a.mu.Unlock()
		return a.syncCEP(ctx, k)
	case p.pendingID != 0 && a.ids.get(p.pendingID) != nil && a.ids.get(p.pendingID).key == wantKey:
		// Waiting out the grace period.
		a.mu.Unlock()
		return nil
	}
	var newID identity.ID
	if ids := a.ids.idsOf(wantKey); len(ids) > 0 {
		newID = ids[0]
	}
	a.mu.Unlock()
	if newID == 0 {
		if a.cfg.Mode == scenarios.ModeOperator {
			// The operator creates the identity; its CiliumIdentity
			// event queues this pod again.
			return nil
		}
		var err error
		if newID, err = a.allocateIdentity(ctx, want, wantKey); err != nil {
			return err
		}
	} else if a.cfg.Mode == scenarios.ModeKVStore {
		// Reference the identity with this node's value key.
		if err := a.kv.acquire(ctx, newID, wantKey); err != nil {
			return err
		}
	}
	a.mu.Lock()
	p = a.pods[k]
	if p == nil || p.wantKey != wantKey {
		a.mu.Unlock()
		a.queue.add(k)
		return nil
	}
	a.assign(k, p, newID)
	ready := p.id == newID
	a.mu.Unlock()
	if ready {
		return a.syncCEP(ctx, k)
	}
	return nil
}

// assign gives the endpoint its new identity: at once for a new endpoint,
// after the identity-change grace period otherwise (caller holds mu).
func (a *Agent) assign(k string, p *localPod, id identity.ID) {
	if p.id == 0 || a.cfg.Knobs.IdentityChangeGracePeriod.Duration <= 0 {
		p.id = id
		p.pendingID = 0
		a.triggerRegen()
		return
	}
	if p.pendingID == id {
		return
	}
	p.pendingID = id
	if p.grace != nil {
		p.grace.Stop()
	}
	p.grace = time.AfterFunc(a.cfg.Knobs.IdentityChangeGracePeriod.Duration, func() {
		a.mu.Lock()
		if !p.deleted && p.pendingID == id {
			p.id = id
			p.pendingID = 0
			a.triggerRegen()
		}
		a.mu.Unlock()
		a.queue.add(k)
	})
}

// --- CiliumEndpoint ---

// CiliumEndpoint is the object an agent writes for each local pod (the
// fields Cilium's endpoint synchronizer fills that the simulation has).
type CiliumEndpoint struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   cepMeta        `json:"metadata"`
	Status     EndpointStatus `json:"status"`
}

type cepMeta struct {
	Name            string     `json:"name"`
	Namespace       string     `json:"namespace"`
	OwnerReferences []ownerRef `json:"ownerReferences,omitempty"`
}

type ownerRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
}

// EndpointStatus is a CiliumEndpoint's status.
type EndpointStatus struct {
	ID                  int64               `json:"id"`
	Identity            EndpointIdentity    `json:"identity"`
	Networking          EndpointNetworking  `json:"networking"`
	State               string              `json:"state"`
	ExternalIdentifiers ExternalIdentifiers `json:"external-identifiers"`
	Encryption          struct{}            `json:"encryption"`
}

// EndpointIdentity is the endpoint's security identity and its labels.
type EndpointIdentity struct {
	ID     int64    `json:"id"`
	Labels []string `json:"labels"`
}

// EndpointNetworking holds the endpoint's addresses and node IP.
type EndpointNetworking struct {
	Addressing []AddressPair `json:"addressing"`
	Node       string        `json:"node,omitempty"`
}

// AddressPair is an endpoint address.
type AddressPair struct {
	IPv4 string `json:"ipv4,omitempty"`
}

// ExternalIdentifiers name the pod of an endpoint.
type ExternalIdentifiers struct {
	K8sNamespace string `json:"k8s-namespace"`
	K8sPodName   string `json:"k8s-pod-name"`
	PodName      string `json:"pod-name"`
}

// endpointStatus builds a local endpoint's CiliumEndpoint status (caller
// holds mu).
func (a *Agent) endpointStatus(p *localPod) EndpointStatus {
	var labels []string
	if e := a.ids.get(p.id); e != nil {
		labels = make([]string, len(e.labels))
		for i, l := range e.labels {
			labels[i] = l.String()
		}
	}
	st := EndpointStatus{
		ID:                  p.epID,
		Identity:            EndpointIdentity{ID: int64(p.id), Labels: labels},
		Networking:          EndpointNetworking{Addressing: []AddressPair{{IPv4: p.ip.String()}}},
		State:               "ready",
		ExternalIdentifiers: ExternalIdentifiers{K8sNamespace: p.ns, K8sPodName: p.name, PodName: p.ns + "/" + p.name},
	}
	if a.cfg.NodeIP.IsValid() {
		st.Networking.Node = a.cfg.NodeIP.String()
	}
	return st
}

// syncCEP writes the endpoint's CiliumEndpoint if it does not carry the
// current identity: POST the first time, a JSON patch replacing /status
// afterwards (pkg/k8s endpoint synchronizer).
func (a *Agent) syncCEP(ctx context.Context, k string) error {
	a.mu.Lock()
	p := a.pods[k]
	if p == nil || p.id == 0 || (p.cepCreated && p.cepID == p.id) {
		a.mu.Unlock()
		return nil
	}
	id, created := p.id, p.cepCreated
	st := a.endpointStatus(p)
	ns, name, uid, ip := p.ns, p.name, p.uid, p.ip
	a.mu.Unlock()

	if a.kv != nil {
		if err := a.kv.putIP(ctx, ip, id, ns, name); err != nil {
			return err
		}
		a.kv.releaseUnused(ctx, a.keysInUse())
	}
	path := "/apis/cilium.io/v2/namespaces/" + ns + "/ciliumendpoints"
	var err error
	if !created {
		cep := CiliumEndpoint{
			APIVersion: "cilium.io/v2", Kind: "CiliumEndpoint",
			Metadata: cepMeta{Name: name, Namespace: ns},
			Status:   st,
		}
		if uid != "" {
			cep.Metadata.OwnerReferences = []ownerRef{{APIVersion: "v1", Kind: "Pod", Name: name, UID: uid}}
		}
		body, merr := json.Marshal(cep)
		if merr != nil {
			return fmt.Errorf("encode endpoint %s: %w", k, merr)
		}
		_, err = a.kc.do(ctx, http.MethodPost, path, "application/json", body, nil)
		a.countCEPWrite("create", err)
		if httpCode(err) == http.StatusConflict {
			created = true
		}
	}
	if created {
		body, merr := json.Marshal([]jsonPatchOp{{Op: "replace", Path: "/status", Value: st}})
		if merr != nil {
			return fmt.Errorf("encode endpoint patch %s: %w", k, merr)
		}
		_, err = a.kc.do(ctx, http.MethodPatch, path+"/"+name, "application/json-patch+json", body, nil)
		a.countCEPWrite("patch", err)
		if httpCode(err) == http.StatusNotFound {
			// Deleted behind our back: create it again next time.
			a.mu.Lock()
			if p := a.pods[k]; p != nil {
				p.cepCreated = false
			}
			a.mu.Unlock()
		}
	}
	if err != nil {
		return fmt.Errorf("write endpoint %s: %w", k, err)
	}
	a.mu.Lock()
	if p := a.pods[k]; p != nil {
		p.cepCreated = true
		p.cepID = id
		if p.id != id {
			a.queue.add(k)
		}
	}
	a.mu.Unlock()
	return nil
}

// keysInUse lists the label keys of the identities local endpoints use or
// wait for.
func (a *Agent) keysInUse() map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]bool, len(a.pods))
	for _, p := range a.pods {
		out[p.wantKey] = true
		if e := a.ids.get(p.id); e != nil {
			out[e.key] = true
		}
		if e := a.ids.get(p.pendingID); e != nil {
			out[e.key] = true
		}
	}
	return out
}

type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

func (a *Agent) countCEPWrite(op string, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	a.m.cepWrites.WithLabelValues(op, outcome).Inc()
}

// deleteCEP deletes a removed pod's CiliumEndpoint (and kvstore entries).
func (a *Agent) deleteCEP(ctx context.Context, k string, p *localPod) {
	if a.kv != nil {
		a.kv.deleteIP(ctx, p.ip)
	}
	_, err := a.kc.do(ctx, http.MethodDelete, "/apis/cilium.io/v2/namespaces/"+p.ns+"/ciliumendpoints/"+p.name, "", nil, nil)
	a.countCEPWrite("delete", err)
	if err != nil && httpCode(err) != http.StatusNotFound {
		a.log.Debug("delete endpoint", "pod", k, "err", err)
	}
}

// --- status ---

// Status is what an agent reports: its convergence digests and counters.
type Status struct {
	Node string `json:"node"`
	Mode string `json:"mode"`
	// Synced says every cache finished its initial list.
	Synced        bool   `json:"synced"`
	IPCacheDigest string `json:"ipcacheDigest"`
	PolicyDigest  string `json:"policyDigest"`
	// LastChange is when the ipcache or policy state last changed.
	LastChange time.Time `json:"lastChange"`

	IPCacheEntries  int `json:"ipcacheEntries"`
	Identities      int `json:"identities"`
	Namespaces      int `json:"namespaces"`
	Nodes           int `json:"nodes"`
	Policies        int `json:"policies"`
	LocalEndpoints  int `json:"localEndpoints"`
	EndpointsReady  int `json:"endpointsReady"`
	PendingIdentity int `json:"pendingIdentity"`
	// PolicyOverflow counts local endpoints whose policy is larger than
	// an endpoint's policy map (agent.policyMapMax): the datapath refused
	// it and they enforce an older one. While there are any, the agent's
	// PolicyDigest carries a suffix that no ground truth has.
	PolicyOverflow    int    `json:"policyOverflow,omitempty"`
	QueuedEndpoints   int    `json:"queuedEndpoints"`
	IdentitiesMade    uint64 `json:"identitiesCreated"`
	Duplicates        uint64 `json:"duplicates"`
	AllocationRetries uint64 `json:"allocationRetries"`
	Events            uint64 `json:"events"`

	// at is when the report was computed.
	at time.Time
}

// PolicyOverflowMarker follows an agent's policy digest, with the count,
// when some of its endpoints' policies did not fit the policy map: such a
// digest never equals the ground truth's.
const PolicyOverflowMarker = " overflow:"

// statusMaxAge is how old a served Status may be while the agent is busy
// before Status refreshes it in the background.
const statusMaxAge = 250 * time.Millisecond

// Status is the agent's report. It never waits for a busy agent: if the
// agent's lock is held (a large policy regeneration, an identity storm),
// it returns the last report computed and, if that is older than
// statusMaxAge, refreshes it in the background, so that the /agents
// handler answers at once under load; the report is then at most the
// refresh's lock wait old (Status.LastChange and the digests are
// consistent with each other, as they are computed together).
func (a *Agent) Status() Status {
	if a.mu.TryLock() {
		st := a.statusLocked()
		a.mu.Unlock()
		return st
	}
	last := a.status.Load()
	if last == nil {
		a.mu.Lock()
		st := a.statusLocked()
		a.mu.Unlock()
		return st
	}
	if a.now().Sub(last.at) > statusMaxAge && a.statusRefreshing.CompareAndSwap(false, true) {
		go func() {
			defer a.statusRefreshing.Store(false)
			a.mu.Lock()
			a.statusLocked()
			a.mu.Unlock()
		}()
	}
	return *last
}

// statusLocked computes the report and keeps it for Status (caller holds
// mu).
func (a *Agent) statusLocked() Status {
	if a.ipc.stale || a.polDirty {
		a.refreshDigests()
	}
	st := Status{
		Node:              a.cfg.Node,
		Mode:              string(a.cfg.Mode),
		Synced:            a.synced.Load(),
		IPCacheDigest:     a.ipc.digest.String(),
		PolicyDigest:      a.polDigest.String(),
		PolicyOverflow:    len(a.overflow),
		LastChange:        a.LastChange(),
		IPCacheEntries:    len(a.ipc.entries),
		Identities:        a.ids.len(),
		Namespaces:        len(a.namespaces),
		Nodes:             len(a.nodes),
		Policies:          len(a.pol.rules),
		LocalEndpoints:    len(a.pods),
		QueuedEndpoints:   a.queue.len(),
		IdentitiesMade:    a.ids.made.Load(),
		Duplicates:        a.ids.duplicates.Load(),
		AllocationRetries: a.ids.retries.Load(),
		Events:            a.events.Load(),
	}
	for _, p := range a.pods {
		if p.id != 0 && p.allowed != nil && p.cepCreated && p.cepID == p.id {
			st.EndpointsReady++
		}
		if p.pendingID != 0 || p.id == 0 {
			st.PendingIdentity++
		}
	}
	if st.PolicyOverflow > 0 {
		st.PolicyDigest += fmt.Sprintf("%s%d", PolicyOverflowMarker, st.PolicyOverflow)
	}
	st.at = a.now()
	a.status.Store(&st)
	return st
}

// refreshDigests recomputes the dirty digests if the agent's digest budget
// allows it now (caller holds mu). A never computed digestAt is the zero
// time, always long enough ago.
func (a *Agent) refreshDigests() {
	now := a.now()
	if now.Sub(a.digestAt) < a.cfg.DigestBudget.interval() {
		return
	}
	// The cost is the CPU time of this thread, not the wall time: on a
	// loaded machine the wall time of a digest is mostly other
	// goroutines' turns, and counting it spaced 200 agents' digests by
	// minutes.
	runtime.LockOSThread()
	start := threadCPU()
	if a.ipc.stale {
		a.ipc.recomputeDigest()
		a.polDirty = true
	}
	if a.polDirty {
		a.recomputePolicyDigest()
	}
	cost := threadCPU() - start
	runtime.UnlockOSThread()
	a.cfg.DigestBudget.record(a.digestCost, cost)
	a.m.digestSeconds.Add(cost.Seconds())
	a.digestAt, a.digestCost = now, cost
}

// recomputePolicyDigest sums the effective policy of every local endpoint
// (caller holds mu).
func (a *Agent) recomputePolicyDigest() {
	a.polDigest = truth.Digest{}
	// Endpoints selected by the same rules share one allowed slice (see
	// policy.Cache.Resolve): convert it once.
	type sliceID struct {
		first *datapath.PolicyKey
		n     int
	}
	entries := map[sliceID][]truth.PolicyEntry{}
	for _, p := range a.pods {
		if p.allowed == nil {
			continue
		}
		var sid sliceID
		if len(p.allowed) > 0 {
			sid = sliceID{&p.allowed[0], len(p.allowed)}
		}
		es, ok := entries[sid]
		if !ok || sid.first == nil {
			es = a.policyEntries(p.allowed)
			entries[sid] = es
		}
		a.polDigest.Merge(truth.UniqueEndpointPolicy(p.ip, es))
	}
	a.polDirty = false
}

// policyEntries converts an endpoint's allowed keys into its digest
// entries, each once (caller holds mu): a key counts as its identity's
// label set, if some ipcache entry carries that label set, and
// duplicate identities of one label set give one entry per port. Keys of
// identities the agent does not know are left out; AllowAll is
// truth.AllowAllEntry. In an identity storm an allowed set has one key per
// duplicate identity (10,000s) but a few hundred entries, and the digest
// is summed again for every report that finds the policy changed: the
// label set's note (labelSet) finds a repeat without a map lookup.
func (a *Agent) policyEntries(keys []datapath.PolicyKey) []truth.PolicyEntry {
	a.entriesGen++
	gen := a.entriesGen
	var out []truth.PolicyEntry
	allowAll := false
	for _, k := range keys {
		if k == policy.AllowAll {
			if !allowAll {
				out = append(out, truth.AllowAllEntry)
				allowAll = true
			}
			continue
		}
		e := a.ids.get(identity.ID(k.Identity))
		if e == nil {
			continue
		}
		s := e.set
		if s.gen != gen {
			s.gen, s.used, s.ports = gen, a.ipc.isUsed(e.lh), s.ports[:0]
		}
		pp := uint32(k.Port)<<8 | uint32(k.Proto)
		if !s.used || slices.Contains(s.ports, pp) {
			continue
		}
		s.ports = append(s.ports, pp)
		out = append(out, truth.PolicyEntry{Labels: e.lh, Port: k.Port, Proto: k.Proto})
	}
	return out
}
