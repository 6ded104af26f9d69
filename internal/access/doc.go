// Package access says who may do what on the API server in each mode, in
// one place, and renders it two ways: as RBAC ClusterRoles and
// ClusterRoleBindings for a real kube-apiserver, and as the fakeapi's
// authorization table (the YAML list of rules that `stampede fakeapi
// --authz-file` reads).
//
// The roles mirror Cilium's Helm chart ClusterRoles (cilium-agent and
// cilium-operator) for the resources Stampede uses:
//
//   - admin (the harness and its probe): group system:masters, everything.
//   - operator (the control plane: identity GC, CES batching,
//     operator-managed identities, the xDS server): group
//     stampede:operators.
//   - agent (one user per simulated node, "node:<name>"): group
//     stampede:agents; reads pods, namespaces, nodes and cilium.io, writes
//     ciliumendpoints and, except in operator mode, creates
//     ciliumidentities. In xds mode agents have no API server credentials at
//     all, so there is no agent role.
//
// Everything here is pure data: no I/O, no state.
package access
