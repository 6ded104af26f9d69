// Package manifests holds the Kubernetes manifests Stampede installs on a
// real API server (the local kube-apiserver, a kind cluster, or an existing
// cluster when asked to): the CustomResourceDefinitions of the cilium.io
// types the project uses (CiliumIdentity, CiliumEndpoint,
// CiliumEndpointSlice, CiliumNetworkPolicy, CiliumNode, and the
// CiliumClusterwideNetworkPolicy and CiliumCIDRGroup the agents watch),
// embedded from crds/.
//
// The CRDs are written for Stampede, minimal but structurally compatible
// with Cilium's own: the fields Stampede writes have Cilium's names, types
// and required lists; the parts it does not model keep unknown fields
// (x-kubernetes-preserve-unknown-fields). harness's local backend test
// proves the compatibility by installing Cilium's reference CRDs and
// dry-running the objects Stampede writes against them.
//
// InstallCRDs creates or updates them through a dynamic client and waits
// until the server reports them Established. The package holds no state.
package manifests
