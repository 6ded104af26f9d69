package agentsim

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/agentcontract"
)

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
	// Work is what the agent received, holds and did: the figures that
	// carry over to a cilium-agent (agentcontract.Work).
	Work *agentcontract.Work `json:"work,omitempty"`

	// at is when the report was computed.
	at time.Time
}

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
	last := a.status.last.Load()
	if last == nil {
		a.mu.Lock()
		st := a.statusLocked()
		a.mu.Unlock()
		return st
	}
	if a.now().Sub(last.at) > statusMaxAge && a.status.refreshing.CompareAndSwap(false, true) {
		go func() {
			defer a.status.refreshing.Store(false)
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
	if a.ipc.stale || a.dig.policyStale {
		a.refreshDigests()
	}
	st := Status{
		Node:              a.cfg.Node,
		Mode:              string(a.cfg.Mode),
		Synced:            a.synced.Load(),
		IPCacheDigest:     a.ipc.digest.String(),
		PolicyDigest:      a.dig.policy.String(),
		PolicyOverflow:    len(a.dp.overflow),
		LastChange:        a.LastChange(),
		IPCacheEntries:    len(a.ipc.entries),
		Identities:        a.ids.len(),
		Namespaces:        len(a.k8s.namespaces),
		Nodes:             len(a.k8s.nodes),
		Policies:          len(a.pol.rules),
		LocalEndpoints:    len(a.eps.pods),
		QueuedEndpoints:   a.eps.queue.len(),
		IdentitiesMade:    a.ids.made.Load(),
		Duplicates:        a.ids.duplicates.Load(),
		AllocationRetries: a.ids.retries.Load(),
		Events:            a.events.Load(),
	}
	w := &agentcontract.Work{Identities: st.Identities}
	for _, p := range a.eps.pods {
		w.PolicyMapKeys += len(p.allowed)
		if p.id != 0 && p.allowed != nil && p.cepCreated && p.cepID == p.id {
			st.EndpointsReady++
		}
		if p.pendingID != 0 || p.id == 0 {
			st.PendingIdentity++
		}
	}
	a.work.add(w)
	if a.moreWork != nil {
		a.moreWork(w)
	}
	if ds, ok := a.dp.peekStats(); ok {
		w.Datapath = string(ds.Kind)
		w.DatapathUpdates, w.MapWrites = ds.Updates, ds.MapWrites
		if ds.Kind == datapath.KindBPF {
			// The kernel's figure for the maps this agent created; the
			// mem datapath's MapBytes is an estimate of Go maps, not
			// kernel memory, and is left out.
			kb := ds.MapBytes
			w.KernelMapBytes = &kb
		}
	}
	st.Work = w
	if st.PolicyOverflow > 0 {
		st.PolicyDigest += fmt.Sprintf("%s%d", agentcontract.PolicyOverflowMarker, st.PolicyOverflow)
	}
	st.at = a.now()
	a.status.last.Store(&st)
	return st
}

// statusCache is the last Status an agent computed: handlers serve it when
// the agent's lock is busy (refreshing: a refresh is under way).
type statusCache struct {
	last       atomic.Pointer[Status]
	refreshing atomic.Bool
}
