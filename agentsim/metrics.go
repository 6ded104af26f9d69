package agentsim

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the shard's metrics, shared by every agent of a Fleet. Labels
// never include the agent: per-agent figures are aggregated or, at scrape
// time, turned into histograms over agents.
type Metrics struct {
	events       *prometheus.CounterVec
	bytes        *prometheus.CounterVec
	requests     *prometheus.CounterVec
	throttleWait prometheus.Histogram
	tooMany      prometheus.Counter
	relists      *prometheus.CounterVec
	watchErrors  *prometheus.CounterVec
	created      prometheus.Counter
	duplicates   prometheus.Counter
	// policyOverflows counts endpoint policy updates the datapath refused
	// as larger than an endpoint's policy map.
	policyOverflows prometheus.Counter
	allocRetries    prometheus.Counter
	allocFail       prometheus.Counter
	kvOps           *prometheus.CounterVec
	kvLatency       *prometheus.HistogramVec
	// kvLimited and kvLimitWait count the etcd operations that passed the
	// agents' kvstore rate limiter and the time they waited in it.
	kvLimited    prometheus.Counter
	kvLimitWait  prometheus.Counter
	cepWrites    *prometheus.CounterVec
	eventLatency *prometheus.HistogramVec
	// sharedFrames counts watch frames found decoded by another agent of
	// the shard (hit), decoded first (miss), or decoded again because
	// another agent was still decoding them (busy).
	sharedFrames *prometheus.CounterVec
	// digestSeconds is the time agents spent summing their state into
	// status digests for the harness (see digestBudget).
	digestSeconds prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, fleet *Fleet) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stampede_agent_watch_events_total",
			Help: "Watch events received by the shard's agents, by resource and event type.",
		}, []string{"resource", "type"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stampede_agent_received_bytes_total",
			Help: "Response bytes (lists and watch streams) received by the shard's agents, by resource.",
		}, []string{"resource"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stampede_agent_api_requests_total",
			Help: "API server requests by verb, resource and HTTP code (error: no response).",
		}, []string{"verb", "resource", "code"}),
		throttleWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stampede_agent_client_throttle_wait_seconds",
			Help:    "Time requests waited for the agent's client-side rate limiter (waits over 1ms).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		tooMany: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stampede_agent_api_429_total",
			Help: "429 Too Many Requests answers received.",
		}),
		relists: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stampede_agent_relists_total",
			Help: "Lists after the initial one (410 Gone, errors), by resource.",
		}, []string{"resource"}),
		watchErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stampede_agent_watch_errors_total",
			Help: "Failed lists and watches, and watches closed by errors, by resource.",
		}, []string{"resource"}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stampede_agent_identities_created_total",
			Help: "Identities created by the shard's agents (CiliumIdentities or kvstore master keys).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stampede_agent_identity_duplicates_total",
			Help: "Identities an agent created for a label set that already had another identity.",
		}),
		policyOverflows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stampede_agent_policy_map_overflows_total",
			Help: "Endpoint policy updates refused because the allowed set was larger than an endpoint's policy map (agent.policyMapMax); the endpoint keeps its old policy.",
		}),
		allocRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stampede_agent_identity_allocation_retries_total",
			Help: "Identity allocation attempts after the first (ID conflicts, errors).",
		}),
		allocFail: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stampede_agent_identity_allocation_failures_total",
			Help: "Identity allocations that gave up after every attempt.",
		}),
		kvOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stampede_agent_kvstore_operations_total",
			Help: "kvstore operations by operation and outcome.",
		}, []string{"op", "outcome"}),
		kvLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stampede_agent_kvstore_operation_duration_seconds",
			Help:    "kvstore operation latency by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"op"}),
		kvLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stampede_agent_kvstore_rate_limited_operations_total",
			Help: "etcd operations that waited on the agents' kvstore rate limiter (Cilium's etcd.qps and etcd.maxInflight), summed over agents.",
		}),
		kvLimitWait: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stampede_agent_kvstore_rate_limit_wait_seconds_total",
			Help: "Time etcd operations waited on the agents' kvstore rate limiter, summed over agents.",
		}),
		cepWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stampede_agent_endpoint_writes_total",
			Help: "CiliumEndpoint writes by operation (create, patch) and outcome.",
		}, []string{"op", "outcome"}),
		digestSeconds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stampede_agent_status_digest_seconds_total",
			Help: "Time the shard's agents spent computing the ipcache and policy digests of their status reports (the harness's cost inside the shard).",
		}),
		sharedFrames: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stampede_agent_shared_watch_frames_total",
			Help: "Watch frames of unfiltered watches by whether another agent of the shard had decoded the same bytes (hit: its decoded object was reused), not (miss: decoded and shared), or was still decoding them (busy: decoded again, not waited for).",
		}, []string{"result"}),
		eventLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stampede_agent_event_handling_seconds",
			Help:    "Time an agent spent applying one decoded watch event, by resource.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 2, 20),
		}, []string{"resource"}),
	}
	reg.MustRegister(m.events, m.bytes, m.requests, m.throttleWait, m.tooMany, m.relists,
		m.watchErrors, m.created, m.duplicates, m.policyOverflows, m.allocRetries, m.allocFail, m.kvOps,
		m.kvLatency, m.kvLimited, m.kvLimitWait, m.cepWrites, m.eventLatency, m.digestSeconds, m.sharedFrames)
	if fleet != nil {
		reg.MustRegister(&fleetCollector{f: fleet})
	}
	return m
}

// fleetCollector turns per-agent state into shard-level metrics at scrape
// time: datapath counters summed, last-change times as a histogram over
// agents.
type fleetCollector struct{ f *Fleet }

var (
	descAgents = prometheus.NewDesc("stampede_agents", "Agents running in this shard.", nil, nil)
	descDPUpd  = prometheus.NewDesc("stampede_agent_datapath_updates_total",
		"Datapath updates as Cilium's per-endpoint policy maps would need them (ipcache entries, policy keys per endpoint, endpoints), summed over agents.", nil, nil)
	descDPWrites = prometheus.NewDesc("stampede_agent_datapath_map_writes_total",
		"Map element writes and deletes the simulated datapath did (endpoints with the same policy share one set of keys), summed over agents.", nil, nil)
	descDPTime = prometheus.NewDesc("stampede_agent_datapath_update_seconds_total",
		"Time spent in datapath updates, summed over agents.", nil, nil)
	descIPC = prometheus.NewDesc("stampede_agent_ipcache_entries",
		"ipcache entries, summed over agents.", nil, nil)
	descLastChange = prometheus.NewDesc("stampede_agent_last_change_age_seconds",
		"Per agent, seconds since its ipcache or policy state last changed (histogram over agents).", nil, nil)
	descLastChangeMax = prometheus.NewDesc("stampede_agent_last_change_timestamp_seconds",
		"Latest state change of any agent, as Unix time.", nil, nil)
	descMeshFailovers = prometheus.NewDesc("stampede_agent_mesh_failovers_total",
		"Mesh read path: connections to a mirror replica lost or refused (each moves the agent to the next replica), summed over agents.", nil, nil)
	descMeshFallback = prometheus.NewDesc("stampede_agent_mesh_fallback_seconds_total",
		"Mesh read path: agent-seconds spent reading Cilium's resources from the API server because no replica answered (controlPlane.mesh.apiServerFallback), summed over agents.", nil, nil)
)

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descAgents
	ch <- descDPUpd
	ch <- descDPWrites
	ch <- descDPTime
	ch <- descIPC
	ch <- descLastChange
	ch <- descLastChangeMax
	ch <- descMeshFailovers
	ch <- descMeshFallback
}

var lastChangeBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	agents := c.f.agents
	now := c.f.now()
	var upd, writes, ipc uint64
	var dpTime time.Duration
	var latest time.Time
	counts := make(map[float64]uint64, len(lastChangeBuckets))
	var sum float64
	var n uint64
	var failovers uint64
	var fallback float64
	for _, a := range agents {
		if ag, ok := a.(*Agent); ok && ag.mesh != nil {
			failovers += ag.mesh.failovers.Load()
			fallback += ag.mesh.fallbackSeconds(now)
		}
		st, ok := a.datapathStats()
		if ok {
			upd += st.Updates
			writes += st.MapWrites
			dpTime += st.UpdateTime
			ipc += uint64(st.IPCacheEntries)
		}
		lc := a.LastChange()
		if lc.IsZero() {
			continue
		}
		if lc.After(latest) {
			latest = lc
		}
		age := now.Sub(lc).Seconds()
		sum += age
		n++
		for _, b := range lastChangeBuckets {
			if age <= b {
				counts[b]++
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descAgents, prometheus.GaugeValue, float64(len(agents)))
	ch <- prometheus.MustNewConstMetric(descDPUpd, prometheus.CounterValue, float64(upd))
	ch <- prometheus.MustNewConstMetric(descDPWrites, prometheus.CounterValue, float64(writes))
	ch <- prometheus.MustNewConstMetric(descDPTime, prometheus.CounterValue, dpTime.Seconds())
	ch <- prometheus.MustNewConstMetric(descIPC, prometheus.GaugeValue, float64(ipc))
	ch <- prometheus.MustNewConstHistogram(descLastChange, n, sum, counts)
	// Zero in modes without the mesh read path, so that readers need no
	// special case.
	ch <- prometheus.MustNewConstMetric(descMeshFailovers, prometheus.CounterValue, float64(failovers))
	ch <- prometheus.MustNewConstMetric(descMeshFallback, prometheus.CounterValue, fallback)
	if !latest.IsZero() {
		ch <- prometheus.MustNewConstMetric(descLastChangeMax, prometheus.GaugeValue, float64(latest.UnixNano())/1e9)
	}
}
