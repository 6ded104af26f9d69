package scenarios

import "time"

// identityMaxJitterSince and allocationJitterSince are the first releases
// with --identity-max-jitter (PR #38031) and the CRD allocator's jitter
// (PR #42282).
const (
	identityMaxJitterSince = "1.18"
	allocationJitterSince  = "1.19"
)

// validateIdentityKnobs checks the knobs of the identity path: the relabel
// jitter, the allocator's jitter and kvstore lock, the policy trigger and
// the endpoint workers. A knob the chosen release does not have is an
// error naming the release.
func (s *Scenario) validateIdentityKnobs(l *errs) {
	a := s.Agent
	r := s.Release()
	positive(l, "agent.kvstorePeriodicSync", a.KVStorePeriodicSync)
	if q := a.KVStoreQPS; q < 1 || q > 100000 {
		l.add("agent.kvstoreQPS", "must be in [1, 100000] etcd operations a second, got %d", q)
	}
	if j := a.IdentityMaxJitter; j != nil {
		switch {
		case j.Duration < 0:
			l.add("agent.identityMaxJitter", "must be >= 0, got %s", *j)
		case j.Duration > time.Hour:
			l.add("agent.identityMaxJitter", "must be <= 1h, got %s", *j)
		case j.Duration > 0 && r != nil && !r.AtLeast(identityMaxJitterSince):
			l.add("agent.identityMaxJitter", "Cilium %s has no --identity-max-jitter (it came with %s); set 0 or cilium.version >= %s", r.Version, identityMaxJitterSince, identityMaxJitterSince)
		}
	}
	if j := a.AllocationJitter; j != nil && *j && r != nil && !r.AtLeast(allocationJitterSince) {
		l.add("agent.allocationJitter", "Cilium %s's allocator has no jitter (it came with %s); set false or cilium.version >= %s", r.Version, allocationJitterSince, allocationJitterSince)
	}
	if d := a.KVStoreLockLeaseTTL.Duration; d < time.Second || d%time.Second != 0 {
		l.add("agent.kvstoreLockLeaseTTL", "must be a whole number of seconds >= 1s (an etcd lease's TTL), got %s", a.KVStoreLockLeaseTTL)
	}
	if d := a.PolicyTriggerInterval.Duration; d < time.Millisecond || d > time.Minute {
		l.add("agent.policyTriggerInterval", "must be in [1ms, 1m], got %s", a.PolicyTriggerInterval)
	}
	if w := a.EndpointWorkers; w < 1 || w > 1024 {
		l.add("agent.endpointWorkers", "must be in [1, 1024], got %d", w)
	}
}
