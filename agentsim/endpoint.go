package agentsim

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// The endpoint workers synchronise the agent's local endpoints, as
// cilium-agent's endpoint regeneration does: each queued endpoint gets the
// identity of its labels (looked up, allocated or awaited, per mode), the
// identity-change grace period, and then its CiliumEndpoint
// (ciliumendpoint.go). Failed syncs are queued again after a jittered
// second.

// retryLater queues k again after d unless ctx ended.
func (a *Agent) retryLater(ctx context.Context, k string, d time.Duration) {
	// The timer releases the context's hook when it fires, so that
	// delays do not pile hooks up on a long-lived ctx.
	var stop func() bool
	registered := make(chan struct{})
	t := time.AfterFunc(d, func() {
		<-registered
		stop()
		a.eps.queue.add(k)
	})
	stop = context.AfterFunc(ctx, func() { t.Stop() })
	close(registered)
}

func (a *Agent) worker(ctx context.Context) {
	for {
		k, del, ok := a.eps.queue.get()
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
		a.eps.queue.done(k)
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
	p := a.eps.pods[k]
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
		p.jitterKey = ""
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
	if p.id != 0 && cur != nil && a.relabelJitter(ctx, k, p, wantKey) {
		a.mu.Unlock()
		return nil
	}
	var newID identity.ID
	if ids := a.ids.idsOf(wantKey); len(ids) > 0 {
		newID = ids[0]
	}
	a.mu.Unlock()
	if newID == 0 {
		if a.cfg.Axes.OperatorManagesIdentities() {
			// The operator creates the identity; its CiliumIdentity
			// event queues this pod again.
			return nil
		}
		var err error
		if newID, err = a.allocateIdentity(ctx, want, wantKey); err != nil {
			return err
		}
	} else if a.cfg.Axes.Identity == scenarios.IdentityKVStore {
		var err error
		if newID, err = a.kvReference(ctx, want, wantKey, newID); err != nil {
			return err
		}
	}
	a.mu.Lock()
	p = a.eps.pods[k]
	if p == nil || p.wantKey != wantKey {
		a.mu.Unlock()
		a.eps.queue.add(k)
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

// kvReference makes this node reference the known identity id of a label
// set in the kvstore. The first local use of a label set goes through the
// kvstore allocator, which takes the label set's lock even though the ID
// is known (kvClient.allocateOnce) and then writes this node's value key;
// a label set the node already references needs nothing.
func (a *Agent) kvReference(ctx context.Context, l identity.Labels, key string, id identity.ID) (identity.ID, error) {
	if a.kv.references(key, id) {
		return id, nil
	}
	return a.allocateIdentity(ctx, l, key)
}

// assign gives the endpoint its new identity: at once for a new endpoint,
// after the identity-change grace period otherwise (caller holds mu), as
// Cilium's pkg/endpoint Endpoint.identityLabelsChanged sleeps
// IdentityChangeGracePeriod before it sets an identity that replaces one
// other than reserved:init (1.17 to 1.19). The endpoint is queued again
// once the period ended.
func (a *Agent) assign(k string, p *localPod, id identity.ID) {
	a.assignAfterGrace(p, id, func() { a.eps.queue.add(k) })
}

// assignAfterGrace sets p's identity to id, after the grace period if p
// had an identity, and then runs applied (caller holds mu; applied runs
// with mu held, at once or when the period ended, unless p was deleted or
// given another identity meanwhile).
func (a *Agent) assignAfterGrace(p *localPod, id identity.ID, applied func()) {
	grace := a.cfg.Knobs.IdentityChangeGracePeriod.Duration
	if p.id == 0 || p.id == id || grace <= 0 {
		if p.grace != nil {
			p.grace.Stop()
		}
		p.id = id
		p.pendingID = 0
		a.triggerRegen()
		applied()
		return
	}
	if p.pendingID == id {
		return
	}
	p.pendingID = id
	if p.grace != nil {
		p.grace.Stop()
	}
	p.grace = time.AfterFunc(grace, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if !p.deleted && p.pendingID == id {
			p.id = id
			p.pendingID = 0
			a.triggerRegen()
			applied()
		}
	})
}

// relabelJitter delays the identity resolution of an endpoint whose
// labels changed (it has an identity of other labels) by a random time up
// to agent.identityMaxJitter, and tells whether the endpoint must wait
// (caller holds mu). Cilium 1.18 and 1.19 do this since PR #38031 (the
// fix for cilium/cilium#38030): pkg/endpointmanager
// namespaceUpdater.update (namespace labels) and pkg/endpoint
// Endpoint.UpdateLabelsFrom (pod labels, reached from the pod watcher)
// pass option.Config.CiliumIdentityMaxJitter to
// Endpoint.ModifyIdentityLabels, whose runIdentityResolver starts the
// endpoint's resolve-identity controller with that Jitter: the controller
// waits a random time in [0, jitter) before it resolves and allocates.
// New endpoints (UpdateLabels) resolve at once, as here (p.id == 0 never
// comes here). Each endpoint resolves in its own controller, so the wait
// holds no endpoint worker.
func (a *Agent) relabelJitter(ctx context.Context, k string, p *localPod, wantKey string) bool {
	j := a.cfg.Knobs.IdentityMaxJitter
	if j == nil || j.Duration <= 0 {
		return false
	}
	now := time.Now()
	if p.jitterKey == wantKey {
		// Queued again before the delay ended (an event of its label
		// set, or an older delay's timer): keep waiting.
		if d := p.jitterUntil.Sub(now); d > 0 {
			return true
		}
		return false
	}
	d := rand.N(j.Duration)
	p.jitterKey, p.jitterUntil = wantKey, now.Add(d)
	a.retryLater(ctx, k, d)
	return true
}
