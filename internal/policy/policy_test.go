package policy

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
	"github.com/stampede-sim/stampede/scenarios"
)

func podLabels(ns, app string, nsLabels map[string]string) identity.Labels {
	return identity.PodLabels(identity.DefaultFilter(), identity.PodInfo{
		Cluster: "default", Namespace: ns, ServiceAccount: "sa-0",
		PodLabels: map[string]string{"app": app}, NamespaceLabels: nsLabels,
	}, nil)
}

// compileRendered renders, encodes, decodes and compiles, as the harness
// and an agent do.
func compileRendered(t *testing.T, pols []scenarios.Policy, nss []string) []Rule {
	t.Helper()
	var rules []Rule
	for _, cnp := range RenderAll(pols, nss) {
		data, err := json.Marshal(cnp)
		if err != nil {
			t.Fatal(err)
		}
		var got CiliumNetworkPolicy
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		r, err := Compile(&got)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r...)
	}
	return rules
}

func TestRelabelChangesVerdicts(t *testing.T) {
	s, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	rules := compileRendered(t, s.Policies, []string{"ns-0", "ns-1"})
	prod := map[string]string{"env": "prod"}
	staging := map[string]string{"env": "staging"}
	ep := podLabels("ns-0", "deploy-0", prod)
	tests := []struct {
		name       string
		candidates []Candidate
		want       []policykey.Key
	}{
		{
			name: "before relabel: prod peers on 8080, from any namespace",
			candidates: []Candidate{
				{ID: 300, Labels: podLabels("ns-0", "deploy-0", prod)},
				{ID: 301, Labels: podLabels("ns-1", "deploy-0", prod)},
				{ID: 302, Labels: podLabels("ns-1", "deploy-1", staging)},
			},
			want: []policykey.Key{{Identity: 300, Port: 8080, Proto: 6}, {Identity: 301, Port: 8080, Proto: 6}, {Identity: 302, Port: 9090, Proto: 6}},
		},
		{
			name: "duplicates with equal labels are all allowed",
			candidates: []Candidate{
				{ID: 400, Labels: podLabels("ns-1", "deploy-0", staging)},
				{ID: 401, Labels: podLabels("ns-1", "deploy-0", staging)},
			},
			want: []policykey.Key{{Identity: 400, Port: 9090, Proto: 6}, {Identity: 401, Port: 9090, Proto: 6}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Resolve(rules, tt.candidates, ep)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestNamespaceDefaulting(t *testing.T) {
	cnp := CiliumNetworkPolicy{
		Metadata: ObjectMeta{Name: "p", Namespace: "ns-0"},
		Spec: &RuleSpec{Ingress: []IngressSpec{{
			FromEndpoints: []LabelSelector{{MatchLabels: map[string]string{"k8s:app": "a"}}},
		}}},
	}
	rules, err := Compile(&cnp)
	if err != nil {
		t.Fatal(err)
	}
	ep := podLabels("ns-0", "x", nil)
	got := Resolve(rules, []Candidate{
		{ID: 1000, Labels: podLabels("ns-0", "a", nil)},
		{ID: 1001, Labels: podLabels("ns-1", "a", nil)},
	}, ep)
	want := []policykey.Key{{Identity: 1000}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("peers limited to the policy namespace, all ports (-want +got):\n%s", diff)
	}
	if got := Resolve(rules, nil, podLabels("ns-1", "x", nil)); !cmp.Equal(got, []policykey.Key{AllowAll}) {
		t.Errorf("endpoint of another namespace: got %v, want AllowAll", got)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		cnp  CiliumNetworkPolicy
	}{
		{"no spec", CiliumNetworkPolicy{Metadata: ObjectMeta{Name: "p", Namespace: "n"}}},
		{"bad port", CiliumNetworkPolicy{Metadata: ObjectMeta{Name: "p", Namespace: "n"}, Spec: &RuleSpec{Ingress: []IngressSpec{{ToPorts: []PortRule{{Ports: []PortProtocol{{Port: "http"}}}}}}}}},
		{"bad protocol", CiliumNetworkPolicy{Metadata: ObjectMeta{Name: "p", Namespace: "n"}, Spec: &RuleSpec{Ingress: []IngressSpec{{ToPorts: []PortRule{{Ports: []PortProtocol{{Port: "80", Protocol: "ICMP"}}}}}}}}},
		{"bad operator", CiliumNetworkPolicy{Metadata: ObjectMeta{Name: "p", Namespace: "n"}, Spec: &RuleSpec{EndpointSelector: LabelSelector{MatchExpressions: []SelectorRequirement{{Key: "k8s:a", Operator: "Near"}}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Compile(&tt.cnp); err == nil {
				t.Error("want error")
			}
		})
	}
}

func TestCacheMatchesResolve(t *testing.T) {
	s, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	rules := compileRendered(t, s.Policies, []string{"ns-0", "ns-1", "ns-2"})
	envs := []map[string]string{{"env": "prod"}, {"env": "staging"}, {"env": "dev"}}
	var cands []Candidate
	c := NewCache()
	id := identity.ID(256)
	for _, ns := range []string{"ns-0", "ns-1", "ns-2"} {
		for _, env := range envs {
			for _, app := range []string{"a", "b"} {
				l := podLabels(ns, app, env)
				cands = append(cands, Candidate{ID: id, Labels: l})
				c.UpsertIdentity(id, l)
				id++
			}
		}
	}
	c.SetRules(rules)
	// Delete one, re-add another with other labels, then set rules again.
	c.DeleteIdentity(cands[0].ID)
	cands = cands[1:]
	c.UpsertIdentity(cands[0].ID, podLabels("ns-2", "z", envs[0]))
	cands[0].Labels = podLabels("ns-2", "z", envs[0])
	c.SetRules(rules)
	for _, ep := range cands {
		want := Resolve(rules, cands, ep.Labels)
		if diff := cmp.Diff(want, c.Resolve(ep.Labels)); diff != "" {
			t.Fatalf("endpoint %v (-Resolve +Cache):\n%s", ep.Labels, diff)
		}
	}
}

// TestCacheMemoFollowsIdentities checks that a memoised resolution is
// dropped when identities change: after each upsert and delete the cache
// still equals Resolve.
func TestCacheMemoFollowsIdentities(t *testing.T) {
	s, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	rules := compileRendered(t, s.Policies, []string{"ns-0", "ns-1"})
	c := NewCache()
	c.SetRules(rules)
	ep := podLabels("ns-0", "a", map[string]string{"env": "prod"})
	var cands []Candidate
	steps := []struct {
		name string
		do   func()
	}{
		{"first identity", func() {
			cands = append(cands, Candidate{ID: 300, Labels: ep})
			c.UpsertIdentity(300, ep)
		}},
		{"duplicate identity", func() {
			cands = append(cands, Candidate{ID: 301, Labels: ep})
			c.UpsertIdentity(301, ep)
		}},
		{"other namespace", func() {
			l := podLabels("ns-1", "b", map[string]string{"env": "staging"})
			cands = append(cands, Candidate{ID: 302, Labels: l})
			c.UpsertIdentity(302, l)
		}},
		{"delete the first", func() {
			cands = cands[1:]
			c.DeleteIdentity(300)
		}},
		{"rules again", func() { c.SetRules(rules) }},
	}
	for _, st := range steps {
		st.do()
		want := Resolve(rules, cands, ep)
		if diff := cmp.Diff(want, c.Resolve(ep)); diff != "" {
			t.Fatalf("after %s (-Resolve +Cache):\n%s", st.name, diff)
		}
		// The second call is served from the memo and must be equal too.
		if diff := cmp.Diff(want, c.Resolve(ep)); diff != "" {
			t.Fatalf("after %s, memoised (-Resolve +Cache):\n%s", st.name, diff)
		}
	}
}

// TestCacheSharesEqualResolutions checks that endpoints of different
// namespaces, selected by different rules that allow the same peers on the
// same ports (one policy rendered into each namespace), get one shared
// resolution, and that it still equals Resolve's after identities change.
func TestCacheSharesEqualResolutions(t *testing.T) {
	s, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	nss := []string{"ns-0", "ns-1", "ns-2"}
	rules := compileRendered(t, s.Policies, nss)
	c := NewCache()
	c.SetRules(rules)
	var cands []Candidate
	id := identity.ID(256)
	for _, ns := range nss {
		for _, env := range []string{"prod", "staging"} {
			l := podLabels(ns, "a", map[string]string{"env": env})
			cands = append(cands, Candidate{ID: id, Labels: l})
			c.UpsertIdentity(id, l)
			id++
		}
	}
	check := func(when string) {
		t.Helper()
		var first []policykey.Key
		for _, ns := range nss {
			ep := podLabels(ns, "b", map[string]string{"env": "prod"})
			got := c.Resolve(ep)
			if diff := cmp.Diff(Resolve(rules, cands, ep), got); diff != "" {
				t.Fatalf("%s: endpoint in %s (-Resolve +Cache):\n%s", when, ns, diff)
			}
			if len(got) == 0 {
				t.Fatalf("%s: endpoint in %s: empty resolution", when, ns)
			}
			if first == nil {
				first = got
			} else if &first[0] != &got[0] {
				t.Fatalf("%s: endpoint in %s got its own copy of an equal resolution", when, ns)
			}
		}
	}
	check("first")
	cands = append(cands, Candidate{ID: id, Labels: cands[0].Labels})
	c.UpsertIdentity(id, cands[0].Labels)
	check("after a duplicate identity")
	c.DeleteIdentity(cands[1].ID)
	cands = append(cands[:1], cands[2:]...)
	check("after a delete")
	// An endpoint no rule selects still allows all.
	other := podLabels("ns-9", "x", map[string]string{"env": "prod"})
	if got := c.Resolve(other); len(got) != 1 || got[0] != AllowAll {
		t.Fatalf("unselected endpoint: got %v, want AllowAll", got)
	}
}
