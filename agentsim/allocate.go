package agentsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/stampede-sim/stampede/internal/identity"
)

// errAllocation is returned when every allocation attempt failed.
var errAllocation = errors.New("identity allocation failed")

// errNoFreeID is an attempt's error when the cache holds every ID of the
// cluster-local range.
var errNoFreeID = errors.New("no free identity in range")

// permanentError ends the allocation loop at once: another attempt cannot
// succeed where this one failed.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// allocateIdentity finds or creates the identity of a label set with the
// retry loop of Cilium's allocator (pkg/allocator Allocator.Allocate:
// maxAllocAttempts = 16 attempts, an exponential backoff from 20 ms that
// doubles; the scenario's AllocationAttempts and AllocationBackoff, which
// default to those). Each attempt goes to the mode's backend: a
// CiliumIdentity created without any lock (createCIDOnce), or a master key
// created under the kvstore lock of the label set (kvClient.allocateOnce).
// An attempt that loses a race (the ID it picked was taken: a 409 Conflict
// or a failed create-if-absent transaction) or fails is retried; an
// attempt that finds the label set's identity meanwhile returns it.
//
// With agent.allocationJitter (Cilium 1.19, PR #42282: pkg/allocator
// Allocator.Allocate with the CRD backend's jittered backoff template) the
// CRD allocator also waits before a label set's first attempt, and every
// wait is jittered (retryAllocation). The kvstore allocator does not: its
// lock already keeps nodes from allocating a label set at once.
func (a *Agent) allocateIdentity(ctx context.Context, l identity.Labels, key string) (identity.ID, error) {
	attempt := a.createCIDOnce
	jitter := a.allocationJitter()
	if a.kv != nil {
		attempt = a.kv.allocateOnce
		jitter = false
	}
	return a.retryAllocation(ctx, key, jitter, func(ctx context.Context) (identity.ID, error) {
		return attempt(ctx, l, key)
	})
}

// allocationJitter tells whether the CRD allocator jitters (Cilium 1.19).
func (a *Agent) allocationJitter() bool {
	j := a.cfg.Knobs.AllocationJitter
	return j != nil && *j
}

// retryAllocation runs attempt until it succeeds, fails permanently or
// AllocationAttempts attempts failed, waiting AllocationBackoff before the
// second and twice as long before each further one. With jitter it also
// waits before the first attempt, and the wait before attempt n (from 0)
// is random in [AllocationBackoff, AllocationBackoff * 2^(n+1)], as
// Cilium's pkg/backoff Exponential.Wait with Jitter (CalculateDuration)
// draws it.
func (a *Agent) retryAllocation(ctx context.Context, key string, jitter bool, attempt func(context.Context) (identity.ID, error)) (identity.ID, error) {
	attempts := a.cfg.Knobs.AllocationAttempts
	base := a.cfg.Knobs.AllocationBackoff.Duration
	delay := base
	var lastErr error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			a.ids.retries.Add(1)
			a.m.allocRetries.Inc()
		}
		var wait time.Duration
		switch {
		case jitter:
			wait = jitteredBackoff(base, i+1)
		case i > 0:
			wait = delay
			delay *= 2
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(wait):
			}
		}
		id, err := attempt(ctx)
		if err == nil {
			return id, nil
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			return 0, perm.err
		}
		lastErr = err
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	a.m.allocFail.Inc()
	return 0, fmt.Errorf("%w after %d attempts for %s: %w", errAllocation, attempts, key, lastErr)
}

// createCIDOnce is one attempt of the CRD allocator, which takes no lock:
// pick a random free ID, create the CiliumIdentity named by it. The cache
// is checked first, so an identity another agent created meanwhile is
// used instead; one created by another agent that this agent has not seen
// yet is not, which is how duplicates arise.
func (a *Agent) createCIDOnce(ctx context.Context, l identity.Labels, key string) (identity.ID, error) {
	id, found, err := a.cachedOrFreeID(key)
	if found || err != nil {
		return id, err
	}
	body, err := json.Marshal(identity.NewCiliumIdentity(id, l))
	if err != nil {
		return 0, &permanentError{fmt.Errorf("encode identity %d: %w", id, err)}
	}
	if _, err := a.kc.do(ctx, http.MethodPost, pathCIDs, "application/json", body, nil); err != nil {
		if httpCode(err) != http.StatusConflict {
			a.log.Debug("create identity failed", "id", id, "err", err)
		}
		return 0, err
	}
	a.identityCreated(id, l, key)
	return id, nil
}

// cachedOrFreeID returns the label set's lowest cached identity (found),
// or else a random free ID to create.
func (a *Agent) cachedOrFreeID(key string) (id identity.ID, found bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ids := a.ids.idsOf(key); len(ids) > 0 {
		return ids[0], true, nil
	}
	id, ok := a.ids.randomFreeID()
	if !ok {
		return 0, false, errNoFreeID
	}
	return id, false, nil
}

// identityCreated caches an identity this agent created and counts it.
func (a *Agent) identityCreated(id identity.ID, l identity.Labels, key string) {
	a.ids.made.Add(1)
	a.m.created.Inc()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids.created[id] = true
	a.upsertIdentity(id, l, key)
	// The watch may have delivered the new identity first.
	a.ids.countDuplicates(a.ids.idsOf(key))
}

// randomFreeID picks a random ID of the cluster-local range that the cache
// does not hold, as idpool.LeaseAvailableID does.
func (c *identityCache) randomFreeID() (identity.ID, bool) {
	span := int(identity.MaxID - identity.MinID + 1)
	for i := 0; i < 64; i++ {
		id := identity.MinID + identity.ID(rand.IntN(span))
		if _, ok := c.byID[id]; !ok {
			return id, true
		}
	}
	for id := identity.MinID; id <= identity.MaxID; id++ {
		if _, ok := c.byID[id]; !ok {
			return id, true
		}
	}
	return 0, false
}

// jitteredBackoff is a random duration in [base, base * 2^n] (n capped so
// that the bound stays finite).
func jitteredBackoff(base time.Duration, n int) time.Duration {
	if base <= 0 {
		return 0
	}
	hi := base
	for i := 0; i < n && hi < time.Hour; i++ {
		hi *= 2
	}
	if hi <= base {
		return base
	}
	return base + rand.N(hi-base+1)
}
