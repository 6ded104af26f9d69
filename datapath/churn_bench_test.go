package datapath

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// BenchmarkPolicyChurn measures the agent's hot path during an identity
// storm: 100 local endpoints with the same allowed set of 16,000 keys (a
// crd-mode relabel with duplicate identities), and every iteration a
// policy recomputation that adds 50 new identities and drops 50 old ones
// on every endpoint. "each" replaces every endpoint's policy in its own
// call (the agent before endpoints were grouped); "group" replaces them in
// one ReplacePolicyGroup call. Reported: map-writes/op (kernel or Go map
// element writes) and updates/op (what Cilium's per-endpoint maps would
// write).
func BenchmarkPolicyChurn(b *testing.B) {
	const endpoints, keys, churn = 100, 16000, 50
	eps := make([]netip.Addr, endpoints)
	for i := range eps {
		eps[i] = netip.AddrFrom4([4]byte{10, 200, byte(i >> 8), byte(i)})
	}
	// set(i) is identities i .. i+keys-1 on one port: iteration n drops
	// the churn oldest and adds churn new ones.
	set := func(first int) []policykey.Key {
		ks := make([]policykey.Key, keys)
		for j := range ks {
			ks[j] = policykey.Key{Identity: identity.ID(1000 + first + j), Port: 8080, Proto: policykey.ProtoTCP}
		}
		return ks
	}
	for _, kind := range kinds {
		for _, mode := range []string{"each", "group"} {
			b.Run(fmt.Sprintf("%s/%s", kind, mode), func(b *testing.B) {
				if kind == KindBPF {
					requireBPF(b)
				}
				d := open(b, kind, SizeFor(kind, 20000, endpoints, 16384))
				replace := func(ks []policykey.Key) {
					if mode == "group" {
						must(b, d.ReplacePolicyGroup(eps, ks))
						return
					}
					for _, ep := range eps {
						must(b, d.ReplacePolicy(ep, ks))
					}
				}
				replace(set(0))
				sets := make([][]policykey.Key, b.N)
				for i := range sets {
					sets[i] = set((i + 1) * churn)
				}
				before := d.Stats()
				b.ResetTimer()
				for i := range b.N {
					replace(sets[i])
				}
				b.StopTimer()
				after := d.Stats()
				b.ReportMetric(float64(after.MapWrites-before.MapWrites)/float64(b.N), "map-writes/op")
				b.ReportMetric(float64(after.Updates-before.Updates)/float64(b.N), "updates/op")
			})
		}
	}
}
