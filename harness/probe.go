package harness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/stampede-sim/stampede/reports/results"
)

// ProbeNamespace and ProbeObject name the objects the probe creates and
// reads; no agent acts on them.
const (
	ProbeNamespace = "stampede-probe"
	ProbeObject    = "stampede-probe"
)

// probeOp is one kind of probe request.
type probeOp struct {
	Verb, Resource string
	// Do performs the request; seq numbers the calls (PATCH writes it).
	Do func(ctx context.Context, seq int) error
}

// ProbeTarget is what the probe calls; kubeProbeTarget implements it over
// HTTP and tests use a fake.
type ProbeTarget interface {
	// Prepare creates the probe's own objects.
	Prepare(ctx context.Context) error
	// Ops lists the requests the probe cycles through.
	Ops() []probeOp
}

// ProbeConfig configures a Probe.
type ProbeConfig struct {
	Target ProbeTarget
	// Rate is requests per second (> 0).
	Rate float64
	// MaxInFlight bounds concurrent requests (default 16); a tick that finds
	// them all busy is missed, and missed ticks mean the probe did not hold
	// its rate.
	MaxInFlight int
	Now         func() time.Time
}

// Probe sends API requests at a constant rate and records their latency by
// verb and resource.
type Probe struct {
	cfg ProbeConfig
	ops []probeOp

	mu       sync.Mutex
	interval map[string][]float64 // since the last TakeInterval, by "VERB resource"
	all      map[string][]float64 // the whole mode
	errs     map[string]int64
	sent     int64
	done     int64
	missed   int64
	started  time.Time
	stopped  time.Time
}

// NewProbe checks cfg.
func NewProbe(cfg ProbeConfig) (*Probe, error) {
	if cfg.Target == nil {
		return nil, errors.New("probe: Target is nil")
	}
	if !(cfg.Rate > 0) || math.IsInf(cfg.Rate, 0) {
		return nil, fmt.Errorf("probe: rate must be positive, got %v", cfg.Rate)
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ops := cfg.Target.Ops()
	if len(ops) == 0 {
		return nil, errors.New("probe: target has no operations")
	}
	return &Probe{cfg: cfg, ops: ops, interval: map[string][]float64{}, all: map[string][]float64{}, errs: map[string]int64{}}, nil
}

// Run probes until ctx ends, then waits for requests in flight.
func (p *Probe) Run(ctx context.Context) {
	p.mu.Lock()
	p.started = p.cfg.Now()
	p.mu.Unlock()
	tick := time.NewTicker(time.Duration(float64(time.Second) / p.cfg.Rate))
	defer tick.Stop()
	sem := make(chan struct{}, p.cfg.MaxInFlight)
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		p.mu.Lock()
		p.stopped = p.cfg.Now()
		p.mu.Unlock()
	}()
	for seq := 0; ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			p.mu.Lock()
			p.missed++
			p.mu.Unlock()
			continue
		}
		op := p.ops[seq%len(p.ops)]
		p.mu.Lock()
		p.sent++
		p.mu.Unlock()
		wg.Add(1)
		go func(seq int) {
			defer wg.Done()
			defer func() { <-sem }()
			start := p.cfg.Now()
			err := op.Do(ctx, seq)
			lat := p.cfg.Now().Sub(start).Seconds()
			if err != nil && ctx.Err() != nil {
				return // cut short by the end of the probe: not a measurement
			}
			p.record(op.Verb+" "+op.Resource, lat, err)
		}(seq)
	}
}

func (p *Probe) record(key string, lat float64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	if err != nil {
		p.errs[key]++
	}
	p.interval[key] = append(p.interval[key], lat)
	p.all[key] = append(p.all[key], lat)
}

// TakeInterval returns the series values of the requests completed since
// the last call: latency p50/p99/max overall and by verb/resource, and the
// completed request count as probe.rate (per elapsed second).
func (p *Probe) TakeInterval(elapsed time.Duration) map[string]float64 {
	p.mu.Lock()
	iv := p.interval
	p.interval = map[string][]float64{}
	p.mu.Unlock()
	out := map[string]float64{}
	var every []float64
	for key, lats := range iv {
		verb, res := splitKey(key)
		sort.Float64s(lats)
		out[results.SeriesName(results.SeriesAPILatencyP50, "verb", verb, "resource", res)] = quantileSorted(lats, 0.5)
		out[results.SeriesName(results.SeriesAPILatencyP99, "verb", verb, "resource", res)] = quantileSorted(lats, 0.99)
		out[results.SeriesName(results.SeriesAPILatencyMax, "verb", verb, "resource", res)] = lats[len(lats)-1]
		every = append(every, lats...)
	}
	if len(every) > 0 {
		sort.Float64s(every)
		out[results.SeriesAPILatencyP50] = quantileSorted(every, 0.5)
		out[results.SeriesAPILatencyP99] = quantileSorted(every, 0.99)
		out[results.SeriesAPILatencyMax] = every[len(every)-1]
	}
	if elapsed > 0 {
		out[results.SeriesProbeRate] = float64(len(every)) / elapsed.Seconds()
	}
	return out
}

func splitKey(k string) (string, string) {
	for i := 0; i < len(k); i++ {
		if k[i] == ' ' {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}

// Summary returns the latency summaries over the whole run of the probe
// (one per verb/resource and one "*"/"*"), and whether it held its rate.
func (p *Probe) Summary() ([]results.LatencySummary, *results.ProbeSummary) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []results.LatencySummary
	var every []float64
	var errs int64
	keys := make([]string, 0, len(p.all))
	for k := range p.all {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lats := append([]float64(nil), p.all[k]...)
		sort.Float64s(lats)
		verb, res := splitKey(k)
		out = append(out, latencySummary(verb, res, lats, p.errs[k]))
		every = append(every, lats...)
		errs += p.errs[k]
	}
	sort.Float64s(every)
	out = append(out, latencySummary("*", "*", every, errs))
	end := p.stopped
	if end.IsZero() {
		end = p.cfg.Now()
	}
	ps := &results.ProbeSummary{TargetRate: p.cfg.Rate}
	if d := end.Sub(p.started).Seconds(); d > 0 && !p.started.IsZero() {
		ps.AchievedRate = float64(p.done) / d
	}
	scheduled := p.sent + p.missed
	ps.HeldRate = scheduled == 0 || float64(p.missed) <= 0.01*float64(scheduled)
	ps.Detail = fmt.Sprintf("%d requests sent, %d ticks missed with %d requests in flight, %d errors", p.sent, p.missed, p.cfg.MaxInFlight, errs)
	if !ps.HeldRate {
		ps.Detail = "the probe fell behind its rate, so its latencies understate the server's: " + ps.Detail
	}
	return out, ps
}

func latencySummary(verb, res string, sorted []float64, errs int64) results.LatencySummary {
	s := results.LatencySummary{Verb: verb, Resource: res, Count: int64(len(sorted)), Errors: errs}
	if len(sorted) > 0 {
		s.P50 = quantileSorted(sorted, 0.5)
		s.P90 = quantileSorted(sorted, 0.9)
		s.P99 = quantileSorted(sorted, 0.99)
		s.Max = sorted[len(sorted)-1]
	}
	return s
}

// kubeProbeTarget probes a Kubernetes API server: GET, LIST and PATCH on a
// built-in resource (ConfigMap, Namespace) and on cilium.io resources
// (CiliumNode, CiliumIdentity).
type kubeProbeTarget struct {
	c      *apiClient
	labels map[string]string
}

const probeCM = "/api/v1/namespaces/" + ProbeNamespace + "/configmaps/" + ProbeObject
const probeCN = "/apis/cilium.io/v2/ciliumnodes/" + ProbeObject

func (k kubeProbeTarget) Prepare(ctx context.Context) error {
	kc := kubeCluster{c: k.c, labels: k.labels}
	if err := kc.create(ctx, "/api/v1/namespaces", map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ProbeNamespace},
	}); err != nil {
		return fmt.Errorf("probe: create namespace: %w", err)
	}
	if err := kc.create(ctx, "/api/v1/namespaces/"+ProbeNamespace+"/configmaps", map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": ProbeObject},
		"data": map[string]string{"seq": "0"},
	}); err != nil {
		return fmt.Errorf("probe: create configmap: %w", err)
	}
	if err := kc.create(ctx, "/apis/cilium.io/v2/ciliumnodes", map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": map[string]any{"name": ProbeObject},
		"spec": map[string]any{},
	}); err != nil {
		return fmt.Errorf("probe: create ciliumnode: %w", err)
	}
	return nil
}

func (k kubeProbeTarget) Ops() []probeOp {
	get := func(path string) func(context.Context, int) error {
		return func(ctx context.Context, _ int) error { return k.c.do(ctx, "GET", path, "", nil, nil) }
	}
	patch := func(path string) func(context.Context, int) error {
		return func(ctx context.Context, seq int) error {
			body := map[string]any{"metadata": map[string]any{"annotations": map[string]string{"stampede.io/probe": fmt.Sprint(seq)}}}
			return k.c.do(ctx, "PATCH", path, "application/merge-patch+json", body, nil)
		}
	}
	return []probeOp{
		{Verb: "GET", Resource: "configmaps", Do: get(probeCM)},
		{Verb: "LIST", Resource: "namespaces", Do: get("/api/v1/namespaces")},
		{Verb: "PATCH", Resource: "configmaps", Do: patch(probeCM)},
		{Verb: "GET", Resource: "ciliumnodes", Do: get(probeCN)},
		{Verb: "LIST", Resource: "ciliumidentities", Do: get("/apis/cilium.io/v2/ciliumidentities")},
		{Verb: "PATCH", Resource: "ciliumnodes", Do: patch(probeCN)},
	}
}
