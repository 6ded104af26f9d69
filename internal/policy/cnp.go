package policy

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
	"github.com/stampede-sim/stampede/scenarios"
)

// CiliumNetworkPolicy API group, version, kind and resource.
const (
	APIVersion = "cilium.io/v2"
	Kind       = "CiliumNetworkPolicy"
	Resource   = "ciliumnetworkpolicies"
)

// Selector keys and operators used in rendered policies.
const (
	// KeyPodNamespace is the namespace label in selector form.
	KeyPodNamespace = identity.SourceK8s + ":" + identity.LabelPodNamespace
	// KeyNamespaceLabelPrefix prefixes namespace labels in selector form.
	KeyNamespaceLabelPrefix = identity.SourceK8s + ":" + identity.NamespaceLabelsPrefix

	OpIn           = "In"
	OpNotIn        = "NotIn"
	OpExists       = "Exists"
	OpDoesNotExist = "DoesNotExist"
)

// CiliumNetworkPolicy is the slim form of a cilium.io/v2
// CiliumNetworkPolicy: the fields the project writes and reads. Received
// objects are decoded straight into it; unknown fields are dropped.
type CiliumNetworkPolicy struct {
	APIVersion string     `json:"apiVersion,omitempty"`
	Kind       string     `json:"kind,omitempty"`
	Metadata   ObjectMeta `json:"metadata"`
	Spec       *RuleSpec  `json:"spec,omitempty"`
	Specs      []RuleSpec `json:"specs,omitempty"`
}

// ObjectMeta is the part of metadata a policy needs.
type ObjectMeta struct {
	Name            string `json:"name"`
	Namespace       string `json:"namespace,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// RuleSpec is one rule: the endpoints it applies to and what they accept.
type RuleSpec struct {
	EndpointSelector LabelSelector `json:"endpointSelector"`
	Ingress          []IngressSpec `json:"ingress,omitempty"`
}

// LabelSelector is a Kubernetes label selector over Cilium identity labels;
// keys carry a source prefix ("k8s:app"), a missing prefix means any source.
type LabelSelector struct {
	MatchLabels      map[string]string     `json:"matchLabels,omitempty"`
	MatchExpressions []SelectorRequirement `json:"matchExpressions,omitempty"`
}

// SelectorRequirement is one matchExpressions entry.
type SelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// IngressSpec allows traffic from the peers any of FromEndpoints selects to
// the ports of ToPorts (all ports when empty).
type IngressSpec struct {
	FromEndpoints []LabelSelector `json:"fromEndpoints,omitempty"`
	ToPorts       []PortRule      `json:"toPorts,omitempty"`
}

// PortRule lists ports.
type PortRule struct {
	Ports []PortProtocol `json:"ports,omitempty"`
}

// PortProtocol is a port (a decimal string, as in Cilium) and protocol.
type PortProtocol struct {
	Port     string `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Render builds the CiliumNetworkPolicy a scenario policy becomes in one
// namespace. The endpoint selector uses pod labels; each ingress peer
// selector uses namespace labels (k8s:io.cilium.k8s.namespace.labels.<key>)
// and pod labels, and says explicitly with an Exists expression on
// k8s:io.kubernetes.pod.namespace that peers may live in any namespace;
// without it Cilium would limit the peers to the policy's own namespace.
func Render(p scenarios.Policy, namespace string) CiliumNetworkPolicy {
	spec := RuleSpec{EndpointSelector: LabelSelector{MatchLabels: map[string]string{}}}
	for k, v := range p.EndpointSelector {
		spec.EndpointSelector.MatchLabels[identity.SourceK8s+":"+k] = v
	}
	for _, in := range p.Ingress {
		sel := LabelSelector{
			MatchLabels:      map[string]string{},
			MatchExpressions: []SelectorRequirement{{Key: KeyPodNamespace, Operator: OpExists}},
		}
		for k, v := range in.FromNamespaceLabels {
			sel.MatchLabels[KeyNamespaceLabelPrefix+k] = v
		}
		for k, v := range in.FromPodLabels {
			sel.MatchLabels[identity.SourceK8s+":"+k] = v
		}
		var pr PortRule
		for _, pp := range in.Ports {
			pr.Ports = append(pr.Ports, PortProtocol{Port: strconv.Itoa(pp.Port), Protocol: pp.Protocol})
		}
		spec.Ingress = append(spec.Ingress, IngressSpec{FromEndpoints: []LabelSelector{sel}, ToPorts: []PortRule{pr}})
	}
	return CiliumNetworkPolicy{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata:   ObjectMeta{Name: p.Name, Namespace: namespace},
		Spec:       &spec,
	}
}

// RenderAll renders every policy of a scenario into every namespace it
// names (all of namespaces when it names none), sorted by namespace, name.
func RenderAll(policies []scenarios.Policy, namespaces []string) []CiliumNetworkPolicy {
	var out []CiliumNetworkPolicy
	for _, p := range policies {
		nss := p.Namespaces
		if len(nss) == 0 {
			nss = namespaces
		}
		for _, ns := range nss {
			out = append(out, Render(p, ns))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Metadata.Namespace != out[j].Metadata.Namespace {
			return out[i].Metadata.Namespace < out[j].Metadata.Namespace
		}
		return out[i].Metadata.Name < out[j].Metadata.Name
	})
	return out
}

// Compile turns a received policy into Rules. Errors name the policy and
// the offending field.
func Compile(cnp *CiliumNetworkPolicy) ([]Rule, error) {
	where := cnp.Metadata.Namespace + "/" + cnp.Metadata.Name
	var specs []RuleSpec
	if cnp.Spec != nil {
		specs = append(specs, *cnp.Spec)
	}
	specs = append(specs, cnp.Specs...)
	if len(specs) == 0 {
		return nil, fmt.Errorf("policy %s: neither spec nor specs set", where)
	}
	rules := make([]Rule, 0, len(specs))
	for i, s := range specs {
		r, err := compileSpec(cnp.Metadata.Namespace, s)
		if err != nil {
			return nil, fmt.Errorf("policy %s: specs[%d]: %w", where, i, err)
		}
		r.Policy = cnp.Metadata.Name
		rules = append(rules, r)
	}
	return rules, nil
}

func compileSpec(ns string, s RuleSpec) (Rule, error) {
	r := Rule{Namespace: ns}
	subj, err := compileSelector(s.EndpointSelector)
	if err != nil {
		return r, fmt.Errorf("endpointSelector: %w", err)
	}
	// A namespaced policy applies only to endpoints of its namespace.
	if ns != "" {
		subj = append(subj, Requirement{Source: identity.SourceK8s, Key: identity.LabelPodNamespace, Op: OpIn, Values: []string{ns}})
	}
	r.Subject = sortReqs(subj)
	for i, in := range s.Ingress {
		var ing Ingress
		for j, fe := range in.FromEndpoints {
			sel, err := compileSelector(fe)
			if err != nil {
				return r, fmt.Errorf("ingress[%d].fromEndpoints[%d]: %w", i, j, err)
			}
			if !mentions(sel, identity.LabelPodNamespace) {
				if ns == "" {
					sel = append(sel, Requirement{Source: identity.SourceK8s, Key: identity.LabelPodNamespace, Op: OpExists})
				} else {
					sel = append(sel, Requirement{Source: identity.SourceK8s, Key: identity.LabelPodNamespace, Op: OpIn, Values: []string{ns}})
				}
			}
			ing.From = append(ing.From, sortReqs(sel))
		}
		for j, pr := range in.ToPorts {
			for k, pp := range pr.Ports {
				ports, err := compilePort(pp)
				if err != nil {
					return r, fmt.Errorf("ingress[%d].toPorts[%d].ports[%d]: %w", i, j, k, err)
				}
				ing.Ports = append(ing.Ports, ports...)
			}
		}
		if len(ing.Ports) == 0 {
			ing.Ports = []Port{{}} // all ports, all protocols
		}
		r.Ingress = append(r.Ingress, ing)
	}
	return r, nil
}

func compilePort(pp PortProtocol) ([]Port, error) {
	var port uint64
	if pp.Port != "" {
		v, err := strconv.ParseUint(pp.Port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("port %q: want a number in [0, 65535]", pp.Port)
		}
		port = v
	}
	switch pp.Protocol {
	case "TCP":
		return []Port{{Port: uint16(port), Proto: policykey.ProtoTCP}}, nil
	case "UDP":
		return []Port{{Port: uint16(port), Proto: policykey.ProtoUDP}}, nil
	case "", "ANY":
		return []Port{{Port: uint16(port), Proto: policykey.ProtoTCP}, {Port: uint16(port), Proto: policykey.ProtoUDP}}, nil
	}
	return nil, fmt.Errorf("protocol %q: want TCP, UDP or ANY", pp.Protocol)
}

func compileSelector(s LabelSelector) ([]Requirement, error) {
	var out []Requirement
	for k, v := range s.MatchLabels {
		src, key := splitKey(k)
		if key == "" {
			return nil, fmt.Errorf("matchLabels: empty key in %q", k)
		}
		out = append(out, Requirement{Source: src, Key: key, Op: OpIn, Values: []string{v}})
	}
	for i, e := range s.MatchExpressions {
		src, key := splitKey(e.Key)
		if key == "" {
			return nil, fmt.Errorf("matchExpressions[%d]: empty key", i)
		}
		switch e.Operator {
		case OpIn, OpNotIn:
			if len(e.Values) == 0 {
				return nil, fmt.Errorf("matchExpressions[%d]: operator %s needs values", i, e.Operator)
			}
		case OpExists, OpDoesNotExist:
			if len(e.Values) != 0 {
				return nil, fmt.Errorf("matchExpressions[%d]: operator %s takes no values", i, e.Operator)
			}
		default:
			return nil, fmt.Errorf("matchExpressions[%d]: unknown operator %q", i, e.Operator)
		}
		vals := append([]string(nil), e.Values...)
		sort.Strings(vals)
		out = append(out, Requirement{Source: src, Key: key, Op: e.Operator, Values: vals})
	}
	return out, nil
}

// splitKey splits "k8s:app" into source and key; "any:" or no source
// means any source ("").
func splitKey(k string) (string, string) {
	for i := 0; i < len(k); i++ {
		if k[i] == ':' {
			src := k[:i]
			if src == "any" {
				src = ""
			}
			return src, k[i+1:]
		}
	}
	return "", k
}

func mentions(reqs []Requirement, key string) bool {
	for _, r := range reqs {
		if r.Key == key {
			return true
		}
	}
	return false
}

func sortReqs(r []Requirement) []Requirement {
	sort.Slice(r, func(i, j int) bool {
		if r[i].Key != r[j].Key {
			return r[i].Key < r[j].Key
		}
		return r[i].Op < r[j].Op
	})
	return r
}
