package access

import (
	"testing"

	"github.com/stampede-sim/stampede/scenarios"
)

// TestMeshRoleReadOnly: the mesh role reads what the mirror watches and
// writes nothing.
func TestMeshRoleReadOnly(t *testing.T) {
	allowed := func(verb, group, resource string) bool {
		for _, r := range MeshAuthzRules() {
			if len(r.Users) != 1 || r.Users[0] != MeshUser {
				t.Fatalf("rule %+v is not for %s", r, MeshUser)
			}
			if match(r.Verbs, verb) && match(r.APIGroups, group) && match(r.Resources, resource) {
				return true
			}
		}
		return false
	}
	for _, res := range []string{"ciliumidentities", "ciliumendpoints", "ciliumendpointslices", "ciliumnodes"} {
		for _, verb := range []string{"list", "watch"} {
			if !allowed(verb, "cilium.io", res) {
				t.Errorf("mesh may not %s %s", verb, res)
			}
		}
		for _, verb := range []string{"create", "update", "patch", "delete", "deletecollection"} {
			if allowed(verb, "cilium.io", res) {
				t.Errorf("mesh may %s %s; the role is read-only", verb, res)
			}
		}
	}
	if allowed("watch", "", "pods") {
		t.Error("mesh may watch pods; the mirror reads no pods")
	}
}

// TestRolesHaveMeshOnMeshReadPath: a mode's roles include the mirror's
// read-only role exactly when its agents read through the mesh, granted
// to its own group.
func TestRolesHaveMeshOnMeshReadPath(t *testing.T) {
	for _, tc := range []struct {
		mode scenarios.Mode
		want bool
	}{
		{scenarios.ModeMesh, true},
		{scenarios.ModeCESSlim, false},
		{scenarios.ModeOperator, false},
		{scenarios.ModeKVStore, false},
	} {
		p, ok := scenarios.Preset(tc.mode)
		if !ok {
			t.Fatalf("no preset %s", tc.mode)
		}
		watch, err := Allowed(p, RoleMesh, "watch", "cilium.io", "ciliumendpointslices")
		if err != nil {
			t.Fatal(err)
		}
		if watch != tc.want {
			t.Errorf("%s: mesh may watch ciliumendpointslices: %v, want %v", tc.mode, watch, tc.want)
		}
		create, err := Allowed(p, RoleMesh, "create", "cilium.io", "ciliumendpointslices")
		if err != nil {
			t.Fatal(err)
		}
		if create {
			t.Errorf("%s: mesh may create ciliumendpointslices; the role is read-only", tc.mode)
		}
		rules, err := AuthzRules(p)
		if err != nil {
			t.Fatal(err)
		}
		granted := false
		for _, r := range rules {
			if len(r.Groups) == 1 && r.Groups[0] == GroupMesh {
				granted = true
			}
		}
		if granted != tc.want {
			t.Errorf("%s: authz rules grant %s: %v, want %v", tc.mode, GroupMesh, granted, tc.want)
		}
	}
	if g, err := Group(RoleMesh); err != nil || g != GroupMesh {
		t.Errorf("Group(%q) = %q, %v; want %q", RoleMesh, g, err, GroupMesh)
	}
}
