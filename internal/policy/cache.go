package policy

import (
	"slices"
	"strings"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/identity"
)

// Cache is an incremental resolver, like Cilium's SelectorCache: every
// distinct peer selector keeps the set of identities it matches, updated
// as identities come and go, so resolving an endpoint does not test every
// identity against every selector again. Its results equal Resolve's over
// the same rules and identities. Not safe for concurrent use.
type Cache struct {
	ids   map[datapath.Identity]identity.Labels
	sels  map[string]*selEntry
	rules []cachedRule
	// memo holds Resolve's results by the set of rules selecting the
	// endpoint (endpoints selected by the same rules have the same allowed
	// set, however many identities the peers have), until an identity or
	// the rules change.
	memo map[string][]datapath.PolicyKey
}

type selEntry struct {
	sel   Selector
	match map[datapath.Identity]struct{}
}

type cachedRule struct {
	subject Selector
	ingress []cachedIngress
}

type cachedIngress struct {
	from  []*selEntry
	ports []Port
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{ids: map[datapath.Identity]identity.Labels{}, sels: map[string]*selEntry{}}
}

// Identities is the number of cached identities.
func (c *Cache) Identities() int { return len(c.ids) }

// UpsertIdentity adds or replaces an identity.
func (c *Cache) UpsertIdentity(id datapath.Identity, l identity.Labels) {
	clear(c.memo)
	c.ids[id] = l
	for _, e := range c.sels {
		if e.sel.Matches(l) {
			e.match[id] = struct{}{}
		} else {
			delete(e.match, id)
		}
	}
}

// DeleteIdentity removes an identity.
func (c *Cache) DeleteIdentity(id datapath.Identity) {
	clear(c.memo)
	delete(c.ids, id)
	for _, e := range c.sels {
		delete(e.match, id)
	}
}

// SetRules replaces the rules; selectors shared with the previous rules
// keep their match sets.
func (c *Cache) SetRules(rules []Rule) {
	clear(c.memo)
	old := c.sels
	c.sels = make(map[string]*selEntry, len(old))
	c.rules = c.rules[:0]
	for _, r := range rules {
		cr := cachedRule{subject: r.Subject}
		for _, in := range r.Ingress {
			ci := cachedIngress{ports: in.Ports}
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
		e = &selEntry{sel: s, match: map[datapath.Identity]struct{}{}}
		for id, l := range c.ids {
			if s.Matches(l) {
				e.match[id] = struct{}{}
			}
		}
	}
	c.sels[k] = e
	return e
}

// Resolve returns what Resolve returns for the cached rules and
// identities. Endpoints selected by the same rules share one result, so
// callers must not modify it.
func (c *Cache) Resolve(ep identity.Labels) []datapath.PolicyKey {
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
		c.memo = map[string][]datapath.PolicyKey{}
	}
	c.memo[string(sig)] = out
	return out
}

// resolve computes the allowed set of an endpoint selected by the rules
// whose bits are set in sig.
func (c *Cache) resolve(sig []byte) []datapath.PolicyKey {
	selected := false
	var out []datapath.PolicyKey
	for i := range c.rules {
		r := &c.rules[i]
		if sig[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		selected = true
		for _, in := range r.ingress {
			for _, e := range in.from {
				if out == nil {
					out = make([]datapath.PolicyKey, 0, len(e.match)*len(in.ports))
				}
				for id := range e.match {
					for _, p := range in.ports {
						out = append(out, datapath.PolicyKey{Identity: id, Port: p.Port, Proto: p.Proto})
					}
				}
			}
		}
	}
	if !selected {
		return []datapath.PolicyKey{AllowAll}
	}
	if out == nil {
		return []datapath.PolicyKey{}
	}
	slices.SortFunc(out, datapath.ComparePolicyKeys)
	return slices.Compact(out)
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
