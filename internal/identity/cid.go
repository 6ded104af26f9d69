package identity

import (
	"fmt"
	"strconv"
	"strings"
)

// ID is a numeric security identity.
type ID uint32

// The range of cluster-local identities the allocator hands out
// (pkg/identity/numericidentity.go: MinimalAllocationIdentity = 256,
// MaximumAllocationIdentity = 2^16-1 for cluster ID 0).
const (
	MinID ID = 256
	MaxID ID = 65535
)

// World is the reserved identity of a peer the ipcache does not know
// (pkg/identity/numericidentity.go: ReservedIdentityWorld = 2).
const World ID = 2

// ParseID parses a CiliumIdentity name.
func ParseID(s string) (ID, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("identity name %q: %w", s, err)
	}
	return ID(v), nil
}

// String is the decimal form used as the CiliumIdentity name.
func (id ID) String() string { return strconv.FormatUint(uint64(id), 10) }

// CiliumIdentity API group, version and kind.
const (
	CiliumIdentityAPIVersion = "cilium.io/v2"
	CiliumIdentityKind       = "CiliumIdentity"
	CiliumIdentityResource   = "ciliumidentities"
)

// ObjectMeta is the part of metadata the project writes.
type ObjectMeta struct {
	Name            string            `json:"name"`
	Labels          map[string]string `json:"labels,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
}

// CiliumIdentity is the cluster-scoped cilium.io/v2 CiliumIdentity object:
// metadata.name is the numeric ID, security-labels the full label set.
type CiliumIdentity struct {
	APIVersion     string            `json:"apiVersion"`
	Kind           string            `json:"kind"`
	Metadata       ObjectMeta        `json:"metadata"`
	SecurityLabels map[string]string `json:"security-labels"`
}

// NewCiliumIdentity builds the object Cilium's CRD allocator creates
// (pkg/k8s/identitybackend AllocateID): metadata.labels are the k8s-source
// labels without their "k8s:" prefix, except the synthesised namespace
// labels (SanitizeK8sLabels); security-labels hold every label.
func NewCiliumIdentity(id ID, l Labels) CiliumIdentity {
	meta := make(map[string]string, len(l))
	for _, x := range l {
		if x.Source != SourceK8s || strings.HasPrefix(x.Key, NamespaceLabelsPrefix) {
			continue
		}
		meta[x.Key] = x.Value
	}
	return CiliumIdentity{
		APIVersion:     CiliumIdentityAPIVersion,
		Kind:           CiliumIdentityKind,
		Metadata:       ObjectMeta{Name: id.String(), Labels: meta},
		SecurityLabels: l.SecurityLabels(),
	}
}
