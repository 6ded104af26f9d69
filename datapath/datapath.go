package datapath

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// IPCacheEntry maps a prefix (a pod's /32) to its identity. Only IPv4
// prefixes are supported; host bits beyond the prefix length are ignored.
type IPCacheEntry struct {
	Prefix   netip.Prefix
	Identity identity.ID
}

// Stats is what a datapath counts.
type Stats struct {
	// Kind is the implementation: bpf or mem.
	Kind Kind
	// Updates counts what Cilium's layout (one policy map per endpoint)
	// would write: one per ipcache entry written or deleted, one per
	// policy key an endpoint gains or loses, one per endpoint added or
	// removed. Both implementations count the same. Writes that would not
	// change anything are skipped and not counted.
	Updates uint64
	// MapWrites counts the element writes and deletes this layout really
	// does (endpoints with the same policy share one set of keys, so a
	// change common to 100 endpoints is written once). Both
	// implementations count the same.
	MapWrites uint64
	// UpdateTime is the time spent in map updates.
	UpdateTime time.Duration
	// MapBytes is the memory of the maps: for bpf the kernel's own figure
	// (the memlock of each map's fdinfo; it leaves out the LPM trie's
	// intermediate nodes and allocator rounding, so the kernel really
	// allocates more, about 1.5x at 20,000 pods: see BenchmarkFleetMaps),
	// for mem an estimate of the Go maps' size.
	MapBytes uint64
	// IPCacheEntries, Endpoints and PolicyEntries are the current sizes;
	// PolicyEntries counts every endpoint's keys, as per-endpoint maps
	// would hold them.
	IPCacheEntries int
	Endpoints      int
	PolicyEntries  int
	// PolicySets and PolicyMapKeys are the distinct allowed sets and the
	// keys the policy map really holds.
	PolicySets    int
	PolicyMapKeys int
	// Allowed, Dropped and NotLocal count verdicts (for bpf, every packet
	// the program saw, including Check's test packets).
	Allowed, Dropped, NotLocal uint64
}

// Packet describes a packet for Check: an IPv4 packet from Src to Dst
// with the given destination port and protocol.
type Packet struct {
	Src, Dst netip.Addr
	DstPort  uint16
	Proto    uint8
}

func (p Packet) String() string {
	return fmt.Sprintf("%s -> %s:%d/%d", p.Src, p.Dst, p.DstPort, p.Proto)
}

// Verdict is what the datapath does with a packet.
type Verdict uint8

// Verdicts.
const (
	// VerdictNotLocal: the destination is not a local endpoint, so this
	// datapath does not enforce anything on the packet.
	VerdictNotLocal Verdict = iota
	// VerdictAllow: the destination endpoint's policy allows the packet.
	VerdictAllow
	// VerdictDrop: the destination endpoint's policy does not allow it.
	VerdictDrop
)

func (v Verdict) String() string {
	switch v {
	case VerdictNotLocal:
		return "not-local"
	case VerdictAllow:
		return "allow"
	case VerdictDrop:
		return "drop"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Datapath is one agent's datapath state. Implementations are safe for
// concurrent use (a mutex serialises the calls), so a metrics sampler may
// call Stats and Digest while the agent updates.
type Datapath interface {
	// UpsertIPCache inserts or replaces entries (batched where possible).
	// If a prefix appears twice, the last entry wins.
	UpsertIPCache(entries []IPCacheEntry) error
	// DeleteIPCache removes prefixes; absent ones are ignored.
	DeleteIPCache(prefixes []netip.Prefix) error
	// ReplacePolicy sets the full allowed set of the local endpoint with
	// the given IP, creating the endpoint if needed. An empty set drops
	// every packet to the endpoint. A sorted set (policykey.Sorted)
	// without repeats is kept as given, not copied: the caller must not
	// modify it afterwards. A set larger than Config.MaxEndpointPolicy is
	// refused with ErrPolicyOverflow and the endpoint keeps its policy.
	ReplacePolicy(endpoint netip.Addr, allowed []policykey.Key) error
	// ReplacePolicyGroup is ReplacePolicy for several endpoints with the
	// same allowed set, in one call: the set is written once, and when the
	// group is every endpoint of the set the endpoints had, that set is
	// updated in place by its difference.
	ReplacePolicyGroup(endpoints []netip.Addr, allowed []policykey.Key) error
	// DeleteEndpoint removes a local endpoint and its policy; an absent
	// endpoint is ignored.
	DeleteEndpoint(endpoint netip.Addr) error
	// Digest summarises the current state; equal states have equal
	// digests in every implementation (see ComputeDigest).
	Digest() Digest
	// Check returns the verdict for a packet: bpf runs the real program
	// on a crafted packet (BPF_PROG_TEST_RUN), mem does the same lookups
	// in Go.
	Check(p Packet) (Verdict, error)
	// Stats returns the counters.
	Stats() Stats
	// Close releases every resource (maps, programs, file descriptors).
	Close() error
}
