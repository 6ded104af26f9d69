package agentsim

import (
	"slices"
	"sort"
	"sync/atomic"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/truth"
)

// identityCache is the agent's identity cache: every identity it knows
// (received from the API server or the kvstore, pushed over xDS, or
// created by itself), by ID and by label set, as Cilium's identity
// allocator keeps its cache of the CiliumIdentities or kvstore keys it
// watches. Its maps are guarded by Agent.mu; the counters are atomic so
// that Status reads them without the lock.
type identityCache struct {
	interner *identity.Interner
	m        *Metrics

	byID map[identity.ID]*idEntry
	// sets holds the identities by label key (idsOf).
	sets map[string]*labelSet
	// created are the identities this agent created; dupCounted those of
	// them already counted as duplicates.
	created    map[identity.ID]bool
	dupCounted map[identity.ID]bool

	// made counts the identities created, duplicates those of them that
	// turned out to duplicate an older identity of their label set, and
	// retries the allocation attempts after the first.
	made, duplicates, retries atomic.Uint64
}

// idEntry is one cached identity. labels are shared (interned).
type idEntry struct {
	labels identity.Labels
	key    string
	lh     truth.LabelsHash
	// set is shared by the agent's identities of one label set.
	set *labelSet
}

// labelSet is one label set the agent has identities for: ids, ascending
// (duplicates after the first), and what the policy digest notes about
// the set while it converts an allowed set (see policyEntries), so that
// duplicates of one label set are found without a lookup per key.
type labelSet struct {
	ids []identity.ID
	// gen is the conversion the fields below belong to.
	gen uint64
	// used says some ipcache entry carries the label set; ports are the
	// (port<<8 | proto) already entered for it.
	used  bool
	ports []uint32
}

func newIdentityCache(in *identity.Interner, m *Metrics) *identityCache {
	return &identityCache{
		interner:   in,
		m:          m,
		byID:       map[identity.ID]*idEntry{},
		sets:       map[string]*labelSet{},
		created:    map[identity.ID]bool{},
		dupCounted: map[identity.ID]bool{},
	}
}

// get returns the cached identity id, or nil.
func (c *identityCache) get(id identity.ID) *idEntry { return c.byID[id] }

// len is the number of cached identities.
func (c *identityCache) len() int { return len(c.byID) }

// idsOf returns the identities of a label key, ascending.
func (c *identityCache) idsOf(key string) []identity.ID {
	if s := c.sets[key]; s != nil {
		return s.ids
	}
	return nil
}

// add caches an identity that is not cached yet and counts the label
// set's duplicates.
func (c *identityCache) add(id identity.ID, l identity.Labels, key string) *idEntry {
	key = c.interner.String(key)
	set := c.sets[key]
	if set == nil {
		set = &labelSet{}
		c.sets[key] = set
	}
	e := &idEntry{labels: c.interner.Labels(l, key), key: key, lh: truth.HashLabelKey(key), set: set}
	c.byID[id] = e
	ids := append(set.ids, id)
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	set.ids = ids
	c.countDuplicates(ids)
	return e
}

// remove forgets id; it reports whether id was cached.
func (c *identityCache) remove(id identity.ID) bool {
	e, ok := c.byID[id]
	if !ok {
		return false
	}
	delete(c.byID, id)
	if i := slices.Index(e.set.ids, id); i >= 0 {
		e.set.ids = append(e.set.ids[:i:i], e.set.ids[i+1:]...)
	}
	if len(e.set.ids) == 0 {
		delete(c.sets, e.key)
	}
	return true
}

// countDuplicates counts identities this agent created for a label set
// that also has a lower (older) identity.
func (c *identityCache) countDuplicates(ids []identity.ID) {
	if len(ids) < 2 {
		return
	}
	for _, id := range ids[1:] {
		if c.created[id] && !c.dupCounted[id] {
			c.dupCounted[id] = true
			c.duplicates.Add(1)
			c.m.duplicates.Inc()
		}
	}
}

// upsertIdentity adds an identity to the cache and tells the subsystems
// that depend on it (caller holds mu): the ipcache's digest if entries
// carry it, the policy's selector cache, and the local endpoints that
// wait for its label set.
func (a *Agent) upsertIdentity(id identity.ID, l identity.Labels, key string) {
	if e := a.ids.get(id); e != nil {
		if e.key == key {
			return
		}
		a.deleteIdentity(id)
	}
	e := a.ids.add(id, l, key)
	a.pol.cache.UpsertIdentity(id, e.labels)
	if a.ipc.identityChanged(id) {
		a.changed()
	}
	a.dig.policyStale = true
	a.triggerRegen()
	// Local endpoints waiting for this label set (operator mode, or a
	// lost allocation race) can proceed.
	for k, p := range a.eps.pods {
		if p.wantKey == e.key && p.id != id && p.pendingID == 0 {
			a.eps.queue.add(k)
		}
	}
}

// deleteIdentity removes an identity from the cache and tells the
// subsystems that depend on it (caller holds mu).
func (a *Agent) deleteIdentity(id identity.ID) {
	if !a.ids.remove(id) {
		return
	}
	a.pol.cache.DeleteIdentity(id)
	if a.ipc.identityChanged(id) {
		a.changed()
	}
	a.dig.policyStale = true
	a.triggerRegen()
	for k, p := range a.eps.pods {
		if p.id == id || p.pendingID == id {
			a.eps.queue.add(k)
		}
	}
}

// keepIdentities deletes every cached identity a full list did not carry,
// except those this agent created: a list may predate their creation
// (caller holds mu).
func (a *Agent) keepIdentities(seen map[identity.ID]bool) {
	for id := range a.ids.byID {
		if !seen[id] && !a.ids.created[id] {
			a.deleteIdentity(id)
		}
	}
}

// prepare parses the identity's number and labels once per decoded
// object (agents of a shard share it).
func (c *slimCID) prepare() {
	c.id, c.idErr = identity.ParseID(c.Metadata.Name)
	if c.idErr != nil {
		return
	}
	c.labels, c.labelErr = identity.FromSecurityLabels(c.SecurityLabels)
	if c.labelErr == nil {
		c.key = c.labels.Key()
	}
}

func (a *Agent) replaceCIDs(items []slimCID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[identity.ID]bool, len(items))
	for i := range items {
		c := &items[i]
		if c.idErr != nil {
			continue
		}
		seen[c.id] = true
		a.upsertCID(c)
	}
	a.keepIdentities(seen)
}

func (a *Agent) onCID(typ string, c *slimCID) {
	a.events.Add(1)
	if c.idErr != nil {
		a.log.Debug("ignoring CiliumIdentity with a non-numeric name", "name", c.Metadata.Name)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if typ == evDeleted {
		a.deleteIdentity(c.id)
		return
	}
	a.upsertCID(c)
}

// upsertCID adds or updates a received CiliumIdentity (caller holds mu).
func (a *Agent) upsertCID(c *slimCID) {
	if c.labelErr != nil {
		a.log.Debug("ignoring CiliumIdentity with bad labels", "id", c.id, "err", c.labelErr)
		return
	}
	a.upsertIdentity(c.id, c.labels, c.key)
}
