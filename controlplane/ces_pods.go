package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/stampede-sim/stampede/internal/identity"
)

// The pod source of the CES controller: Cilium's slim CES controller
// (operator --ces-controller-mode=slim, cilium/cilium PR #38388; in
// operator/pkg/ciliumendpointslice SlimController in endpointslice.go,
// slimManager in manager.go, slimReconciler in reconciler.go, read after
// PR #47228), which builds slices from Pods, so that no CiliumEndpoint
// needs to exist:
//
//   - it watches Pods, Namespaces, CiliumIdentities and CiliumNodes
//     (SlimController.Start; the CiliumEndpointSlice watch it also has is
//     the identity GC's here, identitygc.go);
//   - a pod takes a slot (first come first served only, newSlimManager)
//     once resolvePodPlacement accepts it: name and namespace set, not
//     host-network, status.podIPs and status.hostIP set
//     (GetPodEndpointNetworking), scheduled (getNodeNameForPod) and its
//     identity labels resolvable, which needs its namespace
//     (getPodCIDKey); the label key is podIdentityLabels's, the one the
//     operator's identity controller uses (opidentity.go);
//   - the member is built from the pod when its slice is written
//     (slimReconciler.convertPodToCoreCEP): the identity by label key
//     from the CiliumIdentity cache, where several identities of one
//     label set keep the one first selected (getCIDForCEP, selectedID);
//     networking from status.podIPs and status.hostIP; the encryption key
//     from the pod's node's CiliumNode (getEndpointEncryptionKey, 0
//     without IPsec or WireGuard); named container ports; the service
//     account. A pod whose identity is not known yet, or whose node has
//     no CiliumNode, keeps its slot but is left out of the written slice;
//   - a CiliumIdentity event rewrites the slices of pods with its label
//     key (UpdateIdentityMapping, RemoveIdentityMapping), a CiliumNode
//     event those of pods on the node (UpdateNodeMapping), a Namespace
//     event every slice of the namespace (GetCESInNs).
//
// Where this differs: on a Namespace event the pods of the namespace are
// resolved again, so that a relabel moves them to their new label key;
// the Cilium code read shows the slices being reconciled but not where a
// placed pod's cached label key is refreshed.
type podSource struct {
	c       *cesController
	filter  *identity.Filter
	cluster string

	// Set by start; read by endpointLocked.
	pods cache.Indexer
	nss  cache.Store

	// Guarded by c.mu.
	keyOf      map[string]string          // placed pod (namespace/name) -> label key
	nodeOf     map[string]string          // placed pod -> node
	podsByKey  map[string]map[string]bool // label key -> placed pods
	podsByNode map[string]map[string]bool // node -> placed pods
	cids       map[string]*cidChoice      // label key -> its identities
	keyOfID    map[identity.ID]string
	nodeKeys   map[string]int // CiliumNode name -> encryption key
}

// cidChoice is the identities of one label set and the one written.
type cidChoice struct {
	selected identity.ID
	ids      map[identity.ID]bool
}

var gvrCiliumNode = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnodes"}

func newPodSource(c *cesController) (*podSource, error) {
	f, err := identity.NewFilter(c.cfg.scenario.Agent.LabelFilter)
	if err != nil {
		return nil, fmt.Errorf("agent.labelFilter: %w", err)
	}
	return &podSource{
		c: c, filter: f, cluster: c.cfg.scenario.Cluster.Name,
		keyOf: map[string]string{}, nodeOf: map[string]string{},
		podsByKey: map[string]map[string]bool{}, podsByNode: map[string]map[string]bool{},
		cids: map[string]*cidChoice{}, keyOfID: map[identity.ID]string{}, nodeKeys: map[string]int{},
	}, nil
}

func (s *podSource) start(ctx context.Context) ([]cache.InformerSynced, func(), error) {
	c := s.c
	core := informers.NewSharedInformerFactory(c.cfg.kube.core, 0)
	dyn := dynamicinformer.NewDynamicSharedInformerFactory(c.cfg.kube.dyn, 0)
	pods := core.Core().V1().Pods().Informer()
	nss := core.Core().V1().Namespaces().Informer()
	cids := dyn.ForResource(gvrIdentity).Informer()
	nodes := dyn.ForResource(gvrCiliumNode).Informer()
	if err := errors.Join(countEvents(pods, c.cfg.events, "pods"), countEvents(nss, c.cfg.events, "namespaces"),
		countEvents(cids, c.cfg.events, "ciliumidentities"), countEvents(nodes, c.cfg.events, "ciliumnodes")); err != nil {
		return nil, nil, err
	}
	s.pods, s.nss = pods.GetIndexer(), nss.GetStore()
	var regs []cache.ResourceEventHandlerRegistration
	for _, h := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandlerFuncs
	}{
		{pods, cache.ResourceEventHandlerFuncs{AddFunc: s.onPod, UpdateFunc: func(_, o any) { s.onPod(o) }, DeleteFunc: s.onPodDelete}},
		{nss, cache.ResourceEventHandlerFuncs{AddFunc: s.onNamespace, UpdateFunc: func(_, o any) { s.onNamespace(o) }}},
		{cids, cache.ResourceEventHandlerFuncs{AddFunc: s.onCID, UpdateFunc: func(_, o any) { s.onCID(o) }, DeleteFunc: s.onCIDDelete}},
		{nodes, cache.ResourceEventHandlerFuncs{AddFunc: s.onNode, UpdateFunc: func(_, o any) { s.onNode(o) }, DeleteFunc: s.onNodeDelete}},
	} {
		reg, err := h.inf.AddEventHandler(h.h)
		if err != nil {
			return nil, nil, err
		}
		regs = append(regs, reg)
	}
	core.Start(ctx.Done())
	dyn.Start(ctx.Done())
	synced := make([]cache.InformerSynced, len(regs))
	for i, r := range regs {
		synced[i] = r.HasSynced
	}
	return synced, func() { core.Shutdown(); dyn.Shutdown() }, nil
}

// podNetworking is GetPodEndpointNetworking: one address pair from
// status.podIPs and the node from status.hostIP, or false while either is
// missing.
func podNetworking(p *corev1.Pod) (*cesNetworking, bool) {
	if len(p.Status.PodIPs) == 0 || p.Status.HostIP == "" {
		return nil, false
	}
	var pair cesAddress
	for _, ip := range p.Status.PodIPs {
		a, err := netip.ParseAddr(ip.IP)
		if err != nil {
			return nil, false
		}
		if a.Is4() {
			pair.IPv4 = a.String()
		} else {
			pair.IPv6 = a.String()
		}
	}
	return &cesNetworking{Addressing: []cesAddress{pair}, Node: p.Status.HostIP}, true
}

// resolve is resolvePodPlacement: the pod's node and label key, or false
// if the pod is not to be placed (yet).
func (s *podSource) resolve(p *corev1.Pod) (node, key string, ok bool) {
	if p.Name == "" || p.Namespace == "" || p.Spec.HostNetwork || p.Spec.NodeName == "" {
		return "", "", false
	}
	if _, ok := podNetworking(p); !ok {
		return "", "", false
	}
	o, exists, _ := s.nss.GetByKey(p.Namespace)
	if !exists {
		return "", "", false
	}
	ns, ok := o.(*corev1.Namespace)
	if !ok {
		return "", "", false
	}
	return p.Spec.NodeName, podIdentityLabels(s.filter, s.cluster, p, ns).Key(), true
}

func (s *podSource) onPod(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	node, key, ok := s.resolve(p)
	if !ok {
		return
	}
	now := time.Now()
	k := p.Namespace + "/" + p.Name
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noteRunLocked(p.Namespace, p.Labels)
	s.indexLocked(k, key, node)
	if sn, placed := c.member[k]; placed {
		c.touch(sn, now)
		return
	}
	c.placeLocked(p.Namespace, p.Name, 0, now)
}

// indexLocked records a placed pod's label key and node.
func (s *podSource) indexLocked(k, key, node string) {
	s.unindexLocked(k)
	s.keyOf[k], s.nodeOf[k] = key, node
	addTo(s.podsByKey, key, k)
	addTo(s.podsByNode, node, k)
}

func (s *podSource) unindexLocked(k string) {
	if old, ok := s.keyOf[k]; ok {
		removeFrom(s.podsByKey, old, k)
		removeFrom(s.podsByNode, s.nodeOf[k], k)
		delete(s.keyOf, k)
		delete(s.nodeOf, k)
	}
}

func addTo(m map[string]map[string]bool, key, v string) {
	if m[key] == nil {
		m[key] = map[string]bool{}
	}
	m[key][v] = true
}

func removeFrom(m map[string]map[string]bool, key, v string) {
	delete(m[key], v)
	if len(m[key]) == 0 {
		delete(m, key)
	}
}

func (s *podSource) onPodDelete(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	s.unindexLocked(p.Namespace + "/" + p.Name)
	c.removeMemberLocked(p.Namespace, p.Name, time.Now())
}

// onNamespace resolves the namespace's pods again (their label keys
// include the namespace labels) and marks every slice of it dirty.
func (s *podSource) onNamespace(o any) {
	ns, ok := o.(*corev1.Namespace)
	if !ok {
		return
	}
	items, _ := s.pods.ByIndex(cache.NamespaceIndex, ns.Name)
	for _, it := range items {
		s.onPod(it)
	}
	now := time.Now()
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sn := range c.byNS[ns.Name] {
		c.touch(sn, now)
	}
}

// touchPodsLocked marks the slices of the given pods dirty.
func (s *podSource) touchPodsLocked(pods map[string]bool, now time.Time) {
	for k := range pods {
		if sn, ok := s.c.member[k]; ok {
			s.c.touch(sn, now)
		}
	}
}

func (s *podSource) onCID(o any) {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return
	}
	id, key, err := cidLabelKey(u)
	if err != nil {
		s.c.cfg.log.Warn("CiliumIdentity", "name", u.GetName(), "error", err)
		return
	}
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := s.keyOfID[id]; ok && old != key {
		s.dropIDLocked(id, old)
	}
	ch := s.cids[key]
	if ch == nil {
		ch = &cidChoice{ids: map[identity.ID]bool{}}
		s.cids[key] = ch
	}
	ch.ids[id] = true
	s.keyOfID[id] = key
	if ch.selected == 0 {
		ch.selected = id
	}
	s.touchPodsLocked(s.podsByKey[key], time.Now())
}

func (s *podSource) onCIDDelete(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return
	}
	id, err := identity.ParseID(u.GetName())
	if err != nil {
		return
	}
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if key, ok := s.keyOfID[id]; ok {
		s.dropIDLocked(id, key)
		s.touchPodsLocked(s.podsByKey[key], time.Now())
	}
}

// dropIDLocked forgets identity id of label key; if it was the selected
// one, another of the label set is selected (setSelectedID).
func (s *podSource) dropIDLocked(id identity.ID, key string) {
	delete(s.keyOfID, id)
	ch := s.cids[key]
	if ch == nil {
		return
	}
	delete(ch.ids, id)
	if len(ch.ids) == 0 {
		delete(s.cids, key)
		return
	}
	if ch.selected == id {
		ch.selected = slices.Min(slices.Collect(func(yield func(identity.ID) bool) {
			for x := range ch.ids {
				if !yield(x) {
					return
				}
			}
		}))
	}
}

func (s *podSource) onNode(o any) {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return
	}
	// getNodeEndpointEncryptionKey: spec.encryption.key with IPsec, a
	// static key with WireGuard, else 0; Stampede models neither.
	const key = 0
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, had := s.nodeKeys[u.GetName()]; had && old == key {
		return
	}
	s.nodeKeys[u.GetName()] = key
	s.touchPodsLocked(s.podsByNode[u.GetName()], time.Now())
}

func (s *podSource) onNodeDelete(o any) {
	name := nameOf(o)
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(s.nodeKeys, name)
	s.touchPodsLocked(s.podsByNode[name], time.Now())
}

// endpointLocked is convertPodToCoreCEP for a placed pod, from the pod as
// it is now.
func (s *podSource) endpointLocked(ns, name string) (coreCEP, bool) {
	k := ns + "/" + name
	o, exists, _ := s.pods.GetByKey(k)
	if !exists {
		return coreCEP{}, false
	}
	p, ok := o.(*corev1.Pod)
	if !ok {
		return coreCEP{}, false
	}
	ch := s.cids[s.keyOf[k]]
	if ch == nil {
		return coreCEP{}, false
	}
	nw, ok := podNetworking(p)
	if !ok {
		return coreCEP{}, false
	}
	key, ok := s.nodeKeys[p.Spec.NodeName]
	if !ok {
		return coreCEP{}, false
	}
	// Cilium's convertPodToCoreCEP also fills the pod's service account
	// ("service-account"). The CiliumEndpointSlice CRD Stampede's objects
	// are checked against (../shared/reference/cilium-crds) predates that
	// field: a kube-apiserver with that CRD prunes it, and Stampede's
	// objects must be valid against it, so it is left out.
	e := coreCEP{Name: p.Name, ID: int64(ch.selected), Networking: nw, Encryption: cesEncryption{Key: key}}
	for _, ctr := range p.Spec.Containers {
		for _, port := range ctr.Ports {
			switch {
			case port.Name == "":
			case port.Protocol == corev1.ProtocolTCP, port.Protocol == corev1.ProtocolUDP, port.Protocol == corev1.ProtocolSCTP:
				e.NamedPorts = append(e.NamedPorts, cesNamedPort{Name: port.Name, Port: uint16(port.ContainerPort), Protocol: string(port.Protocol)})
			}
		}
	}
	return e, true
}
