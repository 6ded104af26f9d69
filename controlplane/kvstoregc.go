package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// kvstore identity layout (Cilium pkg/kvstore/allocator), as the agents in
// kvstore mode write it.
const (
	kvIdentitiesBase = "cilium/state/identities/v1/"
	kvIDPrefix       = kvIdentitiesBase + "id/"
	kvValuePrefix    = kvIdentitiesBase + "value/"
)

type kvstoreGCConfig struct {
	endpoints []string
	interval  time.Duration
	// rateInterval and rateLimit bound deletions (gcLimiter; Cilium passes
	// the same limiter to the kvstore allocator's RunGC).
	rateInterval time.Duration
	rateLimit    int
	log          *slog.Logger
	reg          prometheus.Registerer
}

// kvstoreGC is the operator's identity GC in kvstore mode (cilium/cilium
// operator/identitygc/kvstore_gc.go calling the allocator's RunGC in
// pkg/kvstore/allocator): every interval it lists the master keys
// <base>/id/<ID> (value: the label key); a master key with no per-node
// value key under <base>/value/<labelkey>/ is stale; a key found stale in
// two consecutive rounds, unmodified in between (same mod revision), is
// deleted (with a transaction comparing that revision), at most rateLimit
// in each rateInterval window.
type kvstoreGC struct {
	cfg     kvstoreGCConfig
	limiter *gcLimiter
	stale   map[string]int64 // master key -> mod revision when found stale

	runs    prometheus.Counter
	deleted prometheus.Counter
	staleG  prometheus.Gauge
	errs    prometheus.Counter
}

func newKVStoreGC(cfg kvstoreGCConfig) (*kvstoreGC, error) {
	if cfg.interval <= 0 {
		return nil, fmt.Errorf("controlPlane.identityGC.interval must be positive, got %v", cfg.interval)
	}
	lim, err := newGCLimiter(cfg.rateInterval, cfg.rateLimit, nil)
	if err != nil {
		return nil, err
	}
	g := &kvstoreGC{
		cfg:     cfg,
		limiter: lim,
		stale:   map[string]int64{},
		runs:    prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_identity_gc_runs_total", Help: "Identity GC runs."}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_identity_gc_deleted_total", Help: "Identities deleted by the GC."}),
		staleG:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "stampede_identity_gc_stale", Help: "Master keys found without value keys at the last run."}),
		errs:    prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_identity_gc_errors_total", Help: "GC kvstore errors."}),
	}
	for _, c := range []prometheus.Collector{g.runs, g.deleted, g.staleG, g.errs} {
		if err := cfg.reg.Register(c); err != nil {
			return nil, err
		}
	}
	return g, nil
}

func (g *kvstoreGC) run(ctx context.Context) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: g.cfg.endpoints, DialTimeout: 5 * time.Second, Context: ctx, Logger: nil})
	if err != nil {
		return fmt.Errorf("kvstore %s: %w", strings.Join(g.cfg.endpoints, ","), err)
	}
	defer cli.Close()
	t := time.NewTicker(g.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := g.gc(ctx, cli.KV); err != nil && ctx.Err() == nil {
			g.errs.Inc()
			g.cfg.log.Warn("kvstore identity gc", "error", err)
		}
	}
}

// gc is one round.
func (g *kvstoreGC) gc(ctx context.Context, kv clientv3.KV) error {
	g.runs.Inc()
	masters, err := kv.Get(ctx, kvIDPrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("list %s: %w", kvIDPrefix, err)
	}
	// Which label keys have at least one value key: one prefix scan, keys only.
	values, err := kv.Get(ctx, kvValuePrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("list %s: %w", kvValuePrefix, err)
	}
	inUse := map[string]bool{}
	for _, v := range values.Kvs {
		rest := strings.TrimPrefix(string(v.Key), kvValuePrefix)
		if i := strings.LastIndexByte(rest, '/'); i >= 0 {
			inUse[rest[:i]] = true
		}
	}
	next := map[string]int64{}
	var errs []error
	for _, m := range masters.Kvs {
		key := string(m.Key)
		if inUse[string(m.Value)] {
			continue
		}
		prev, wasStale := g.stale[key]
		if !wasStale || prev != m.ModRevision {
			next[key] = m.ModRevision
			continue
		}
		if err := g.limiter.Wait(ctx); err != nil {
			return err
		}
		// Delete only if the master key is unchanged and still has no value key.
		resp, err := kv.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(key), "=", m.ModRevision),
		).Then(clientv3.OpDelete(key)).Commit()
		if err != nil {
			errs = append(errs, fmt.Errorf("delete %s: %w", key, err))
			next[key] = m.ModRevision
			continue
		}
		if resp.Succeeded {
			g.deleted.Inc()
		}
	}
	g.stale = next
	g.staleG.Set(float64(len(next)))
	return errors.Join(errs...)
}
