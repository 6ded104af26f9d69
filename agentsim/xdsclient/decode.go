package xdsclient

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/xdsapi"
)

// decoded is one validated resource, or for a removal only its parsed name.
type decoded struct {
	typ     string
	name    string
	version string
	size    int // serialized bytes (upserts)

	id        uint32 // identities and hosts
	labels    []string
	addrs     []netip.Addr
	rules     []policy.Rule
	ep        Endpoint
	namespace string // policies and endpoints
	objName   string
}

func shortType(typeURL string) string {
	if i := strings.LastIndexByte(typeURL, '.'); i >= 0 {
		return typeURL[i+1:]
	}
	return typeURL
}

// decodeName parses a resource name of type t.
func decodeName(t, name string) (decoded, error) {
	d := decoded{typ: t, name: name}
	switch t {
	case xdsapi.TypeIdentity, xdsapi.TypeIdentityHosts:
		id, err := strconv.ParseUint(name, 10, 32)
		if err != nil || id == 0 {
			return d, fmt.Errorf("%s %q: name is not a non-zero identity number", shortType(t), name)
		}
		d.id = uint32(id)
	case xdsapi.TypePolicy, xdsapi.TypeEndpoint:
		ns, n, ok := strings.Cut(name, "/")
		if !ok || ns == "" || n == "" || strings.Contains(n, "/") {
			return d, fmt.Errorf("%s %q: name is not namespace/name", shortType(t), name)
		}
		d.namespace, d.objName = ns, n
	default:
		return d, fmt.Errorf("unknown type %q", t)
	}
	return d, nil
}

// decode unpacks and validates one resource. name is the delta resource
// name ("" in state-of-the-world, where the name comes from the content).
func decode(t, name string, a *anypb.Any) (decoded, error) {
	if a == nil {
		return decoded{}, fmt.Errorf("%s %q: no resource body", shortType(t), name)
	}
	if a.GetTypeUrl() != t {
		return decoded{}, fmt.Errorf("%s %q: body has type %q", shortType(t), name, a.GetTypeUrl())
	}
	var msg proto.Message
	switch t {
	case xdsapi.TypeIdentity:
		msg = &xdsapi.Identity{}
	case xdsapi.TypeIdentityHosts:
		msg = &xdsapi.IdentityHosts{}
	case xdsapi.TypePolicy:
		msg = &xdsapi.Policy{}
	case xdsapi.TypeEndpoint:
		msg = &xdsapi.Endpoint{}
	default:
		return decoded{}, fmt.Errorf("unknown type %q", t)
	}
	if err := a.UnmarshalTo(msg); err != nil {
		return decoded{}, fmt.Errorf("%s %q: %w", shortType(t), name, err)
	}
	var own string // the name the content implies
	switch m := msg.(type) {
	case *xdsapi.Identity:
		own = strconv.FormatUint(uint64(m.GetId()), 10)
	case *xdsapi.IdentityHosts:
		own = strconv.FormatUint(m.GetPolicy(), 10)
	case interface {
		GetNamespace() string
		GetName() string
	}: // *xdsapi.Policy and *xdsapi.Endpoint
		own = m.GetNamespace() + "/" + m.GetName()
	}
	if name == "" {
		name = own
	} else if name != own {
		return decoded{}, fmt.Errorf("%s %q: content names it %q", shortType(t), name, own)
	}
	d, err := decodeName(t, name)
	if err != nil {
		return d, err
	}
	switch m := msg.(type) {
	case *xdsapi.Identity:
		if !slices.IsSorted(m.GetLabels()) {
			return d, fmt.Errorf("Identity %q: labels are not sorted", name)
		}
		for i, l := range m.GetLabels() {
			src, kv, ok := strings.Cut(l, ":")
			if !ok || src == "" || kv == "" || !strings.Contains(kv, "=") {
				return d, fmt.Errorf("Identity %q: labels[%d] %q is not source:key=value", name, i, l)
			}
		}
		d.labels = m.GetLabels()
	case *xdsapi.IdentityHosts:
		d.addrs = make([]netip.Addr, 0, len(m.GetHostAddresses()))
		for i, h := range m.GetHostAddresses() {
			ip, err := netip.ParseAddr(h)
			if err != nil {
				return d, fmt.Errorf("IdentityHosts %q: host_addresses[%d]: %w", name, i, err)
			}
			d.addrs = append(d.addrs, ip)
		}
	case *xdsapi.Policy:
		rules, err := compileRules(m)
		if err != nil {
			return d, fmt.Errorf("Policy %q: %w", name, err)
		}
		d.rules = rules
	case *xdsapi.Endpoint:
		ip, err := netip.ParseAddr(m.GetIp())
		if err != nil {
			return d, fmt.Errorf("Endpoint %q: ip: %w", name, err)
		}
		if m.GetIdentity() == 0 {
			return d, fmt.Errorf("Endpoint %q: identity is 0", name)
		}
		d.ep = Endpoint{Namespace: m.GetNamespace(), Name: m.GetName(), IP: ip, Identity: m.GetIdentity()}
	}
	return d, nil
}

func (c *Client) upsert(d decoded) error {
	c.upserts.Add(1)
	s := c.cfg.Sink
	switch d.typ {
	case xdsapi.TypeIdentity:
		return s.UpsertIdentity(d.id, d.labels)
	case xdsapi.TypeIdentityHosts:
		return s.SetIdentityHosts(d.id, d.addrs)
	case xdsapi.TypePolicy:
		return s.UpsertPolicy(d.namespace, d.objName, d.rules)
	default:
		return s.SetEndpoint(d.ep)
	}
}

func (c *Client) remove(d decoded) error {
	c.deletes.Add(1)
	s := c.cfg.Sink
	switch d.typ {
	case xdsapi.TypeIdentity:
		return s.DeleteIdentity(d.id)
	case xdsapi.TypeIdentityHosts:
		return s.DeleteIdentityHosts(d.id)
	case xdsapi.TypePolicy:
		return s.DeletePolicy(d.namespace, d.objName)
	default:
		return s.DeleteEndpoint(d.namespace, d.objName)
	}
}

// compileRules converts and validates a policy's rules.
func compileRules(m *xdsapi.Policy) ([]policy.Rule, error) {
	rules := make([]policy.Rule, 0, len(m.GetRules()))
	for i, r := range m.GetRules() {
		subj, err := selector(r.GetSubject())
		if err != nil {
			return nil, fmt.Errorf("rules[%d].subject: %w", i, err)
		}
		pr := policy.Rule{Policy: m.GetName(), Namespace: m.GetNamespace(), Subject: subj}
		for j, in := range r.GetIngress() {
			var ing policy.Ingress
			for k, f := range in.GetFrom() {
				sel, err := selector(f)
				if err != nil {
					return nil, fmt.Errorf("rules[%d].ingress[%d].from[%d]: %w", i, j, k, err)
				}
				ing.From = append(ing.From, sel)
			}
			for k, p := range in.GetPorts() {
				if p.GetPort() > 65535 || p.GetProto() > 255 {
					return nil, fmt.Errorf("rules[%d].ingress[%d].ports[%d]: port %d/proto %d out of range", i, j, k, p.GetPort(), p.GetProto())
				}
				ing.Ports = append(ing.Ports, policy.Port{Port: uint16(p.GetPort()), Proto: uint8(p.GetProto())})
			}
			pr.Ingress = append(pr.Ingress, ing)
		}
		rules = append(rules, pr)
	}
	return rules, nil
}

func selector(s *xdsapi.Selector) (policy.Selector, error) {
	out := make(policy.Selector, 0, len(s.GetRequirements()))
	for i, r := range s.GetRequirements() {
		switch r.GetOp() {
		case policy.OpIn, policy.OpNotIn:
			if len(r.GetValues()) == 0 {
				return nil, fmt.Errorf("requirements[%d]: %s needs values", i, r.GetOp())
			}
		case policy.OpExists, policy.OpDoesNotExist:
		default:
			return nil, fmt.Errorf("requirements[%d]: unknown operator %q", i, r.GetOp())
		}
		if r.GetKey() == "" {
			return nil, fmt.Errorf("requirements[%d]: empty key", i)
		}
		out = append(out, policy.Requirement{Source: r.GetSource(), Key: r.GetKey(), Op: r.GetOp(), Values: r.GetValues()})
	}
	return out, nil
}
