package agentsim

import (
	"fmt"
	"testing"
)

// BenchmarkPolicyDigest is what one agent's status report costs while its
// policy changes, as in an identity storm: the harness polls every agent's
// digest twice a second, and a changed policy is summed again. Reports
// ns/digest for the given number of identities.
func BenchmarkPolicyDigest(b *testing.B) {
	for _, ids := range []int{2000, 16000} {
		b.Run(fmt.Sprintf("identities=%d", ids), func(b *testing.B) {
			a := relabelAgent(b, ids)
			a.regenerate()
			a.mu.Lock()
			defer a.mu.Unlock()
			b.ReportAllocs()
			for b.Loop() {
				a.dig.policyStale = true
				a.statusLocked()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/digest")
		})
	}
}
