// Package policy turns scenario policy templates into the
// CiliumNetworkPolicy objects the harness writes, compiles received
// CiliumNetworkPolicies into slim Rules, and resolves rules against an
// identity cache into the allowed (identity, port, protocol) set of a local
// endpoint, with Cilium's semantics: selectors match identity labels, and a
// fromEndpoints selector that does not mention the pod namespace label is
// limited to the policy's namespace (pkg/k8s/apis/cilium.io/utils
// getEndpointSelector). The harness, the agents, the ground truth and the
// xDS control plane all call the same functions so that they cannot drift.
//
// Everything here is pure; Rules are immutable once compiled.
package policy
