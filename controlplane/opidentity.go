package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

type operatorIdentitiesConfig struct {
	events   *prometheus.CounterVec
	kube     *kube
	scenario *scenarios.Scenario
	log      *slog.Logger
	reg      prometheus.Registerer
}

// operatorIdentities is Cilium's operator-managed identity mode (CFP-27752,
// Cilium >= 1.18 identity-management-mode=operator): the operator watches
// Pods and Namespaces, computes each pod's identity labels and creates one
// CiliumIdentity per label set that has none; agents only read them. A
// single writer with a view of every existing identity creates no
// duplicates.
type operatorIdentities struct {
	cfg    operatorIdentitiesConfig
	filter *identity.Filter

	mu      sync.Mutex
	known   map[string]identity.ID // label key -> ID, from the CID informer and our creates
	used    map[identity.ID]bool
	pending map[string]identity.Labels
	kick    chan struct{}
	next    identity.ID

	created prometheus.Counter
	errs    prometheus.Counter
}

func newOperatorIdentities(cfg operatorIdentitiesConfig) (*operatorIdentities, error) {
	f, err := identity.NewFilter(cfg.scenario.Agent.LabelFilter)
	if err != nil {
		return nil, fmt.Errorf("agent.labelFilter: %w", err)
	}
	o := &operatorIdentities{
		cfg: cfg, filter: f,
		known: map[string]identity.ID{}, used: map[identity.ID]bool{}, pending: map[string]identity.Labels{},
		kick: make(chan struct{}, 1), next: identity.MinID,
		created: prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_operator_identities_created_total", Help: "CiliumIdentities created by the operator."}),
		errs:    prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_operator_identity_errors_total", Help: "Failed identity creations (retried)."}),
	}
	for _, c := range []prometheus.Collector{o.created, o.errs} {
		if err := cfg.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (o *operatorIdentities) sawCID(obj any) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	id, err := identity.ParseID(u.GetName())
	if err != nil {
		return
	}
	sl, _, _ := unstructured.NestedStringMap(u.Object, "security-labels")
	l, err := identity.FromSecurityLabels(sl)
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.used[id] = true
	key := l.Key()
	if _, ok := o.known[key]; !ok {
		o.known[key] = id
	}
	delete(o.pending, key)
}

func (o *operatorIdentities) goneCID(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return
	}
	id, err := identity.ParseID(u.GetName())
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.used, id)
	for k, v := range o.known {
		if v == id {
			delete(o.known, k)
		}
	}
}

// need records the identity labels of a pod.
func (o *operatorIdentities) need(p *corev1.Pod, ns *corev1.Namespace) {
	if p.Spec.NodeName == "" {
		return
	}
	l := identity.PodLabels(o.filter, identity.PodInfo{
		Cluster: o.cfg.scenario.Cluster.Name, Namespace: p.Namespace, ServiceAccount: p.Spec.ServiceAccountName,
		PodLabels: p.Labels, NamespaceLabels: ns.Labels,
	}, nil)
	key := l.Key()
	o.mu.Lock()
	_, known := o.known[key]
	if !known {
		o.pending[key] = l
	}
	o.mu.Unlock()
	if !known {
		select {
		case o.kick <- struct{}{}:
		default:
		}
	}
}

func (o *operatorIdentities) run(ctx context.Context) error {
	core := informers.NewSharedInformerFactory(o.cfg.kube.core, 0)
	dyn := dynamicinformer.NewDynamicSharedInformerFactory(o.cfg.kube.dyn, 0)
	pods := core.Core().V1().Pods().Informer()
	nss := core.Core().V1().Namespaces().Informer()
	cids := dyn.ForResource(gvrIdentity).Informer()
	if err := errors.Join(countEvents(pods, o.cfg.events, "pods"), countEvents(nss, o.cfg.events, "namespaces"), countEvents(cids, o.cfg.events, "ciliumidentities")); err != nil {
		return err
	}
	cidsReg, err := cids.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: o.sawCID, UpdateFunc: func(_, n any) { o.sawCID(n) }, DeleteFunc: o.goneCID,
	})
	if err != nil {
		return err
	}
	nsOf := func(name string) *corev1.Namespace {
		obj, ok, _ := nss.GetStore().GetByKey(name)
		if !ok {
			return nil
		}
		return obj.(*corev1.Namespace)
	}
	onPod := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return
		}
		if ns := nsOf(p.Namespace); ns != nil {
			o.need(p, ns)
		}
	}
	if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onPod, UpdateFunc: func(_, n any) { onPod(n) }}); err != nil {
		return err
	}
	onNS := func(obj any) {
		ns, ok := obj.(*corev1.Namespace)
		if !ok {
			return
		}
		items, _ := pods.GetIndexer().ByIndex(cache.NamespaceIndex, ns.Name)
		for _, it := range items {
			o.need(it.(*corev1.Pod), ns)
		}
	}
	if _, err := nss.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onNS, UpdateFunc: func(_, n any) { onNS(n) }}); err != nil {
		return err
	}
	core.Start(ctx.Done())
	dyn.Start(ctx.Done())
	defer core.Shutdown()
	defer dyn.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), cidsReg.HasSynced) {
		return nil
	}
	// Pods seen before the identities synced may be pending for label sets
	// that already have an identity: sawCID removed those.
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced, nss.HasSynced) {
		return nil
	}
	for _, obj := range pods.GetStore().List() {
		onPod(obj)
	}
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-o.kick:
		case <-retry.C:
		}
		if failed := o.createPending(ctx); failed {
			retry.Reset(time.Second)
		}
	}
}

// createPending creates a CiliumIdentity for every pending label set. It
// reports whether some failed (to be retried).
func (o *operatorIdentities) createPending(ctx context.Context) bool {
	o.mu.Lock()
	work := make(map[string]identity.Labels, len(o.pending))
	for k, l := range o.pending {
		work[k] = l
	}
	o.mu.Unlock()
	failed := false
	for key, l := range work {
		if ctx.Err() != nil {
			return false
		}
		if err := o.create(ctx, key, l); err != nil {
			failed = true
			o.errs.Inc()
			o.cfg.log.Warn("create identity", "labels", key, "error", err)
		}
	}
	return failed
}

func (o *operatorIdentities) create(ctx context.Context, key string, l identity.Labels) error {
	for attempt := 0; attempt < 16; attempt++ {
		o.mu.Lock()
		if _, ok := o.known[key]; ok {
			delete(o.pending, key)
			o.mu.Unlock()
			return nil
		}
		id := o.next
		for o.used[id] && id <= identity.MaxID {
			id++
		}
		if id > identity.MaxID {
			o.mu.Unlock()
			return fmt.Errorf("no free identity in %d..%d", identity.MinID, identity.MaxID)
		}
		o.next = id + 1
		o.used[id] = true
		o.mu.Unlock()

		cid := identity.NewCiliumIdentity(id, l)
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&cid)
		if err != nil {
			return fmt.Errorf("encode identity %d: %w", id, err)
		}
		_, err = o.cfg.kube.dyn.Resource(gvrIdentity).Create(ctx, &unstructured.Unstructured{Object: m}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			continue // taken meanwhile; the informer will tell us by whom
		}
		if err != nil {
			o.mu.Lock()
			delete(o.used, id)
			o.mu.Unlock()
			return fmt.Errorf("create identity %d: %w", id, err)
		}
		o.created.Inc()
		o.mu.Lock()
		o.known[key] = id
		delete(o.pending, key)
		o.mu.Unlock()
		return nil
	}
	return fmt.Errorf("no free identity after 16 attempts")
}
