package agentsim

import (
	"net/netip"
	"strings"
	"time"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// endpointManager holds the agent's local endpoints, one per pod of its
// node (Cilium's pkg/endpointmanager), and the queue of those the endpoint
// workers must synchronise (endpoint.go). Guarded by Agent.mu; the queue
// has its own lock, taken under Agent.mu.
type endpointManager struct {
	pods map[string]*localPod
	// lastID is the last endpoint ID given out.
	lastID int64
	queue  *workQueue
}

func newEndpointManager() *endpointManager {
	return &endpointManager{pods: map[string]*localPod{}, queue: newWorkQueue()}
}

// add creates the endpoint of pod k with the next endpoint ID.
func (m *endpointManager) add(k, ns, name, uid string) *localPod {
	m.lastID++
	p := &localPod{ns: ns, name: name, uid: uid, epID: m.lastID}
	m.pods[k] = p
	return p
}

// localPod is a pod on the agent's node and its endpoint.
type localPod struct {
	ns, name, uid string
	ip            netip.Addr
	sa            string
	labels        map[string]string
	epID          int64

	want    identity.Labels
	wantKey string
	// id is the identity the endpoint uses; pendingID one allocated for
	// new labels that awaits the identity-change grace period.
	id        identity.ID
	pendingID identity.ID
	grace     *time.Timer
	// jitterKey is the label key whose resolution waits out the relabel
	// jitter until jitterUntil (see relabelJitter).
	jitterKey   string
	jitterUntil time.Time
	// cepID is the identity the CiliumEndpoint carries; cepCreated says
	// whether the agent holds it (created, or found by a GET), so that
	// the next sync patches it (ciliumendpoint.go).
	cepID      identity.ID
	cepCreated bool
	// cepUID is the CiliumEndpoint's metadata.uid, which every patch
	// tests; cepState what the status last written or read was built
	// from; cepGot says a GET was made, so the next reads the latest
	// version.
	cepUID   string
	cepState cepState
	cepGot   bool
	// allowed is the policy pushed to the datapath (nil: none yet).
	allowed []policykey.Key
	deleted bool
}

func podKey(ns, name string) string { return ns + "/" + name }

func (a *Agent) replacePods(items []slimPod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[string]bool, len(items))
	for i := range items {
		seen[podKey(items[i].Metadata.Namespace, items[i].Metadata.Name)] = true
		a.upsertPod(&items[i])
	}
	for k, p := range a.eps.pods {
		if !seen[k] {
			a.removePod(k, p)
		}
	}
}

func (a *Agent) onPod(typ string, p *slimPod) {
	a.events.Add(1)
	a.mu.Lock()
	defer a.mu.Unlock()
	k := podKey(p.Metadata.Namespace, p.Metadata.Name)
	if typ == evDeleted {
		if lp, ok := a.eps.pods[k]; ok {
			a.removePod(k, lp)
		}
		return
	}
	a.upsertPod(p)
}

func (a *Agent) upsertPod(p *slimPod) {
	if p.Spec.NodeName != a.cfg.Node {
		return
	}
	ip, err := netip.ParseAddr(p.Status.PodIP)
	if err != nil {
		// No IP yet: the CNI has not run; nothing to do.
		return
	}
	k := podKey(p.Metadata.Namespace, p.Metadata.Name)
	lp, ok := a.eps.pods[k]
	if ok && lp.ip == ip && lp.sa == p.Spec.ServiceAccountName && mapsEqual(lp.labels, p.Metadata.Labels) {
		return
	}
	if !ok {
		lp = a.eps.add(k, a.cfg.Interner.String(p.Metadata.Namespace), strings.Clone(p.Metadata.Name), strings.Clone(p.Metadata.UID))
	}
	lp.ip = ip
	lp.sa = a.cfg.Interner.String(p.Spec.ServiceAccountName)
	lp.labels = a.internLabels(p.Metadata.Labels)
	a.computeWant(lp)
	a.eps.queue.add(k)
}

func (a *Agent) computeWant(p *localPod) {
	l := identity.PodLabels(a.cfg.Filter, identity.PodInfo{
		Cluster: a.cfg.Cluster, Namespace: p.ns, ServiceAccount: p.sa,
		PodLabels: p.labels, NamespaceLabels: a.k8s.namespaces[p.ns],
	}, a.cfg.Interner)
	key := l.Key()
	if key == p.wantKey {
		return
	}
	p.want = a.cfg.Interner.Labels(l, key)
	p.wantKey = a.cfg.Interner.String(key)
}

func (a *Agent) removePod(k string, p *localPod) {
	delete(a.eps.pods, k)
	p.deleted = true
	if p.grace != nil {
		p.grace.Stop()
	}
	if p.allowed != nil {
		a.queueDP(dpOp{kind: dpDeleteEndpoint, ep: p.ip})
		delete(a.dp.overflow, p.ip)
		a.dig.policyStale = true
		a.changed()
	}
	if p.cepCreated || p.cepUID != "" {
		a.eps.queue.addDelete(k, p)
	}
}
