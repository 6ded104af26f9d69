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
	"k8s.io/client-go/tools/cache"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// coreCEP is one endpoint of a CiliumEndpointSlice (cilium.io/v2alpha1
// CoreCiliumEndpoint).
type coreCEP struct {
	Name       string         `json:"name"`
	ID         int64          `json:"id"`
	Networking *cesNetworking `json:"networking,omitempty"`
	Encryption cesEncryption  `json:"encryption"`
	// NamedPorts are filled by the slim source only (convertPodToCoreCEP);
	// the CiliumEndpoint source leaves them out as the default
	// controller's CiliumEndpoint conversion has none here.
	NamedPorts []cesNamedPort `json:"named-ports,omitempty"`
}

// cesNamedPort is a container port with a name (models.Port).
type cesNamedPort struct {
	Name     string `json:"name,omitempty"`
	Port     uint16 `json:"port,omitempty"`
	Protocol string `json:"protocol,omitempty"`
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
	Name            string            `json:"name"`
	Labels          map[string]string `json:"labels,omitempty"`
	ResourceVersion string            `json:"resourceVersion,omitempty"`
}

type cesConfig struct {
	events *prometheus.CounterVec
	kube   *kube
	knobs  scenarios.CESKnobs
	log    *slog.Logger
	reg    prometheus.Registerer
	// source is where slice members come from: CESSourceCEPs (default,
	// Cilium's default CES controller) or CESSourcePods (its slim
	// controller, ces_pods.go), which needs scenario.
	source   string
	scenario *scenarios.Scenario
}

// cesSource feeds a cesController with members (ces_ceps.go, ces_pods.go).
type cesSource interface {
	// start starts the source's informers, which place and remove
	// members and mark slices dirty; it returns what must sync before
	// the first write and a stop that shuts the informers down.
	start(ctx context.Context) (synced []cache.InformerSynced, stop func(), err error)
	// endpointLocked is the endpoint written for member name of
	// namespace ns, false to leave it out of the slice for now (c.mu
	// held).
	endpointLocked(ns, name string) (coreCEP, bool)
}

// cesController packs endpoints into CiliumEndpointSlices as Cilium's
// operator does (cilium/cilium operator/pkg/ciliumendpointslice): those of
// CiliumEndpoints (ces_ceps.go, its default controller) or, in slim mode,
// those of Pods (ces_pods.go, its slim controller), in one of its two
// slice modes (controlPlane.ces.sliceMode; slim mode has FCFS only):
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
	src     cesSource
	limiter *rate.Limiter

	mu     sync.Mutex
	ceps   map[string]coreCEP // namespace/name ->
	member map[string]string  // namespace/name -> slice
	slices map[string]*slice
	byNS   map[string][]string // slice names of a namespace, in creation order
	dirty  map[string]bool
	// runOf is the run label (identity.RunLabel) of a namespace's
	// members, where they carry one: Cilium's slices have no labels and
	// no owner, but on a cluster Stampede does not own its clean-up finds
	// what the run created by that label, so slices get their members'.
	runOf map[string]string

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
	written []coreCEP       // the endpoints of the last successful write
}

func newCESController(cfg cesConfig) (*cesController, error) {
	k := cfg.knobs
	if k.SliceMode != scenarios.SliceModeFCFS && k.SliceMode != scenarios.SliceModeIdentity {
		return nil, fmt.Errorf("controlPlane.ces.sliceMode: unknown slice mode %q", k.SliceMode)
	}
	if cfg.source == "" {
		cfg.source = CESSourceCEPs
	}
	switch cfg.source {
	case CESSourceCEPs:
	case CESSourcePods:
		if k.SliceMode != scenarios.SliceModeFCFS {
			return nil, fmt.Errorf("controlPlane.ces.sliceMode: %q with CiliumEndpointSlices built from pods: Cilium's slim controller packs first come first served only (operator/pkg/ciliumendpointslice newSlimManager); use %q",
				k.SliceMode, scenarios.SliceModeFCFS)
		}
		if cfg.scenario == nil {
			return nil, errors.New("controlplane: the pods CES source needs the scenario")
		}
	default:
		return nil, fmt.Errorf("controlplane: unknown CES source %q (want %s or %s)", cfg.source, CESSourceCEPs, CESSourcePods)
	}
	if k.MaxEndpointsPerSlice <= 0 || k.WriteQPS <= 0 || k.WriteBurst <= 0 || k.BatchInterval.Duration <= 0 {
		return nil, fmt.Errorf("controlPlane.ces: maxEndpointsPerSlice, writeQPS, writeBurst and batchInterval must be positive (got %d, %v, %d, %v)",
			k.MaxEndpointsPerSlice, k.WriteQPS, k.WriteBurst, k.BatchInterval.Duration)
	}
	c := &cesController{
		cfg:     cfg,
		limiter: rate.NewLimiter(rate.Limit(k.WriteQPS), k.WriteBurst),
		ceps:    map[string]coreCEP{}, member: map[string]string{}, slices: map[string]*slice{}, byNS: map[string][]string{}, dirty: map[string]bool{}, runOf: map[string]string{},
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
	if cfg.source == CESSourcePods {
		src, err := newPodSource(c)
		if err != nil {
			return nil, err
		}
		c.src = src
	} else {
		c.src = cepSource{c}
	}
	return c, nil
}

// noteRunLocked records the run label of a member of namespace ns (c.mu
// held).
func (c *cesController) noteRunLocked(ns string, labels map[string]string) {
	if run := labels[identity.RunLabel]; run != "" {
		c.runOf[ns] = run
	}
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

// placeLocked puts a new member into a slice of its namespace (c.mu
// held). FCFS: the fullest non-empty slice of the namespace that still
// has room (manager.go getLargestAvailableCESForNamespace), the oldest on
// ties. Identity: the same among the slices of the endpoint's identity id
// (getLargestAvailableCESForIdentity). An emptied slice is never
// refilled: Cilium forgets it at once and deletes it.
func (c *cesController) placeLocked(ns, name string, id int64, now time.Time) {
	byIdentity := c.cfg.knobs.SliceMode == scenarios.SliceModeIdentity
	var target *slice
	for _, sn := range c.byNS[ns] {
		s := c.slices[sn]
		if len(s.members) == 0 || (byIdentity && s.id != id) {
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
		target = &slice{name: n, ns: ns, id: id, members: map[string]bool{}}
		c.slices[n] = target
		c.byNS[ns] = append(c.byNS[ns], n)
		c.nslices.Set(float64(len(c.slices)))
	}
	target.members[name] = true
	c.member[ns+"/"+name] = target.name
	c.touch(target.name, now)
}

// removeMemberLocked takes a member out of its slice, if it has one (c.mu
// held).
func (c *cesController) removeMemberLocked(ns, name string, now time.Time) {
	key := ns + "/" + name
	if s, ok := c.member[key]; ok {
		delete(c.slices[s].members, name)
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
	if a.Name != b.Name || a.ID != b.ID || a.Encryption != b.Encryption || (a.Networking == nil) != (b.Networking == nil) ||
		!slices.Equal(a.NamedPorts, b.NamedPorts) {
		return false
	}
	if a.Networking == nil {
		return true
	}
	return a.Networking.Node == b.Networking.Node && slices.Equal(a.Networking.Addressing, b.Networking.Addressing)
}

func (c *cesController) run(ctx context.Context) error {
	synced, stop, err := c.src.start(ctx)
	if err != nil {
		return err
	}
	defer stop()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
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

// adoptExisting deletes slices an earlier Stampede run left behind (their
// endpoints have been packed anew): those that carry a run label
// (identity.RunLabel) and that this controller did not create. A slice
// without one is not Stampede's (on a kubeconfig cluster, Cilium's own
// operator writes unlabelled slices) and is left alone.
func (c *cesController) adoptExisting(ctx context.Context) error {
	list, err := c.cfg.kube.dyn.Resource(gvrSlice).List(ctx, metav1.ListOptions{LabelSelector: identity.RunLabel})
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
	obj := ciliumEndpointSlice{APIVersion: "cilium.io/v2alpha1", Kind: "CiliumEndpointSlice", Metadata: cesMeta{Name: name, ResourceVersion: s.rv}, Namespace: s.ns,
		Endpoints: []coreCEP{}}
	if run := c.runOf[s.ns]; run != "" {
		obj.Metadata.Labels = map[string]string{identity.RunLabel: run}
	}
	members := make([]string, 0, len(s.members))
	for m := range s.members {
		members = append(members, m)
	}
	slices.Sort(members)
	for _, m := range members {
		if e, ok := c.src.endpointLocked(s.ns, m); ok {
			obj.Endpoints = append(obj.Endpoints, e)
		}
	}
	empty := len(members) == 0
	created := s.rv != ""
	// A slice whose members cannot be written yet (the slim source's
	// pods without a known identity or CiliumNode) is not created until
	// one can; one equal to what was last written is not written again
	// (Cilium's reconciler compares with the slice it holds).
	if !empty && (len(obj.Endpoints) == 0 && !created || created && slices.EqualFunc(obj.Endpoints, s.written, equalCore)) {
		c.mu.Unlock()
		return nil
	}
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
		s.written = obj.Endpoints
	}
	return nil
}
