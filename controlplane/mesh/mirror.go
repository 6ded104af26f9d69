package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/stampede-sim/stampede/internal/agentcontract"
)

// Source is the resource the mirror reads endpoints from.
type Source string

// Sources: clustermesh-apiserver mirrors CiliumEndpointSlices when
// enable-cilium-endpoint-slice is set and CiliumEndpoints otherwise, never
// both (newCiliumEndpointOptions and newCiliumEndpointSliceOptions in
// converters.go).
const (
	SourceCES Source = "ces"
	SourceCEP Source = "cep"
)

var (
	gvrIdentity = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumidentities"}
	gvrEndpoint = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumendpoints"}
	gvrSlice    = schema.GroupVersionResource{Group: "cilium.io", Version: "v2alpha1", Resource: "ciliumendpointslices"}
	gvrNode     = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnodes"}
)

// Config configures a Mirror.
type Config struct {
	// Replica is the replica's index (a metric label).
	Replica int
	// Cluster is the cluster name in node keys and canaries (default
	// "default"); ClusterID its ID (default 0, Stampede's single cluster).
	Cluster   string
	ClusterID uint32
	// Source is where endpoints come from: ces or cep (required).
	Source Source
	// Kube is the API client the informers use (required).
	Kube dynamic.Interface
	// Etcd is the replica's etcd (required); the mirror does not close it.
	Etcd *clientv3.Client
	// LeaseTTL is the TTL of the lease the keys are attached to (default
	// 15 min, Cilium's kvstore lease TTL, pkg/defaults KVstoreLeaseTTL).
	LeaseTTL time.Duration
	// HeartbeatInterval is how often the heartbeat key is written (default
	// 1 min, pkg/kvstore HeartbeatWriteInterval).
	HeartbeatInterval time.Duration
	// Registerer receives the metrics (default: a fresh registry).
	Registerer prometheus.Registerer
	// Log receives the mirror's messages (default: discard).
	Log *slog.Logger

	// noCoalesce writes every update of a key (tests only).
	noCoalesce bool
}

func (c *Config) defaults() error {
	if c.Replica < 0 {
		return fmt.Errorf("mesh config: replica: %d is negative", c.Replica)
	}
	if c.Cluster == "" {
		c.Cluster = "default"
	}
	switch c.Source {
	case SourceCES, SourceCEP:
	case "":
		return errors.New("mesh config: source: required (ces or cep)")
	default:
		return fmt.Errorf("mesh config: source: %q is not ces or cep", c.Source)
	}
	if c.Kube == nil {
		return errors.New("mesh config: kube: no API client")
	}
	if c.Etcd == nil {
		return errors.New("mesh config: etcd: no client")
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 15 * time.Minute
	}
	if c.LeaseTTL < time.Second {
		return fmt.Errorf("mesh config: lease TTL: %s is under 1s", c.LeaseTTL)
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Minute
	}
	if c.HeartbeatInterval < 0 {
		return fmt.Errorf("mesh config: heartbeat interval: %s is negative", c.HeartbeatInterval)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Mirror is one replica's mirror: informers on the API server, one writer
// per etcd prefix.
type Mirror struct {
	cfg     Config
	events  *prometheus.CounterVec
	apply   *prometheus.HistogramVec
	writes  *prometheus.CounterVec
	coal    *prometheus.CounterVec
	skipped *prometheus.CounterVec
	queue   *prometheus.GaugeVec

	mu     sync.Mutex
	stores []*syncStore
}

// New validates cfg and registers the metrics.
func New(cfg Config) (*Mirror, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"replica": strconv.Itoa(cfg.Replica)}, cfg.Registerer)
	m := &Mirror{
		cfg: cfg,
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stampede_mesh_watch_events_total",
			Help: "Watch events the mirror received from the API server, by resource."}, []string{"resource"}),
		apply: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stampede_mesh_apply_seconds",
			Help:    "Time from the receipt of a watch event to etcd's acknowledgement of the write it caused (the oldest event a coalesced write carries), by prefix.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)}, []string{"prefix"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stampede_mesh_writes_total",
			Help: "etcd writes of the mirror by prefix, operation (put, delete, canary) and outcome."}, []string{"prefix", "op", "outcome"}),
		coal: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stampede_mesh_coalesced_total",
			Help: "Updates folded into a write already queued for the same key, by prefix."}, []string{"prefix"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stampede_mesh_skipped_total",
			Help: "Upserts of an unchanged value and deletes of an unknown key, dropped, by prefix."}, []string{"prefix"}),
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stampede_mesh_queue_keys",
			Help: "Keys waiting to be written, by prefix."}, []string{"prefix"}),
	}
	for _, c := range []prometheus.Collector{m.events, m.apply, m.writes, m.coal, m.skipped, m.queue} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("mesh metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Mirror) storeMetrics(name string) *storeMetrics {
	return &storeMetrics{
		apply: m.apply.WithLabelValues(name), writes: m.writes.MustCurryWith(prometheus.Labels{"prefix": name}),
		coalesced: m.coal.WithLabelValues(name), skipped: m.skipped.WithLabelValues(name), queue: m.queue.WithLabelValues(name),
	}
}

// Synced tells whether every prefix's canary has been written.
func (m *Mirror) Synced() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.stores) == 0 {
		return false
	}
	for _, s := range m.stores {
		if !s.hasSynced() {
			return false
		}
	}
	return true
}

// Run mirrors until ctx ends. It grants the lease, writes the cluster
// configuration, starts the informers and writers and the heartbeat, and
// returns nil when ctx ends (leaving the lease to expire), or an error
// when the lease cannot be had or is lost (the keys are gone with it: the
// replica must start again).
func (m *Mirror) Run(ctx context.Context) error {
	cfg := m.cfg
	sess, err := concurrency.NewSession(cfg.Etcd, concurrency.WithTTL(int(cfg.LeaseTTL.Seconds())), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("mesh: etcd lease: %w", err)
	}
	// At exit the lease is left to expire, not revoked: agents reading
	// this replica keep its keys until they notice the replica is gone
	// and list another one, instead of seeing every key deleted first.
	// With the replica's etcd gone too (both containers of a pod, both
	// processes of a Stampede replica) the keys go with it.
	defer sess.Orphan()
	lease := sess.Lease()

	// The cluster configuration, at start (cmutils.EnforceClusterConfig in
	// clustermesh-apiserver's root.go startServer; value as in
	// testdata/clusterconfig.txtar).
	noExports := false
	cc, err := json.Marshal(agentcontract.ClusterConfig{ID: cfg.ClusterID, Capabilities: agentcontract.ClusterConfigCapabilities{
		SyncedCanaries: true, MaxConnectedClusters: 255, ServiceExportsEnabled: &noExports,
	}})
	if err != nil {
		return fmt.Errorf("mesh: cluster config: %w", err)
	}
	if _, err := cfg.Etcd.Put(ctx, agentcontract.KVClusterConfigPrefix+cfg.Cluster, string(cc), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("mesh: write cluster config: %w", err)
	}

	newStore := func(name, prefix, synced string) *syncStore {
		return newSyncStore(cfg.Etcd, lease, prefix, agentcontract.SyncedKey(cfg.Cluster, synced), !cfg.noCoalesce, m.storeMetrics(name))
	}
	ids := newStore("identities", agentcontract.KVIDPrefix, agentcontract.KVSyncedIdentities)
	ips := newStore("ipcache", agentcontract.KVIPPrefix, agentcontract.KVSyncedIPCache)
	nodes := newStore("nodes", agentcontract.KVNodesPrefix+cfg.Cluster+"/", agentcontract.KVSyncedNodes)
	m.mu.Lock()
	m.stores = []*syncStore{ids, ips, nodes}
	m.mu.Unlock()

	f := dynamicinformer.NewDynamicSharedInformerFactory(cfg.Kube, 0)
	var syncs []func(context.Context)
	add := func(gvr schema.GroupVersionResource, s *syncStore, h handler) error {
		inf := f.ForResource(gvr).Informer()
		events := m.events.WithLabelValues(gvr.Resource)
		reg, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { events.Inc(); m.handle(s, h, o, false) },
			UpdateFunc: func(_, o any) { events.Inc(); m.handle(s, h, o, false) },
			DeleteFunc: func(o any) { events.Inc(); m.handle(s, h, o, true) },
		})
		if err != nil {
			return fmt.Errorf("mesh: %s handler: %w", gvr.Resource, err)
		}
		// The canary follows the first list (RegisterSynchronizer waits
		// for the resource's Sync event, then calls store.Synced).
		syncs = append(syncs, func(ctx context.Context) {
			if cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
				s.markSynced(time.Now())
			}
		})
		return nil
	}
	if err := add(gvrIdentity, ids, identityHandler{}); err != nil {
		return err
	}
	if cfg.Source == SourceCES {
		err = add(gvrSlice, ips, &sliceHandler{owned: newOwnedEntries()})
	} else {
		err = add(gvrEndpoint, ips, &endpointHandler{owned: newOwnedEntries()})
	}
	if err != nil {
		return err
	}
	if err := add(gvrNode, nodes, nodeHandler{cluster: cfg.Cluster, clusterID: cfg.ClusterID}); err != nil {
		return err
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, s := range []*syncStore{ids, ips, nodes} {
		wg.Add(1)
		go func() { defer wg.Done(); s.run(wctx) }()
	}
	f.Start(wctx.Done())
	defer f.Shutdown()
	defer cancel()
	for _, sync := range syncs {
		wg.Add(1)
		go func() { defer wg.Done(); sync(wctx) }()
	}
	return m.heartbeat(wctx, ctx, sess)
}

// heartbeat writes the heartbeat key every interval (Cilium's
// heartbeat.Cell, pkg/kvstore HeartbeatPath and HeartbeatWriteInterval)
// until ctx ends or the session is lost; parent is the context the
// session was opened with.
func (m *Mirror) heartbeat(ctx, parent context.Context, sess *concurrency.Session) error {
	t := time.NewTicker(m.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		if _, err := m.cfg.Etcd.Put(ctx, agentcontract.KVHeartbeatKey, time.Now().UTC().Format(time.RFC3339Nano), clientv3.WithLease(sess.Lease())); err != nil && ctx.Err() == nil {
			m.cfg.Log.Warn("mesh: heartbeat write failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-sess.Done():
			// The session ends with Run's context too (WithContext), maybe
			// before ctx, its child, is cancelled: only a session that
			// ended on its own is lost.
			if parent.Err() != nil {
				return nil
			}
			return errors.New("mesh: etcd session lost; its keys are gone")
		case <-t.C:
		}
	}
}

// handler turns one object into key changes.
type handler interface {
	changes(obj any, deleted bool) ([]change, error)
}

func (m *Mirror) handle(s *syncStore, h handler, obj any, deleted bool) {
	at := time.Now()
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	chs, err := h.changes(obj, deleted)
	if err != nil {
		m.cfg.Log.Warn("mesh: ignoring an object", "err", err)
		return
	}
	for _, c := range chs {
		if c.value == nil {
			s.delete(c.key, at)
		} else {
			s.upsert(c.key, c.value, at)
		}
	}
}

func decode(obj any, into any) error {
	u, ok := obj.(interface{ UnstructuredContent() map[string]any })
	if !ok {
		return fmt.Errorf("unexpected object %T", obj)
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), into)
}

type identityHandler struct{}

func (identityHandler) changes(obj any, deleted bool) ([]change, error) {
	var cid ciliumIdentity
	if err := decode(obj, &cid); err != nil {
		return nil, fmt.Errorf("CiliumIdentity: %w", err)
	}
	if deleted {
		return []change{{key: cid.Metadata.Name}}, nil
	}
	v, err := identityValue(&cid)
	if err != nil {
		return nil, fmt.Errorf("CiliumIdentity %s: %w", cid.Metadata.Name, err)
	}
	return []change{{key: cid.Metadata.Name, value: v}}, nil
}

type endpointHandler struct{ owned *ownedEntries }

func (h *endpointHandler) changes(obj any, deleted bool) ([]change, error) {
	var ep ciliumEndpoint
	if err := decode(obj, &ep); err != nil {
		return nil, fmt.Errorf("CiliumEndpoint: %w", err)
	}
	owner := ep.Metadata.Namespace + "/" + ep.Metadata.Name
	if deleted {
		return h.owned.convert(owner, nil)
	}
	return h.owned.convert(owner, ep.entries())
}

type sliceHandler struct{ owned *ownedEntries }

func (h *sliceHandler) changes(obj any, deleted bool) ([]change, error) {
	var ces ciliumEndpointSlice
	if err := decode(obj, &ces); err != nil {
		return nil, fmt.Errorf("CiliumEndpointSlice: %w", err)
	}
	if deleted {
		return h.owned.convert(ces.Metadata.Name, nil)
	}
	return h.owned.convert(ces.Metadata.Name, ces.entries())
}

type nodeHandler struct {
	cluster   string
	clusterID uint32
}

func (h nodeHandler) changes(obj any, deleted bool) ([]change, error) {
	var cn ciliumNode
	if err := decode(obj, &cn); err != nil {
		return nil, fmt.Errorf("CiliumNode: %w", err)
	}
	if deleted {
		return []change{{key: cn.Metadata.Name}}, nil
	}
	v, err := nodeValue(&cn, h.cluster, h.clusterID)
	if err != nil {
		return nil, fmt.Errorf("CiliumNode %s: %w", cn.Metadata.Name, err)
	}
	return []change{{key: cn.Metadata.Name, value: v}}, nil
}
