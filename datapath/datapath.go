package datapath

import (
	"net/netip"
	"time"
)

// Identity is a numeric security identity.
type Identity uint32

// Protocol numbers used in policy keys.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// IPCacheEntry maps a prefix (a pod's /32) to its identity.
type IPCacheEntry struct {
	Prefix   netip.Prefix
	Identity Identity
}

// PolicyKey is one allowed (remote identity, destination port, protocol)
// of a local endpoint's ingress policy. Everything not listed is dropped.
type PolicyKey struct {
	Identity Identity
	Port     uint16
	Proto    uint8
}

// Stats is what a datapath counts.
type Stats struct {
	// Updates counts map element writes and deletes.
	Updates uint64
	// UpdateTime is the time spent in map updates.
	UpdateTime time.Duration
	// MapBytes is the memory of the maps (the kernel's own figure for bpf).
	MapBytes uint64
	// IPCacheEntries and Endpoints are the current sizes.
	IPCacheEntries int
	Endpoints      int
}

// Datapath is one agent's datapath state. Implementations are safe for
// use by one goroutine at a time; the agent serialises its calls.
type Datapath interface {
	// UpsertIPCache inserts or replaces entries (batched where possible).
	UpsertIPCache(entries []IPCacheEntry) error
	// DeleteIPCache removes prefixes; absent ones are ignored.
	DeleteIPCache(prefixes []netip.Prefix) error
	// ReplacePolicy sets the full allowed set of the local endpoint with
	// the given IP, creating the endpoint if needed.
	ReplacePolicy(endpoint netip.Addr, allowed []PolicyKey) error
	// DeleteEndpoint removes a local endpoint and its policy.
	DeleteEndpoint(endpoint netip.Addr) error
	// Stats returns the counters.
	Stats() Stats
	// Close releases every resource (maps, programs, file descriptors).
	Close() error
}
