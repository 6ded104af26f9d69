// Package identity computes Cilium security identities' label sets the way
// cilium-agent does: the label filter (pkg/labelsfilter, configurable with
// Cilium's --labels syntax), the identity labels of a pod (its filtered labels
// plus the namespace, service account, cluster and namespace-label labels,
// all with source "k8s"), the sorted label-key string Cilium's kvstore
// allocator uses ("k8s:a=b;k8s:c=d;", pkg/labels SortedList), the
// CiliumIdentity object shape, and the cluster-local ID range.
//
// Everything here is pure and safe for concurrent use; an Interner may be
// shared by many agents of one process to share immutable strings and label
// sets.
package identity
