package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrFull is returned (wrapped) when an update would exceed a map's
// configured size. Nothing of the failing call has been written.
var ErrFull = errors.New("datapath map full")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("datapath closed")

// limits bound the maps; 0 means unbounded.
type limits struct {
	ipcache, endpoints, policy int
}

// prefixKey packs a masked IPv4 prefix (address << 8 | bits) into a
// compact map key: a netip.Prefix key costs about three times as much in
// every agent's shadow ipcache.
type prefixKey uint64

func keyOf(p netip.Prefix) prefixKey {
	return prefixKey(uint64(addr32(p.Addr()))<<8 | uint64(p.Bits()))
}

func (k prefixKey) prefix() netip.Prefix {
	a := uint32(k >> 8)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), int(k&0xff))
}

type endpointState struct {
	id      uint32
	allowed map[PolicyKey]struct{}
}

// state is the Go-side view of one agent's datapath. mem is exactly this;
// bpf keeps it as the shadow of its kernel maps (it must know the current
// allowed set of an endpoint to write only the difference, and it serves
// Digest without reading the kernel). Both count updates here, so their
// counts agree by construction.
type state struct {
	lim        limits
	ipcache    map[prefixKey]Identity
	prefixLens [33]int // ipcache entries per prefix length, for LPM in Go
	endpoints  map[netip.Addr]*endpointState
	freeIDs    []uint32
	nextID     uint32
	digest     Digest

	updates    uint64
	updateTime time.Duration
	allowed    uint64
	dropped    uint64
	notLocal   uint64
}

func newState(lim limits) *state {
	return &state{
		lim:       lim,
		ipcache:   make(map[prefixKey]Identity),
		endpoints: make(map[netip.Addr]*endpointState),
		nextID:    1,
	}
}

func (s *state) timed(start time.Time, n int) {
	s.updates += uint64(n)
	s.updateTime += time.Since(start)
}

func checkPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, fmt.Errorf("invalid prefix %q", p)
	}
	if !p.Addr().Is4() {
		return p, fmt.Errorf("prefix %s: only IPv4 is supported", p)
	}
	return p.Masked(), nil
}

func checkEndpoint(a netip.Addr) error {
	if !a.IsValid() {
		return fmt.Errorf("invalid endpoint address")
	}
	if !a.Is4() {
		return fmt.Errorf("endpoint %s: only IPv4 is supported", a)
	}
	return nil
}

// planUpsert validates entries and returns those that change the ipcache,
// last entry winning for a repeated prefix.
func (s *state) planUpsert(entries []IPCacheEntry) ([]IPCacheEntry, error) {
	index := make(map[netip.Prefix]int, len(entries))
	out := make([]IPCacheEntry, 0, len(entries))
	for i, e := range entries {
		p, err := checkPrefix(e.Prefix)
		if err != nil {
			return nil, fmt.Errorf("ipcache entries[%d]: %w", i, err)
		}
		if e.Identity == IdentityAny {
			return nil, fmt.Errorf("ipcache entries[%d] (%s): identity 0 is reserved", i, p)
		}
		e.Prefix = p
		if j, ok := index[p]; ok {
			out[j] = e
			continue
		}
		index[p] = len(out)
		out = append(out, e)
	}
	added := 0
	changed := out[:0]
	for _, e := range out {
		cur, ok := s.ipcache[keyOf(e.Prefix)]
		if ok && cur == e.Identity {
			continue
		}
		if !ok {
			added++
		}
		changed = append(changed, e)
	}
	if s.lim.ipcache > 0 && len(s.ipcache)+added > s.lim.ipcache {
		return nil, fmt.Errorf("ipcache: %d entries + %d new > %d: %w", len(s.ipcache), added, s.lim.ipcache, ErrFull)
	}
	return changed, nil
}

func (s *state) commitUpsert(e IPCacheEntry) {
	k := keyOf(e.Prefix)
	if old, ok := s.ipcache[k]; ok {
		s.digest.IPCache -= ipcacheHash(e.Prefix, old)
	} else {
		s.prefixLens[e.Prefix.Bits()]++
		s.digest.IPCacheEntries++
	}
	s.ipcache[k] = e.Identity
	s.digest.IPCache += ipcacheHash(e.Prefix, e.Identity)
}

// planDelete validates prefixes and returns the present ones, once each.
func (s *state) planDelete(prefixes []netip.Prefix) ([]netip.Prefix, error) {
	seen := make(map[netip.Prefix]struct{}, len(prefixes))
	out := make([]netip.Prefix, 0, len(prefixes))
	for i, p := range prefixes {
		p, err := checkPrefix(p)
		if err != nil {
			return nil, fmt.Errorf("ipcache prefixes[%d]: %w", i, err)
		}
		if _, ok := seen[p]; ok {
			continue
		}
		seen[p] = struct{}{}
		if _, ok := s.ipcache[keyOf(p)]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func (s *state) commitDelete(p netip.Prefix) {
	k := keyOf(p)
	old, ok := s.ipcache[k]
	if !ok {
		return
	}
	delete(s.ipcache, k)
	s.prefixLens[p.Bits()]--
	s.digest.IPCacheEntries--
	s.digest.IPCache -= ipcacheHash(p, old)
}

// policyPlan is the difference between an endpoint's current and wanted
// policy. A new endpoint is written first (from then on it is enforced,
// default deny), then the deletes, then the adds; so a failure part way
// leaves a state the shadow describes exactly and a retry repairs.
type policyPlan struct {
	addr   netip.Addr
	id     uint32
	create bool
	del    []PolicyKey
	add    []PolicyKey
}

func (s *state) planReplace(ep netip.Addr, allowed []PolicyKey) (policyPlan, error) {
	if err := checkEndpoint(ep); err != nil {
		return policyPlan{}, fmt.Errorf("replace policy: %w", err)
	}
	want := make(map[PolicyKey]struct{}, len(allowed))
	for _, k := range allowed {
		want[k] = struct{}{}
	}
	p := policyPlan{addr: ep}
	cur := s.endpoints[ep]
	if cur == nil {
		if s.lim.endpoints > 0 && len(s.endpoints)+1 > s.lim.endpoints {
			return policyPlan{}, fmt.Errorf("endpoint %s: %d endpoints already: %w", ep, len(s.endpoints), ErrFull)
		}
		p.create = true
		p.id = s.peekID()
		for k := range want {
			p.add = append(p.add, k)
		}
	} else {
		p.id = cur.id
		for k := range cur.allowed {
			if _, ok := want[k]; !ok {
				p.del = append(p.del, k)
			}
		}
		for k := range want {
			if _, ok := cur.allowed[k]; !ok {
				p.add = append(p.add, k)
			}
		}
	}
	n := s.digest.PolicyEntries - len(p.del) + len(p.add)
	if s.lim.policy > 0 && n > s.lim.policy {
		return policyPlan{}, fmt.Errorf("policy of endpoint %s: %d entries would exceed %d: %w", ep, n, s.lim.policy, ErrFull)
	}
	return p, nil
}

// peekID returns the id the next new endpoint gets.
func (s *state) peekID() uint32 {
	if n := len(s.freeIDs); n > 0 {
		return s.freeIDs[n-1]
	}
	return s.nextID
}

func (s *state) takeID(id uint32) {
	if n := len(s.freeIDs); n > 0 && s.freeIDs[n-1] == id {
		s.freeIDs = s.freeIDs[:n-1]
		return
	}
	s.nextID++
}

// commitCreate records a new endpoint (with no keys yet).
func (s *state) commitCreate(p policyPlan) {
	s.takeID(p.id)
	s.endpoints[p.addr] = &endpointState{id: p.id, allowed: make(map[PolicyKey]struct{}, len(p.add))}
	s.digest.Endpoints++
	s.digest.Policy += endpointHash(p.addr)
}

// commitPolicy records the first deleted keys of p.del and the first added
// keys of p.add of an existing endpoint.
func (s *state) commitPolicy(p policyPlan, deleted, added int) {
	cur := s.endpoints[p.addr]
	for _, k := range p.del[:deleted] {
		delete(cur.allowed, k)
		s.digest.PolicyEntries--
		s.digest.Policy -= policyHash(p.addr, k)
	}
	for _, k := range p.add[:added] {
		cur.allowed[k] = struct{}{}
		s.digest.PolicyEntries++
		s.digest.Policy += policyHash(p.addr, k)
	}
}

func (s *state) commitEndpointDelete(ep netip.Addr) {
	cur := s.endpoints[ep]
	if cur == nil {
		return
	}
	for k := range cur.allowed {
		s.digest.PolicyEntries--
		s.digest.Policy -= policyHash(ep, k)
	}
	delete(s.endpoints, ep)
	s.digest.Endpoints--
	s.digest.Policy -= endpointHash(ep)
	s.freeIDs = append(s.freeIDs, cur.id)
}

// lookupIdentity is the ipcache's longest-prefix match; a miss is world.
func (s *state) lookupIdentity(src netip.Addr) Identity {
	for bits := 32; bits >= 0; bits-- {
		if s.prefixLens[bits] == 0 {
			continue
		}
		p, _ := src.Prefix(bits)
		if id, ok := s.ipcache[keyOf(p)]; ok {
			return id
		}
	}
	return IdentityWorld
}

// verdict does in Go what the BPF program does.
func (s *state) verdict(p Packet) (Verdict, error) {
	if err := checkPacket(p); err != nil {
		return 0, err
	}
	ep := s.endpoints[p.Dst]
	if ep == nil {
		return VerdictNotLocal, nil
	}
	id := s.lookupIdentity(p.Src)
	port := p.DstPort
	if p.Proto != ProtoTCP && p.Proto != ProtoUDP {
		port = 0
	}
	for _, i := range [2]Identity{id, IdentityAny} {
		for _, k := range [4]PolicyKey{{i, port, p.Proto}, {i, 0, p.Proto}, {i, port, 0}, {i, 0, 0}} {
			if _, ok := ep.allowed[k]; ok {
				return VerdictAllow, nil
			}
		}
	}
	return VerdictDrop, nil
}

func checkPacket(p Packet) error {
	if !p.Src.Is4() || !p.Dst.Is4() {
		return fmt.Errorf("packet %s: source and destination must be IPv4 addresses", p)
	}
	return nil
}
