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
	t := time.AfterFunc(d, func() { a.eps.queue.add(k) })
	context.AfterFunc(ctx, func() { t.Stop() })
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
		a.eps.queue.add(k)
	})
}
