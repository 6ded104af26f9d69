package identity

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultFilter(t *testing.T) {
	f := DefaultFilter()
	tests := []struct {
		key  string
		keep bool
	}{
		{"app", true},
		{"tier", true},
		{"pod-template-hash", false},
		{"controller-revision-hash", false},
		{"pod-template-generation", false},
		{"app.kubernetes.io/name", true},
		{"kubernetes.io/hostname", false},
		{"beta.kubernetes.io/arch", false},
		{"k8s.io/x", false},
		{"io.kubernetes.pod.namespace", true},
		{"io.kubernetes.container.name", false},
		{"io.cilium.k8s.namespace.labels.env", true},
		{"io.cilium.k8s.policy.cluster", true},
		{"io.cilium.k8s.policy.serviceaccount", true},
		{"statefulset.kubernetes.io/pod-name", false},
		{"annotation.foo", false},
		{"etcd_node", false},
	}
	for _, tt := range tests {
		if got := f.Keep(SourceK8s, tt.key); got != tt.keep {
			t.Errorf("Keep(k8s, %q) = %v, want %v", tt.key, got, tt.keep)
		}
	}
}

func TestUserFilter(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		key      string
		keep     bool
	}{
		{"include makes the filter inclusive", []string{"k8s:app"}, "tier", false},
		{"included label kept", []string{"k8s:app"}, "app", true},
		{"defaults still include namespace labels", []string{"k8s:app"}, "io.cilium.k8s.namespace.labels.env", true},
		{"exclude only", []string{"!tier"}, "tier", false},
		{"exclude leaves others", []string{"!tier"}, "app", true},
		{"other source does not match", []string{"container:app"}, "app", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFilter(tt.patterns)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Keep(SourceK8s, tt.key); got != tt.keep {
				t.Errorf("Keep(%q) = %v, want %v", tt.key, got, tt.keep)
			}
		})
	}
}

func TestNewFilterErrors(t *testing.T) {
	for _, p := range []string{"k8s:", "k8s:!(", "("} {
		if _, err := NewFilter([]string{p}); err == nil {
			t.Errorf("NewFilter(%q): want error", p)
		}
	}
}

func TestPodLabelsAndKey(t *testing.T) {
	l := PodLabels(DefaultFilter(), PodInfo{
		Cluster:         "default",
		Namespace:       "ns-0",
		ServiceAccount:  "sa-0",
		PodLabels:       map[string]string{"app": "deploy-1", "pod-template-hash": "abc", "tier": "backend"},
		NamespaceLabels: map[string]string{"env": "prod"},
	}, &Interner{})
	want := "k8s:app=deploy-1;" +
		"k8s:io.cilium.k8s.namespace.labels.env=prod;" +
		"k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=ns-0;" +
		"k8s:io.cilium.k8s.policy.cluster=default;" +
		"k8s:io.cilium.k8s.policy.serviceaccount=sa-0;" +
		"k8s:io.kubernetes.pod.namespace=ns-0;" +
		"k8s:tier=backend;"
	if got := l.Key(); got != want {
		t.Errorf("Key() = %q\nwant %q", got, want)
	}
	back, err := ParseKey(want)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(l, back); diff != "" {
		t.Errorf("ParseKey round trip (-want +got):\n%s", diff)
	}
	sec, err := FromSecurityLabels(l.SecurityLabels())
	if err != nil {
		t.Fatal(err)
	}
	if !sec.Equal(l) {
		t.Errorf("FromSecurityLabels round trip: got %v", sec)
	}
	if v, ok := l.Get(SourceK8s, LabelPodNamespace); !ok || v != "ns-0" {
		t.Errorf("Get namespace = %q, %v", v, ok)
	}
}

func TestParseKeyErrors(t *testing.T) {
	for _, s := range []string{"k8s:a=b", "a=b;", "k8s:=b;", "k8s:ab;"} {
		if _, err := ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q): want error", s)
		}
	}
}

func TestNewCiliumIdentity(t *testing.T) {
	l := NewLabels(
		Label{SourceK8s, "app", "a"},
		Label{SourceK8s, NamespaceLabelsPrefix + "env", "prod"},
		Label{SourceK8s, LabelPodNamespace, "ns"},
	)
	got := NewCiliumIdentity(1000, l)
	want := CiliumIdentity{
		APIVersion: "cilium.io/v2",
		Kind:       "CiliumIdentity",
		Metadata:   ObjectMeta{Name: "1000", Labels: map[string]string{"app": "a", LabelPodNamespace: "ns"}},
		SecurityLabels: map[string]string{
			"k8s:app": "a", "k8s:" + NamespaceLabelsPrefix + "env": "prod", "k8s:" + LabelPodNamespace: "ns",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if id, err := ParseID(got.Metadata.Name); err != nil || id != 1000 {
		t.Errorf("ParseID = %d, %v", id, err)
	}
}

func TestInternerSharesLabels(t *testing.T) {
	in := &Interner{}
	a := NewLabels(Label{SourceK8s, "app", "x"})
	b := NewLabels(Label{SourceK8s, "app", "x"})
	ca, cb := in.Labels(a, a.Key()), in.Labels(b, b.Key())
	if &ca[0] != &cb[0] {
		t.Error("equal label sets not shared")
	}
}
