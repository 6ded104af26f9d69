package truth

import (
	"fmt"
	"hash/fnv"
	"net/netip"

	"github.com/stampede-sim/stampede/internal/identity"
)

// LabelsHash identifies a label set in digests: FNV-64a of its kvstore key.
type LabelsHash uint64

// HashLabels hashes a label set. Agents cache the result per identity.
func HashLabels(l identity.Labels) LabelsHash {
	return HashLabelKey(l.Key())
}

// HashLabelKey hashes a label set given in its kvstore key form.
func HashLabelKey(key string) LabelsHash {
	h := fnv.New64a()
	h.Write([]byte(key))
	v := h.Sum64()
	if v == 0 {
		v = 1 // 0 is reserved for "no labels" (AllowAll)
	}
	return LabelsHash(v)
}

// mix is splitmix64's finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func addrBits(a netip.Addr) uint64 {
	if a.Is4() {
		b := a.As4()
		return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	}
	b := a.As16()
	var v uint64
	for i, x := range b {
		v ^= uint64(x) << (8 * (i % 8))
		if i == 7 {
			v = mix(v)
		}
	}
	return mix(v)
}

// Digest is an order-independent multiset digest.
type Digest struct {
	Sum   uint64
	Count int
}

// Add adds an element hash.
func (d *Digest) Add(h uint64) { d.Sum += h; d.Count++ }

// Remove removes an element hash added before.
func (d *Digest) Remove(h uint64) { d.Sum -= h; d.Count-- }

// String is the digest's reported form.
func (d Digest) String() string { return fmt.Sprintf("%016x/%d", d.Sum, d.Count) }

// IPCacheEntry is the element hash of one ipcache entry.
func IPCacheEntry(ip netip.Addr, labels LabelsHash) uint64 {
	return mix(addrBits(ip)*0x9e3779b97f4a7c15 ^ mix(uint64(labels)))
}

// PolicyEntry is one allowed (remote labels, port, protocol) of an endpoint.
// Labels 0 with port 0 and protocol 0 is AllowAll.
type PolicyEntry struct {
	Labels LabelsHash
	Port   uint16
	Proto  uint8
}

// AllowAllEntry is the entry of an endpoint that no rule selects.
var AllowAllEntry = PolicyEntry{}

// PolicyElement is the element hash of one entry of one endpoint.
func PolicyElement(endpoint netip.Addr, e PolicyEntry) uint64 {
	return mix(mix(addrBits(endpoint)+0x632be59bd9b4e019) ^ mix(uint64(e.Labels)) ^ (uint64(e.Port)<<8|uint64(e.Proto))*0xd6e8feb86659fd93)
}

// EndpointPolicy is the digest of one endpoint's allowed set; entries may
// repeat (duplicate identities) and are counted once.
func EndpointPolicy(endpoint netip.Addr, entries []PolicyEntry) Digest {
	var d Digest
	seen := make(map[PolicyEntry]struct{}, len(entries))
	for _, e := range entries {
		if _, ok := seen[e]; ok {
			continue
		}
		seen[e] = struct{}{}
		d.Add(PolicyElement(endpoint, e))
	}
	return d
}

// UniqueEndpointPolicy is EndpointPolicy of entries that are known not to
// repeat, without checking them again.
func UniqueEndpointPolicy(endpoint netip.Addr, entries []PolicyEntry) Digest {
	var d Digest
	for _, e := range entries {
		d.Add(PolicyElement(endpoint, e))
	}
	return d
}

// Merge adds another digest's elements.
func (d *Digest) Merge(o Digest) { d.Sum += o.Sum; d.Count += o.Count }
