package datapath

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
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

func (m *memDatapath) ReplacePolicy(ep netip.Addr, allowed []PolicyKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	p, err := m.st.planReplace(ep, allowed)
	if err != nil {
		return err
	}
	start := time.Now()
	n := len(p.del) + len(p.add)
	if p.create {
		m.st.commitCreate(p)
		n++
	}
	m.st.commitPolicy(p, len(p.del), len(p.add))
	m.st.timed(start, n)
	return nil
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
	cur := m.st.endpoints[ep]
	if cur == nil {
		return nil
	}
	start := time.Now()
	n := 1 + len(cur.allowed)
	m.st.commitEndpointDelete(ep)
	m.st.timed(start, n)
	return nil
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

// Estimated Go heap bytes per element of the maps (key, value, the map's
// slot and growth overhead), used for mem's MapBytes; calibrated with the
// go-heap-bytes figure of BenchmarkAgentMaps (20,000 entries, 100
// endpoints x 500 keys).
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
		Updates:        st.updates,
		UpdateTime:     st.updateTime,
		MapBytes:       uint64(d.IPCacheEntries*memIPCacheEntryBytes + d.PolicyEntries*memPolicyEntryBytes + d.Endpoints*memEndpointBytes),
		IPCacheEntries: d.IPCacheEntries,
		Endpoints:      d.Endpoints,
		PolicyEntries:  d.PolicyEntries,
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
