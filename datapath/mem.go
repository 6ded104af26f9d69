package datapath

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/stampede-sim/stampede/internal/policykey"
)

// memDatapath is the unprivileged datapath: plain Go maps with the BPF
// program's semantics and the same update counting.
type memDatapath struct {
	mu     sync.Mutex
	st     *state
	closed bool
}

func newMem(cfg Config) *memDatapath {
	return &memDatapath{st: newState(cfg.limits())}
}

func (m *memDatapath) UpsertIPCache(entries []IPCacheEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	plan, err := m.st.planUpsert(entries)
	if err != nil {
		return err
	}
	start := time.Now()
	for _, e := range plan {
		m.st.commitUpsert(e)
	}
	m.st.timed(start, len(plan))
	return nil
}

func (m *memDatapath) DeleteIPCache(prefixes []netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	plan, err := m.st.planDelete(prefixes)
	if err != nil {
		return err
	}
	start := time.Now()
	for _, p := range plan {
		m.st.commitDelete(p)
	}
	m.st.timed(start, len(plan))
	return nil
}

func (m *memDatapath) ReplacePolicy(ep netip.Addr, allowed []policykey.Key) error {
	return m.ReplacePolicyGroup([]netip.Addr{ep}, allowed)
}

func (m *memDatapath) ReplacePolicyGroup(eps []netip.Addr, allowed []policykey.Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	p, err := m.st.planGroup(eps, allowed)
	if err != nil {
		return err
	}
	return m.st.applyGroup(noOps{}, p)
}

func (m *memDatapath) DeleteEndpoint(ep netip.Addr) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if err := checkEndpoint(ep); err != nil {
		return fmt.Errorf("delete endpoint: %w", err)
	}
	return m.st.deleteEndpoint(noOps{}, ep)
}

func (m *memDatapath) Digest() Digest {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.digest
}

func (m *memDatapath) Check(p Packet) (Verdict, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	v, err := m.st.verdict(p)
	if err != nil {
		return 0, err
	}
	switch v {
	case VerdictAllow:
		m.st.allowed++
	case VerdictDrop:
		m.st.dropped++
	case VerdictNotLocal:
		m.st.notLocal++
	}
	return v, nil
}

// Estimated Go heap bytes per element (key, value, the map's slot and
// growth overhead; a policy key is one element of a shared sorted slice),
// used for mem's MapBytes; calibrated with the go-heap-bytes figure of
// BenchmarkAgentMaps (20,000 entries, 100 endpoints x 500 keys).
const (
	memIPCacheEntryBytes = 32
	memPolicyEntryBytes  = 26
	memEndpointBytes     = 200
)

func (m *memDatapath) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	d := st.digest
	return Stats{
		Kind:           KindMem,
		Updates:        st.updates,
		UpdateTime:     st.updateTime,
		MapWrites:      st.writes,
		MapBytes:       uint64(d.IPCacheEntries*memIPCacheEntryBytes + st.setKeys*memPolicyEntryBytes + d.Endpoints*memEndpointBytes),
		IPCacheEntries: d.IPCacheEntries,
		Endpoints:      d.Endpoints,
		PolicyEntries:  d.PolicyEntries,
		PolicySets:     len(st.sets),
		PolicyMapKeys:  st.setKeys,
		Allowed:        st.allowed,
		Dropped:        st.dropped,
		NotLocal:       st.notLocal,
	}
}

func (m *memDatapath) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
