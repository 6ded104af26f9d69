package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
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

	"github.com/stampede-sim/stampede/controlplane/xds"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/scenarios"
)

type xdsSourceConfig struct {
	events   *prometheus.CounterVec
	kube     *kube
	server   *xds.Server
	scenario *scenarios.Scenario
	log      *slog.Logger
	reg      prometheus.Registerer
}

// xdsSource watches Pods, Namespaces and CiliumNetworkPolicies, allocates
// identities centrally (xds.Model) and publishes the resulting resources
// to the xDS server in batches, one every controlPlane.xds.flushInterval
// at most. Central xDS is Stampede's design, not Cilium's, so the interval
// is Stampede's choice: it bounds how many versions a burst of API events
// (a relabel) pushes to every agent.
type xdsSource struct {
	cfg xdsSourceConfig

	mu    sync.Mutex
	model *xds.Model
	dirty bool

	// synced is closed after the first flush following the informers'
	// sync: serving agents before would make resuming agents delete what
	// the new control plane has not read yet.
	synced chan struct{}

	// persist receives identity changes to write as CiliumIdentities
	// (controlPlane.xds.persistIdentities); nil when off.
	persist chan *xds.Changes

	events    *prometheus.CounterVec
	applyErrs prometheus.Counter
	ids       prometheus.Gauge
	flushes   prometheus.Counter
}

func newXDSSource(cfg xdsSourceConfig) (*xdsSource, error) {
	f, err := identity.NewFilter(cfg.scenario.Agent.LabelFilter)
	if err != nil {
		return nil, fmt.Errorf("agent.labelFilter: %w", err)
	}
	if d := cfg.scenario.ControlPlane.XDS.FlushInterval.Duration; d <= 0 {
		return nil, fmt.Errorf("controlPlane.xds.flushInterval must be positive, got %v", d)
	}
	s := &xdsSource{
		cfg:       cfg,
		model:     xds.NewModel(cfg.scenario.Cluster.Name, f),
		synced:    make(chan struct{}),
		events:    cfg.events,
		applyErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_xds_source_errors_total", Help: "Objects that could not be turned into xDS resources."}),
		ids:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "stampede_controlplane_identities", Help: "Identities allocated by the control plane."}),
		flushes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_xds_flushes_total", Help: "Batches of changes the xDS source published."}),
	}
	if cfg.scenario.ControlPlane.XDS.PersistIdentities {
		s.persist = make(chan *xds.Changes, 1024)
	}
	for _, c := range []prometheus.Collector{s.applyErrs, s.ids, s.flushes} {
		if err := cfg.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *xdsSource) update(resource string, f func(m *xds.Model) error) {
	s.events.WithLabelValues(resource).Inc()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := f(s.model); err != nil {
		s.applyErrs.Inc()
		s.cfg.log.Warn("xds source", "resource", resource, "error", err)
		return
	}
	s.dirty = true
}

func handler[T any](s *xdsSource, resource string, decode func(any) (T, bool), set func(*xds.Model, T) error, del func(*xds.Model, T)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if v, ok := decode(obj); ok {
				s.update(resource, func(m *xds.Model) error { return set(m, v) })
			}
		},
		UpdateFunc: func(_, obj any) {
			if v, ok := decode(obj); ok {
				s.update(resource, func(m *xds.Model) error { return set(m, v) })
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if v, ok := decode(obj); ok {
				s.update(resource, func(m *xds.Model) error { del(m, v); return nil })
			}
		},
	}
}

func (s *xdsSource) run(ctx context.Context) error {
	core := informers.NewSharedInformerFactory(s.cfg.kube.core, 0)
	dyn := dynamicinformer.NewDynamicSharedInformerFactory(s.cfg.kube.dyn, 0)
	pods := core.Core().V1().Pods().Informer()
	nss := core.Core().V1().Namespaces().Informer()
	cnps := dyn.ForResource(gvrPolicy).Informer()
	podsReg, err := pods.AddEventHandler(handler(s, "pods",
		func(o any) (*corev1.Pod, bool) { p, ok := o.(*corev1.Pod); return p, ok },
		func(m *xds.Model, p *corev1.Pod) error {
			ip, _ := netip.ParseAddr(p.Status.PodIP)
			return m.SetPod(xds.Pod{Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName, IP: ip, ServiceAccount: p.Spec.ServiceAccountName, Labels: p.Labels})
		},
		func(m *xds.Model, p *corev1.Pod) { m.DeletePod(p.Namespace, p.Name) }))
	if err != nil {
		return err
	}
	nssReg, err := nss.AddEventHandler(handler(s, "namespaces",
		func(o any) (*corev1.Namespace, bool) { n, ok := o.(*corev1.Namespace); return n, ok },
		func(m *xds.Model, n *corev1.Namespace) error { m.SetNamespace(n.Name, n.Labels); return nil },
		func(m *xds.Model, n *corev1.Namespace) { m.DeleteNamespace(n.Name) }))
	if err != nil {
		return err
	}
	cnpsReg, err := cnps.AddEventHandler(handler(s, "ciliumnetworkpolicies",
		func(o any) (*policy.CiliumNetworkPolicy, bool) {
			var cnp policy.CiliumNetworkPolicy
			if err := fromUnstructured(o, &cnp); err != nil {
				s.applyErrs.Inc()
				s.cfg.log.Warn("decode CiliumNetworkPolicy", "error", err)
				return nil, false
			}
			return &cnp, true
		},
		func(m *xds.Model, cnp *policy.CiliumNetworkPolicy) error {
			rules, err := policy.Compile(cnp)
			if err != nil {
				return fmt.Errorf("CiliumNetworkPolicy %s/%s: %w", cnp.Metadata.Namespace, cnp.Metadata.Name, err)
			}
			m.SetPolicy(cnp.Metadata.Namespace, cnp.Metadata.Name, rules)
			return nil
		},
		func(m *xds.Model, cnp *policy.CiliumNetworkPolicy) {
			m.DeletePolicy(cnp.Metadata.Namespace, cnp.Metadata.Name)
		}))
	if err != nil {
		return err
	}
	if s.persist != nil {
		if err := s.reserve(ctx); err != nil {
			return err
		}
	}
	core.Start(ctx.Done())
	dyn.Start(ctx.Done())
	defer core.Shutdown()
	defer dyn.Shutdown()
	// The handlers' HasSynced, not the informers': every initial object
	// must be in the model before the first flush.
	if !cache.WaitForCacheSync(ctx.Done(), podsReg.HasSynced, nssReg.HasSynced, cnpsReg.HasSynced) {
		return nil // ctx ended
	}
	s.cfg.log.Info("xds source synced")
	if s.persist != nil {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); s.persistLoop(ctx) }()
		defer wg.Wait()
	}
	s.mu.Lock()
	s.dirty = true
	s.mu.Unlock()
	s.flush(ctx)
	close(s.synced)
	s.flushLoop(ctx)
	return nil
}

// flushLoop publishes the pending changes every flushInterval until ctx
// ends.
func (s *xdsSource) flushLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.scenario.ControlPlane.XDS.FlushInterval.Duration)
	defer t.Stop()
	for {
		s.flush(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *xdsSource) flush(ctx context.Context) {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return
	}
	s.dirty = false
	s.flushes.Inc()
	c, err := s.model.Flush()
	s.ids.Set(float64(s.model.Identities()))
	s.mu.Unlock()
	if err != nil {
		s.applyErrs.Inc()
		s.cfg.log.Warn("xds model", "error", err)
	}
	if _, err := s.cfg.server.Apply(c); err != nil {
		s.applyErrs.Inc()
		s.cfg.log.Error("xds apply", "error", err)
	}
	if s.persist != nil {
		select {
		case s.persist <- c:
		case <-ctx.Done():
		}
	}
}

// reserve loads the CiliumIdentities persisted by an earlier run into the
// model, so that label sets keep their IDs across a restart.
func (s *xdsSource) reserve(ctx context.Context) error {
	list, err := s.cfg.kube.dyn.Resource(gvrIdentity).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list persisted identities: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range list.Items {
		id, err := identity.ParseID(it.GetName())
		if err != nil || id < identity.MinID || id > identity.MaxID {
			continue
		}
		sl, _, _ := unstructured.NestedStringMap(it.Object, "security-labels")
		l, err := identity.FromSecurityLabels(sl)
		if err != nil {
			s.cfg.log.Warn("persisted identity", "id", it.GetName(), "error", err)
			continue
		}
		if err := s.model.Reserve(id, l); err != nil {
			s.cfg.log.Warn("persisted identity", "error", err)
		}
	}
	s.dirty = true
	return nil
}

// persistLoop writes the identities the control plane allocated as
// CiliumIdentities (and deletes withdrawn ones); it is the only writer.
func (s *xdsSource) persistLoop(ctx context.Context) {
	res := s.cfg.kube.dyn.Resource(gvrIdentity)
	for {
		var c *xds.Changes
		select {
		case <-ctx.Done():
			return
		case c = <-s.persist:
		}
		set, del := c.Identities()
		for _, name := range del {
			if err := res.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
				s.applyErrs.Inc()
				s.cfg.log.Warn("delete CiliumIdentity", "id", name, "error", err)
			}
		}
		for _, id := range set {
			l, err := identity.ParseKey(strings.Join(id.GetLabels(), ";") + ";")
			if err != nil {
				s.applyErrs.Inc()
				continue
			}
			cid := identity.NewCiliumIdentity(identity.ID(id.GetId()), l)
			m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&cid)
			if err != nil {
				s.applyErrs.Inc()
				continue
			}
			u := &unstructured.Unstructured{Object: m}
			_, err = res.Create(ctx, u, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				// A CiliumIdentity left by an earlier run: ours now.
				var cur *unstructured.Unstructured
				if cur, err = res.Get(ctx, cid.Metadata.Name, metav1.GetOptions{}); err == nil {
					u.SetResourceVersion(cur.GetResourceVersion())
					_, err = res.Update(ctx, u, metav1.UpdateOptions{})
				}
			}
			if err != nil && ctx.Err() == nil {
				s.applyErrs.Inc()
				s.cfg.log.Warn("create CiliumIdentity", "id", id.GetId(), "error", err)
			}
		}
	}
}
