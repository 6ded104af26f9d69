package identity

import (
	"fmt"
	"sort"
	"strings"
)

// Label sources and the label keys Cilium synthesises for pods
// (pkg/labels, pkg/k8s/apis/cilium.io const.go).
const (
	SourceK8s      = "k8s"
	SourceReserved = "reserved"

	LabelPodNamespace      = "io.kubernetes.pod.namespace"
	LabelServiceAccount    = "io.cilium.k8s.policy.serviceaccount"
	LabelCluster           = "io.cilium.k8s.policy.cluster"
	NamespaceLabelsPrefix  = "io.cilium.k8s.namespace.labels."
	LabelNamespaceMetaName = "kubernetes.io/metadata.name"
)

// Label is one identity label: source, key and value.
type Label struct {
	Source string
	Key    string
	Value  string
}

// String is the label's source-qualified form "source:key=value".
func (l Label) String() string { return l.Source + ":" + l.Key + "=" + l.Value }

// Labels is a set of identity labels sorted by Key with unique keys, as
// Cilium's labels.Labels map keyed by label key. Treat it as immutable.
type Labels []Label

// NewLabels sorts ls by key; a later label with a duplicate key wins, as a
// map assignment would.
func NewLabels(ls ...Label) Labels {
	out := make(Labels, 0, len(ls))
	idx := make(map[string]int, len(ls))
	for _, l := range ls {
		if i, ok := idx[l.Key]; ok {
			out[i] = l
			continue
		}
		idx[l.Key] = len(out)
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Key is the label set's kvstore key form: each label as
// "source:key=value;" in key order (pkg/labels Labels.SortedList).
func (l Labels) Key() string {
	n := 0
	for _, x := range l {
		n += len(x.Source) + len(x.Key) + len(x.Value) + 3
	}
	var b strings.Builder
	b.Grow(n)
	for _, x := range l {
		b.WriteString(x.Source)
		b.WriteByte(':')
		b.WriteString(x.Key)
		b.WriteByte('=')
		b.WriteString(x.Value)
		b.WriteByte(';')
	}
	return b.String()
}

// String is the same as Key.
func (l Labels) String() string { return l.Key() }

// Get returns the value of the label with the given source and key.
func (l Labels) Get(source, key string) (string, bool) {
	i := sort.Search(len(l), func(i int) bool { return l[i].Key >= key })
	if i < len(l) && l[i].Key == key && l[i].Source == source {
		return l[i].Value, true
	}
	return "", false
}

// Has reports whether l has a label with source and key (any value).
func (l Labels) Has(source, key string) bool {
	_, ok := l.Get(source, key)
	return ok
}

// Equal reports whether two label sets are identical.
func (l Labels) Equal(o Labels) bool {
	if len(l) != len(o) {
		return false
	}
	for i := range l {
		if l[i] != o[i] {
			return false
		}
	}
	return true
}

// SecurityLabels is the CiliumIdentity security-labels map:
// "source:key" -> value (allocator key GetAsMap).
func (l Labels) SecurityLabels() map[string]string {
	m := make(map[string]string, len(l))
	for _, x := range l {
		m[x.Source+":"+x.Key] = x.Value
	}
	return m
}

// FromSecurityLabels parses a security-labels map ("source:key" -> value).
func FromSecurityLabels(m map[string]string) (Labels, error) {
	ls := make([]Label, 0, len(m))
	for k, v := range m {
		src, key, ok := strings.Cut(k, ":")
		if !ok || src == "" || key == "" {
			return nil, fmt.Errorf("security label %q: want source:key", k)
		}
		ls = append(ls, Label{Source: src, Key: key, Value: v})
	}
	return NewLabels(ls...), nil
}

// ParseKey parses the kvstore key form written by Labels.Key.
func ParseKey(s string) (Labels, error) {
	if s == "" {
		return Labels{}, nil
	}
	if !strings.HasSuffix(s, ";") {
		return nil, fmt.Errorf("label key %q: want it to end in ';'", s)
	}
	parts := strings.Split(strings.TrimSuffix(s, ";"), ";")
	ls := make([]Label, 0, len(parts))
	for _, p := range parts {
		src, rest, ok := strings.Cut(p, ":")
		if !ok || src == "" {
			return nil, fmt.Errorf("label key %q: label %q has no source", s, p)
		}
		k, v, ok := strings.Cut(rest, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label key %q: label %q has no key=value", s, p)
		}
		ls = append(ls, Label{Source: src, Key: k, Value: v})
	}
	return NewLabels(ls...), nil
}
