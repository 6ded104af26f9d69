package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// HeartbeatAnnotation marks a CiliumIdentity for deletion (Cilium's
// identitybackend.HeartBeatAnnotation).
const HeartbeatAnnotation = "io.cilium.heartbeat"

type identityGCConfig struct {
	events   *prometheus.CounterVec
	kube     *kube
	interval time.Duration
	timeout  time.Duration
	// rateInterval and rateLimit bound deletions (gcLimiter).
	rateInterval time.Duration
	rateLimit    int
	// slices: CiliumEndpointSlices are on, so an identity a slice member
	// carries is alive too.
	slices bool
	now    func() time.Time
	log    *slog.Logger
	reg    prometheus.Registerer
}

// identityGC garbage-collects CiliumIdentities as Cilium's operator does in
// CRD mode (cilium/cilium operator/identitygc/crd_gc.go, heartbeat.go):
// every interval, an identity that some CiliumEndpoint uses, or, with
// CiliumEndpointSlices on, some slice member carries (crd_gc.go gc with
// enable-cilium-endpoint-slice: usedIdentitiesInCESs over the operator's
// CiliumEndpointSlice store), is marked alive; without the slices, agents
// that write no CiliumEndpoints (slim slices) would have every identity in
// use deleted. One not marked alive for the heartbeat timeout is first annotated
// with io.cilium.heartbeat (marked for deletion) and, if it is still unused
// and expired at a later run, deleted with UID and resourceVersion
// preconditions, at most rateLimit in each rateInterval window (gcLimiter).
// New and updated identities count as alive when seen.
type identityGC struct {
	cfg identityGCConfig

	mu        sync.Mutex
	lastAlive map[string]time.Time

	limiter *gcLimiter
	runs    prometheus.Counter
	deleted prometheus.Counter
	marked  prometheus.Counter
	alive   prometheus.Gauge
	errs    prometheus.Counter
}

func newIdentityGC(cfg identityGCConfig) (*identityGC, error) {
	if cfg.interval <= 0 || cfg.timeout <= 0 {
		return nil, fmt.Errorf("controlPlane.identityGC: interval (%v) and heartbeatTimeout (%v) must be positive", cfg.interval, cfg.timeout)
	}
	lim, err := newGCLimiter(cfg.rateInterval, cfg.rateLimit, nil)
	if err != nil {
		return nil, err
	}
	g := &identityGC{
		cfg:       cfg,
		lastAlive: map[string]time.Time{},
		limiter:   lim,
		runs:      prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_identity_gc_runs_total", Help: "Identity GC runs."}),
		deleted:   prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_identity_gc_deleted_total", Help: "Identities deleted by the GC."}),
		marked:    prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_identity_gc_marked_total", Help: "Identities annotated for deletion."}),
		alive:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "stampede_identity_gc_alive", Help: "Identities alive at the last GC run."}),
		errs:      prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_identity_gc_errors_total", Help: "GC API errors."}),
	}
	for _, c := range []prometheus.Collector{g.runs, g.deleted, g.marked, g.alive, g.errs} {
		if err := cfg.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func (g *identityGC) markAlive(name string, t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastAlive[name] = t
}

func (g *identityGC) run(ctx context.Context) error {
	f := dynamicinformer.NewDynamicSharedInformerFactory(g.cfg.kube.dyn, 0)
	cids := f.ForResource(gvrIdentity).Informer()
	ceps := f.ForResource(gvrEndpoint).Informer()
	cidsReg, err := cids.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { g.markAlive(nameOf(o), g.cfg.now()) },
		UpdateFunc: func(_, o any) { g.markAlive(nameOf(o), g.cfg.now()) },
		DeleteFunc: func(o any) {
			g.mu.Lock()
			delete(g.lastAlive, nameOf(o))
			g.mu.Unlock()
		},
	})
	if err != nil {
		return err
	}
	if err := errors.Join(countEvents(cids, g.cfg.events, "ciliumidentities"), countEvents(ceps, g.cfg.events, "ciliumendpoints")); err != nil {
		return err
	}
	if err := ceps.AddIndexers(cache.Indexers{"identity": cepIdentityIndex}); err != nil {
		return err
	}
	synced := []cache.InformerSynced{cidsReg.HasSynced, ceps.HasSynced}
	var inSlices cache.Store
	if g.cfg.slices {
		ces := f.ForResource(gvrSlice).Informer()
		if err := countEvents(ces, g.cfg.events, "ciliumendpointslices"); err != nil {
			return err
		}
		synced, inSlices = append(synced, ces.HasSynced), ces.GetStore()
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return nil
	}
	t := time.NewTicker(g.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := g.gc(ctx, cids.GetStore(), ceps.GetIndexer(), usedInSlices(inSlices)); err != nil && ctx.Err() == nil {
			g.errs.Inc()
			g.cfg.log.Warn("identity gc", "error", err)
		}
	}
}

func nameOf(o any) string {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	if u, ok := o.(*unstructured.Unstructured); ok {
		return u.GetName()
	}
	return ""
}

// cepIdentityIndex indexes CiliumEndpoints by status.identity.id.
func cepIdentityIndex(o any) ([]string, error) {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return nil, nil
	}
	id, found, err := unstructured.NestedInt64(u.Object, "status", "identity", "id")
	if err != nil || !found {
		return nil, nil
	}
	return []string{fmt.Sprint(id)}, nil
}

// usedInSlices is the set of identity names that members of the
// CiliumEndpointSlices in store carry (crd_gc.go usedIdentitiesInCESs);
// nil store, nil set.
func usedInSlices(store cache.Store) map[string]bool {
	if store == nil {
		return nil
	}
	used := map[string]bool{}
	for _, o := range store.List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		eps, _, _ := unstructured.NestedSlice(u.Object, "endpoints")
		for _, e := range eps {
			if m, ok := e.(map[string]any); ok {
				if id, ok, _ := unstructured.NestedInt64(m, "id"); ok {
					used[strconv.FormatInt(id, 10)] = true
				}
			}
		}
	}
	return used
}

// gc is one run over every identity; inSlices holds the identities slice
// members carry.
func (g *identityGC) gc(ctx context.Context, cids cache.Store, ceps cache.Indexer, inSlices map[string]bool) error {
	g.runs.Inc()
	now := g.cfg.now()
	alive := 0
	var errs []error
	for _, o := range cids.List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		name := u.GetName()
		used, err := ceps.ByIndex("identity", name)
		if err != nil {
			return fmt.Errorf("look up endpoints of identity %s: %w", name, err)
		}
		if len(used) > 0 || inSlices[name] {
			g.markAlive(name, now)
			alive++
			continue
		}
		g.mu.Lock()
		last, seen := g.lastAlive[name]
		g.mu.Unlock()
		if seen && now.Sub(last) < g.cfg.timeout {
			alive++
			continue
		}
		if _, marked := u.GetAnnotations()[HeartbeatAnnotation]; !marked {
			cp := u.DeepCopy()
			ann := cp.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[HeartbeatAnnotation] = now.UTC().Format(time.RFC3339Nano)
			cp.SetAnnotations(ann)
			if _, err := g.cfg.kube.dyn.Resource(gvrIdentity).Update(ctx, cp, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				errs = append(errs, fmt.Errorf("mark identity %s for deletion: %w", name, err))
			} else if err == nil {
				g.marked.Inc()
			}
			continue
		}
		if err := g.limiter.Wait(ctx); err != nil {
			return errors.Join(append(errs, err)...)
		}
		uid, rv := types.UID(u.GetUID()), u.GetResourceVersion()
		pre := &metav1.Preconditions{ResourceVersion: &rv}
		if uid != "" {
			pre.UID = &uid
		}
		err = g.cfg.kube.dyn.Resource(gvrIdentity).Delete(ctx, name, metav1.DeleteOptions{Preconditions: pre})
		switch {
		case err == nil:
			g.deleted.Inc()
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		default:
			errs = append(errs, fmt.Errorf("delete identity %s: %w", name, err))
		}
	}
	g.alive.Set(float64(alive))
	// Forget heartbeats of identities gone from the store (heartbeat.go gc).
	g.mu.Lock()
	for name := range g.lastAlive {
		if _, ok, _ := cids.GetByKey(name); !ok {
			delete(g.lastAlive, name)
		}
	}
	g.mu.Unlock()
	return errors.Join(errs...)
}
