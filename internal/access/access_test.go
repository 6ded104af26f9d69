package access

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/stampede-sim/stampede/fakeapi"
	"github.com/stampede-sim/stampede/scenarios"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func TestAllowed(t *testing.T) {
	tests := []struct {
		mode                        scenarios.Mode
		role, verb, group, resource string
		want                        bool
	}{
		{scenarios.ModeCRD, RoleAgent, "create", "cilium.io", "ciliumidentities", true},
		{scenarios.ModeCES, RoleAgent, "create", "cilium.io", "ciliumidentities", true},
		{scenarios.ModeKVStore, RoleAgent, "create", "cilium.io", "ciliumidentities", true},
		{scenarios.ModeOperator, RoleAgent, "create", "cilium.io", "ciliumidentities", false},
		{scenarios.ModeXDS, RoleAgent, "create", "cilium.io", "ciliumidentities", false},
		{scenarios.ModeXDS, RoleAgent, "list", "", "pods", false},
		{scenarios.ModeCRD, RoleAgent, "create", "cilium.io", "ciliumendpoints", true},
		{scenarios.ModeCRD, RoleAgent, "patch", "cilium.io", "ciliumendpoints", true},
		{scenarios.ModeCRD, RoleAgent, "patch", "cilium.io", "ciliumendpoints/status", true},
		{scenarios.ModeOperator, RoleAgent, "create", "cilium.io", "ciliumendpoints", true},
		{scenarios.ModeCRD, RoleAgent, "watch", "", "pods", true},
		{scenarios.ModeCRD, RoleAgent, "create", "", "pods", false},
		{scenarios.ModeCRD, RoleAgent, "update", "", "namespaces", false},
		{scenarios.ModeCRD, RoleAgent, "delete", "cilium.io", "ciliumidentities", false},
		{scenarios.ModeCRD, RoleAgent, "create", "cilium.io", "ciliumendpointslices", false},
		{scenarios.ModeCES, RoleAgent, "watch", "cilium.io", "ciliumendpointslices", true},
		{scenarios.ModeCES, RoleOperator, "create", "cilium.io", "ciliumendpointslices", true},
		{scenarios.ModeCRD, RoleOperator, "create", "cilium.io", "ciliumidentities", false},
		{scenarios.ModeCRD, RoleOperator, "delete", "cilium.io", "ciliumidentities", true},
		{scenarios.ModeOperator, RoleOperator, "create", "cilium.io", "ciliumidentities", true},
		{scenarios.ModeXDS, RoleOperator, "create", "cilium.io", "ciliumidentities", true},
		{scenarios.ModeXDS, RoleOperator, "watch", "", "pods", true},
		{scenarios.ModeXDS, RoleOperator, "update", "", "namespaces", false},
		{scenarios.ModeCRD, RoleAdmin, "update", "", "namespaces", true},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode)+"/"+tt.role+"/"+tt.verb+"/"+tt.resource, func(t *testing.T) {
			got, err := Allowed(preset(t, tt.mode), tt.role, tt.verb, tt.group, tt.resource)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Allowed(%s, %s, %s, %q, %s) = %v, want %v", tt.mode, tt.role, tt.verb, tt.group, tt.resource, got, tt.want)
			}
		})
	}
}

func TestUnknownModeAndRole(t *testing.T) {
	if _, err := Roles(scenarios.ModeSpec{Name: "bogus"}); err == nil || !strings.Contains(err.Error(), `mode "bogus": want a name and three axes`) {
		t.Errorf("Roles(bogus) error = %v", err)
	}
	if _, err := Group("root"); err == nil {
		t.Error("Group(root) = nil error, want one")
	}
	for role, want := range map[string]string{RoleAdmin: GroupAdmins, RoleOperator: GroupOperators, RoleAgent: GroupAgents} {
		if got, err := Group(role); err != nil || got != want {
			t.Errorf("Group(%s) = %q, %v; want %q", role, got, err, want)
		}
	}
	if HasCredentials(preset(t, scenarios.ModeXDS), RoleAgent) || !HasCredentials(preset(t, scenarios.ModeCRD), RoleAgent) || !HasCredentials(preset(t, scenarios.ModeXDS), RoleOperator) {
		t.Error("HasCredentials: agents must have none in xds mode only")
	}
}

// TestAuthzYAMLGolden pins the fakeapi authorization table of every mode
// and checks that the fakeapi reads it back unchanged and accepts it.
func TestAuthzYAMLGolden(t *testing.T) {
	for _, mode := range scenarios.PresetNames()[:5] {
		t.Run(string(mode), func(t *testing.T) {
			got, err := AuthzYAML(preset(t, mode))
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "authz-"+string(mode)+".yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("AuthzYAML(%s) mismatch (-want +got):\n%s", mode, diff)
			}

			path := filepath.Join(t.TempDir(), "authz.yaml")
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			read, err := fakeapi.LoadAuthzFile(path)
			if err != nil {
				t.Fatalf("fakeapi.LoadAuthzFile: %v", err)
			}
			rules, _ := AuthzRules(preset(t, mode))
			if len(read) != len(rules) {
				t.Fatalf("fakeapi read %d rules, want %d", len(read), len(rules))
			}
			for i, r := range rules {
				fr := fakeapi.Rule{Users: r.Users, Groups: r.Groups, Verbs: r.Verbs, APIGroups: r.APIGroups, Resources: r.Resources}
				if diff := cmp.Diff(fr, read[i]); diff != "" {
					t.Errorf("rule %d (-want +got):\n%s", i, diff)
				}
			}
			if _, err := fakeapi.New(fakeapi.Config{Rules: read}); err != nil {
				t.Errorf("fakeapi.New rejects the table: %v", err)
			}
		})
	}
}

// TestRBACGolden pins the ClusterRoles and bindings of every mode.
func TestRBACGolden(t *testing.T) {
	for _, mode := range scenarios.PresetNames()[:5] {
		t.Run(string(mode), func(t *testing.T) {
			crs, crbs, err := RBAC(preset(t, mode), RBACOptions{Labels: map[string]string{"stampede.io/run": "test"}})
			if err != nil {
				t.Fatal(err)
			}
			wantRoles := 2
			if mode == scenarios.ModeXDS {
				wantRoles = 1
			}
			if len(crs) != wantRoles || len(crbs) != wantRoles {
				t.Fatalf("got %d roles and %d bindings, want %d", len(crs), len(crbs), wantRoles)
			}
			var docs []byte
			for i := range crs {
				for _, obj := range []any{crs[i], crbs[i]} {
					b, err := yaml.Marshal(obj)
					if err != nil {
						t.Fatal(err)
					}
					docs = append(append(docs, "---\n"...), b...)
				}
			}
			golden := filepath.Join("testdata", "rbac-"+string(mode)+".yaml")
			if *update {
				if err := os.WriteFile(golden, docs, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(docs)); diff != "" {
				t.Errorf("RBAC(%s) mismatch (-want +got):\n%s", mode, diff)
			}
		})
	}
}

func TestRBACSubjects(t *testing.T) {
	sa := func(role string) []rbacv1.Subject {
		return []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "run-1", Name: role}}
	}
	_, crbs, err := RBAC(preset(t, scenarios.ModeCRD), RBACOptions{NamePrefix: "run-1:", Subjects: sa})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range crbs {
		if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.RoleRef.Name != b.Name || b.Name[:6] != "run-1:" {
			t.Errorf("binding %+v: want one ServiceAccount subject and a run-prefixed role", b)
		}
	}
}

func preset(t testing.TB, m scenarios.Mode) scenarios.ModeSpec {
	t.Helper()
	p, ok := scenarios.Preset(m)
	if !ok {
		t.Fatalf("no preset %s", m)
	}
	return p
}
