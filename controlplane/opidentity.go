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
	// now is the clock of the retry backoff; default time.Now.
	now func() time.Time
}

// operatorIdentities is Cilium's operator-managed identity mode (CFP-27752,
// Cilium >= 1.18 identity-management-mode=operator): the operator watches
// Pods and Namespaces, computes each pod's identity labels and creates one
// CiliumIdentity per label set that has none; agents only read them. A
// single writer with a view of every existing identity creates no
// duplicates.
//
// A label set whose creation failed is retried as the operator's work
// queue retries an item (cilium/cilium operator/pkg/ciliumidentity
// controller.go, processNextItem with an ItemExponentialFailureRateLimiter
// of defaultSyncBackOff 1 s to maxSyncBackOff 100 s and maxProcessRetries
// 15, v1.18-v1.19): the r-th retry comes retryBaseDelay*2^r after the
// failure, at most retryMaxDelay, and after maxRetries retries the label
// set is dropped (its failure count forgotten) until a pod or namespace
// event asks for it again. Unlike Cilium's queue, whose items are pods,
// an event for a label set that is backing off does not retry it early.
type operatorIdentities struct {
	cfg    operatorIdentitiesConfig
	filter *identity.Filter

	mu      sync.Mutex
	known   map[string]identity.ID // label key -> ID, from the CID informer and our creates
	used    map[identity.ID]bool
	pending map[string]identity.Labels
	kick    chan struct{}
	next    identity.ID
	// failures counts the failed attempts of a pending label set since its
	// last success or drop; retryAt is when it may be tried again.
	failures map[string]int
	retryAt  map[string]time.Time

	created prometheus.Counter
	errs    prometheus.Counter
	dropped prometheus.Counter
}

func newOperatorIdentities(cfg operatorIdentitiesConfig) (*operatorIdentities, error) {
	f, err := identity.NewFilter(cfg.scenario.Agent.LabelFilter)
	if err != nil {
		return nil, fmt.Errorf("agent.labelFilter: %w", err)
	}
	k := cfg.scenario.ControlPlane.OperatorIdentity
	if k.RetryBaseDelay.Duration <= 0 || k.RetryMaxDelay.Duration < k.RetryBaseDelay.Duration || k.MaxRetries == nil || *k.MaxRetries < 0 {
		return nil, fmt.Errorf("controlPlane.operatorIdentity: retryBaseDelay (%v) must be positive, retryMaxDelay (%v) at least retryBaseDelay, maxRetries set and >= 0",
			k.RetryBaseDelay.Duration, k.RetryMaxDelay.Duration)
	}
	if cfg.now == nil {
		cfg.now = time.Now
	}
	o := &operatorIdentities{
		cfg: cfg, filter: f,
		known: map[string]identity.ID{}, used: map[identity.ID]bool{}, pending: map[string]identity.Labels{},
		kick: make(chan struct{}, 1), next: identity.MinID,
		failures: map[string]int{}, retryAt: map[string]time.Time{},
		created: prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_operator_identities_created_total", Help: "CiliumIdentities created by the operator."}),
		errs:    prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_operator_identity_errors_total", Help: "Failed identity creations (retried)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_operator_identity_dropped_total", Help: "Label sets dropped from the work queue after maxRetries retries."}),
	}
	for _, c := range []prometheus.Collector{o.created, o.errs, o.dropped} {
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
	id, key, err := cidLabelKey(u)
	if err != nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.used[id] = true
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

// podIdentityLabels is the identity label set of pod p in namespace ns,
// as Cilium's operator computes it from the pod and namespace labels
// (operator/pkg/ciliumidentity GetRelevantLabelsForPod). Both of the
// operator's readers of pods use it, the identity controller
// (operatorIdentities) and the slim CiliumEndpointSlice source (ces_pods.go,
// getPodCIDKey calls the same Cilium function), so that the two cannot
// disagree on a pod's label key.
func podIdentityLabels(f *identity.Filter, cluster string, p *corev1.Pod, ns *corev1.Namespace) identity.Labels {
	return identity.PodLabels(f, identity.PodInfo{
		Cluster: cluster, Namespace: p.Namespace, ServiceAccount: p.Spec.ServiceAccountName,
		PodLabels: p.Labels, NamespaceLabels: ns.Labels,
	}, nil)
}

// cidLabelKey is a CiliumIdentity's numeric ID and the label key of its
// security labels, comparable with podIdentityLabels(...).Key().
func cidLabelKey(u *unstructured.Unstructured) (identity.ID, string, error) {
	id, err := identity.ParseID(u.GetName())
	if err != nil {
		return 0, "", err
	}
	sl, _, _ := unstructured.NestedStringMap(u.Object, "security-labels")
	l, err := identity.FromSecurityLabels(sl)
	if err != nil {
		return 0, "", fmt.Errorf("identity %d: %w", id, err)
	}
	return id, l.Key(), nil
}

// need records the identity labels of a pod.
func (o *operatorIdentities) need(p *corev1.Pod, ns *corev1.Namespace) {
	if p.Spec.NodeName == "" {
		return
	}
	l := podIdentityLabels(o.filter, o.cfg.scenario.Cluster.Name, p, ns)
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
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-o.kick:
		case <-retry.C:
		}
		if next, ok := o.createPending(ctx); ok {
			retry.Reset(next.Sub(o.cfg.now()))
		}
	}
}

// backoff is the delay before retry r (0-based): retryBaseDelay*2^r, at
// most retryMaxDelay (client-go's ItemExponentialFailureRateLimiter).
func (o *operatorIdentities) backoff(r int) time.Duration {
	k := o.cfg.scenario.ControlPlane.OperatorIdentity
	d := k.RetryBaseDelay.Duration
	for i := 0; i < r && d < k.RetryMaxDelay.Duration; i++ {
		d *= 2
	}
	return min(d, k.RetryMaxDelay.Duration)
}

// createPending creates a CiliumIdentity for every pending label set that
// is not backing off. It returns when the earliest label set backing off
// is due, ok false if none is.
func (o *operatorIdentities) createPending(ctx context.Context) (next time.Time, ok bool) {
	now := o.cfg.now()
	o.mu.Lock()
	work := make(map[string]identity.Labels, len(o.pending))
	for k, l := range o.pending {
		if at, waiting := o.retryAt[k]; waiting && at.After(now) {
			if !ok || at.Before(next) {
				next, ok = at, true
			}
			continue
		}
		work[k] = l
	}
	o.mu.Unlock()
	maxRetries := *o.cfg.scenario.ControlPlane.OperatorIdentity.MaxRetries
	for key, l := range work {
		if ctx.Err() != nil {
			return next, false
		}
		err := o.create(ctx, key, l)
		o.mu.Lock()
		if err == nil {
			delete(o.failures, key)
			delete(o.retryAt, key)
			o.mu.Unlock()
			continue
		}
		o.errs.Inc()
		r := o.failures[key]
		if r >= maxRetries {
			delete(o.pending, key)
			delete(o.failures, key)
			delete(o.retryAt, key)
			o.mu.Unlock()
			o.dropped.Inc()
			o.cfg.log.Warn("drop identity from the work queue after max retries", "labels", key, "retries", r, "error", err)
			continue
		}
		o.failures[key] = r + 1
		at := now.Add(o.backoff(r))
		o.retryAt[key] = at
		o.mu.Unlock()
		if !ok || at.Before(next) {
			next, ok = at, true
		}
		o.cfg.log.Warn("create identity", "labels", key, "retries", r, "error", err)
	}
	return next, ok
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
