package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/identity"
)

// change is one key a converter wants written (value set) or deleted.
type change struct {
	key   string // relative to the writer's prefix
	value []byte // nil: delete
}

// ----- CiliumIdentities -----

// ciliumIdentity is the part of a CiliumIdentity the mirror reads.
type ciliumIdentity struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	SecurityLabels map[string]string `json:"security-labels"`
}

// identityValue is the value of an identity key: the sorted label list
// (CiliumIdentityConverter in clustermesh-apiserver/clustermesh/
// converters.go: labels.Map2Labels(SecurityLabels, "").SortedList(), the
// same "source:key=value;" form identity.Labels.Key writes). An identity
// without security labels is ignored, as there.
func identityValue(cid *ciliumIdentity) ([]byte, error) {
	if len(cid.SecurityLabels) == 0 {
		return nil, errors.New("security-labels: empty")
	}
	if _, err := identity.ParseID(cid.Metadata.Name); err != nil {
		return nil, fmt.Errorf("metadata.name: %w", err)
	}
	l, err := identity.FromSecurityLabels(cid.SecurityLabels)
	if err != nil {
		return nil, fmt.Errorf("security-labels: %w", err)
	}
	return []byte(l.Key()), nil
}

// ----- CiliumEndpoints and CiliumEndpointSlices -----

type endpointNetworking struct {
	Addressing []struct {
		IPv4 string `json:"ipv4,omitempty"`
		IPv6 string `json:"ipv6,omitempty"`
	} `json:"addressing"`
	Node string `json:"node,omitempty"`
}

type namedPort struct {
	Name     string `json:"name"`
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol"`
}

// ciliumEndpoint is the part of a CiliumEndpoint the mirror reads.
type ciliumEndpoint struct {
	Metadata struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		OwnerReferences []struct {
			Kind string `json:"kind"`
			UID  string `json:"uid"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Status struct {
		Identity *struct {
			ID int64 `json:"id"`
		} `json:"identity"`
		Networking *endpointNetworking `json:"networking"`
		Encryption *struct {
			Key int `json:"key"`
		} `json:"encryption"`
		NamedPorts     []namedPort `json:"named-ports"`
		ServiceAccount string      `json:"service-account"`
	} `json:"status"`
}

// ciliumEndpointSlice is the part of a CiliumEndpointSlice the mirror
// reads (JSON names as in testdata/ciliumendpointslices.txtar).
type ciliumEndpointSlice struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Namespace string `json:"namespace"`
	Endpoints []struct {
		Name       string              `json:"name"`
		ID         int64               `json:"id"`
		Networking *endpointNetworking `json:"networking"`
		Encryption struct {
			Key int `json:"key"`
		} `json:"encryption"`
		NamedPorts     []namedPort `json:"named-ports"`
		ServiceAccount string      `json:"service-account"`
		PodUID         string      `json:"pod-uid"`
	} `json:"endpoints"`
}

// endpointEntries is ciliumEndpointMapper (converters.go): one entry per
// address of the endpoint, IPv4 and IPv6, keyed by the address.
func (ep *ciliumEndpoint) entries() []agentcontract.IPIdentityPair {
	n := ep.Status.Networking
	if n == nil {
		return nil
	}
	base := agentcontract.IPIdentityPair{
		HostIP: parseIP(n.Node), K8sNamespace: ep.Metadata.Namespace, K8sPodName: ep.Metadata.Name,
		K8sServiceAccount: ep.Status.ServiceAccount, NamedPorts: namedPorts(ep.Status.NamedPorts),
	}
	// The pod UID comes from the CEP's owner reference to its pod
	// (testdata/ciliumendpoints.txtar: ownerReferences kind Pod, uid
	// cep-pod-uid → K8sPodUID).
	for _, o := range ep.Metadata.OwnerReferences {
		if o.Kind == "Pod" {
			base.K8sPodUID = o.UID
		}
	}
	if ep.Status.Identity != nil {
		base.ID = uint32(ep.Status.Identity.ID)
	}
	if ep.Status.Encryption != nil {
		base.Key = uint8(ep.Status.Encryption.Key)
	}
	return addressEntries(base, n)
}

// entries is ciliumEndpointSliceMapper (converters.go): the namespace is
// the slice's, the rest each member's.
func (ces *ciliumEndpointSlice) entries() []agentcontract.IPIdentityPair {
	var out []agentcontract.IPIdentityPair
	for _, ep := range ces.Endpoints {
		if ep.Networking == nil {
			continue
		}
		base := agentcontract.IPIdentityPair{
			HostIP: parseIP(ep.Networking.Node), ID: uint32(ep.ID), Key: uint8(ep.Encryption.Key),
			K8sNamespace: ces.Namespace, K8sPodName: ep.Name, K8sPodUID: ep.PodUID,
			K8sServiceAccount: ep.ServiceAccount, NamedPorts: namedPorts(ep.NamedPorts),
		}
		out = append(out, addressEntries(base, ep.Networking)...)
	}
	return out
}

func addressEntries(base agentcontract.IPIdentityPair, n *endpointNetworking) []agentcontract.IPIdentityPair {
	var out []agentcontract.IPIdentityPair
	for _, a := range n.Addressing {
		for _, s := range []string{a.IPv4, a.IPv6} {
			ip := parseIP(s)
			if ip == nil {
				continue
			}
			e := base
			e.IP = ip
			out = append(out, e)
		}
	}
	return out
}

func parseIP(s string) net.IP {
	ip := net.ParseIP(s)
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

func namedPorts(in []namedPort) []agentcontract.NamedPort {
	if len(in) == 0 {
		return nil
	}
	out := make([]agentcontract.NamedPort, len(in))
	for i, p := range in {
		out[i] = agentcontract.NamedPort{Name: p.Name, Port: p.Port, Protocol: p.Protocol}
	}
	return out
}

// ownedEntries follows CachedConverter (converters.go, entryGroup): several
// objects may claim one ipcache key; the first claimant is the primary and
// its entry is written; later claimants wait in order; when the primary
// drops the key (deleted, or no longer has the address) the next
// claimant's entry is written; the key is deleted when no one claims it.
// Not safe for concurrent use: one informer handler calls it.
type ownedEntries struct {
	byOwner map[string]map[string][]byte // owner -> key -> its entry
	groups  map[string]*entryGroup       // key -> claimants
}

type entryGroup struct {
	primary string
	pending []string // owners in claim order; their entries are in byOwner
}

func newOwnedEntries() *ownedEntries {
	return &ownedEntries{byOwner: map[string]map[string][]byte{}, groups: map[string]*entryGroup{}}
}

// convert applies an owner's new entries (nil after a delete) and returns
// the keys to write or delete.
func (o *ownedEntries) convert(owner string, entries []agentcontract.IPIdentityPair) ([]change, error) {
	current := make(map[string][]byte, len(entries))
	for _, e := range entries {
		v, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("encode ipcache entry %s: %w", e.IP, err)
		}
		current[e.IP.String()] = v
	}
	stale := o.byOwner[owner]
	if len(current) == 0 {
		delete(o.byOwner, owner)
	} else {
		o.byOwner[owner] = current
	}
	var out []change
	keys := make([]string, 0, len(current))
	for k := range current {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		g := o.groups[k]
		if g == nil {
			g = &entryGroup{}
			o.groups[k] = g
		}
		if g.primary == "" || g.primary == owner {
			g.primary = owner
			out = append(out, change{key: k, value: current[k]})
		} else if !slices.Contains(g.pending, owner) {
			g.pending = append(g.pending, owner)
		}
	}
	staleKeys := make([]string, 0, len(stale))
	for k := range stale {
		if _, ok := current[k]; !ok {
			staleKeys = append(staleKeys, k)
		}
	}
	slices.Sort(staleKeys)
	for _, k := range staleKeys {
		g := o.groups[k]
		if g.primary != owner {
			g.pending = slices.DeleteFunc(g.pending, func(p string) bool { return p == owner })
			continue
		}
		if len(g.pending) > 0 {
			g.primary, g.pending = g.pending[0], g.pending[1:]
			out = append(out, change{key: k, value: o.byOwner[g.primary][k]})
			continue
		}
		delete(o.groups, k)
		out = append(out, change{key: k})
	}
	return out, nil
}

// ----- CiliumNodes -----

// ciliumNode is the part of a CiliumNode the mirror reads.
type ciliumNode struct {
	Metadata struct {
		Name        string            `json:"name"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Addresses []struct {
			Type string `json:"type"`
			IP   string `json:"ip"`
		} `json:"addresses"`
		BootID string `json:"bootid"`
		Health struct {
			IPv4 string `json:"ipv4"`
			IPv6 string `json:"ipv6"`
		} `json:"health"`
		Ingress struct {
			IPv4 string `json:"ipv4"`
			IPv6 string `json:"ipv6"`
		} `json:"ingress"`
		Encryption struct {
			Key int `json:"key"`
		} `json:"encryption"`
		IPAM struct {
			PodCIDRs []string `json:"podCIDRs"`
		} `json:"ipam"`
	} `json:"spec"`
}

// wgPubKeyAnnotation is where a CiliumNode carries its WireGuard public
// key (pkg/annotation WireguardPublicKey; testdata/ciliumnodes.txtar).
const wgPubKeyAnnotation = "network.cilium.io/wg-pub-key"

// nodeValue follows k8s.ParseCiliumNode as CiliumNodeConverter uses it
// (converters.go; output in testdata/ciliumnodes.txtar): the addresses in
// order, the first IPv4 and IPv6 pod CIDRs as the allocation CIDRs (later
// ones as secondary), health and ingress IPs, the encryption key, labels,
// annotations, the WireGuard key from its annotation, the boot ID; Source
// custom-resource; the cluster name and ID of the replica.
func nodeValue(cn *ciliumNode, cluster string, clusterID uint32) ([]byte, error) {
	n := agentcontract.NodeValue{
		Name: cn.Metadata.Name, Cluster: cluster, ClusterID: clusterID,
		Source: agentcontract.NodeSourceCustomResource, EncryptionKey: uint8(cn.Spec.Encryption.Key),
		IPv4HealthIP: v4(cn.Spec.Health.IPv4), IPv6HealthIP: v6(cn.Spec.Health.IPv6),
		IPv4IngressIP: v4(cn.Spec.Ingress.IPv4), IPv6IngressIP: v6(cn.Spec.Ingress.IPv6),
		Labels: cn.Metadata.Labels, Annotations: cn.Metadata.Annotations,
		WireguardPubKey: cn.Metadata.Annotations[wgPubKeyAnnotation], BootID: cn.Spec.BootID,
	}
	for i, a := range cn.Spec.Addresses {
		ip := parseIP(a.IP)
		if ip == nil {
			return nil, fmt.Errorf("spec.addresses[%d].ip: %q is not an IP address", i, a.IP)
		}
		n.IPAddresses = append(n.IPAddresses, agentcontract.NodeAddress{Type: a.Type, IP: ip})
	}
	for i, c := range cn.Spec.IPAM.PodCIDRs {
		ip, ipn, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("spec.ipam.podCIDRs[%d]: %w", i, err)
		}
		cidr := &agentcontract.IPNet{IP: ipn.IP, Mask: ipn.Mask}
		switch {
		case ip.To4() != nil && n.IPv4AllocCIDR == nil:
			n.IPv4AllocCIDR = cidr
		case ip.To4() != nil:
			n.IPv4SecondaryAllocCIDRs = append(n.IPv4SecondaryAllocCIDRs, cidr)
		case n.IPv6AllocCIDR == nil:
			n.IPv6AllocCIDR = cidr
		default:
			n.IPv6SecondaryAllocCIDRs = append(n.IPv6SecondaryAllocCIDRs, cidr)
		}
	}
	v, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("encode node %s: %w", n.Name, err)
	}
	return v, nil
}

func v4(s string) net.IP {
	if ip := net.ParseIP(strings.TrimSpace(s)); ip != nil {
		return ip.To4()
	}
	return nil
}

func v6(s string) net.IP {
	if ip := net.ParseIP(strings.TrimSpace(s)); ip != nil && ip.To4() == nil {
		return ip
	}
	return nil
}
