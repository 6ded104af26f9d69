package identity

import (
	"sort"
	"strings"
	"sync"
)

// PodInfo is what identity labels are computed from.
type PodInfo struct {
	Cluster        string
	Namespace      string
	ServiceAccount string
	// PodLabels are the pod's metadata.labels.
	PodLabels map[string]string
	// NamespaceLabels are the namespace's metadata.labels. The namespace's
	// kubernetes.io/metadata.name label, which the API server always sets,
	// is added if missing so that the result does not depend on whether the
	// API server in use sets it.
	NamespaceLabels map[string]string
}

// PodLabels computes a pod's identity labels as cilium-agent does
// (pkg/k8s GetPodMetadata + labelsfilter): the pod's labels, plus
// io.kubernetes.pod.namespace, io.cilium.k8s.policy.serviceaccount,
// io.cilium.k8s.policy.cluster and io.cilium.k8s.namespace.labels.<key> for
// every namespace label, all with source k8s, filtered by f. in, if not nil,
// interns the strings.
func PodLabels(f *Filter, p PodInfo, in *Interner) Labels {
	ls := make([]Label, 0, len(p.PodLabels)+len(p.NamespaceLabels)+4)
	add := func(k, v string) {
		if !f.Keep(SourceK8s, k) {
			return
		}
		ls = append(ls, Label{Source: SourceK8s, Key: in.String(k), Value: in.String(v)})
	}
	for k, v := range p.PodLabels {
		add(k, v)
	}
	for k, v := range p.NamespaceLabels {
		add(NamespaceLabelsPrefix+k, v)
	}
	if _, ok := p.NamespaceLabels[LabelNamespaceMetaName]; !ok {
		add(NamespaceLabelsPrefix+LabelNamespaceMetaName, p.Namespace)
	}
	add(LabelPodNamespace, p.Namespace)
	if p.ServiceAccount != "" {
		add(LabelServiceAccount, p.ServiceAccount)
	}
	if p.Cluster != "" {
		add(LabelCluster, p.Cluster)
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].Key < ls[j].Key })
	return Labels(ls)
}

// Interner shares immutable strings and label sets between the agents of
// one process. The zero value is ready; a nil *Interner interns nothing.
type Interner struct {
	mu     sync.Mutex
	strs   map[string]string
	labels map[string]Labels
}

// String returns the canonical copy of s.
func (in *Interner) String(s string) string {
	if in == nil {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.strs == nil {
		in.strs = map[string]string{}
	}
	return in.str(s)
}

// Labels returns the canonical copy of l (equal label sets share one slice).
// key must be l.Key(); passing it avoids computing it twice.
func (in *Interner) Labels(l Labels, key string) Labels {
	if in == nil {
		return l
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.labels == nil {
		in.labels = map[string]Labels{}
	}
	if c, ok := in.labels[key]; ok {
		return c
	}
	if in.strs == nil {
		in.strs = map[string]string{}
	}
	c := make(Labels, len(l))
	for i, x := range l {
		c[i] = Label{Source: in.str(x.Source), Key: in.str(x.Key), Value: in.str(x.Value)}
	}
	in.labels[in.str(key)] = c
	return c
}

// str returns the canonical copy of s (caller holds mu). A string seen for
// the first time is copied: decoders may hand out strings that share the
// memory of the whole message they came from (goccy/go-json does), and a
// canonical copy lives as long as the interner.
func (in *Interner) str(s string) string {
	if c, ok := in.strs[s]; ok {
		return c
	}
	s = strings.Clone(s)
	in.strs[s] = s
	return s
}
