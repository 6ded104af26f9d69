// Package controlplane holds the central components whose cost the harness
// measures: the operator (identity garbage collection, the
// CiliumEndpointSlice controller, operator-managed identities) and the
// central xDS control plane built on go-control-plane.
package controlplane
