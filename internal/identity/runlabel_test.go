package identity

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// ciliumDefaultOnly is Cilium's default filter without RunLabelExclusions.
func ciliumDefaultOnly(t *testing.T) *Filter {
	t.Helper()
	f := &Filter{}
	for _, p := range DefaultFilterPatterns {
		fp, err := parsePattern(p)
		if err != nil {
			t.Fatal(err)
		}
		f.prefixes = append(f.prefixes, fp)
	}
	return f
}

// TestRunLabelNotAnIdentityLabel: a workload's identity labels are the
// same with and without the run label on its pods and namespace.
func TestRunLabelNotAnIdentityLabel(t *testing.T) {
	plain := PodInfo{
		Namespace: "ns-0", ServiceAccount: "sa-0",
		PodLabels:       map[string]string{"app": "web", "tier": "backend"},
		NamespaceLabels: map[string]string{"env": "prod"},
	}
	labelled := plain
	labelled.PodLabels = map[string]string{"app": "web", "tier": "backend", RunLabel: "r1"}
	labelled.NamespaceLabels = map[string]string{"env": "prod", RunLabel: "r1"}

	userInclusive, err := NewFilter([]string{"k8s:app", "k8s:io.kubernetes.pod.namespace"})
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]*Filter{"default": DefaultFilter(), "user include": userInclusive} {
		want := PodLabels(f, plain, nil)
		if diff := cmp.Diff(want, PodLabels(f, labelled, nil)); diff != "" {
			t.Errorf("%s filter: identity labels with the run label (-without +with):\n%s", name, diff)
		}
	}

	// Cilium's default filter alone keeps both forms: the exclusions are
	// what removes them.
	raw := ciliumDefaultOnly(t)
	for _, key := range []string{RunLabel, NamespaceLabelsPrefix + RunLabel} {
		if !raw.Keep(SourceK8s, key) {
			t.Errorf("Cilium's default filter drops %q; RunLabelExclusions would be unneeded", key)
		}
		if DefaultFilter().Keep(SourceK8s, key) {
			t.Errorf("DefaultFilter keeps %q", key)
		}
	}
	// Neighbours of the run label are untouched.
	for _, key := range []string{"stampede.io/runner", NamespaceLabelsPrefix + "env"} {
		if !DefaultFilter().Keep(SourceK8s, key) {
			t.Errorf("DefaultFilter drops %q", key)
		}
	}
}
