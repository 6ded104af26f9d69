package datapath

import (
	"fmt"
	"net/netip"
	"time"
)

// memDatapath is the unprivileged datapath: plain Go maps with the BPF
// program's semantics and the same update counting.
type memDatapath struct {
	st     *state
	closed bool
}

func newMem(cfg Config) *memDatapath {
	return &memDatapath{st: newState(cfg.limits())}
}

func (m *memDatapath) UpsertIPCache(entries []IPCacheEntry) error {
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

func (m *memDatapath) Digest() Digest { return m.st.digest }

func (m *memDatapath) Check(p Packet) (Verdict, error) {
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

// Estimated bytes per element of the Go maps (key, value and the map's
// own slot overhead), used for mem's MapBytes.
const (
	memIPCacheEntryBytes = 48  // netip.Prefix key (32) + Identity + slot
	memPolicyEntryBytes  = 24  // PolicyKey key (8) + slot
	memEndpointBytes     = 112 // netip.Addr key, *endpointState, struct, empty map header
)

func (m *memDatapath) Stats() Stats {
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
	m.closed = true
	return nil
}
