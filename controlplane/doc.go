// Package controlplane holds the central components whose cost the harness
// measures, and Run, the body of `stampede controlplane`. Which functions
// run depends on the mode:
//
//   - crd: identity garbage collection (identityGC: CiliumIdentities no
//     CiliumEndpoint uses are annotated, then deleted after the heartbeat
//     timeout, as cilium-operator does).
//   - ces: identity GC and the CiliumEndpointSlice controller (cesController:
//     first come first served or, as Cilium <= 1.17, by identity
//     (controlPlane.ces.sliceMode), at most 100 per slice, batched writes
//     at the release's Helm rate for the cluster's node count).
//   - kvstore: the kvstore identity GC (kvstoreGC: master keys without value
//     keys, deleted after two rounds). Both GCs delete at most
//     identityGC.rateLimit per identityGC.rateInterval (gcLimiter).
//   - operator: identity GC and operator-managed identities
//     (operatorIdentities: one CiliumIdentity per label set, created only
//     here, failures retried with the operator work queue's backoff).
//   - xds: the xDS control plane (xdsSource watching Pods, Namespaces and
//     CiliumNetworkPolicies into an xds.Model, served by an xds.Server; see
//     controlplane/xds and, for the agent side, agentsim/xdsclient).
//
// Lifecycle: Run validates its Config and builds the mode's functions
// (each owning its informers when it runs) without starting any, so that a
// bad knob returns with nothing left running; then internal/daemon.Run
// serves /metrics and /debug/pprof from a registry of its own, starts the
// functions, announces the endpoints with internal/ready, and when the
// context ends (SIGTERM in the command) stops everything and waits for it.
// A function that fails ends Run with its error.
//
// controlplane/etcd is the etcd of kvstore mode (and the local backend's
// API server storage), run by `stampede etcd` as a process of its own;
// kvstoregc.go here is the operator's identity GC, one of its clients.
package controlplane
