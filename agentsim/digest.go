package agentsim

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// StatusDigestShare is the share of one core that the status digests of a
// process's agents may take together. Digests exist for the harness, not
// for Cilium: an agent sums its ipcache and endpoint policies into them
// when it reports, and in an identity storm every report finds them
// changed. At relabel-1k's 16,000 identities one policy digest took
// milliseconds, and the harness's polls made digests 37 % of a 250-agent
// shard's CPU during the relabel.
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
