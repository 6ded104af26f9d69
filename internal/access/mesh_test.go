package access

import "testing"

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
