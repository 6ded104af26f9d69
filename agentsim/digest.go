package agentsim

import (
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/policykey"
	"github.com/stampede-sim/stampede/internal/truth"
)

// StatusDigestShare is the share of one core that the status digests of a
// process's agents may take together. Digests exist for the harness, not
// for Cilium: an agent sums its ipcache and endpoint policies into them
// when it reports, and in an identity storm every report finds them
// changed. A policy digest grows with the identities an endpoint's policy
// allows, so at scale the harness's polls alone would make the digests a
// large part of a shard's CPU, taken from the agents' own work, which is
// what is measured; a fixed share keeps the measurement from measuring
// itself.
const StatusDigestShare = 0.1

// digestBudget spaces the digest recomputations of the agents of one
// process so that together they take at most share of one core: an agent
// whose state changed recomputes its digests when the last recomputation
// is older than the sum of every agent's last digest cost divided by
// share, so each agent gets its turn however the reports are ordered.
// While an agent waits its report carries its previous digests; its
// LastChange is current, so a convergence time measured from it is not
// delayed, only seen later.
type digestBudget struct {
	share float64
	// total is the sum over agents of their last recomputation's cost
	// (nanoseconds).
	total atomic.Int64
}

func newDigestBudget(share float64) *digestBudget { return &digestBudget{share: share} }

// maxDigestInterval bounds an agent's wait, whatever the budget says.
const maxDigestInterval = 30 * time.Second

// interval is how long an agent waits between two recomputations.
func (b *digestBudget) interval() time.Duration {
	if b == nil || b.share <= 0 {
		return 0
	}
	return min(time.Duration(float64(b.total.Load())/b.share), maxDigestInterval)
}

// record replaces an agent's last cost (old) with its new one.
func (b *digestBudget) record(old, cost time.Duration) {
	if b != nil {
		b.total.Add(int64(cost - old))
	}
}

// threadCPU is the CPU time of the calling thread (0 if the clock cannot
// be read, which leaves digests unbudgeted).
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// digests are the agent's policy digest and the bookkeeping of its digest
// recomputations (the ipcache digest is kept by the ipcache). Guarded by
// Agent.mu.
type digests struct {
	// policy sums the effective policy of every local endpoint;
	// policyStale says it must be summed again.
	policy      truth.Digest
	policyStale bool
	// at is when the digests were last recomputed and cost what that took
	// (see digestBudget).
	at   time.Time
	cost time.Duration
	// gen numbers policyEntries' conversions (labelSet.gen).
	gen uint64
}

// refreshDigests recomputes the stale digests if the agent's digest
// budget allows it now (caller holds mu). A never computed digests.at is
// the zero time, always long enough ago.
func (a *Agent) refreshDigests() {
	now := a.now()
	if now.Sub(a.dig.at) < a.cfg.DigestBudget.interval() {
		return
	}
	// The cost is the CPU time of this thread, not the wall time: on a
	// loaded machine the wall time of a digest is mostly other
	// goroutines' turns, and counting those would space the digests of a
	// shard's agents far beyond their real cost.
	runtime.LockOSThread()
	start := threadCPU()
	if a.ipc.stale {
		a.ipc.recomputeDigest()
		a.dig.policyStale = true
	}
	if a.dig.policyStale {
		a.dig.recomputePolicy(a.eps.pods, a.ids, a.ipc)
	}
	cost := threadCPU() - start
	runtime.UnlockOSThread()
	a.cfg.DigestBudget.record(a.dig.cost, cost)
	a.m.digestSeconds.Add(cost.Seconds())
	a.dig.at, a.dig.cost = now, cost
}

// recomputePolicy sums the effective policy of every local endpoint.
func (d *digests) recomputePolicy(pods map[string]*localPod, ids *identityCache, ipc *ipcache) {
	d.policy = truth.Digest{}
	// Endpoints selected by the same rules share one allowed slice (see
	// policy.Cache.Resolve): convert it once.
	entries := map[sliceID][]truth.PolicyEntry{}
	for _, p := range pods {
		if p.allowed == nil {
			continue
		}
		var sid sliceID
		if len(p.allowed) > 0 {
			sid = sliceID{&p.allowed[0], len(p.allowed)}
		}
		es, ok := entries[sid]
		if !ok || sid.first == nil {
			es = d.policyEntries(p.allowed, ids, ipc)
			entries[sid] = es
		}
		d.policy.Merge(truth.UniqueEndpointPolicy(p.ip, es))
	}
	d.policyStale = false
}

// policyEntries converts an endpoint's allowed keys into its digest
// entries, each once: a key counts as its identity's label set, if some
// ipcache entry carries that label set, and duplicate identities of one
// label set give one entry per port. Keys of identities the agent does
// not know are left out; AllowAll is truth.AllowAllEntry. In an identity
// storm an allowed set has one key per duplicate identity but only one
// entry per label set and port, and the digest is summed again for every
// report that finds the policy changed: the label set's note (labelSet)
// finds a repeat without a map lookup.
func (d *digests) policyEntries(keys []policykey.Key, ids *identityCache, ipc *ipcache) []truth.PolicyEntry {
	d.gen++
	gen := d.gen
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
		e := ids.get(k.Identity)
		if e == nil {
			continue
		}
		s := e.set
		if s.gen != gen {
			s.gen, s.used, s.ports = gen, ipc.isUsed(e.lh), s.ports[:0]
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
