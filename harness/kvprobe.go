package harness

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/reports/results"
)

// kvProbeKey is the key the kvstore probe writes and reads; agents watch
// other prefixes (cilium/state/...), so it disturbs nobody.
const kvProbeKey = "stampede/probe"

// KVProbe puts and gets one key of the kvstore at a constant rate and
// records the latencies, as the API probe does for the API server.
type KVProbe struct {
	cli  *clientv3.Client
	rate float64

	mu       sync.Mutex
	interval map[string][]float64
	all      map[string][]float64
	errs     map[string]int64
}

// NewKVProbe connects to the etcd client URL.
func NewKVProbe(endpoint string, rate float64) (*KVProbe, error) {
	if !(rate > 0) {
		return nil, fmt.Errorf("kvstore probe: rate must be positive, got %v", rate)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("kvstore probe: connect %s: %w", endpoint, err)
	}
	return &KVProbe{cli: cli, rate: rate, interval: map[string][]float64{}, all: map[string][]float64{}, errs: map[string]int64{}}, nil
}

// Close closes the etcd client.
func (k *KVProbe) Close() error { return k.cli.Close() }

// Run alternates put and get at the rate until ctx ends. Requests are
// sequential: a slow kvstore shows up as latency, not as concurrency.
func (k *KVProbe) Run(ctx context.Context) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / k.rate))
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		op := "put"
		if seq%2 == 1 {
			op = "get"
		}
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		start := time.Now()
		var err error
		if op == "put" {
			_, err = k.cli.Put(rctx, kvProbeKey, strconv.Itoa(seq))
		} else {
			_, err = k.cli.Get(rctx, kvProbeKey)
		}
		lat := time.Since(start).Seconds()
		cancel()
		if err != nil && ctx.Err() != nil {
			return
		}
		k.mu.Lock()
		if err != nil {
			k.errs[op]++
		}
		k.interval[op] = append(k.interval[op], lat)
		k.all[op] = append(k.all[op], lat)
		k.mu.Unlock()
	}
}

// TakeInterval returns kvstore.probe.latency.{p50,p99}{op=..} since the
// last call.
func (k *KVProbe) TakeInterval() map[string]float64 {
	k.mu.Lock()
	iv := k.interval
	k.interval = map[string][]float64{}
	k.mu.Unlock()
	out := map[string]float64{}
	for op, l := range iv {
		sort.Float64s(l)
		out[results.SeriesName(results.SeriesKVStoreProbeLatencyP50, "op", op)] = quantileSorted(l, 0.5)
		out[results.SeriesName(results.SeriesKVStoreProbeLatencyP99, "op", op)] = quantileSorted(l, 0.99)
	}
	return out
}

// Summary is the latency by operation over the whole probe (resource
// "probe", to tell it from the agents' own kvstore latency).
func (k *KVProbe) Summary() []results.LatencySummary {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []results.LatencySummary
	for _, op := range sortedKeys(k.all) {
		l := append([]float64(nil), k.all[op]...)
		sort.Float64s(l)
		out = append(out, latencySummary(op, "probe", l, k.errs[op]))
	}
	return out
}

// IdentityCensus counts the kvstore's identities (master keys under
// agentcontract.KVIDPrefix, whose values are the label sets' keys) and the
// label sets that have more than one.
func (k *KVProbe) IdentityCensus(ctx context.Context) (*IdentityCensus, error) {
	resp, err := k.cli.Get(ctx, agentcontract.KVIDPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("kvstore identity census: %w", err)
	}
	seen := map[string]int{}
	for _, kv := range resp.Kvs {
		seen[string(kv.Value)]++
	}
	ic := &IdentityCensus{Final: int64(len(resp.Kvs))}
	for _, n := range seen {
		ic.Duplicates += int64(n - 1)
	}
	return ic, nil
}
