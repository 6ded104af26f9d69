package policy

import (
	"sort"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// AllowAll is the one policy key of an endpoint that no rule selects:
// Cilium does not enforce ingress policy on it, so everything is allowed
// (identity 0, port 0, protocol 0 are wildcards).
var AllowAll = policykey.Key{}

// Rule is a compiled policy rule.
type Rule struct {
	// Policy and Namespace name the CiliumNetworkPolicy it came from.
	Policy    string
	Namespace string
	// Subject selects the local endpoints the rule applies to.
	Subject Selector
	// Ingress lists what those endpoints accept.
	Ingress []Ingress
}

// Ingress allows peers matched by any of From on any of Ports.
type Ingress struct {
	From  []Selector
	Ports []Port
}

// Port is an L4 port and protocol; 0 means any.
type Port struct {
	Port  uint16
	Proto uint8
}

// Selector is a conjunction of requirements.
type Selector []Requirement

// Requirement is one label requirement. Source "" matches any source.
type Requirement struct {
	Source string
	Key    string
	Op     string
	Values []string
}

// Matches reports whether the label set satisfies every requirement.
func (s Selector) Matches(l identity.Labels) bool {
	for _, r := range s {
		if !r.matches(l) {
			return false
		}
	}
	return true
}

func (r Requirement) matches(l identity.Labels) bool {
	v, ok := lookup(l, r.Source, r.Key)
	switch r.Op {
	case OpExists:
		return ok
	case OpDoesNotExist:
		return !ok
	case OpIn:
		return ok && contains(r.Values, v)
	case OpNotIn:
		return !ok || !contains(r.Values, v)
	}
	return false
}

func lookup(l identity.Labels, source, key string) (string, bool) {
	i := sort.Search(len(l), func(i int) bool { return l[i].Key >= key })
	if i < len(l) && l[i].Key == key && (source == "" || l[i].Source == source) {
		return l[i].Value, true
	}
	return "", false
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// Candidate is one identity of the cache a policy is resolved against.
type Candidate struct {
	ID     identity.ID
	Labels identity.Labels
}

// Resolve computes the allowed set of a local endpoint with identity labels
// ep: every (candidate ID, port, protocol) that a rule selecting ep allows,
// including every candidate with equal labels (duplicate identities). The
// result is sorted and free of repeats. If no rule selects ep, the result
// is []policykey.Key{AllowAll}.
func Resolve(rules []Rule, candidates []Candidate, ep identity.Labels) []policykey.Key {
	selected := false
	set := map[policykey.Key]struct{}{}
	for i := range rules {
		r := &rules[i]
		if !r.Subject.Matches(ep) {
			continue
		}
		selected = true
		for _, in := range r.Ingress {
			for _, c := range candidates {
				if !anyMatches(in.From, c.Labels) {
					continue
				}
				for _, p := range in.Ports {
					set[policykey.Key{Identity: c.ID, Port: p.Port, Proto: p.Proto}] = struct{}{}
				}
			}
		}
	}
	if !selected {
		return []policykey.Key{AllowAll}
	}
	out := make([]policykey.Key, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	policykey.Sort(out)
	return out
}

func anyMatches(sels []Selector, l identity.Labels) bool {
	for _, s := range sels {
		if s.Matches(l) {
			return true
		}
	}
	return false
}
