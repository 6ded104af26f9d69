package xdsapi

import (
	"github.com/stampede-sim/stampede/internal/policy"
)

// PolicyFromRules builds the Policy resource of the CiliumNetworkPolicy
// namespace/name compiled to rules.
func PolicyFromRules(namespace, name string, rules []policy.Rule) *Policy {
	p := &Policy{Namespace: namespace, Name: name, Rules: make([]*Rule, 0, len(rules))}
	for _, r := range rules {
		pr := &Rule{Subject: selectorFrom(r.Subject)}
		for _, in := range r.Ingress {
			pi := &Ingress{}
			for _, f := range in.From {
				pi.From = append(pi.From, selectorFrom(f))
			}
			for _, port := range in.Ports {
				pi.Ports = append(pi.Ports, &Port{Port: uint32(port.Port), Proto: uint32(port.Proto)})
			}
			pr.Ingress = append(pr.Ingress, pi)
		}
		p.Rules = append(p.Rules, pr)
	}
	return p
}

func selectorFrom(s policy.Selector) *Selector {
	out := &Selector{Requirements: make([]*Requirement, 0, len(s))}
	for _, r := range s {
		out.Requirements = append(out.Requirements, &Requirement{Source: r.Source, Key: r.Key, Op: r.Op, Values: r.Values})
	}
	return out
}
