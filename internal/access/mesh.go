package access

// RoleMesh is the role of the mesh mirror replicas (controlplane/mesh).
const RoleMesh = "mesh"

// MeshUser is the user the mesh replicas authenticate as: the
// clustermesh-apiserver's service account.
const MeshUser = "system:serviceaccount:kube-system:clustermesh-apiserver"

// MeshRole is the mesh replicas' read-only role: what the
// clustermesh-apiserver ClusterRole lets it read (cilium/cilium
// install/kubernetes/cilium/templates/clustermesh-apiserver/clusterrole.yaml:
// get, list and watch on ciliumidentities, ciliumendpoints, ciliumnodes;
// endpoints, namespaces and services; discovery endpointslices; list and
// watch on CRDs), with ciliumendpointslices added for the CES source
// (converters.go newCiliumEndpointSliceOptions). That ClusterRole also let
// the apiserver create and update objects for external workloads, a
// feature since removed; the mirror writes nothing to the API server, so
// its role grants no write. Roles grants it to GroupMesh in modes with the
// mesh read path (the harness puts MeshUser in that group);
// MeshAuthzRules grants it to MeshUser by name.
func MeshRole() Role {
	return Role{
		Name: RoleMesh,
		Permissions: []Permission{
			{Verbs: read, APIGroups: cilium, Resources: []string{"ciliumidentities", "ciliumendpoints", "ciliumendpointslices", "ciliumnodes"}},
			{Verbs: read, APIGroups: core, Resources: []string{"endpoints", "namespaces", "services"}},
			{Verbs: read, APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}},
			{Verbs: []string{"list", "watch"}, APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}},
		},
	}
}

// MeshAuthzRules renders MeshRole as fakeapi authorization rules for
// MeshUser, to append to a mode's AuthzRules where agents read through
// the mesh.
func MeshAuthzRules() []Rule {
	var rules []Rule
	for _, p := range MeshRole().Permissions {
		rules = append(rules, Rule{Users: []string{MeshUser}, Verbs: clone(p.Verbs), APIGroups: clone(p.APIGroups), Resources: clone(p.Resources)})
	}
	return rules
}
