package agentsim

import (
	"net/netip"
)

// k8sCache is what the agent keeps of the cluster's Namespaces (their
// labels are part of an endpoint's identity labels, as Cilium's k8s
// watcher adds them) and the agent's own Node (its InternalIP; a
// cilium-agent watches no other Node, watches.go). Guarded by Agent.mu.
type k8sCache struct {
	namespaces map[string]map[string]string
	nodes      map[string]netip.Addr
}

func newK8sCache() *k8sCache {
	return &k8sCache{namespaces: map[string]map[string]string{}, nodes: map[string]netip.Addr{}}
}

func (a *Agent) internLabels(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[a.cfg.Interner.String(k)] = a.cfg.Interner.String(v)
	}
	return out
}

func (a *Agent) replaceNamespaces(items []slimNamespace) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[string]bool, len(items))
	for i := range items {
		seen[items[i].Metadata.Name] = true
		a.upsertNamespace(&items[i])
	}
	for n := range a.k8s.namespaces {
		if !seen[n] {
			delete(a.k8s.namespaces, n)
		}
	}
}

func (a *Agent) onNamespace(typ string, ns *slimNamespace) {
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if typ == evDeleted {
		delete(a.k8s.namespaces, ns.Metadata.Name)
		return
	}
	a.upsertNamespace(ns)
}

func (a *Agent) upsertNamespace(ns *slimNamespace) {
	name := ns.Metadata.Name
	old, ok := a.k8s.namespaces[name]
	if ok && mapsEqual(old, ns.Metadata.Labels) {
		return
	}
	a.k8s.namespaces[a.cfg.Interner.String(name)] = a.internLabels(ns.Metadata.Labels)
	for k, p := range a.eps.pods {
		if p.ns == name {
			a.computeWant(p)
			a.eps.queue.add(k)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func nodeAddr(n *slimNode) netip.Addr {
	for _, ad := range n.Status.Addresses {
		if ad.Type == "InternalIP" {
			if ip, err := netip.ParseAddr(ad.Address); err == nil {
				return ip
			}
		}
	}
	return netip.Addr{}
}

func (a *Agent) replaceNodes(items []slimNode) {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.k8s.nodes)
	for i := range items {
		a.k8s.nodes[a.cfg.Interner.String(items[i].Metadata.Name)] = nodeAddr(&items[i])
	}
}

func (a *Agent) onNode(typ string, n *slimNode) {
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	if typ == evDeleted {
		delete(a.k8s.nodes, n.Metadata.Name)
		return
	}
	a.k8s.nodes[a.cfg.Interner.String(n.Metadata.Name)] = nodeAddr(n)
}
