package harness

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/reports/results"
)

// The mirror-lag probe's identities are those of cluster ID 255 (the
// numeric identity is cluster ID << 16 | local ID,
// pkg/identity/numericidentity.go ClusterIDShift = 16, Cilium 1.20), local
// IDs 256 to 65535. Nothing else in a run allocates there: agents
// (agentsim/allocate.go randomFreeID) and the operator
// (controlplane/opidentity.go) hand out identity.MinID..MaxID of cluster
// 0, the only cluster Stampede runs; 1 to 255 are Cilium's reserved and
// user-reserved identities (UserReservedNumericIdentity = 128,
// MinimalNumericIdentity = 256), which agents treat specially; identities
// with bit 24 set are node-local (LocalIdentityFlag) and never stored in
// CRDs or the kvstore. 255 is the largest cluster ID of the default
// max-connected-clusters (255), so no real remote cluster is shadowed in
// a test that added one.
const (
	meshProbeCluster = 255
	meshProbeFirst   = identity.ID(meshProbeCluster<<16) + identity.MinID
	meshProbeLast    = identity.ID(meshProbeCluster<<16) + identity.MaxID
)

// meshProbeLabels are the probe identity's security labels: a namespace
// of its own (the API probe's, which no scenario gives policies) and a
// label no generated policy selects.
var meshProbeLabels = map[string]string{
	"k8s:io.kubernetes.pod.namespace": ProbeNamespace,
	"k8s:stampede.io/probe":           "mirror-lag",
}

// meshProbeTimeout bounds the wait for a probe identity's key in every
// replica; a replica that has not shown it by then counts an error.
const meshProbeTimeout = 30 * time.Second

// identityWriter creates and deletes CiliumIdentities on the API server.
type identityWriter interface {
	CreateIdentity(ctx context.Context, cid identity.CiliumIdentity) error
	DeleteIdentity(ctx context.Context, name string) error
}

// kubeIdentityWriter writes CiliumIdentities with the harness's client.
type kubeIdentityWriter struct {
	c      *apiClient
	labels map[string]string // the backend's object labels
}

func (k kubeIdentityWriter) CreateIdentity(ctx context.Context, cid identity.CiliumIdentity) error {
	cid.Metadata.Labels = kubeCluster{labels: k.labels}.withLabels(cid.Metadata.Labels)
	return k.c.do(ctx, "POST", "/apis/cilium.io/v2/ciliumidentities", "", cid, nil)
}

func (k kubeIdentityWriter) DeleteIdentity(ctx context.Context, name string) error {
	return k.c.do(ctx, "DELETE", "/apis/cilium.io/v2/ciliumidentities/"+name, "", nil, nil)
}

// MeshProbeConfig configures a MeshProbe.
type MeshProbeConfig struct {
	API identityWriter
	// Replicas are the replicas' etcd client URLs, in replica order.
	Replicas []string
	// Rate is probes per second (> 0): measure.meshProbeRate.
	Rate float64
	// Timeout bounds the wait for a key (default meshProbeTimeout).
	Timeout time.Duration
	Log     *slog.Logger
}

// MeshProbe measures the mirror lag: at Rate it creates a CiliumIdentity
// of the probe range through the API server, times its key's arrival in
// every replica's etcd from the API server's answer, and deletes it.
type MeshProbe struct {
	cfg  MeshProbeConfig
	clis []*clientv3.Client

	mu      sync.Mutex
	pending map[identity.ID]*meshProbeOne
	lags    [][]float64 // per replica
	last    []float64   // per probe: the last replica's lag
	errs    []int64     // per replica
	allErrs int64
	seen    []int64 // probe keys' puts and deletes each replica delivered
}

// meshProbeOne is one probe in flight.
type meshProbeOne struct {
	arrived []time.Time // zero: not yet
	left    int
	done    chan struct{} // closed when every replica has the key
}

// NewMeshProbe checks cfg and connects to every replica.
func NewMeshProbe(cfg MeshProbeConfig) (*MeshProbe, error) {
	if cfg.API == nil {
		return nil, errors.New("mesh probe: API is nil")
	}
	if len(cfg.Replicas) == 0 {
		return nil, errors.New("mesh probe: no replicas")
	}
	if !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0) {
		return nil, fmt.Errorf("measure.meshProbeRate: must be positive, got %v", cfg.Rate)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = meshProbeTimeout
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	n := len(cfg.Replicas)
	p := &MeshProbe{cfg: cfg, pending: map[identity.ID]*meshProbeOne{}, lags: make([][]float64, n), errs: make([]int64, n), seen: make([]int64, n)}
	for i, u := range cfg.Replicas {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{u}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			_ = p.Close()
			return nil, fmt.Errorf("mesh probe: connect replica %d (%s): %w", i, u, err)
		}
		p.clis = append(p.clis, cli)
	}
	return p, nil
}

// Close closes the etcd clients.
func (p *MeshProbe) Close() error {
	var errs []error
	for _, c := range p.clis {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Run watches every replica and probes at the rate until ctx ends, then
// deletes the identities of the probes in flight and returns when every
// goroutine it started has.
func (p *MeshProbe) Run(ctx context.Context) {
	var wg sync.WaitGroup
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer func() { stopWatch(); wg.Wait() }()
	ready := make(chan struct{}, len(p.clis))
	for i := range p.clis {
		wg.Add(1)
		go func() { defer wg.Done(); p.watch(watchCtx, i, ready) }()
	}
	// Probe once every replica's watch is open, or a first key could
	// arrive unseen; a replica that does not answer by the timeout counts
	// its misses as errors instead of holding back the others.
	wait := time.NewTimer(p.cfg.Timeout)
	defer wait.Stop()
opened:
	for range p.clis {
		select {
		case <-ready:
		case <-wait.C:
			break opened
		case <-ctx.Done():
			return
		}
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / p.cfg.Rate))
	defer tick.Stop()
	var probes sync.WaitGroup
	defer probes.Wait()
	span := int(meshProbeLast - meshProbeFirst + 1)
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		id := meshProbeFirst + identity.ID(seq%span)
		probes.Add(1)
		go func() { defer probes.Done(); p.probe(ctx, id) }()
	}
}

// watch follows the identities prefix of replica i and records the probe
// keys' arrivals. A broken watch (a replica that died) is opened again
// until ctx ends.
func (p *MeshProbe) watch(ctx context.Context, i int, ready chan<- struct{}) {
	signalled := false
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wc := p.clis[i].Watch(wctx, agentcontract.KVIDPrefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		for resp := range wc {
			now := time.Now()
			if resp.Created && !signalled {
				signalled = true
				ready <- struct{}{}
			}
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				id, err := identity.ParseID(strings.TrimPrefix(string(ev.Kv.Key), agentcontract.KVIDPrefix))
				if err != nil || id < meshProbeFirst || id > meshProbeLast {
					continue
				}
				p.arrive(i, id, ev.Type == clientv3.EventTypePut, now)
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// arrive records a probe key's put (or delete) seen in replica i at now.
func (p *MeshProbe) arrive(i int, id identity.ID, put bool, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen[i]++
	one := p.pending[id]
	if !put || one == nil || !one.arrived[i].IsZero() {
		return
	}
	one.arrived[i] = now
	if one.left--; one.left == 0 {
		close(one.done)
	}
}

// probe creates identity id, waits for its key in every replica (at most
// the timeout), records the lags and deletes it.
func (p *MeshProbe) probe(ctx context.Context, id identity.ID) {
	n := len(p.clis)
	one := &meshProbeOne{arrived: make([]time.Time, n), left: n, done: make(chan struct{})}
	p.mu.Lock()
	p.pending[id] = one
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.pending, id)
		p.mu.Unlock()
	}()
	cid := identity.CiliumIdentity{
		APIVersion: identity.CiliumIdentityAPIVersion, Kind: identity.CiliumIdentityKind,
		Metadata:       identity.ObjectMeta{Name: id.String()},
		SecurityLabels: meshProbeLabels,
	}
	err := p.cfg.API.CreateIdentity(ctx, cid)
	answered := time.Now()
	// Whatever happened, the identity goes again, also when the mode's
	// context ended meanwhile.
	defer p.remove(ctx, id)
	if err != nil {
		if ctx.Err() != nil {
			return // cut short by the end of the mode: not a measurement
		}
		p.cfg.Log.Debug("mesh probe: create identity", "id", id, "err", err)
		p.mu.Lock()
		p.allErrs++
		p.mu.Unlock()
		return
	}
	timer := time.NewTimer(p.cfg.Timeout)
	defer timer.Stop()
	select {
	case <-one.done:
	case <-timer.C:
	case <-ctx.Done():
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lastLag, complete := 0.0, true
	for i, at := range one.arrived {
		if at.IsZero() {
			p.errs[i]++
			complete = false
			continue
		}
		// A key can reach a replica before the create's answer reaches the
		// harness: the mirror was quicker than the response. That is no
		// lag at all, not a negative one.
		lag := max(0, at.Sub(answered).Seconds())
		p.lags[i] = append(p.lags[i], lag)
		lastLag = max(lastLag, lag)
	}
	if complete {
		p.last = append(p.last, lastLag)
	} else {
		p.allErrs++
	}
}

// remove deletes the probe identity id; a failure is logged (the
// identity GC removes what is left).
func (p *MeshProbe) remove(ctx context.Context, id identity.ID) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := p.cfg.API.DeleteIdentity(dctx, id.String()); err != nil && !IsNotFound(err) {
		p.cfg.Log.Debug("mesh probe: delete identity", "id", id, "err", err)
	}
}

// Summary is the mirror lag over the probes so far, and the probe keys'
// events the replica that delivered the most of them delivered: what
// each agent of that replica received of the probe.
func (p *MeshProbe) Summary() (results.MirrorLagSummary, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := results.MirrorLagSummary{LagStats: lagStats(p.last, p.allErrs)}
	var seen int64
	for i := range p.lags {
		out.PerReplica = append(out.PerReplica, results.ReplicaLag{Replica: i, LagStats: lagStats(p.lags[i], p.errs[i])})
		seen = max(seen, p.seen[i])
	}
	return out, seen
}

func lagStats(v []float64, errs int64) results.LagStats {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	out := results.LagStats{Count: int64(len(s)), Errors: errs}
	if len(s) > 0 {
		out.P50, out.P90, out.P99, out.Max = quantileSorted(s, 0.5), quantileSorted(s, 0.9), quantileSorted(s, 0.99), s[len(s)-1]
	}
	return out
}

// meshResources are the agents' names for what they receive from a
// replica (agentsim/mesh.go meshIdentities, meshIPCache, meshNodes).
var meshResources = []string{"mesh-identities", "mesh-ipcache", "mesh-nodes"}

// meshServed sums what the agents received from the replicas.
func meshServed(w *results.AgentWorkSummary) results.TrafficSummary {
	var t results.TrafficSummary
	if w == nil {
		return t
	}
	for _, r := range meshResources {
		t.Events += int64(w.Received[r].Events.Sum)
		t.Bytes += int64(w.Received[r].Bytes.Sum)
	}
	return t
}
