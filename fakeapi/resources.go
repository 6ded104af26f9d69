package fakeapi

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// resource describes one served resource type.
type resource struct {
	group, version string
	name           string // plural
	singular       string
	kind           string
	namespaced     bool
	// status: the resource has a /status subresource; the main resource
	// then ignores status on create and update.
	status bool
	// pendingStatus is the status a create sets (pods reset to Pending).
	pendingStatus string
	shortNames    []string
	categories    []string
	// smp returns the Go type strategic merge patch uses; nil means
	// strategic merge patch is refused (as for custom resources).
	smp func() any
	// createOnUpdate: PUT of a missing object creates it.
	createOnUpdate bool
	// nodeNameField: spec.nodeName is a supported field selector.
	nodeNameField bool
}

func (r *resource) apiVersion() string {
	if r.group == "" {
		return r.version
	}
	return r.group + "/" + r.version
}

func (r *resource) groupResource() schema.GroupResource {
	return schema.GroupResource{Group: r.group, Resource: r.name}
}

func (r *resource) groupKind() schema.GroupKind {
	return schema.GroupKind{Group: r.group, Kind: r.kind}
}

// builtinResources are the resources every Server serves.
func builtinResources() []*resource {
	return []*resource{
		{version: "v1", name: "namespaces", singular: "namespace", kind: "Namespace", status: true, pendingStatus: `{"phase":"Active"}`, shortNames: []string{"ns"}, smp: func() any { return &corev1.Namespace{} }},
		{version: "v1", name: "pods", singular: "pod", kind: "Pod", namespaced: true, status: true, pendingStatus: `{"phase":"Pending"}`, shortNames: []string{"po"}, categories: []string{"all"}, smp: func() any { return &corev1.Pod{} }, nodeNameField: true},
		{version: "v1", name: "nodes", singular: "node", kind: "Node", status: true, shortNames: []string{"no"}, smp: func() any { return &corev1.Node{} }},
		{version: "v1", name: "configmaps", singular: "configmap", kind: "ConfigMap", namespaced: true, shortNames: []string{"cm"}, smp: func() any { return &corev1.ConfigMap{} }},
		{version: "v1", name: "serviceaccounts", singular: "serviceaccount", kind: "ServiceAccount", namespaced: true, shortNames: []string{"sa"}, smp: func() any { return &corev1.ServiceAccount{} }},
		{group: "coordination.k8s.io", version: "v1", name: "leases", singular: "lease", kind: "Lease", namespaced: true, createOnUpdate: true, smp: func() any { return &coordinationv1.Lease{} }},
		{group: "cilium.io", version: "v2", name: "ciliumidentities", singular: "ciliumidentity", kind: "CiliumIdentity", status: true, shortNames: []string{"ciliumid"}, categories: []string{"cilium"}},
		{group: "cilium.io", version: "v2", name: "ciliumendpoints", singular: "ciliumendpoint", kind: "CiliumEndpoint", namespaced: true, shortNames: []string{"cep", "ciliumep"}, categories: []string{"cilium"}},
		{group: "cilium.io", version: "v2", name: "ciliumnetworkpolicies", singular: "ciliumnetworkpolicy", kind: "CiliumNetworkPolicy", namespaced: true, status: true, shortNames: []string{"cnp", "ciliumnp"}, categories: []string{"cilium", "ciliumpolicy"}},
		{group: "cilium.io", version: "v2", name: "ciliumnodes", singular: "ciliumnode", kind: "CiliumNode", status: true, shortNames: []string{"cn", "ciliumn"}, categories: []string{"cilium"}},
		{group: "cilium.io", version: "v2alpha1", name: "ciliumendpointslices", singular: "ciliumendpointslice", kind: "CiliumEndpointSlice", shortNames: []string{"ces"}, categories: []string{"cilium"}},
		// What else a cilium-agent lists and watches (agentsim/watches.go).
		// Served empty unless a client writes them: Stampede's scenarios
		// have no Services or other policies, but each agent's LIST and
		// its open watch are load the API server carries.
		{version: "v1", name: "services", singular: "service", kind: "Service", namespaced: true, status: true, pendingStatus: `{"loadBalancer":{}}`, shortNames: []string{"svc"}, categories: []string{"all"}, smp: func() any { return &corev1.Service{} }},
		{group: "discovery.k8s.io", version: "v1", name: "endpointslices", singular: "endpointslice", kind: "EndpointSlice", namespaced: true, smp: func() any { return &discoveryv1.EndpointSlice{} }},
		{group: "networking.k8s.io", version: "v1", name: "networkpolicies", singular: "networkpolicy", kind: "NetworkPolicy", namespaced: true, shortNames: []string{"netpol"}, smp: func() any { return &networkingv1.NetworkPolicy{} }},
		{group: "cilium.io", version: "v2", name: "ciliumclusterwidenetworkpolicies", singular: "ciliumclusterwidenetworkpolicy", kind: "CiliumClusterwideNetworkPolicy", status: true, shortNames: []string{"ccnp"}, categories: []string{"cilium", "ciliumpolicy"}},
		// CiliumCIDRGroup is cilium.io/v2 since Cilium 1.18 (v2alpha1
		// still served, deprecated; cilium/cilium#38940) and v2alpha1
		// before. The fake serves both versions, but as two collections
		// without conversion between them: a group written at one version
		// is not seen at the other.
		{group: "cilium.io", version: "v2", name: "ciliumcidrgroups", singular: "ciliumcidrgroup", kind: "CiliumCIDRGroup", shortNames: []string{"ccg"}, categories: []string{"cilium", "ciliumpolicy"}},
		{group: "cilium.io", version: "v2alpha1", name: "ciliumcidrgroups", singular: "ciliumcidrgroup", kind: "CiliumCIDRGroup", shortNames: []string{"ccg"}, categories: []string{"cilium", "ciliumpolicy"}},
	}
}
