package identity

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// DefaultFilterPatterns is Cilium's default identity label filter, in
// --labels syntax, as defaultLabelPrefixCfg in pkg/labelsfilter/filter.go
// lists it: reserved labels, the pod namespace, namespace labels,
// app.kubernetes.io and the cluster label are kept; other io.kubernetes,
// kubernetes.io, beta.kubernetes.io and k8s.io labels, the StatefulSet and
// indexed Job labels, pod-template-generation, pod-template-hash,
// controller-revision-hash, annotation.* and etcd_node are dropped.
var DefaultFilterPatterns = []string{
	`reserved:.*`,
	regexp.QuoteMeta(LabelPodNamespace),
	regexp.QuoteMeta("io.cilium.k8s.namespace.labels"),
	regexp.QuoteMeta("app.kubernetes.io"),
	regexp.QuoteMeta(LabelCluster),
	`!io\.kubernetes`,
	`!kubernetes\.io`,
	`!` + regexp.QuoteMeta("statefulset.kubernetes.io/pod-name"),
	`!` + regexp.QuoteMeta("apps.kubernetes.io/pod-index"),
	`!` + regexp.QuoteMeta("batch.kubernetes.io/job-completion-index"),
	`!.*beta\.kubernetes\.io`,
	`!k8s\.io`,
	`!pod-template-generation`,
	`!pod-template-hash`,
	`!controller-revision-hash`,
	`!annotation.*`,
	`!etcd_node`,
}

// RunLabel is the label Stampede puts on every object it creates on a
// cluster it does not own (its value is the run's ID). It says which run
// an object belongs to and nothing about the workload, so it must not
// become an identity label: Cilium's default filter keeps it (no default
// pattern excludes stampede.io), and then every run would get identities
// of its own, unlike the same workload without Stampede.
const RunLabel = "stampede.io/run"

// RunLabelExclusions are the --labels patterns a user of Cilium would add
// to keep RunLabel out of identities (pkg/labelsfilter/filter.go,
// ParseLabelPrefixCfg, v1.17 to v1.19: a "!" pattern is appended to the
// defaults and, unlike an include pattern, does not make the filter
// inclusive): one for the pod's label, and one for the namespace's, which
// reaches the pod as io.cilium.k8s.namespace.labels.stampede.io/run; that
// one must be longer than the default include of the namespace-label
// prefix, since the longest include wins over a shorter exclude. Patterns
// match at the start of a key, so both end in "$".
var RunLabelExclusions = []string{
	SourceK8s + ":!" + regexp.QuoteMeta(RunLabel) + "$",
	SourceK8s + ":!" + regexp.QuoteMeta(NamespaceLabelsPrefix+RunLabel) + "$",
}

// filterPrefix is one pattern: an optional source, a regular expression
// matched at the start of the label key, and whether it excludes.
type filterPrefix struct {
	ignore bool
	source string
	expr   *regexp.Regexp
}

// Filter decides which labels are identity-relevant, with Cilium's rule: a
// label is kept if no include pattern was configured by the user and no
// exclude pattern matches it, or if the longest matching include is longer
// than the shortest matching exclude.
type Filter struct {
	// memo caches Keep's answers: label keys repeat across pods.
	memo     sync.Map // "source:key" -> bool
	prefixes []filterPrefix
	// whitelist is set when the user gave an include pattern: then only
	// labels matched by an include are kept.
	whitelist bool
}

// DefaultFilter is Cilium's default filter.
func DefaultFilter() *Filter {
	f, err := NewFilter(nil)
	if err != nil {
		// The defaults are constants that compile; reaching this is a
		// programming error caught by the package tests.
		panic(err)
	}
	return f
}

// NewFilter is the default filter extended with RunLabelExclusions and
// user patterns in Cilium's --labels syntax ("[source:][!]regexp"), which
// it appends to the defaults as ParseLabelPrefixCfg does. Any user include
// pattern makes the filter inclusive. Errors name the offending pattern.
func NewFilter(user []string) (*Filter, error) {
	f := &Filter{}
	for _, p := range append(slices.Clone(DefaultFilterPatterns), RunLabelExclusions...) {
		fp, err := parsePattern(p)
		if err != nil {
			return nil, fmt.Errorf("default label pattern %q: %w", p, err)
		}
		f.prefixes = append(f.prefixes, fp)
	}
	for i, p := range user {
		if p == "" {
			continue
		}
		fp, err := parsePattern(p)
		if err != nil {
			return nil, fmt.Errorf("labelFilter[%d] %q: %w", i, p, err)
		}
		if !fp.ignore {
			f.whitelist = true
		}
		f.prefixes = append(f.prefixes, fp)
	}
	return f, nil
}

func parsePattern(s string) (filterPrefix, error) {
	var p filterPrefix
	prefix := s
	if i := strings.IndexByte(s, ':'); i >= 0 {
		p.source, prefix = s[:i], s[i+1:]
	}
	if prefix == "" {
		return p, fmt.Errorf("empty pattern")
	}
	if prefix[0] == '!' {
		p.ignore = true
		prefix = prefix[1:]
	}
	r, err := regexp.Compile(prefix)
	if err != nil {
		return p, fmt.Errorf("compile: %w", err)
	}
	p.expr = r
	return p, nil
}

// match reports whether p matches key from its start and how long the match is.
func (p filterPrefix) match(source, key string) (bool, int) {
	if p.source != "" && p.source != source {
		return false, 0
	}
	loc := p.expr.FindStringIndex(key)
	if loc == nil || loc[0] != 0 {
		return false, 0
	}
	return true, loc[1]
}

// Keep reports whether a label with this source and key is identity-relevant.
func (f *Filter) Keep(source, key string) bool {
	mk := source + ":" + key
	if v, ok := f.memo.Load(mk); ok {
		return v.(bool)
	}
	keep := f.keep(source, key)
	f.memo.Store(mk, keep)
	return keep
}

func (f *Filter) keep(source, key string) bool {
	included, ignored := 0, 0
	for _, p := range f.prefixes {
		ok, n := p.match(source, key)
		if !ok {
			continue
		}
		if p.ignore {
			if ignored == 0 || n < ignored {
				ignored = n
			}
		} else if n > included {
			included = n
		}
	}
	return (!f.whitelist && ignored == 0) || included > ignored
}

// Apply returns the identity-relevant labels of l.
func (f *Filter) Apply(l Labels) Labels {
	out := make(Labels, 0, len(l))
	for _, x := range l {
		if f.Keep(x.Source, x.Key) {
			out = append(out, x)
		}
	}
	return out
}
