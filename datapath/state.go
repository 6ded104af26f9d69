package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// ErrFull is returned (wrapped) when an update would exceed a map's
// configured size. Nothing of the failing call has been written.
var ErrFull = errors.New("datapath map full")

// ErrPolicyOverflow is returned (wrapped) when an endpoint's allowed set
// has more keys than an endpoint's policy map holds
// (Config.MaxEndpointPolicy, Cilium's --bpf-policy-map-max). As in Cilium
// with its default settings, the endpoint keeps the policy it had.
var ErrPolicyOverflow = errors.New("endpoint policy exceeds the policy map size")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("datapath closed")

// limits bound the maps; 0 means unbounded. policy bounds the keys of all
// policy sets together (the kernel map), endpointPolicy one endpoint's.
type limits struct {
	ipcache, endpoints, policy, endpointPolicy int
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

// policySet is one allowed set in the policy map, shared by every local
// endpoint whose policy is the same: the endpoints map points each
// endpoint's address at its set's id, and the policy map holds the set's
// keys once under that id.
type policySet struct {
	id      uint32
	keys    []policykey.Key // sorted (policykey.Compare), unique, never modified
	sum     uint64          // sum of keyHash over keys
	members map[netip.Addr]struct{}
}

// state is the Go-side view of one agent's datapath. mem is exactly this;
// bpf keeps it as the shadow of its kernel maps (it must know the current
// allowed set of an endpoint to write only the difference, and it serves
// Digest without reading the kernel). Both count updates here, so their
// counts agree by construction.
type state struct {
	lim        limits
	ipcache    map[prefixKey]identity.ID
	prefixLens [33]int // ipcache entries per prefix length, for LPM in Go
	endpoints  map[netip.Addr]*policySet
	sets       map[uint32]*policySet
	setKeys    int // keys of all sets: the policy map's size
	freeIDs    []uint32
	nextID     uint32
	digest     Digest

	updates    uint64
	writes     uint64
	updateTime time.Duration
	allowed    uint64
	dropped    uint64
	notLocal   uint64
}

func newState(lim limits) *state {
	return &state{
		lim:       lim,
		ipcache:   make(map[prefixKey]identity.ID),
		endpoints: make(map[netip.Addr]*policySet),
		sets:      make(map[uint32]*policySet),
		nextID:    1,
	}
}

func (s *state) timed(start time.Time, n int) {
	s.updates += uint64(n)
	s.writes += uint64(n)
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
		if e.Identity == policykey.AnyIdentity {
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

func keysSum(keys []policykey.Key) uint64 {
	var s uint64
	for _, k := range keys {
		s += keyHash(k)
	}
	return s
}

// groupPlan says how ReplacePolicyGroup reaches its state: which set the
// endpoints end up in (an existing one, updated in place by del and add,
// or a new one), and which endpoints must be pointed at it.
type groupPlan struct {
	keys    []policykey.Key
	sum     uint64
	target  *policySet // nil: a new set
	del     []policykey.Key
	add     []policykey.Key
	attach  []netip.Addr
	created int // endpoints of attach that are new
	// changes is what per-endpoint policy maps (Cilium's layout) would
	// write: every key each endpoint gains or loses, plus one per new
	// endpoint.
	changes int
}

func (s *state) planGroup(eps []netip.Addr, allowed []policykey.Key) (groupPlan, error) {
	seen := make(map[netip.Addr]struct{}, len(eps))
	var uniq []netip.Addr
	for i, ep := range eps {
		if err := checkEndpoint(ep); err != nil {
			return groupPlan{}, fmt.Errorf("replace policy: endpoints[%d]: %w", i, err)
		}
		if _, ok := seen[ep]; !ok {
			seen[ep] = struct{}{}
			uniq = append(uniq, ep)
		}
	}
	keys := policykey.Sorted(allowed)
	if s.lim.endpointPolicy > 0 && len(keys) > s.lim.endpointPolicy {
		return groupPlan{}, fmt.Errorf("policy of %d endpoint(s) (%s...): %d keys > %d: %w",
			len(uniq), uniq[0], len(keys), s.lim.endpointPolicy, ErrPolicyOverflow)
	}
	p := groupPlan{keys: keys, sum: keysSum(keys)}
	// How many of each current set's members are in this group.
	leaving := map[*policySet]int{}
	for _, ep := range uniq {
		if cur := s.endpoints[ep]; cur != nil {
			leaving[cur]++
		} else {
			p.created++
		}
	}
	if s.lim.endpoints > 0 && len(s.endpoints)+p.created > s.lim.endpoints {
		return groupPlan{}, fmt.Errorf("endpoint %s: %d endpoints already, %d new: %w", uniq[0], len(s.endpoints), p.created, ErrFull)
	}
	// The target: a set that already holds exactly these keys; else the
	// largest set that only this group uses, updated in place; else new.
	for _, set := range s.sets {
		if set.sum == p.sum && slices.Equal(set.keys, keys) {
			p.target = set
			break
		}
	}
	if p.target == nil {
		for set, n := range leaving {
			if n == len(set.members) && (p.target == nil || n > len(p.target.members) ||
				n == len(p.target.members) && set.id < p.target.id) {
				p.target = set
			}
		}
		if p.target != nil {
			p.del, p.add = policykey.Diff(p.target.keys, keys)
		}
	}
	grow := len(keys)
	if p.target != nil {
		grow = len(p.add) - len(p.del)
	}
	if s.lim.policy > 0 && s.setKeys+grow > s.lim.policy {
		return groupPlan{}, fmt.Errorf("policy of endpoint %s: %d keys in the policy map + %d would exceed %d: %w",
			uniq[0], s.setKeys, grow, s.lim.policy, ErrFull)
	}
	for _, ep := range uniq {
		if cur := s.endpoints[ep]; cur == nil || cur != p.target {
			p.attach = append(p.attach, ep)
		}
	}
	p.changes = p.created * (1 + len(keys))
	for set, n := range leaving {
		if set == p.target {
			p.changes += len(set.members) * (len(p.del) + len(p.add))
		} else {
			p.changes += n * policykey.DiffCount(set.keys, keys)
		}
	}
	return p, nil
}

// setOps are the kernel writes of a policy change; mem does none. Each
// returns how many of its elements it wrote (a prefix) and an error.
type setOps interface {
	putKeys(id uint32, keys []policykey.Key) (int, error)
	delKeys(id uint32, keys []policykey.Key) (int, error)
	putEndpoint(ep netip.Addr, id uint32, create bool) error
	delEndpoint(ep netip.Addr) error
}

// noOps is mem's setOps.
type noOps struct{}

func (noOps) putKeys(_ uint32, k []policykey.Key) (int, error) { return len(k), nil }
func (noOps) delKeys(_ uint32, k []policykey.Key) (int, error) { return len(k), nil }
func (noOps) putEndpoint(netip.Addr, uint32, bool) error       { return nil }
func (noOps) delEndpoint(netip.Addr) error                     { return nil }

// applyGroup writes p through ops and records in the shadow exactly what
// was written, so that after an error the shadow still describes the
// kernel and a later call repairs it. Order: the target set's keys (a new
// set's, or the in-place deletes then adds), then the endpoints, then
// the sets left without endpoints are removed.
func (s *state) applyGroup(ops setOps, p groupPlan) error {
	start := time.Now()
	writes := 0
	defer func() { s.writes += uint64(writes); s.updateTime += time.Since(start) }()
	s.sweep(ops, &writes)
	target := p.target
	if target == nil {
		id := s.peekID()
		n, err := ops.putKeys(id, p.keys)
		writes += n
		if err != nil {
			// Take back what was written; the id is free again only if
			// that worked.
			d, derr := ops.delKeys(id, p.keys[:n])
			writes += d
			if derr == nil {
				return fmt.Errorf("new policy set of %d keys: wrote %d: %w", len(p.keys), n, err)
			}
			s.takeID(id)
			s.addSet(&policySet{id: id, keys: p.keys[d:n], sum: keysSum(p.keys[d:n]), members: map[netip.Addr]struct{}{}})
			return fmt.Errorf("new policy set of %d keys: wrote %d, %d left behind: %w", len(p.keys), n, n-d, err)
		}
		s.takeID(id)
		target = &policySet{id: id, keys: p.keys, sum: p.sum, members: map[netip.Addr]struct{}{}}
		s.addSet(target)
	} else if len(p.del)+len(p.add) > 0 {
		d, err := ops.delKeys(target.id, p.del)
		writes += d
		a := 0
		if err == nil {
			a, err = ops.putKeys(target.id, p.add)
			writes += a
		}
		if err != nil {
			s.resetSet(target, policykey.Apply(target.keys, p.del[:d], p.add[:a]), keysSum)
			return fmt.Errorf("policy set %d: deleted %d of %d keys, added %d of %d: %w", target.id, d, len(p.del), a, len(p.add), err)
		}
		s.resetSet(target, p.keys, func([]policykey.Key) uint64 { return p.sum })
	}
	for _, ep := range p.attach {
		old := s.endpoints[ep]
		if err := ops.putEndpoint(ep, target.id, old == nil); err != nil {
			s.sweep(ops, &writes)
			return fmt.Errorf("endpoint %s -> policy set %d: %w", ep, target.id, err)
		}
		writes++
		if old == nil {
			s.digest.Endpoints++
			s.digest.Policy += endpointHash(ep)
		} else {
			s.leave(ep, old)
		}
		s.join(ep, target)
	}
	s.updates += uint64(p.changes)
	s.sweep(ops, &writes)
	return nil
}

// deleteEndpoint removes an endpoint and, with its last endpoint, its set.
func (s *state) deleteEndpoint(ops setOps, ep netip.Addr) error {
	cur := s.endpoints[ep]
	if cur == nil {
		return nil
	}
	start := time.Now()
	writes := 0
	defer func() { s.writes += uint64(writes); s.updateTime += time.Since(start) }()
	if err := ops.delEndpoint(ep); err != nil {
		return fmt.Errorf("delete endpoint %s: %w", ep, err)
	}
	writes++
	s.updates += uint64(1 + len(cur.keys))
	s.leave(ep, cur)
	delete(s.endpoints, ep)
	s.digest.Endpoints--
	s.digest.Policy -= endpointHash(ep)
	s.sweep(ops, &writes)
	return nil
}

func (s *state) addSet(set *policySet) {
	s.sets[set.id] = set
	s.setKeys += len(set.keys)
}

// resetSet gives set new keys, moving its endpoints' share of the digest.
func (s *state) resetSet(set *policySet, keys []policykey.Key, sum func([]policykey.Key) uint64) {
	newSum := sum(keys)
	for ep := range set.members {
		s.digest.Policy += epMul(ep) * (newSum - set.sum)
		s.digest.PolicyEntries += len(keys) - len(set.keys)
	}
	s.setKeys += len(keys) - len(set.keys)
	set.keys, set.sum = keys, newSum
}

func (s *state) join(ep netip.Addr, set *policySet) {
	set.members[ep] = struct{}{}
	s.endpoints[ep] = set
	s.digest.Policy += epMul(ep) * set.sum
	s.digest.PolicyEntries += len(set.keys)
}

func (s *state) leave(ep netip.Addr, set *policySet) {
	delete(set.members, ep)
	s.digest.Policy -= epMul(ep) * set.sum
	s.digest.PolicyEntries -= len(set.keys)
}

// sweep removes the keys of sets no endpoint uses any more (and, after an
// earlier failure, what is left of them), freeing their ids.
func (s *state) sweep(ops setOps, writes *int) {
	for id, set := range s.sets {
		if len(set.members) > 0 {
			continue
		}
		n, err := ops.delKeys(id, set.keys)
		*writes += n
		s.setKeys -= n
		if err != nil {
			set.keys = set.keys[n:]
			set.sum = keysSum(set.keys)
			continue
		}
		delete(s.sets, id)
		s.freeIDs = append(s.freeIDs, id)
	}
}

// peekID returns the id the next new set gets.
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

// lookupIdentity is the ipcache's longest-prefix match; a miss is world.
func (s *state) lookupIdentity(src netip.Addr) identity.ID {
	for bits := 32; bits >= 0; bits-- {
		if s.prefixLens[bits] == 0 {
			continue
		}
		p, _ := src.Prefix(bits)
		if id, ok := s.ipcache[keyOf(p)]; ok {
			return id
		}
	}
	return identity.World
}

// verdict does in Go what the BPF program does.
func (s *state) verdict(p Packet) (Verdict, error) {
	if err := checkPacket(p); err != nil {
		return 0, err
	}
	set := s.endpoints[p.Dst]
	if set == nil {
		return VerdictNotLocal, nil
	}
	id := s.lookupIdentity(p.Src)
	port := p.DstPort
	if p.Proto != policykey.ProtoTCP && p.Proto != policykey.ProtoUDP {
		port = 0
	}
	for _, i := range [2]identity.ID{id, policykey.AnyIdentity} {
		for _, k := range [4]policykey.Key{{Identity: i, Port: port, Proto: p.Proto}, {Identity: i, Port: 0, Proto: p.Proto}, {Identity: i, Port: port, Proto: 0}, {Identity: i, Port: 0, Proto: 0}} {
			if _, ok := slices.BinarySearchFunc(set.keys, k, policykey.Compare); ok {
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
