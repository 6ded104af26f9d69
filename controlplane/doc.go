// Package controlplane holds the central components whose cost the harness
// measures, and Run, the body of `stampede controlplane`. Which functions
// run depends on the mode:
//
//   - crd: identity garbage collection (identityGC: CiliumIdentities no
//     CiliumEndpoint uses are annotated, then deleted after the heartbeat
//     timeout, as cilium-operator does).
//   - ces: identity GC and the CiliumEndpointSlice controller (cesController:
//     first come first served packing, at most 100 per slice, batched and
//     rate-limited writes).
//   - kvstore: the kvstore identity GC (kvstoreGC: master keys without value
//     keys, deleted after two rounds).
//   - operator: identity GC and operator-managed identities
//     (operatorIdentities: one CiliumIdentity per label set, created only
//     here).
//   - xds: the xDS control plane (xdsSource watching Pods, Namespaces and
//     CiliumNetworkPolicies into an xds.Model, served by an xds.Server; see
//     controlplane/xds and, for the agent side, agentsim/xdsclient).
//
// Lifecycle: Run validates its Config, starts the mode's functions (each a
// goroutine owning its informers), serves /metrics and /debug/pprof from a
// registry of its own, announces its endpoints with internal/ready, and
// when its context ends (SIGTERM in the command) stops everything and
// waits for it. A function that fails ends Run with its error.
package controlplane
