package fakeapi

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are named and labelled as kube-apiserver's, so that the harness
// reads a real and a fake server the same way, plus stampede_fakeapi_*.
type metrics struct {
	requests           *prometheus.CounterVec
	latency            *prometheus.HistogramVec
	inflight           *prometheus.GaugeVec
	longRunning        *prometheus.GaugeVec
	watchEvents        *prometheus.CounterVec
	watchEventSizes    *prometheus.HistogramVec
	terminatedWatchers *prometheus.CounterVec
	byUser             *prometheus.CounterVec
	panics             prometheus.Counter
	objects            *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, s *Server) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiserver_request_total",
			Help: "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
		}, []string{"verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiserver_request_duration_seconds",
			Help:    "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
			Buckets: []float64{0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 45, 60},
		}, []string{"verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiserver_current_inflight_requests",
			Help: "Number of requests currently executing in this apiserver per request kind (readOnly, mutating); watches excluded.",
		}, []string{"request_kind"}),
		// kube-apiserver v1.36 counts open watches here (k8s.io/apiserver
		// v0.36.3 pkg/endpoints/metrics longRunningRequestsGauge, STABLE);
		// it no longer has apiserver_registered_watchers.
		longRunning: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiserver_longrunning_requests",
			Help: "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.",
		}, []string{"verb", "group", "version", "resource", "subresource", "scope", "component"}),
		watchEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiserver_watch_events_total",
			Help: "Number of events sent in watch clients.",
		}, []string{"group", "version", "resource"}),
		watchEventSizes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiserver_watch_events_sizes",
			Help:    "Watch event size distribution in bytes.",
			Buckets: prometheus.ExponentialBuckets(1024, 2.0, 8),
		}, []string{"group", "version", "resource"}),
		terminatedWatchers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiserver_terminated_watchers_total",
			Help: "Counter of watchers closed due to unresponsiveness broken by resource type.",
		}, []string{"group", "resource"}),
		byUser: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stampede_fakeapi_requests_by_user_total",
			Help: "Requests by authenticated user.",
		}, []string{"user"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stampede_fakeapi_handler_panics_total",
			Help: "Requests whose handler panicked (answered 500).",
		}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiserver_storage_objects",
			Help: "Number of stored objects at the time of last check split by kind.",
		}, []string{"resource"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.inflight, m.longRunning, m.watchEvents, m.watchEventSizes, m.terminatedWatchers, m.byUser, m.panics, &objectsCollector{s: s, desc: prometheus.NewDesc("apiserver_storage_objects", "Number of stored objects split by resource.", []string{"resource"}, nil)}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	m.inflight.WithLabelValues("readOnly").Set(0)
	m.inflight.WithLabelValues("mutating").Set(0)
	return m, nil
}

// objectsCollector reports apiserver_storage_objects at scrape time.
type objectsCollector struct {
	s    *Server
	desc *prometheus.Desc
}

func (c *objectsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *objectsCollector) Collect(ch chan<- prometheus.Metric) {
	// One series per group resource, as kube-apiserver counts what etcd
	// holds: a resource served at two versions is summed.
	counts := map[string]int{}
	var names []string
	for _, r := range c.s.resources {
		name := r.groupResource().String()
		if _, ok := counts[name]; !ok {
			names = append(names, name)
		}
		counts[name] += c.s.stores[r].count()
	}
	for _, name := range names {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[name]), name)
	}
}
