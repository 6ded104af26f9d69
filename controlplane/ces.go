package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/stampede-sim/stampede/scenarios"
)

// slimCEP is the part of a CiliumEndpoint the CES controller copies.
type slimCEP struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	Status struct {
		Identity *struct {
			ID int64 `json:"id"`
		} `json:"identity,omitempty"`
		Networking *cesNetworking `json:"networking,omitempty"`
		Encryption *struct {
			Key int `json:"key,omitempty"`
		} `json:"encryption,omitempty"`
	} `json:"status"`
}

// coreCEP is one endpoint of a CiliumEndpointSlice (cilium.io/v2alpha1
// CoreCiliumEndpoint).
type coreCEP struct {
	Name       string         `json:"name"`
	ID         int64          `json:"id"`
	Networking *cesNetworking `json:"networking,omitempty"`
	Encryption cesEncryption  `json:"encryption"`
}

type cesNetworking struct {
	Addressing []cesAddress `json:"addressing"`
	Node       string       `json:"node,omitempty"`
}

type cesAddress struct {
	IPv4 string `json:"ipv4,omitempty"`
	IPv6 string `json:"ipv6,omitempty"`
}

type cesEncryption struct {
	Key int `json:"key,omitempty"`
}

// ciliumEndpointSlice is the cluster-scoped cilium.io/v2alpha1 object.
type ciliumEndpointSlice struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Metadata   cesMeta   `json:"metadata"`
	Namespace  string    `json:"namespace"`
	Endpoints  []coreCEP `json:"endpoints"`
}

type cesMeta struct {
	Name            string `json:"name"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

type cesConfig struct {
	events *prometheus.CounterVec
	kube   *kube
	knobs  scenarios.CESKnobs
	log    *slog.Logger
	reg    prometheus.Registerer
}

// cesController packs CiliumEndpoints into CiliumEndpointSlices as
// Cilium's operator does (cilium/cilium operator/pkg/ciliumendpointslice),
// in one of its two slice modes (controlPlane.ces.sliceMode):
//
//   - fcfs, first come first served (manager.go cesManagerFcfs, the only
//     mode from v1.18): a new endpoint goes into the fullest slice of its
//     namespace that has room (at most maxEndpointsPerSlice), a new slice
//     when none has; an endpoint stays in its slice until deleted, so an
//     identity change rewrites that one slice.
//   - identity (manager.go cesManagerIdentity.UpdateCEPMapping and
//     getLargestAvailableCESForIdentity, the default up to v1.17): a slice
//     holds endpoints of one identity only; a new endpoint goes into the
//     fullest non-empty slice of its namespace and identity that has room;
//     an endpoint whose identity changes leaves its slice (which is
//     rewritten, or deleted when empty) for one of the new identity (which
//     may have to be created).
//
// Changes are batched every batchInterval (Cilium syncs a slice
// DefaultCESSyncTime, 500 ms, after a change) and written through a token
// bucket of writeQPS and writeBurst (Cilium's --ces-rate-limits step for
// the cluster's node count, which scenarios resolve from cluster.nodes).
type cesController struct {
	cfg     cesConfig
	limiter *rate.Limiter

	mu     sync.Mutex
	ceps   map[string]coreCEP // namespace/name ->
	member map[string]string  // namespace/name -> slice
	slices map[string]*slice
	byNS   map[string][]string // slice names of a namespace, in creation order
	dirty  map[string]bool

	writes  *prometheus.CounterVec
	nslices prometheus.Gauge
	lag     prometheus.Histogram
}

type slice struct {
	name    string
	ns      string
	id      int64           // the identity of its endpoints, in identity mode
	members map[string]bool // CEP names
	rv      string          // "" until created
	since   time.Time       // oldest unsynced change
}

func newCESController(cfg cesConfig) (*cesController, error) {
	k := cfg.knobs
	if k.SliceMode != scenarios.SliceModeFCFS && k.SliceMode != scenarios.SliceModeIdentity {
		return nil, fmt.Errorf("controlPlane.ces.sliceMode: unknown slice mode %q", k.SliceMode)
	}
	if k.MaxEndpointsPerSlice <= 0 || k.WriteQPS <= 0 || k.WriteBurst <= 0 || k.BatchInterval.Duration <= 0 {
		return nil, fmt.Errorf("controlPlane.ces: maxEndpointsPerSlice, writeQPS, writeBurst and batchInterval must be positive (got %d, %v, %d, %v)",
			k.MaxEndpointsPerSlice, k.WriteQPS, k.WriteBurst, k.BatchInterval.Duration)
	}
	c := &cesController{
		cfg:     cfg,
		limiter: rate.NewLimiter(rate.Limit(k.WriteQPS), k.WriteBurst),
		ceps:    map[string]coreCEP{}, member: map[string]string{}, slices: map[string]*slice{}, byNS: map[string][]string{}, dirty: map[string]bool{},
		writes:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stampede_ces_writes_total", Help: "CiliumEndpointSlice writes, by verb and outcome."}, []string{"verb", "outcome"}),
		nslices: prometheus.NewGauge(prometheus.GaugeOpts{Name: "stampede_ces_slices", Help: "CiliumEndpointSlices managed."}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "stampede_ces_sync_lag_seconds", Help: "Time from a CiliumEndpoint change to the write of its slice.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
	}
	for _, col := range []prometheus.Collector{c.writes, c.nslices, c.lag} {
		if err := cfg.reg.Register(col); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func cesName() string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := []byte("ces-xxxxxxxxx-xxxxx")
	for i := range b {
		if b[i] == 'x' {
			b[i] = alphabet[rand.IntN(len(alphabet))]
		}
	}
	return string(b)
}

func (c *cesController) upsert(o any, now time.Time) {
	var cep slimCEP
	if err := fromUnstructured(o, &cep); err != nil {
		c.cfg.log.Warn("decode CiliumEndpoint", "error", err)
		return
	}
	ns, name := cep.Metadata.Namespace, cep.Metadata.Name
	core := coreCEP{Name: name, Networking: cep.Status.Networking}
	if cep.Status.Identity != nil {
		core.ID = cep.Status.Identity.ID
	}
	if cep.Status.Encryption != nil {
		core.Encryption.Key = cep.Status.Encryption.Key
	}
	key := ns + "/" + name
	c.mu.Lock()
	defer c.mu.Unlock()
	old, had := c.ceps[key]
	c.ceps[key] = core
	byIdentity := c.cfg.knobs.SliceMode == scenarios.SliceModeIdentity
	if sn, ok := c.member[key]; ok {
		if !byIdentity || c.slices[sn].id == core.ID {
			if !had || !equalCore(old, core) {
				c.touch(sn, now)
			}
			return
		}
		// Identity mode: the endpoint leaves the slice of its old identity.
		delete(c.slices[sn].members, name)
		delete(c.member, key)
		c.touch(sn, now)
	}
	// FCFS: the fullest non-empty slice of the namespace that still has
	// room (manager.go getLargestAvailableCESForNamespace), the oldest on
	// ties. Identity: the same among the slices of the endpoint's identity
	// (getLargestAvailableCESForIdentity). An emptied slice is never
	// refilled: Cilium forgets it at once and deletes it.
	var target *slice
	for _, sn := range c.byNS[ns] {
		s := c.slices[sn]
		if len(s.members) == 0 || (byIdentity && s.id != core.ID) {
			continue
		}
		if len(s.members) < c.cfg.knobs.MaxEndpointsPerSlice && (target == nil || len(s.members) > len(target.members)) {
			target = s
		}
	}
	if target == nil {
		n := cesName()
		for c.slices[n] != nil {
			n = cesName()
		}
		target = &slice{name: n, ns: ns, id: core.ID, members: map[string]bool{}}
		c.slices[n] = target
		c.byNS[ns] = append(c.byNS[ns], n)
		c.nslices.Set(float64(len(c.slices)))
	}
	target.members[name] = true
	c.member[key] = target.name
	c.touch(target.name, now)
}

func (c *cesController) remove(o any, now time.Time) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return
	}
	key := u.GetNamespace() + "/" + u.GetName()
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.ceps, key)
	if s, ok := c.member[key]; ok {
		delete(c.slices[s].members, u.GetName())
		delete(c.member, key)
		c.touch(s, now)
	}
}

func (c *cesController) touch(name string, now time.Time) {
	if !c.dirty[name] {
		c.dirty[name] = true
		c.slices[name].since = now
	}
}

func equalCore(a, b coreCEP) bool {
	if a.Name != b.Name || a.ID != b.ID || a.Encryption != b.Encryption || (a.Networking == nil) != (b.Networking == nil) {
		return false
	}
	if a.Networking == nil {
		return true
	}
	return a.Networking.Node == b.Networking.Node && slices.Equal(a.Networking.Addressing, b.Networking.Addressing)
}

func (c *cesController) run(ctx context.Context) error {
	f := dynamicinformer.NewDynamicSharedInformerFactory(c.cfg.kube.dyn, 0)
	ceps := f.ForResource(gvrEndpoint).Informer()
	if err := countEvents(ceps, c.cfg.events, "ciliumendpoints"); err != nil {
		return err
	}
	reg, err := ceps.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { c.upsert(o, time.Now()) },
		UpdateFunc: func(_, o any) { c.upsert(o, time.Now()) },
		DeleteFunc: func(o any) { c.remove(o, time.Now()) },
	})
	if err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return nil
	}
	if err := c.adoptExisting(ctx); err != nil {
		c.cfg.log.Warn("list existing CiliumEndpointSlices", "error", err)
	}
	t := time.NewTicker(c.cfg.knobs.BatchInterval.Duration)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		c.sync(ctx)
	}
}

// adoptExisting deletes slices this controller did not create (left over
// from a previous run): their endpoints have been packed anew.
func (c *cesController) adoptExisting(ctx context.Context) error {
	list, err := c.cfg.kube.dyn.Resource(gvrSlice).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var errs []error
	for _, it := range list.Items {
		c.mu.Lock()
		_, ours := c.slices[it.GetName()]
		c.mu.Unlock()
		if ours {
			continue
		}
		if err := c.limiter.Wait(ctx); err != nil {
			return err
		}
		if err := c.cfg.kube.dyn.Resource(gvrSlice).Delete(ctx, it.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sync writes every dirty slice once, oldest change first.
func (c *cesController) sync(ctx context.Context) {
	c.mu.Lock()
	names := make([]string, 0, len(c.dirty))
	for n := range c.dirty {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return c.slices[a].since.Compare(c.slices[b].since) })
	c.mu.Unlock()
	for _, n := range names {
		if err := c.limiter.Wait(ctx); err != nil {
			return
		}
		if err := c.write(ctx, n); err != nil && ctx.Err() == nil {
			c.cfg.log.Warn("write CiliumEndpointSlice", "slice", n, "error", err)
		}
	}
}

func (c *cesController) write(ctx context.Context, name string) error {
	c.mu.Lock()
	s := c.slices[name]
	if s == nil || !c.dirty[name] {
		c.mu.Unlock()
		return nil
	}
	delete(c.dirty, name)
	since := s.since
	obj := ciliumEndpointSlice{APIVersion: "cilium.io/v2alpha1", Kind: "CiliumEndpointSlice", Metadata: cesMeta{Name: name, ResourceVersion: s.rv}, Namespace: s.ns}
	members := make([]string, 0, len(s.members))
	for m := range s.members {
		members = append(members, m)
	}
	slices.Sort(members)
	for _, m := range members {
		obj.Endpoints = append(obj.Endpoints, c.ceps[s.ns+"/"+m])
	}
	empty := len(members) == 0
	created := s.rv != ""
	if empty {
		delete(c.slices, name)
		c.byNS[s.ns] = slices.DeleteFunc(c.byNS[s.ns], func(x string) bool { return x == name })
		c.nslices.Set(float64(len(c.slices)))
	}
	c.mu.Unlock()

	res := c.cfg.kube.dyn.Resource(gvrSlice)
	var err error
	var out *unstructured.Unstructured
	verb := "update"
	switch {
	case empty && !created:
		return nil
	case empty:
		verb = "delete"
		err = res.Delete(ctx, name, metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			err = nil
		}
	default:
		var m map[string]any
		m, err = runtime.DefaultUnstructuredConverter.ToUnstructured(&obj)
		if err != nil {
			return fmt.Errorf("encode slice %s: %w", name, err)
		}
		u := &unstructured.Unstructured{Object: m}
		if created {
			out, err = res.Update(ctx, u, metav1.UpdateOptions{})
		} else {
			verb = "create"
			out, err = res.Create(ctx, u, metav1.CreateOptions{})
		}
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	c.writes.WithLabelValues(verb, outcome).Inc()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		// Retry at the next batch; a conflict needs the current version.
		if s := c.slices[name]; s != nil {
			if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
				if cur, gerr := res.Get(ctx, name, metav1.GetOptions{}); gerr == nil {
					s.rv = cur.GetResourceVersion()
				}
			}
			c.touch(name, since)
		}
		return fmt.Errorf("%s slice %s: %w", verb, name, err)
	}
	c.lag.Observe(time.Since(since).Seconds())
	if s := c.slices[name]; s != nil && out != nil {
		s.rv = out.GetResourceVersion()
	}
	return nil
}
