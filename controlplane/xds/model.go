package xds

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/xdsapi"
)

// Pod is what the Model needs of a pod.
type Pod struct {
	Namespace      string
	Name           string
	Node           string
	IP             netip.Addr
	ServiceAccount string
	Labels         map[string]string
}

// Model turns the cluster's Pods, Namespaces and CiliumNetworkPolicies into
// xDS resources and allocates identities centrally: one numeric identity
// per distinct identity label set, from identity.MinID up, never two for
// one set. Identities no pod uses any more are withdrawn.
//
// Callers record what they saw with the Set/Delete methods, then call
// Flush to get the batch of resource changes since the previous Flush. A
// Model is not safe for concurrent use.
type Model struct {
	cluster string
	filter  *identity.Filter

	namespaces map[string]map[string]string
	pods       map[string]*podState // by namespace/name
	byNS       map[string]map[string]*podState
	policies   map[string][]policy.Rule

	ids    map[string]identity.ID // label key -> ID
	labels map[identity.ID]identity.Labels
	refs   map[identity.ID]int
	hosts  map[identity.ID]map[netip.Addr]struct{}
	nextID identity.ID
	free   []identity.ID

	dirtyNS       map[string]bool
	dirtyPods     map[string]bool
	deletedPods   map[string]*podState
	dirtyPolicies map[string]bool
	newIDs        map[identity.ID]bool
	goneIDs       map[identity.ID]bool
	dirtyHosts    map[identity.ID]bool
}

type podState struct {
	Pod
	id       identity.ID
	assigned bool
	// published node and IP of the endpoint resource, to withdraw it.
	pubNode string
	pubIP   netip.Addr
}

// NewModel returns an empty Model that computes identity labels with
// filter (identity.DefaultFilter() if nil) for cluster.
func NewModel(cluster string, filter *identity.Filter) *Model {
	if filter == nil {
		filter = identity.DefaultFilter()
	}
	return &Model{
		cluster: cluster, filter: filter,
		namespaces: map[string]map[string]string{}, pods: map[string]*podState{}, byNS: map[string]map[string]*podState{},
		policies: map[string][]policy.Rule{},
		ids:      map[string]identity.ID{}, labels: map[identity.ID]identity.Labels{}, refs: map[identity.ID]int{},
		hosts: map[identity.ID]map[netip.Addr]struct{}{}, nextID: identity.MinID,
		dirtyNS: map[string]bool{}, dirtyPods: map[string]bool{}, deletedPods: map[string]*podState{},
		dirtyPolicies: map[string]bool{}, newIDs: map[identity.ID]bool{}, goneIDs: map[identity.ID]bool{}, dirtyHosts: map[identity.ID]bool{},
	}
}

// SetNamespace records a namespace's labels.
func (m *Model) SetNamespace(name string, labels map[string]string) {
	if old, ok := m.namespaces[name]; ok && maps.Equal(old, labels) {
		return
	}
	m.namespaces[name] = maps.Clone(labels)
	m.dirtyNS[name] = true
}

// DeleteNamespace forgets a namespace; its pods lose their identity until
// it comes back.
func (m *Model) DeleteNamespace(name string) {
	delete(m.namespaces, name)
	m.dirtyNS[name] = true
}

// ErrInvalidPod is wrapped by SetPod's errors.
var ErrInvalidPod = errors.New("invalid pod")

// SetPod records a pod. A pod without node or IP yet is kept but not
// published.
func (m *Model) SetPod(p Pod) error {
	if p.Namespace == "" || p.Name == "" {
		return fmt.Errorf("%w: empty namespace or name (%q/%q)", ErrInvalidPod, p.Namespace, p.Name)
	}
	key := p.Namespace + "/" + p.Name
	st, ok := m.pods[key]
	if !ok {
		st = &podState{}
		m.pods[key] = st
		if m.byNS[p.Namespace] == nil {
			m.byNS[p.Namespace] = map[string]*podState{}
		}
		m.byNS[p.Namespace][p.Name] = st
	} else if st.Node == p.Node && st.IP == p.IP && st.ServiceAccount == p.ServiceAccount && maps.Equal(st.Labels, p.Labels) {
		return nil
	}
	st.Pod = p
	st.Labels = maps.Clone(p.Labels)
	m.dirtyPods[key] = true
	return nil
}

// DeletePod forgets a pod.
func (m *Model) DeletePod(namespace, name string) {
	key := namespace + "/" + name
	st, ok := m.pods[key]
	if !ok {
		return
	}
	delete(m.pods, key)
	delete(m.byNS[namespace], name)
	delete(m.dirtyPods, key)
	m.deletedPods[key] = st
}

// SetPolicy records a CiliumNetworkPolicy compiled to rules.
func (m *Model) SetPolicy(namespace, name string, rules []policy.Rule) {
	m.policies[namespace+"/"+name] = rules
	m.dirtyPolicies[namespace+"/"+name] = true
}

// DeletePolicy forgets a policy.
func (m *Model) DeletePolicy(namespace, name string) {
	delete(m.policies, namespace+"/"+name)
	m.dirtyPolicies[namespace+"/"+name] = true
}

// Identities returns the number of identities allocated now.
func (m *Model) Identities() int { return len(m.labels) }

// IdentityOf returns the identity of a pod, if it has one.
func (m *Model) IdentityOf(namespace, name string) (identity.ID, bool) {
	st, ok := m.pods[namespace+"/"+name]
	if !ok || !st.assigned {
		return 0, false
	}
	return st.id, true
}

// Reserve records an identity allocated earlier (a persisted
// CiliumIdentity) before the first Flush, so that a restarted control
// plane gives label sets their old IDs and resuming agents receive nothing
// new. A reserved identity no pod uses is withdrawn at the next Flush.
func (m *Model) Reserve(id identity.ID, l identity.Labels) error {
	key := l.Key()
	if old, ok := m.ids[key]; ok {
		return fmt.Errorf("reserve identity %d: labels %s already have identity %d", id, key, old)
	}
	if _, ok := m.labels[id]; ok {
		return fmt.Errorf("reserve identity %d: already in use", id)
	}
	m.ids[key] = id
	m.labels[id] = l
	m.refs[id] = 0
	m.goneIDs[id] = true
	return nil
}

func (m *Model) allocate(l identity.Labels) (identity.ID, error) {
	key := l.Key()
	if id, ok := m.ids[key]; ok {
		if m.refs[id] == 0 {
			delete(m.goneIDs, id)
			m.newIDs[id] = true // (re)published; unchanged resources are skipped by Apply
		}
		m.refs[id]++
		return id, nil
	}
	var id identity.ID
	if n := len(m.free); n > 0 {
		id, m.free = m.free[n-1], m.free[:n-1]
	} else {
		for {
			if m.nextID > identity.MaxID {
				return 0, fmt.Errorf("allocate identity for %s: all %d identities in use", key, identity.MaxID-identity.MinID+1)
			}
			id = m.nextID
			m.nextID++
			if _, taken := m.labels[id]; !taken {
				break
			}
		}
	}
	m.ids[key] = id
	m.labels[id] = l
	m.refs[id] = 1
	m.newIDs[id] = true
	delete(m.goneIDs, id)
	return id, nil
}

func (m *Model) release(id identity.ID) {
	m.refs[id]--
	if m.refs[id] > 0 {
		return
	}
	m.goneIDs[id] = true
}

func (m *Model) unpublish(st *podState) {
	if !st.assigned {
		return
	}
	if h := m.hosts[st.id]; h != nil {
		delete(h, st.pubIP)
		m.dirtyHosts[st.id] = true
	}
	m.release(st.id)
	st.assigned = false
}

// Flush computes the resource changes since the previous Flush. It
// returns an error if identities ran out; the other changes are still in
// the batch. Pods go first: they allocate and release the identities whose
// resources the later steps publish or withdraw.
func (m *Model) Flush() (*Changes, error) {
	c := &Changes{}
	err := m.flushPods(c)
	m.flushIdentities(c)
	m.flushHosts(c)
	m.flushPolicies(c)
	return c, err
}

// flushPods republishes every pod of a relabelled namespace and every
// changed or deleted pod.
func (m *Model) flushPods(c *Changes) error {
	var errs []error
	for ns := range m.dirtyNS {
		for name := range m.byNS[ns] {
			m.dirtyPods[ns+"/"+name] = true
		}
	}
	clear(m.dirtyNS)
	for key, st := range m.deletedPods {
		m.unpublish(st)
		if st.pubNode != "" {
			c.Delete(xdsapi.TypeEndpoint, st.pubNode, key)
		}
	}
	clear(m.deletedPods)
	for key := range m.dirtyPods {
		if err := m.flushPod(c, key); err != nil {
			errs = append(errs, err)
		}
	}
	clear(m.dirtyPods)
	return errors.Join(errs...)
}

// flushPod publishes one pod's endpoint with its current identity, or
// withdraws it while its namespace, node or address is unknown.
func (m *Model) flushPod(c *Changes, key string) error {
	st := m.pods[key]
	nsLabels, nsOK := m.namespaces[st.Namespace]
	oldID, oldAssigned, oldNode, oldIP := st.id, st.assigned, st.pubNode, st.pubIP
	publish := nsOK && st.Node != "" && st.IP.IsValid()
	var newID identity.ID
	var err error
	if publish {
		l := identity.PodLabels(m.filter, identity.PodInfo{
			Cluster: m.cluster, Namespace: st.Namespace, ServiceAccount: st.ServiceAccount,
			PodLabels: st.Labels, NamespaceLabels: nsLabels,
		}, nil)
		if oldAssigned && m.labels[oldID].Equal(l) {
			newID = oldID
		} else if newID, err = m.allocate(l); err != nil {
			publish = false
		}
	}
	if oldAssigned && (!publish || newID != oldID || oldIP != st.IP) {
		// Withdraw the old address (and reference, if the identity changed).
		if h := m.hosts[oldID]; h != nil {
			delete(h, oldIP)
			m.dirtyHosts[oldID] = true
		}
		if !publish || newID != oldID {
			m.release(oldID)
		}
		st.assigned = false
	}
	if oldNode != "" && (!publish || oldNode != st.Node) {
		c.Delete(xdsapi.TypeEndpoint, oldNode, key)
		st.pubNode = ""
	}
	if !publish {
		return err
	}
	if !oldAssigned || newID != oldID || oldIP != st.IP {
		if m.hosts[newID] == nil {
			m.hosts[newID] = map[netip.Addr]struct{}{}
		}
		m.hosts[newID][st.IP] = struct{}{}
		m.dirtyHosts[newID] = true
	}
	st.id, st.assigned, st.pubIP, st.pubNode = newID, true, st.IP, st.Node
	c.Set(xdsapi.TypeEndpoint, st.Node, key, &xdsapi.Endpoint{
		Namespace: st.Namespace, Name: st.Name, Ip: st.IP.String(), Identity: uint32(newID), Node: st.Node,
	})
	return nil
}

// flushIdentities publishes identities that gained their first reference
// and withdraws, and frees, those that lost their last.
func (m *Model) flushIdentities(c *Changes) {
	for id := range m.newIDs {
		if m.refs[id] > 0 {
			c.Set(xdsapi.TypeIdentity, "", id.String(), identityResource(id, m.labels[id]))
		}
	}
	clear(m.newIDs)
	for id := range m.goneIDs {
		c.Delete(xdsapi.TypeIdentity, "", id.String())
		c.Delete(xdsapi.TypeIdentityHosts, "", id.String())
		delete(m.ids, m.labels[id].Key())
		delete(m.labels, id)
		delete(m.refs, id)
		delete(m.hosts, id)
		delete(m.dirtyHosts, id)
		m.free = append(m.free, id)
	}
	clear(m.goneIDs)
}

// flushHosts publishes the sorted addresses of every identity whose set
// of addresses changed.
func (m *Model) flushHosts(c *Changes) {
	for id := range m.dirtyHosts {
		h := m.hosts[id]
		if len(h) == 0 {
			c.Delete(xdsapi.TypeIdentityHosts, "", id.String())
			continue
		}
		c.Set(xdsapi.TypeIdentityHosts, "", id.String(), hostsResource(id, h))
	}
	clear(m.dirtyHosts)
}

// flushPolicies publishes changed policies and withdraws deleted ones.
func (m *Model) flushPolicies(c *Changes) {
	for key := range m.dirtyPolicies {
		rules, ok := m.policies[key]
		if !ok {
			c.Delete(xdsapi.TypePolicy, "", key)
			continue
		}
		ns, name := splitKey(key)
		c.Set(xdsapi.TypePolicy, "", key, xdsapi.PolicyFromRules(ns, name, rules))
	}
	clear(m.dirtyPolicies)
}

// identityResource is the published form of an identity: its labels,
// sorted, so that equal label sets publish equal resources.
func identityResource(id identity.ID, l identity.Labels) *xdsapi.Identity {
	ls := make([]string, len(l))
	for i, x := range l {
		ls[i] = x.String()
	}
	slices.Sort(ls)
	return &xdsapi.Identity{Id: uint32(id), Labels: ls}
}

// hostsResource is the published form of an identity's addresses, sorted.
func hostsResource(id identity.ID, h map[netip.Addr]struct{}) *xdsapi.IdentityHosts {
	addrs := slices.Collect(maps.Keys(h))
	slices.SortFunc(addrs, netip.Addr.Compare)
	ss := make([]string, len(addrs))
	for i, a := range addrs {
		ss[i] = a.String()
	}
	return &xdsapi.IdentityHosts{Policy: uint64(id), HostAddresses: ss}
}

func splitKey(key string) (string, string) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}

// Snapshot returns every resource the Model publishes as one batch of Sets
// (for a freshly started Server). It does not flush pending changes.
func (m *Model) Snapshot() *Changes {
	c := &Changes{}
	for id, l := range m.labels {
		c.Set(xdsapi.TypeIdentity, "", id.String(), identityResource(id, l))
	}
	for id, h := range m.hosts {
		if len(h) == 0 {
			continue
		}
		c.Set(xdsapi.TypeIdentityHosts, "", id.String(), hostsResource(id, h))
	}
	for key, rules := range m.policies {
		ns, name := splitKey(key)
		c.Set(xdsapi.TypePolicy, "", key, xdsapi.PolicyFromRules(ns, name, rules))
	}
	for key, st := range m.pods {
		if st.assigned && st.pubNode != "" {
			c.Set(xdsapi.TypeEndpoint, st.pubNode, key, &xdsapi.Endpoint{
				Namespace: st.Namespace, Name: st.Name, Ip: st.pubIP.String(), Identity: uint32(st.id), Node: st.pubNode,
			})
		}
	}
	return c
}
