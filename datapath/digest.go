package datapath

import (
	"fmt"
	"net/netip"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// Digest summarises a datapath's state: the sizes and an
// order-independent hash of the ipcache and of the endpoints with their
// policies. Two states are equal exactly when (with overwhelming
// probability) their digests are equal, whatever the order of the updates
// that built them and whatever the implementation. Digest is comparable
// with ==.
type Digest struct {
	IPCacheEntries int
	Endpoints      int
	PolicyEntries  int
	// IPCache and Policy are sums (mod 2^64) of a 64-bit hash of every
	// ipcache entry, and of every endpoint and (endpoint, policy key)
	// (for the latter, an odd factor of the endpoint times a hash of the
	// key).
	IPCache uint64
	Policy  uint64
}

func (d Digest) String() string {
	return fmt.Sprintf("ipcache=%d/%016x endpoints=%d policy=%d/%016x",
		d.IPCacheEntries, d.IPCache, d.Endpoints, d.PolicyEntries, d.Policy)
}

// ComputeDigest returns the digest a datapath reaches after
// UpsertIPCache(ipcache) and ReplacePolicy(ep, keys) for every entry of
// policies, from empty. The harness uses it to turn ground truth into the
// digest an agent must report once it has converged.
func ComputeDigest(ipcache []IPCacheEntry, policies map[netip.Addr][]policykey.Key) (Digest, error) {
	st := newState(limits{})
	plan, err := st.planUpsert(ipcache)
	if err != nil {
		return Digest{}, err
	}
	for _, e := range plan {
		st.commitUpsert(e)
	}
	d := st.digest
	for ep, keys := range policies {
		if err := checkEndpoint(ep); err != nil {
			return Digest{}, err
		}
		keys = policykey.Sorted(keys)
		d.Endpoints++
		d.PolicyEntries += len(keys)
		d.Policy += endpointHash(ep) + epMul(ep)*keysSum(keys)
	}
	return d, nil
}

// The element hashes: a tag separates the kinds of element.
const (
	tagIPCache  = 1 << 56
	tagEndpoint = 2 << 56
	tagPolicy   = 3 << 56
)

func splitmix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func mix(a, b uint64) uint64 { return splitmix64(a ^ splitmix64(b)) }

func addr32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func ipcacheHash(p netip.Prefix, id identity.ID) uint64 {
	return mix(uint64(addr32(p.Addr()))<<8|uint64(p.Bits()), tagIPCache|uint64(id))
}

func endpointHash(ep netip.Addr) uint64 {
	return mix(uint64(addr32(ep)), tagEndpoint)
}

// An endpoint's policy adds epMul(ep) x the sum of keyHash over its keys:
// the product of an odd per-endpoint factor and a per-key hash, so that
// endpoints sharing a policy set move by one multiplication when the set
// changes, and the sum still tells different states apart.
func keyHash(k policykey.Key) uint64 {
	return mix(uint64(k.Identity), tagPolicy|uint64(k.Port)<<8|uint64(k.Proto))
}

func epMul(ep netip.Addr) uint64 {
	return mix(uint64(addr32(ep)), tagPolicy) | 1
}
