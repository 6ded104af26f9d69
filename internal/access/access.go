package access

import (
	"fmt"
	"maps"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/stampede-sim/stampede/scenarios"
)

// Roles of the run's users (the same strings as harness.Role*).
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleAgent    = "agent"
)

// Groups the users belong to (the fourth column of the static token file).
const (
	GroupAdmins    = "system:masters"
	GroupOperators = "stampede:operators"
	GroupAgents    = "stampede:agents"
	GroupMesh      = "stampede:mesh"
)

// AgentUserPrefix prefixes a simulated node's name to make its user name.
const AgentUserPrefix = "node:"

// AgentUser is the user name of the agent on node.
func AgentUser(node string) string { return AgentUserPrefix + node }

// Permission is a set of verbs on resources of API groups, as in an RBAC
// PolicyRule. Resources may name subresources ("ciliumendpoints/status").
type Permission struct {
	Verbs     []string
	APIGroups []string
	Resources []string
}

// Role is the permissions of one kind of user in a mode.
type Role struct {
	// Name is RoleAdmin, RoleOperator, RoleAgent or RoleMesh.
	Name string
	// Group is the group the role is granted to.
	Group       string
	Permissions []Permission
}

var (
	read       = []string{"get", "list", "watch"}
	core       = []string{""}
	cilium     = []string{"cilium.io"}
	everything = Permission{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}
)

// ciliumResources are the cilium.io resources an agent lists and watches
// (those of Cilium's agent ClusterRole that Stampede serves).
var ciliumResources = []string{
	"ciliumidentities", "ciliumendpoints", "ciliumendpointslices",
	"ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies", "ciliumnodes",
	"ciliumcidrgroups",
}

// Roles returns the roles of mode, admin first. Agents without an API
// client (the xds read path) have no role; modes with the mesh read path
// add the mirror replicas' read-only role (MeshRole).
func Roles(mode scenarios.ModeSpec) ([]Role, error) {
	if !mode.Name.ValidName() || mode.Identity == "" || mode.Endpoints == "" || mode.ReadPath == "" {
		return nil, fmt.Errorf("access: mode %q: want a name and three axes, got %s", mode.Name, mode.Axes)
	}
	roles := []Role{
		{Name: RoleAdmin, Group: GroupAdmins, Permissions: []Permission{everything}},
		{Name: RoleOperator, Group: GroupOperators, Permissions: operatorPermissions(mode)},
	}
	if mode.AgentsHaveAPIClient() {
		roles = append(roles, Role{Name: RoleAgent, Group: GroupAgents, Permissions: agentPermissions(mode)})
	}
	if mode.HasMesh() {
		mr := MeshRole()
		mr.Group = GroupMesh
		roles = append(roles, mr)
	}
	return roles, nil
}

// agentPermissions mirrors Cilium's cilium-agent ClusterRole. One
// deliberate difference: "get" on every cilium.io resource it reads (Cilium
// grants get only on ciliumendpoints and ciliumnodes), so that a simulated
// agent may read an object back after a conflict.
func agentPermissions(mode scenarios.ModeSpec) []Permission {
	create := []string{"ciliumendpoints", "ciliumnodes"}
	if mode.AgentsAllocateIdentities() {
		// Kvstore agents keep the permission, as their ClusterRole does.
		create = append(create, "ciliumidentities")
	}
	return []Permission{
		{Verbs: read, APIGroups: core, Resources: []string{"namespaces", "services", "pods", "endpoints", "nodes"}},
		{Verbs: read, APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}},
		{Verbs: read, APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}},
		{Verbs: read, APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}},
		{Verbs: read, APIGroups: cilium, Resources: ciliumResources},
		{Verbs: []string{"create"}, APIGroups: cilium, Resources: create},
		// To synchronise identity garbage collection (heartbeats).
		{Verbs: []string{"update"}, APIGroups: cilium, Resources: []string{"ciliumidentities"}},
		{Verbs: []string{"delete"}, APIGroups: cilium, Resources: []string{"ciliumendpoints"}},
		{Verbs: []string{"update"}, APIGroups: cilium, Resources: []string{"ciliumnodes", "ciliumnodes/status"}},
		{Verbs: []string{"patch"}, APIGroups: cilium, Resources: []string{
			"ciliumendpoints", "ciliumendpoints/status",
			"ciliumnetworkpolicies/status", "ciliumclusterwidenetworkpolicies/status",
		}},
	}
}

// operatorPermissions mirrors Cilium's cilium-operator ClusterRole, plus
// what Stampede's central control plane needs: in operator and xds modes it
// allocates identities, so it may create ciliumidentities.
func operatorPermissions(mode scenarios.ModeSpec) []Permission {
	cid := []string{"update"}
	if mode.Identity == scenarios.IdentityOperator || mode.Identity == scenarios.IdentityCentral {
		cid = append(cid, "create")
	}
	return []Permission{
		{Verbs: read, APIGroups: core, Resources: []string{"pods", "namespaces", "nodes", "services", "endpoints"}},
		{Verbs: read, APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}},
		{Verbs: []string{"create", "update", "deletecollection", "patch", "get", "list", "watch"}, APIGroups: cilium,
			Resources: []string{"ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies"}},
		{Verbs: []string{"patch", "update"}, APIGroups: cilium,
			Resources: []string{"ciliumnetworkpolicies/status", "ciliumclusterwidenetworkpolicies/status"}},
		// Garbage collection of endpoints and identities.
		{Verbs: []string{"delete", "get", "list", "watch"}, APIGroups: cilium, Resources: []string{"ciliumendpoints", "ciliumidentities"}},
		{Verbs: cid, APIGroups: cilium, Resources: []string{"ciliumidentities"}},
		{Verbs: []string{"create", "update", "get", "list", "watch", "delete"}, APIGroups: cilium, Resources: []string{"ciliumnodes"}},
		{Verbs: []string{"update"}, APIGroups: cilium, Resources: []string{"ciliumnodes/status"}},
		{Verbs: []string{"create", "update", "get", "list", "watch", "delete", "patch", "deletecollection"}, APIGroups: cilium,
			Resources: []string{"ciliumendpointslices"}},
		{Verbs: read, APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}},
		// Leader election.
		{Verbs: []string{"create", "get", "update"}, APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}},
	}
}

// Group returns the group of a user role, or an error for an unknown role.
func Group(role string) (string, error) {
	switch role {
	case RoleAdmin:
		return GroupAdmins, nil
	case RoleOperator:
		return GroupOperators, nil
	case RoleAgent:
		return GroupAgents, nil
	case RoleMesh:
		return GroupMesh, nil
	}
	return "", fmt.Errorf("access: unknown role %q (want %s, %s, %s or %s)", role, RoleAdmin, RoleOperator, RoleAgent, RoleMesh)
}

// HasCredentials reports whether a user of role has API server credentials
// in mode: agents have none in xds mode.
func HasCredentials(mode scenarios.ModeSpec, role string) bool {
	return mode.AgentsHaveAPIClient() || role != RoleAgent
}

// Rule is one row of the fakeapi's authorization table: a request is
// allowed if some rule matches its user (by name or group), verb, API group
// and resource ("resource/subresource" for subresources); "*" matches
// anything. The JSON names are the file format `stampede fakeapi
// --authz-file` reads.
type Rule struct {
	Users     []string `json:"users,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	Verbs     []string `json:"verbs"`
	APIGroups []string `json:"apiGroups"`
	Resources []string `json:"resources"`
}

// AuthzRules renders mode's roles as the fakeapi's authorization table.
func AuthzRules(mode scenarios.ModeSpec) ([]Rule, error) {
	roles, err := Roles(mode)
	if err != nil {
		return nil, err
	}
	var rules []Rule
	for _, r := range roles {
		for _, p := range r.Permissions {
			rules = append(rules, Rule{
				Groups:    []string{r.Group},
				Verbs:     clone(p.Verbs),
				APIGroups: clone(p.APIGroups),
				Resources: clone(p.Resources),
			})
		}
	}
	return rules, nil
}

// AuthzYAML renders mode's roles as the YAML file for `stampede fakeapi
// --authz-file`.
func AuthzYAML(mode scenarios.ModeSpec) ([]byte, error) {
	rules, err := AuthzRules(mode)
	if err != nil {
		return nil, err
	}
	out, err := yaml.Marshal(rules)
	if err != nil {
		return nil, fmt.Errorf("encode authz rules: %w", err)
	}
	return append([]byte(fmt.Sprintf("# Stampede authorization table for mode %s (generated by internal/access).\n", mode.Name)), out...), nil
}

// RBACOptions shapes the RBAC objects.
type RBACOptions struct {
	// NamePrefix prefixes every object name (default "stampede:"); on a
	// shared cluster put the run's ID in it.
	NamePrefix string
	// Labels are put on every object (for example the run label, so that
	// clean-up can find them).
	Labels map[string]string
	// Subjects returns who is bound to a role (RoleOperator or RoleAgent).
	// Default: the role's group, as the static token file assigns it.
	Subjects func(role string) []rbacv1.Subject
}

// RBAC renders mode's operator and agent roles as ClusterRoles and
// ClusterRoleBindings. Admin needs none: system:masters is bound to
// cluster-admin by every kube-apiserver.
func RBAC(mode scenarios.ModeSpec, opts RBACOptions) ([]rbacv1.ClusterRole, []rbacv1.ClusterRoleBinding, error) {
	roles, err := Roles(mode)
	if err != nil {
		return nil, nil, err
	}
	if opts.NamePrefix == "" {
		opts.NamePrefix = "stampede:"
	}
	var crs []rbacv1.ClusterRole
	var crbs []rbacv1.ClusterRoleBinding
	for _, r := range roles {
		if r.Name == RoleAdmin {
			continue
		}
		name := opts.NamePrefix + r.Name
		meta := metav1.ObjectMeta{Name: name, Labels: cloneMap(opts.Labels)}
		cr := rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: meta,
		}
		for _, p := range r.Permissions {
			cr.Rules = append(cr.Rules, rbacv1.PolicyRule{Verbs: clone(p.Verbs), APIGroups: clone(p.APIGroups), Resources: clone(p.Resources)})
		}
		subjects := []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: r.Group}}
		if opts.Subjects != nil {
			subjects = opts.Subjects(r.Name)
		}
		crs = append(crs, cr)
		crbs = append(crbs, rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: cloneMap(opts.Labels)},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   subjects,
		})
	}
	return crs, crbs, nil
}

// Allowed reports whether role may do verb on group/resource in mode,
// evaluated on the same table (for tests and for explaining a 403).
func Allowed(mode scenarios.ModeSpec, role, verb, group, resource string) (bool, error) {
	roles, err := Roles(mode)
	if err != nil {
		return false, err
	}
	for _, r := range roles {
		if r.Name != role {
			continue
		}
		for _, p := range r.Permissions {
			if match(p.Verbs, verb) && match(p.APIGroups, group) && match(p.Resources, resource) {
				return true, nil
			}
		}
	}
	return false, nil
}

func match(list []string, v string) bool {
	for _, x := range list {
		if x == "*" || x == v {
			return true
		}
	}
	return false
}

func clone(s []string) []string { return append([]string(nil), s...) }

func cloneMap(m map[string]string) map[string]string { return maps.Clone(m) }
