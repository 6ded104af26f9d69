package policy

import (
	"slices"
	"strconv"
	"strings"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// Cache is an incremental resolver, like Cilium's SelectorCache: every
// distinct peer selector keeps the set of identities it matches, updated
// as identities come and go, so resolving an endpoint does not test every
// identity against every selector again. Its results equal Resolve's over
// the same rules and identities. Not safe for concurrent use.
type Cache struct {
	ids   map[identity.ID]identity.Labels
	sels  map[string]*selEntry
	rules []cachedRule
	// memo holds Resolve's results by the set of rules selecting the
	// endpoint (endpoints selected by the same rules have the same allowed
	// set, however many identities the peers have), until an identity or
	// the rules change.
	memo map[string][]policykey.Key
	// byTerms holds the same results by what the rules allow: the set of
	// (peer selector, ports) terms. Rules of different namespaces that
	// allow the same peers on the same ports (a policy rendered into
	// every namespace) then share one result, computed once, instead of
	// one equal copy per namespace. Cleared with memo.
	byTerms map[string][]policykey.Key
	// nextSeq numbers selectors as they are created (selEntry.seq).
	nextSeq int
	terms   []term
}

// term is one (peer selector, ports) pair of a rule selecting an endpoint.
type term struct {
	e  *selEntry
	in *cachedIngress
}

type selEntry struct {
	// seq orders selectors in a resolution's terms key.
	seq   int
	sel   Selector
	match map[identity.ID]struct{}
	// ids are the keys of match in ascending order, kept as identities
	// come and go so that resolving needs no sort.
	ids []identity.ID
}

func (e *selEntry) add(id identity.ID) {
	if _, ok := e.match[id]; ok {
		return
	}
	e.match[id] = struct{}{}
	i, _ := slices.BinarySearch(e.ids, id)
	e.ids = slices.Insert(e.ids, i, id)
}

func (e *selEntry) remove(id identity.ID) {
	if _, ok := e.match[id]; !ok {
		return
	}
	delete(e.match, id)
	if i, ok := slices.BinarySearch(e.ids, id); ok {
		e.ids = slices.Delete(e.ids, i, i+1)
	}
}

type cachedRule struct {
	subject Selector
	ingress []cachedIngress
}

type cachedIngress struct {
	from []*selEntry
	// ports are the rule's ports in key order, without repeats, and
	// portsKey their canonical form.
	ports    []Port
	portsKey string
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{ids: map[identity.ID]identity.Labels{}, sels: map[string]*selEntry{}}
}

// Identities is the number of cached identities.
func (c *Cache) Identities() int { return len(c.ids) }

// forget drops the memoised resolutions.
func (c *Cache) forget() {
	clear(c.memo)
	clear(c.byTerms)
}

// UpsertIdentity adds or replaces an identity.
func (c *Cache) UpsertIdentity(id identity.ID, l identity.Labels) {
	c.forget()
	c.ids[id] = l
	for _, e := range c.sels {
		if e.sel.Matches(l) {
			e.add(id)
		} else {
			e.remove(id)
		}
	}
}

// DeleteIdentity removes an identity.
func (c *Cache) DeleteIdentity(id identity.ID) {
	c.forget()
	delete(c.ids, id)
	for _, e := range c.sels {
		e.remove(id)
	}
}

// SetRules replaces the rules; selectors shared with the previous rules
// keep their match sets.
func (c *Cache) SetRules(rules []Rule) {
	c.forget()
	old := c.sels
	c.sels = make(map[string]*selEntry, len(old))
	c.rules = c.rules[:0]
	for _, r := range rules {
		cr := cachedRule{subject: r.Subject}
		for _, in := range r.Ingress {
			ci := cachedIngress{ports: sortedPorts(in.Ports)}
			ci.portsKey = portsKey(ci.ports)
			for _, s := range in.From {
				ci.from = append(ci.from, c.selector(s, old))
			}
			cr.ingress = append(cr.ingress, ci)
		}
		c.rules = append(c.rules, cr)
	}
}

func (c *Cache) selector(s Selector, old map[string]*selEntry) *selEntry {
	k := s.String()
	if e, ok := c.sels[k]; ok {
		return e
	}
	e, ok := old[k]
	if !ok {
		c.nextSeq++
		e = &selEntry{seq: c.nextSeq, sel: s, match: map[identity.ID]struct{}{}}
		for id, l := range c.ids {
			if s.Matches(l) {
				e.match[id] = struct{}{}
				e.ids = append(e.ids, id)
			}
		}
		slices.Sort(e.ids)
	}
	c.sels[k] = e
	return e
}

// Resolve returns what Resolve returns for the cached rules and
// identities. Endpoints selected by the same rules share one result, so
// callers must not modify it.
func (c *Cache) Resolve(ep identity.Labels) []policykey.Key {
	sig := make([]byte, (len(c.rules)+7)/8)
	for i := range c.rules {
		if c.rules[i].subject.Matches(ep) {
			sig[i/8] |= 1 << (i % 8)
		}
	}
	if out, ok := c.memo[string(sig)]; ok {
		return out
	}
	out := c.resolve(sig)
	if c.memo == nil {
		c.memo = map[string][]policykey.Key{}
	}
	c.memo[string(sig)] = out
	return out
}

// resolve computes the allowed set of an endpoint selected by the rules
// whose bits are set in sig. Each (peer selector, ports) term yields its
// keys already sorted (identities ascending, then ports), and the terms'
// lists are merged, so the result is sorted without sorting. Equal term
// sets share one result (byTerms).
func (c *Cache) resolve(sig []byte) []policykey.Key {
	selected := false
	ts := c.terms[:0]
	for i := range c.rules {
		r := &c.rules[i]
		if sig[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		selected = true
		for j := range r.ingress {
			in := &r.ingress[j]
			for _, e := range in.from {
				ts = append(ts, term{e: e, in: in})
			}
		}
	}
	c.terms = ts[:0]
	if !selected {
		return []policykey.Key{AllowAll}
	}
	slices.SortFunc(ts, func(a, b term) int {
		if a.e.seq != b.e.seq {
			return a.e.seq - b.e.seq
		}
		return strings.Compare(a.in.portsKey, b.in.portsKey)
	})
	ts = slices.CompactFunc(ts, func(a, b term) bool {
		return a.e == b.e && a.in.portsKey == b.in.portsKey
	})
	var kb strings.Builder
	for _, t := range ts {
		kb.WriteString(strconv.Itoa(t.e.seq))
		kb.WriteByte('|')
		kb.WriteString(t.in.portsKey)
		kb.WriteByte(';')
	}
	key := kb.String()
	if out, ok := c.byTerms[key]; ok {
		return out
	}
	out := []policykey.Key{}
	for _, t := range ts {
		ports := t.in.ports
		l := make([]policykey.Key, 0, len(t.e.ids)*len(ports))
		for _, id := range t.e.ids {
			for _, p := range ports {
				l = append(l, policykey.Key{Identity: id, Port: p.Port, Proto: p.Proto})
			}
		}
		out = policykey.Merge(out, l)
	}
	if c.byTerms == nil {
		c.byTerms = map[string][]policykey.Key{}
	}
	c.byTerms[key] = out
	return out
}

// portsKey is the canonical form of sorted, repeat-free ports.
func portsKey(ports []Port) string {
	var b strings.Builder
	for _, p := range ports {
		b.WriteString(strconv.Itoa(int(p.Port)))
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(int(p.Proto)))
		b.WriteByte(',')
	}
	return b.String()
}

// sortedPorts returns ports in key order, without repeats.
func sortedPorts(ports []Port) []Port {
	ps := slices.Clone(ports)
	slices.SortFunc(ps, func(a, b Port) int {
		return policykey.Compare(policykey.Key{Port: a.Port, Proto: a.Proto}, policykey.Key{Port: b.Port, Proto: b.Proto})
	})
	return slices.Compact(ps)
}

// String is a canonical form of the selector.
func (s Selector) String() string {
	var b strings.Builder
	for _, r := range s {
		b.WriteString(r.Source)
		b.WriteByte(':')
		b.WriteString(r.Key)
		b.WriteByte(' ')
		b.WriteString(r.Op)
		for _, v := range r.Values {
			b.WriteByte(' ')
			b.WriteString(v)
		}
		b.WriteByte(';')
	}
	return b.String()
}
