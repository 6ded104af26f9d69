package agentsim

import (
	"hash/fnv"
	"net/netip"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/truth"
)

// ipcache is the agent's IP -> identity map (Cilium's pkg/ipcache), with
// the digest of its entries and the label sets its entries carry, which
// the policy digest counts. It is fed by the CiliumEndpoint or
// CiliumEndpointSlice watches (this file), the kvstore's ipcache prefix
// (kvClient.watchIPCache) or the xDS control plane (XDSAgent). Guarded by
// Agent.mu.
type ipcache struct {
	ids     *identityCache
	entries map[uint32]ipEntry
	// refs counts the entries per identity, used per label set.
	refs map[identity.ID]int32
	used map[truth.LabelsHash]int32
	// digest sums the entries whose identity is known; stale says an
	// identity that entries refer to came or went since it was summed.
	digest truth.Digest
	stale  bool
	// slices holds what each CiliumEndpointSlice carries (ces mode).
	slices map[string][]sliceEntry
}

// ipEntry is one ipcache entry: identity and the endpoint that owns it.
type ipEntry struct {
	id    identity.ID
	owner uint32
}

// sliceEntry is one endpoint carried by a CiliumEndpointSlice.
type sliceEntry struct {
	ip    uint32
	id    identity.ID
	owner uint32
}

func newIPCache(ids *identityCache) *ipcache {
	return &ipcache{
		ids:     ids,
		entries: map[uint32]ipEntry{},
		refs:    map[identity.ID]int32{},
		used:    map[truth.LabelsHash]int32{},
		slices:  map[string][]sliceEntry{},
	}
}

func addrKey(ip netip.Addr) (uint32, bool) {
	if !ip.Is4() {
		return 0, false
	}
	b := ip.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), true
}

func keyAddr(k uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})
}

// ownerHash identifies the endpoint that wrote an ipcache entry (32 bits:
// a collision only matters if two endpoints hash alike and one's delete
// arrives after the other took the IP over).
func ownerHash(ns, name string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(ns))
	h.Write([]byte{'/'})
	h.Write([]byte(name))
	return h.Sum32()
}

// contribute adds (sign 1) or removes (-1) an entry's share of the digest
// and of the used label sets; it reports whether its label set became
// used or unused.
func (c *ipcache) contribute(ip uint32, id identity.ID, sign int32) (usedChanged bool) {
	c.refs[id] += sign
	if c.refs[id] == 0 {
		delete(c.refs, id)
	}
	e := c.ids.get(id)
	if e == nil {
		return false
	}
	h := truth.IPCacheEntry(keyAddr(ip), e.lh)
	if sign > 0 {
		c.digest.Add(h)
	} else {
		c.digest.Remove(h)
	}
	before := c.used[e.lh]
	c.used[e.lh] = before + sign
	if c.used[e.lh] == 0 {
		delete(c.used, e.lh)
	}
	return (before == 0) != (c.used[e.lh] == 0)
}

// set maps ip to id for owner. changed says the entry changed, newID that
// the IP's identity did (the datapath needs the write), usedChanged that
// a label set became used or unused.
func (c *ipcache) set(ip uint32, id identity.ID, owner uint32) (changed, newID, usedChanged bool) {
	old, ok := c.entries[ip]
	if ok && old.id == id && old.owner == owner {
		return false, false, false
	}
	if ok && c.contribute(ip, old.id, -1) {
		usedChanged = true
	}
	c.entries[ip] = ipEntry{id: id, owner: owner}
	if c.contribute(ip, id, 1) {
		usedChanged = true
	}
	return true, !ok || old.id != id, usedChanged
}

// delete removes ip if owner still owns it.
func (c *ipcache) delete(ip uint32, owner uint32) (deleted, usedChanged bool) {
	old, ok := c.entries[ip]
	if !ok || old.owner != owner {
		return false, false
	}
	usedChanged = c.contribute(ip, old.id, -1)
	delete(c.entries, ip)
	return true, usedChanged
}

// identityChanged marks the digest stale if entries carry id, whose label
// set came or went; it reports whether they do.
func (c *ipcache) identityChanged(id identity.ID) bool {
	if c.refs[id] > 0 {
		c.stale = true
		return true
	}
	return false
}

// isUsed says whether some entry carries the label set.
func (c *ipcache) isUsed(lh truth.LabelsHash) bool { return c.used[lh] > 0 }

// recomputeDigest rebuilds the digest and the used label sets after
// identities that entries refer to came or went.
func (c *ipcache) recomputeDigest() {
	c.digest = truth.Digest{}
	clear(c.used)
	for ip, e := range c.entries {
		if ie := c.ids.get(e.id); ie != nil {
			c.digest.Add(truth.IPCacheEntry(keyAddr(ip), ie.lh))
			c.used[ie.lh]++
		}
	}
	c.stale = false
}

// setIP maps ip to id for owner and passes the change on to the policy
// digest and the datapath (caller holds mu).
func (a *Agent) setIP(ip uint32, id identity.ID, owner uint32) {
	changed, newID, usedChanged := a.ipc.set(ip, id, owner)
	if usedChanged {
		a.dig.policyStale = true
	}
	if !changed {
		return
	}
	a.changed()
	if newID {
		a.queueDP(dpOp{kind: dpUpsertIP, ip: ip, id: id})
	}
}

// deleteIP removes ip if owner still owns it (caller holds mu).
func (a *Agent) deleteIP(ip uint32, owner uint32) {
	deleted, usedChanged := a.ipc.delete(ip, owner)
	if usedChanged {
		a.dig.policyStale = true
	}
	if !deleted {
		return
	}
	a.changed()
	a.queueDP(dpOp{kind: dpDeleteIP, ip: ip})
}

func cepIP(c *slimCEP) (uint32, bool) {
	for _, ad := range c.Status.Networking.Addressing {
		if ip, err := netip.ParseAddr(ad.IPv4); err == nil {
			return addrKey(ip)
		}
	}
	return 0, false
}

func (a *Agent) replaceCEPs(items []slimCEP) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[uint32]bool, len(items))
	for i := range items {
		c := &items[i]
		ip, ok := cepIP(c)
		if !ok || c.Status.Identity.ID <= 0 {
			continue
		}
		seen[ip] = true
		a.setIP(ip, identity.ID(c.Status.Identity.ID), ownerHash(c.Metadata.Namespace, c.Metadata.Name))
	}
	for ip, e := range a.ipc.entries {
		if !seen[ip] {
			a.deleteIP(ip, e.owner)
		}
	}
}

func (a *Agent) onCEP(typ string, c *slimCEP) {
	a.events.Add(1)
	ip, ok := cepIP(c)
	if !ok {
		return
	}
	owner := ownerHash(c.Metadata.Namespace, c.Metadata.Name)
	a.mu.Lock()
	defer a.mu.Unlock()
	if typ == evDeleted {
		a.deleteIP(ip, owner)
		return
	}
	if c.Status.Identity.ID <= 0 {
		return
	}
	a.setIP(ip, identity.ID(c.Status.Identity.ID), owner)
}

// prepare derives the slice's ipcache entries once per decoded object
// (agents of a shard share it) and drops the decoded endpoints.
func (s *slimCES) prepare() {
	s.entries = make([]sliceEntry, 0, len(s.Endpoints))
	for _, ep := range s.Endpoints {
		if ep.ID <= 0 {
			continue
		}
		for _, ad := range ep.Networking.Addressing {
			ip, err := netip.ParseAddr(ad.IPv4)
			if err != nil {
				continue
			}
			k, ok := addrKey(ip)
			if !ok {
				continue
			}
			s.entries = append(s.entries, sliceEntry{ip: k, id: identity.ID(ep.ID), owner: ownerHash(s.Namespace, ep.Name)})
			break
		}
	}
	s.Endpoints = nil
}

func (a *Agent) replaceSlices(items []slimCES) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[string]bool, len(items))
	for i := range items {
		seen[items[i].Metadata.Name] = true
		a.applySlice(items[i].Metadata.Name, items[i].entries)
	}
	for name := range a.ipc.slices {
		if !seen[name] {
			a.applySlice(name, nil)
		}
	}
}

func (a *Agent) onSlice(typ string, s *slimCES) {
	a.events.Add(1)
	entries := s.entries
	if typ == evDeleted {
		entries = nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applySlice(s.Metadata.Name, entries)
}

// applySlice replaces what a slice carries: endpoints no longer in it are
// deleted, the others set (caller holds mu).
func (a *Agent) applySlice(name string, entries []sliceEntry) {
	old := a.ipc.slices[name]
	keep := make(map[uint32]bool, len(entries))
	for _, e := range entries {
		keep[e.owner] = true
	}
	for _, e := range old {
		if !keep[e.owner] {
			a.deleteIP(e.ip, e.owner)
		}
	}
	for _, e := range entries {
		a.setIP(e.ip, e.id, e.owner)
	}
	if len(entries) == 0 {
		delete(a.ipc.slices, name)
	} else {
		// Interned: a map assignment stores the key it is given, and the
		// decoded name shares the memory of its whole watch frame
		// (goccy/go-json), which a full slice makes large.
		a.ipc.slices[a.cfg.Interner.String(name)] = entries
	}
}
