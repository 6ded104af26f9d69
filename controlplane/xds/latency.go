package xds

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// maxSamples bounds the push latencies kept for the JSON summary.
const maxSamples = 1 << 20

// stream is what the tracker knows of one agent's ADS stream.
type stream struct {
	node   string
	acked  map[cacheKey]uint64
	nonces map[string]ackRef
}

type ackRef struct {
	key     cacheKey
	version uint64
}

// change is one Apply that changed something, waiting for the streams that
// were connected when it happened to ACK it.
type change struct {
	at      time.Time
	need    map[cacheKey]uint64
	waiting map[int64]struct{}
}

// tracker follows versions sent and ACKed per stream and measures push
// latency.
type tracker struct {
	now    func() time.Time
	prefix string
	m      *metrics

	mu      sync.Mutex
	streams map[int64]*stream
	pending []*change
	samples []float64
	changes int
}

func newTracker(now func() time.Time, prefix string, m *metrics) *tracker {
	return &tracker{now: now, prefix: prefix, m: m, streams: map[int64]*stream{}}
}

func (s *stream) relevant(k cacheKey) bool { return k.node == "" || k.node == s.node }

func (s *stream) relevantAny(need map[cacheKey]uint64) bool {
	for k := range need {
		if s.relevant(k) {
			return true
		}
	}
	return false
}

func (s *stream) satisfies(need map[cacheKey]uint64) bool {
	for k, v := range need {
		if s.relevant(k) && s.acked[k] < v {
			return false
		}
	}
	return true
}

// changed records a change at the given versions.
func (t *tracker) changed(at time.Time, need map[cacheKey]uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.changes++
	c := &change{at: at, need: need, waiting: map[int64]struct{}{}}
	relevant := 0
	for id, s := range t.streams {
		if s.node == "" || !s.relevantAny(need) {
			continue
		}
		relevant++
		if !s.satisfies(need) {
			c.waiting[id] = struct{}{}
		}
	}
	if len(c.waiting) == 0 {
		if relevant > 0 { // every agent ACKed before we got here
			t.observeLocked(t.now().Sub(at))
		}
		return
	}
	t.pending = append(t.pending, c)
}

func (t *tracker) open(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.streams[id] = &stream{acked: map[cacheKey]uint64{}, nonces: map[string]ackRef{}}
	t.m.streams.Inc()
}

func (t *tracker) closed(id int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.streams[id]; !ok {
		return
	}
	delete(t.streams, id)
	t.m.streams.Dec()
	t.settleLocked(id, true)
}

// request notes the node of a stream and handles ACKs and NACKs. It returns
// true for a NACK.
func (t *tracker) request(id int64, node *core.Node, typeURL, nonce string, nack bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[id]
	if !ok {
		return
	}
	if s.node == "" && node.GetId() != "" {
		s.node = node.GetId()
	}
	if nonce == "" {
		return
	}
	ref, ok := s.nonces[nonce]
	if !ok {
		return
	}
	delete(s.nonces, nonce)
	if nack {
		t.m.nacks.WithLabelValues(shortType(typeURL)).Inc()
		return
	}
	t.m.acks.WithLabelValues(shortType(typeURL)).Inc()
	if ref.version > s.acked[ref.key] {
		s.acked[ref.key] = ref.version
		t.settleLocked(id, false)
	}
}

// response notes a response sent on a stream.
func (t *tracker) response(id int64, typeURL, version, nonce string, bytes int) {
	t.m.responses.WithLabelValues(shortType(typeURL)).Inc()
	t.m.bytes.WithLabelValues(shortType(typeURL)).Add(float64(bytes))
	v, ok := parseVersion(t.prefix, version)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.streams[id]
	if !ok {
		return
	}
	if len(s.nonces) > 1024 {
		clear(s.nonces) // a client that never ACKs; forget, do not grow
	}
	s.nonces[nonce] = ackRef{key: keyOf(typeURL, s.node), version: v}
}

// settleLocked removes stream id from the changes it satisfies (or from all
// of them if it went away) and records the latency of completed changes.
func (t *tracker) settleLocked(id int64, gone bool) {
	s := t.streams[id]
	now := t.now()
	kept := t.pending[:0]
	for _, c := range t.pending {
		if _, ok := c.waiting[id]; ok && (gone || s.satisfies(c.need)) {
			delete(c.waiting, id)
			if len(c.waiting) == 0 {
				t.observeLocked(now.Sub(c.at))
				continue
			}
		}
		kept = append(kept, c)
	}
	clear(t.pending[len(kept):])
	t.pending = kept
}

func (t *tracker) observeLocked(d time.Duration) {
	t.m.latency.Observe(d.Seconds())
	if len(t.samples) < maxSamples {
		t.samples = append(t.samples, d.Seconds())
	}
}

// PushLatency summarises push latencies: for each change, the time until
// every agent connected when it happened ACKed it.
type PushLatency struct {
	// Changes counts the changes applied; Measured those that completed
	// with at least one agent connected; Pending those still waiting.
	Changes  int `json:"changes"`
	Measured int `json:"measured"`
	Pending  int `json:"pending"`
	// Streams is the number of connected agent streams.
	Streams int `json:"streams"`
	// Quantiles in seconds.
	P50 float64 `json:"p50Seconds"`
	P99 float64 `json:"p99Seconds"`
	Max float64 `json:"maxSeconds"`
}

func (t *tracker) summary() PushLatency {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := slices.Clone(t.samples)
	slices.Sort(s)
	return PushLatency{
		Changes: t.changes, Measured: len(s), Pending: len(t.pending), Streams: len(t.streams),
		P50: quantile(s, 0.50), P99: quantile(s, 0.99), Max: quantile(s, 1),
	}
}

// quantile of sorted s by nearest rank; 0 for none.
func quantile(s []float64, q float64) float64 {
	if len(s) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// metrics are the Server's Prometheus collectors.
type metrics struct {
	latency   prometheus.Histogram
	streams   prometheus.Gauge
	responses *prometheus.CounterVec
	bytes     *prometheus.CounterVec
	acks      *prometheus.CounterVec
	nacks     *prometheus.CounterVec
	changes   prometheus.Counter
	resources *prometheus.GaugeVec
	unknown   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stampede_xds_push_latency_seconds",
			Help:    "Time from a control-plane change until every agent connected at that moment ACKed a version containing it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		streams:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "stampede_xds_streams", Help: "Connected ADS streams."}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stampede_xds_responses_total", Help: "Discovery responses sent, by type."}, []string{"type"}),
		bytes:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stampede_xds_response_bytes_total", Help: "Encoded size of the discovery responses sent, by type."}, []string{"type"}),
		acks:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stampede_xds_acks_total", Help: "ACKs received, by type."}, []string{"type"}),
		nacks:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stampede_xds_nacks_total", Help: "NACKs received, by type."}, []string{"type"}),
		changes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "stampede_xds_changes_total", Help: "Applied batches that changed at least one resource."}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "stampede_xds_resources", Help: "Resources held, by type."}, []string{"type"}),
		unknown:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stampede_xds_unknown_type_requests_total", Help: "Subscriptions to a type URL this server does not serve, by type (at most maxUnknownTypes distinct, then \"other\"); they stay open unanswered and the stream keeps its served types."}, []string{"type"}),
	}
	for _, c := range []prometheus.Collector{m.latency, m.streams, m.responses, m.bytes, m.acks, m.nacks, m.changes, m.resources, m.unknown} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func shortType(typeURL string) string {
	for i := len(typeURL) - 1; i >= 0; i-- {
		if typeURL[i] == '.' {
			return typeURL[i+1:]
		}
	}
	return typeURL
}

// PushLatencyHandler serves the PushLatency summary as JSON.
func (s *Server) PushLatencyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.PushLatency())
	})
}
