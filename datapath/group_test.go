package datapath

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// TestPolicyGroups pins what sharing does: endpoints with one allowed set
// share its keys, a change common to all of them is written once (while
// Updates counts what per-endpoint maps would write), an endpoint that
// leaves gets its own set, and an endpoint policy above the per-endpoint
// limit is refused and leaves the old policy enforced.
func TestPolicyGroups(t *testing.T) {
	eps := []netip.Addr{netip.MustParseAddr("10.0.2.1"), netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("10.0.2.3")}
	keys := func(ids ...identity.ID) []policykey.Key {
		var ks []policykey.Key
		for _, id := range ids {
			ks = append(ks, policykey.Key{Identity: id, Port: 8080, Proto: policykey.ProtoTCP})
		}
		return ks
	}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			d := open(t, kind, Config{MaxEndpointPolicy: 4})
			must(t, d.UpsertIPCache([]IPCacheEntry{{host(clientIP), 10}, {host(otherIP), 11}}))
			step := func(name string, do func() error, wantUpdates, wantWrites uint64, wantSets, wantMapKeys int) {
				t.Helper()
				before := d.Stats()
				must(t, do())
				after := d.Stats()
				if u, w := after.Updates-before.Updates, after.MapWrites-before.MapWrites; u != wantUpdates || w != wantWrites {
					t.Errorf("%s: updates %d, map writes %d; want %d, %d", name, u, w, wantUpdates, wantWrites)
				}
				if after.PolicySets != wantSets || after.PolicyMapKeys != wantMapKeys {
					t.Errorf("%s: %d sets, %d map keys; want %d, %d", name, after.PolicySets, after.PolicyMapKeys, wantSets, wantMapKeys)
				}
				if bd, ok := d.(*bpfDatapath); ok {
					kd, err := bd.KernelDigest()
					if err != nil || kd != d.Digest() {
						t.Errorf("%s: kernel digest %s (%v), shadow %s", name, kd, err, d.Digest())
					}
				}
			}
			verdict := func(src, dst netip.Addr, want Verdict) {
				t.Helper()
				v, err := d.Check(Packet{src, dst, 8080, policykey.ProtoTCP})
				if err != nil || v != want {
					t.Errorf("%s -> %s: %v (%v), want %v", src, dst, v, err, want)
				}
			}
			// Three new endpoints: per-endpoint maps write 3 x (1 + 2);
			// here 2 keys and 3 endpoints.
			step("create", func() error { return d.ReplacePolicyGroup(eps, keys(10, 20)) }, 9, 5, 1, 2)
			verdict(clientIP, eps[2], VerdictAllow)
			verdict(otherIP, eps[2], VerdictDrop)
			// All three gain identity 11 and lose 20: in place.
			step("in place", func() error { return d.ReplacePolicyGroup(eps, keys(10, 11)) }, 6, 2, 1, 2)
			verdict(otherIP, eps[0], VerdictAllow)
			// One endpoint alone changes: it gets a new set.
			step("leave", func() error { return d.ReplacePolicy(eps[0], keys(10)) }, 1, 2, 2, 3)
			verdict(otherIP, eps[0], VerdictDrop)
			verdict(otherIP, eps[1], VerdictAllow)
			// It joins the others again: the set with exactly these keys
			// is reused and its own set goes.
			step("rejoin", func() error { return d.ReplacePolicy(eps[0], keys(11, 10)) }, 1, 2, 1, 2)
			// Over the per-endpoint limit: refused, nothing changes.
			dg := d.Digest()
			if err := d.ReplacePolicyGroup(eps, keys(1, 2, 3, 4, 5)); !errors.Is(err, ErrPolicyOverflow) {
				t.Errorf("5 keys with MaxEndpointPolicy 4: got %v, want ErrPolicyOverflow", err)
			}
			if d.Digest() != dg {
				t.Errorf("an overflowing policy changed the state")
			}
			verdict(otherIP, eps[1], VerdictAllow)
			// Deleting the endpoints removes the set with the last one.
			step("delete", func() error { return d.DeleteEndpoint(eps[0]) }, 3, 1, 1, 2)
			step("delete", func() error { return d.DeleteEndpoint(eps[1]) }, 3, 1, 1, 2)
			step("delete last", func() error { return d.DeleteEndpoint(eps[2]) }, 3, 3, 0, 0)
			if s := d.Stats(); s.Endpoints != 0 || s.PolicyEntries != 0 {
				t.Errorf("after deleting every endpoint: %+v", s)
			}
		})
	}
}
