package agentsim

import (
	"context"
	"strings"

	"github.com/stampede-sim/stampede/scenarios"
)

// The resources a cilium-agent lists and watches, as the release it
// follows does with Helm's defaults. Each is one reflector (a LIST, then a
// WATCH resumed from its resourceVersion), over the agent's own
// connection: together they set the start-up LIST load of a restart storm
// and the API server's watcher count. Where this file counts objects
// instead of acting on them, the simulation has no behaviour that depends
// on them (no Services, no other policy kinds); the load is what matters.
//
// The set, v1.17 to v1.19 (daemon/k8s/resources.go ResourcesCell and
// LocalNodeCell; pkg/k8s/watchers/watcher.go enableK8sWatchers and
// ciliumResourceToGroupMapping; pkg/k8s/synced/crd.go
// agentCRDResourceNames):
//
//   - Pods of the agent's node (fieldSelector spec.nodeName), Namespaces;
//   - Services not handed to another proxy (label selector
//     !service.kubernetes.io/service-proxy-name) and EndpointSlices not
//     mirrored from other clusters (endpointslice.kubernetes.io/managed-by
//     != endpointslice-mesh-controller.cilium.io): pkg/k8s/resource_ctors.go
//     ServiceResource and EndpointsResource with pkg/k8s/utils
//     GetServiceAndEndpointListOptionsModifier and
//     GetEndpointSliceListOptionsModifier, read by the load-balancer
//     reflector (pkg/loadbalancer/reflectors/k8s.go) in v1.18 and v1.19;
//     older versions of these modifiers also left headless services out;
//   - the agent's own Node and own CiliumNode (fieldSelector
//     metadata.name: LocalNodeResource, LocalCiliumNodeResource);
//   - NetworkPolicies (enable-k8s-networkpolicy, default true),
//     CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies and
//     CiliumCIDRGroups (cilium.io/v2 since v1.18, cilium/cilium#38940;
//     v2alpha1 before);
//   - CiliumIdentities, unless identities live in the kvstore;
//   - every CiliumNode and every CiliumEndpoint (or CiliumEndpointSlice
//     with enable-cilium-endpoint-slice), unless a kvstore is configured:
//     since v1.17 enableK8sWatchers starts neither in kvstore mode (the
//     CRD to kvstore handover is gone, cilium/cilium#35741, and with it
//     the hidden kvstore-pod-network-support flag in v1.18,
//     cilium/cilium#38040). --disable-endpoint-crd drops the endpoint
//     watch in every mode but slim slices (below).
//
// By axes (scenarios.Axes): on the apiserver read path the 10 base
// watches, CiliumIdentities, every CiliumNode and CiliumEndpoints, or
// CiliumEndpointSlices with ces or ces-slim endpoints (13). With ces-slim
// the slice watch stays even with --disable-endpoint-crd: since
// cilium/cilium#45698 the flag pairs with the slim controller, slices
// being the only endpoint source (inferred; the post-#45698
// agentCRDResourceNames was not read). On the kvstore read path the 10
// base watches. On the mesh read path (CFP-44774, "Scope of offloading")
// the same 10: identities, endpoints or slices and every CiliumNode come
// from a replica's etcd, but the agent keeps the watch of its own
// CiliumNode, which is not a read of remote state: its node specer
// (pkg/node NewNodeSpecer) and cluster-pool IPAM
// (waitForNodeIPAMAllocationCIDROnCiliumNode) read its pod CIDRs there.
// (The design proposed 9, without it.)
//
// Not modelled: watches of features Helm leaves off (LocalRedirectPolicy,
// EgressGatewayPolicy, Envoy configs, BGP, L2 announcements, multi-pool
// IPAM), and the agent's own writes of its CiliumNode.

// Paths of the resources only this file watches.
const (
	pathServices        = "/api/v1/services"
	pathEndpointSlices  = "/apis/discovery.k8s.io/v1/endpointslices"
	pathNetworkPolicies = "/apis/networking.k8s.io/v1/networkpolicies"
	pathCCNPs           = "/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies"
	pathCiliumNodes     = "/apis/cilium.io/v2/ciliumnodes"
)

// Names of the watches whose resource name is shared with another watch.
const (
	watchLocalCiliumNode = "ciliumnodes-local"
)

// Label selectors of the Services and EndpointSlices watches.
const (
	selectServices       = "!service.kubernetes.io/service-proxy-name"
	selectEndpointSlices = "endpointslice.kubernetes.io/managed-by!=endpointslice-mesh-controller.cilium.io"
)

// ccgVersionSince is the release that watches CiliumCIDRGroups at v2.
const ccgVersionSince = "1.18"

// pathCIDRGroups is the CiliumCIDRGroups collection release r watches.
func pathCIDRGroups(r *scenarios.Release) string {
	if r.AtLeast(ccgVersionSince) {
		return "/apis/cilium.io/v2/ciliumcidrgroups"
	}
	return "/apis/cilium.io/v2alpha1/ciliumcidrgroups"
}

// agentWatches lists the watches of a cilium-agent of release r on node
// with axes (not the xds read path, whose agents have no API client).
func agentWatches(r *scenarios.Release, axes scenarios.Axes, node string, disableEndpointCRD bool) []resourceSpec {
	byName := func(f, v string) map[string]string { return map[string]string{"fieldSelector": f + "=" + v} }
	ws := []resourceSpec{
		{name: "pods", path: pathPods, params: byName("spec.nodeName", node)},
		{name: "namespaces", path: pathNamespaces},
		{name: "services", path: pathServices, params: map[string]string{"labelSelector": selectServices}},
		{name: "endpointslices", path: pathEndpointSlices, params: map[string]string{"labelSelector": selectEndpointSlices}},
		{name: "nodes", path: pathNodes, params: byName("metadata.name", node)},
		{name: watchLocalCiliumNode, path: pathCiliumNodes, params: byName("metadata.name", node)},
		{name: "networkpolicies", path: pathNetworkPolicies},
		{name: "ciliumnetworkpolicies", path: pathCNPs},
		{name: "ciliumclusterwidenetworkpolicies", path: pathCCNPs},
		{name: "ciliumcidrgroups", path: pathCIDRGroups(r)},
	}
	if !axes.AgentsWatchCiliumCRDs() {
		return ws
	}
	ws = append(ws,
		resourceSpec{name: "ciliumidentities", path: pathCIDs},
		resourceSpec{name: "ciliumnodes", path: pathCiliumNodes},
	)
	switch {
	case axes.Endpoints == scenarios.EndpointsCESSlim:
		ws = append(ws, resourceSpec{name: "ciliumendpointslices", path: pathCESs})
	case disableEndpointCRD:
	case axes.Endpoints == scenarios.EndpointsCES:
		ws = append(ws, resourceSpec{name: "ciliumendpointslices", path: pathCESs})
	default:
		ws = append(ws, resourceSpec{name: "ciliumendpoints", path: pathCEPs})
	}
	return ws
}

// startWatches starts a reflector per watch of the agent; start runs it
// and waits for its first list before the endpoint workers start.
func (a *Agent) startWatches(start func(run func(context.Context), synced chan struct{})) {
	for _, spec := range agentWatches(a.cfg.Release, a.cfg.Axes, a.cfg.Node, a.cfg.Knobs.DisableEndpointCRD) {
		a.startWatch(spec, start, nil)
	}
}

// watchGate decides whether what a watch brings still reaches the agent:
// the mesh client's API server fallback hands a resource over to a
// replica, after which its reflector's lists and events are dropped.
type watchGate interface {
	// apply runs f (applying a list if list is set, an event otherwise)
	// if the resource is still read from the API server, and keeps the
	// resource from being handed over meanwhile.
	apply(resource string, list bool, f func())
}

// startWatch starts the reflector of spec; gate, if set, stands between
// the reflector and the agent.
func (a *Agent) startWatch(spec resourceSpec, start func(run func(context.Context), synced chan struct{}), gate watchGate) {
	// Watches of the agent's own objects are its alone; the others
	// carry the same frames to every agent of the shard.
	frames := a.cfg.Frames
	if spec.params["fieldSelector"] != "" {
		frames = nil
	}
	switch spec.name {
	case "pods":
		startReflector(a, spec, gated(spec.name, gate, handler[slimPod]{replace: a.replacePods, event: a.onPod}), frames, start)
	case "namespaces":
		startReflector(a, spec, gated(spec.name, gate, handler[slimNamespace]{replace: a.replaceNamespaces, event: a.onNamespace}), frames, start)
	case "nodes":
		startReflector(a, spec, gated(spec.name, gate, handler[slimNode]{replace: a.replaceNodes, event: a.onNode}), frames, start)
	case "ciliumnetworkpolicies":
		startReflector(a, spec, gated(spec.name, gate, handler[slimCNP]{replace: a.replacePolicies, event: a.onPolicy}), frames, start)
	case "ciliumidentities":
		startReflector(a, spec, gated(spec.name, gate, handler[slimCID]{replace: a.replaceCIDs, event: a.onCID}), frames, start)
	case "ciliumendpoints":
		startReflector(a, spec, gated(spec.name, gate, handler[slimCEP]{replace: a.replaceCEPs, event: a.onCEP}), frames, start)
	case "ciliumendpointslices":
		startReflector(a, spec, gated(spec.name, gate, handler[slimCES]{replace: a.replaceSlices, event: a.onSlice}), frames, start)
	default:
		// Counted only: the reflector's work counters already hold
		// what a cilium-agent would (events, objects and their sizes).
		startReflector(a, spec, gated(spec.name, gate, handler[slimObjectMeta]{
			replace: func([]slimObjectMeta) {},
			event:   func(string, *slimObjectMeta) { a.events.Add(1) },
		}), frames, start)
	}
}

// gated is h behind gate (h itself if gate is nil).
func gated[T any](resource string, gate watchGate, h handler[T]) handler[T] {
	if gate == nil {
		return h
	}
	return handler[T]{
		replace: func(items []T) { gate.apply(resource, true, func() { h.replace(items) }) },
		event:   func(typ string, obj *T) { gate.apply(resource, false, func() { h.event(typ, obj) }) },
	}
}

// startReflector starts a reflector of spec with handler h.
func startReflector[T any, PT interface {
	*T
	slimObject
}](a *Agent, spec resourceSpec, h handler[T], frames *frameCache, start func(run func(context.Context), synced chan struct{})) {
	r := newReflector[T, PT](a, spec, h, frames)
	start(r.run, r.synced)
}

// slimObjectMeta is an object of a resource the agent only counts: its
// name, namespace and resourceVersion.
type slimObjectMeta struct {
	watchStatus
	Metadata struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace,omitempty"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
}

func (o *slimObjectMeta) resourceVersion() string { return o.Metadata.ResourceVersion }

func (o *slimObjectMeta) objectName() (string, string) { return o.Metadata.Namespace, o.Metadata.Name }

func (o *slimObjectMeta) key() string {
	return strings.Clone(podKey(o.Metadata.Namespace, o.Metadata.Name))
}
