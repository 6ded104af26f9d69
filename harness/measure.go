package harness

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stampede-sim/stampede/internal/capacity"
	"github.com/stampede-sim/stampede/internal/proc"
	"github.com/stampede-sim/stampede/reports/results"
)

// scrapeTimeout bounds one scrape.
const scrapeTimeout = 30 * time.Second

// Well-known metric families the measurer reads.
const (
	mAPIRequests     = "apiserver_request_total"
	mAPIDuration     = "apiserver_request_duration_seconds"
	mAPIWatchEvents  = "apiserver_watch_events_total"
	mAPIWatchSizes   = "apiserver_watch_events_sizes"
	mAPIObjects      = "apiserver_storage_objects"
	mAPITerminated   = "apiserver_terminated_watchers_total"
	mAPIWatchers     = "apiserver_longrunning_requests" // verb WATCH: open watches
	mAPIWatchersOld  = "apiserver_registered_watchers"  // before kube-apiserver had the above
	mAgentEvents     = "stampede_agent_watch_events_total"
	mAgentBytes      = "stampede_agent_received_bytes_total"
	mAgent429        = "stampede_agent_api_429_total"
	mAgentThrottle   = "stampede_agent_client_throttle_wait_seconds"
	mAgentCreated    = "stampede_agent_identities_created_total"
	mAgentDuplicates = "stampede_agent_identity_duplicates_total"
	mAgentKV         = "stampede_agent_kvstore_operation_duration_seconds"
	mAgentDatapath   = "stampede_agent_datapath_updates_total"
	mAgentRequests   = "stampede_agent_api_requests_total"
	mAgentDigest     = "stampede_agent_status_digest_seconds_total"
	mAgentFrames     = "stampede_agent_shared_watch_frames_total"
	// The mesh read path's agent counters (agentsim/metrics.go).
	mAgentMeshFailovers = "stampede_agent_mesh_failovers_total"
	mAgentMeshFallback  = "stampede_agent_mesh_fallback_seconds_total"
	mXDSPush            = "stampede_xds_push_latency_seconds"
	mEtcdFsync          = "etcd_disk_wal_fsync_duration_seconds"
	mCPEvents           = "stampede_controlplane_watch_events_total"
	mCPIdentities       = "stampede_controlplane_identities"
	mOpCreated          = "stampede_operator_identities_created_total"
	mModelledCPU        = capacity.ModelledCPUMetric
)

// measuredProcess is a process whose CPU and RSS are sampled.
type measuredProcess struct {
	name   string
	pid    int
	agents int  // simulated agents it hosts (agent shards)
	self   bool // the harness itself: its own CPU, not its children's

	have             bool
	firstCPU, cpu    time.Duration
	firstAt          time.Time
	lastAt           time.Time
	peakCPU          float64
	peakRSS, sumRSS  float64
	nRSS             int
	lastRate, lastRS float64
}

type scrapeTarget struct {
	component string
	url       string
	token     string

	// The scrape in flight, if any (nil when none; closed when it ends),
	// and its answer until a tick takes it.
	done chan struct{}
	got  Metrics
	at   time.Time
	// What the mode's summary says of the component's answers.
	answered, failed int
	since            time.Time // the last answer, or the first scrape
	maxGap           time.Duration
}

// Measurer samples processes, scrapes /metrics and drains the probe once
// per interval, producing one row of series per tick and the summaries at
// the end of a mode.
type Measurer struct {
	http *http.Client
	log  *slog.Logger

	mu      sync.Mutex
	procs   []*measuredProcess
	targets []*scrapeTarget
	probe   *Probe
	kv      *KVProbe
	mesh    *MeshProbe
	first   map[string]Metrics
	prev    map[string]Metrics
	last    map[string]Metrics
	lastAt  time.Time
	// lastRealAt and scrapedAt are wall-clock times of the previous
	// tick's start and of each component's last answer (see ratable).
	lastRealAt time.Time
	scrapedAt  map[string]time.Time
	peakEv     float64
	peakBy     float64
	// mem is the memory of all measured processes together and of the
	// machine, over the samples.
	mem memPeaks
	// conns are the API server's registered watchers over the samples.
	conns watchConns

	converged atomic.Int64
}

// memPeaks are the memory peaks over a mode's samples, bytes.
type memPeaks struct {
	processes float64 // RSS of every measured process, summed per sample
	machine   float64 // the machine's MemTotal - MemAvailable
	atStart   float64 // machine used at the first sample
	total     float64
	samples   int
}

// watchConns accumulates the API server's open watches over its scrapes:
// apiserver_longrunning_requests{verb="WATCH"} (kube-apiserver v1.36 and
// the fake), or apiserver_registered_watchers from a server that has it
// instead; the sum over resources and each resource's peak.
type watchConns struct {
	peak, sum float64
	samples   int
	byKind    map[string]float64
}

// sample adds one scrape of the API server and returns its sum over
// kinds; ok is false (and nothing is added) without the family.
func (w *watchConns) sample(a Metrics) (total float64, ok bool) {
	byKind := a.SumBy(mAPIWatchers, map[string]string{"verb": "WATCH"}, "resource")
	if byKind == nil {
		byKind = a.SumBy(mAPIWatchersOld, nil, "kind")
	}
	if byKind == nil {
		return 0, false
	}
	if w.byKind == nil {
		w.byKind = map[string]float64{}
	}
	for k, v := range byKind {
		total += v
		if k == "" {
			k = "unknown"
		}
		w.byKind[k] = math.Max(w.byKind[k], v)
	}
	w.peak = math.Max(w.peak, total)
	w.sum += total
	w.samples++
	return total, true
}

// NewMeasurer makes a Measurer that scrapes with client.
func NewMeasurer(client *http.Client, log *slog.Logger) *Measurer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Measurer{http: client, log: log, first: map[string]Metrics{}, prev: map[string]Metrics{}, last: map[string]Metrics{}, scrapedAt: map[string]time.Time{}}
	m.procs = append(m.procs, &measuredProcess{name: "harness", pid: os.Getpid(), self: true})
	return m
}

// AddProcess starts sampling a process tree; agents > 0 marks an agent
// shard hosting that many agents.
func (m *Measurer) AddProcess(name string, pid, agents int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.procs = append(m.procs, &measuredProcess{name: name, pid: pid, agents: agents})
}

// AddScrape starts scraping a /metrics URL as component.
func (m *Measurer) AddScrape(component, url, token string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.targets = append(m.targets, &scrapeTarget{component: component, url: url, token: token})
}

// SetProbe sets the probe whose intervals each tick drains.
func (m *Measurer) SetProbe(p *Probe) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.probe = p
}

// SetKVProbe sets the kvstore probe whose intervals each tick drains.
func (m *Measurer) SetKVProbe(k *KVProbe) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kv = k
}

// SetMeshProbe sets the mirror-lag probe the summary reads (mesh read
// path).
func (m *Measurer) SetMeshProbe(p *MeshProbe) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mesh = p
}

// SetConverged records the agents converged at the last poll.
func (m *Measurer) SetConverged(n int) { m.converged.Store(int64(n)) }

// Tick takes one sample at now and returns the row of series values,
// waiting for every component's answer (at most scrapeTimeout): the
// samples that start and end a mode, whose counters are its totals.
func (m *Measurer) Tick(ctx context.Context, now time.Time) map[string]float64 {
	return m.TickWithin(ctx, now, scrapeTimeout)
}

// TickWithin is Tick waiting at most wait for the components' answers.
// A component that answers later (an overloaded agent shard can take
// tens of seconds) is not scraped again until it has; its answer goes
// into the first tick after it arrives, so one slow component does not
// hold back the others' samples, the processes' CPU and memory, or the
// probe's.
func (m *Measurer) TickWithin(ctx context.Context, now time.Time, wait time.Duration) map[string]float64 {
	row := map[string]float64{}
	realStart := time.Now()
	targets, pending := m.startScrapes(ctx, realStart)
	snap, snapErr := proc.TakeSnapshot()
	waitAll(pending, wait)

	m.mu.Lock()
	defer m.mu.Unlock()
	// The answers that arrived since the last tick.
	scraped := make([]Metrics, len(targets))
	answered := make([]time.Time, len(targets))
	for i, t := range targets {
		scraped[i], answered[i] = t.got, t.at
		t.got = nil
	}
	dt := now.Sub(m.lastAt)
	if m.lastAt.IsZero() {
		dt = 0
	}
	m.lastAt = now
	if snapErr == nil {
		m.sampleProcesses(row, snap, now)
	}
	m.sampleMachineMemory(row)
	m.scrapeRows(row, targets, scraped, answered, realStart, dt)
	m.drainProbes(row, dt)
	row[results.SeriesAgentsConverged] = float64(m.converged.Load())
	return row
}

// startScrapes starts a scrape of every target that has none in flight
// and returns the targets and the channels their scrapes close.
func (m *Measurer) startScrapes(ctx context.Context, now time.Time) ([]*scrapeTarget, []chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	targets := append([]*scrapeTarget(nil), m.targets...)
	pending := make([]chan struct{}, 0, len(targets))
	for _, t := range targets {
		if t.done == nil {
			t.done = make(chan struct{})
			if t.since.IsZero() {
				t.since = now
			}
			go m.scrape(ctx, t)
		}
		pending = append(pending, t.done)
	}
	return targets, pending
}

// waitAll waits until every channel is closed or wait has passed.
func waitAll(pending []chan struct{}, wait time.Duration) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for _, done := range pending {
		select {
		case <-done:
		case <-timer.C:
			return
		}
	}
}

// sampleProcesses adds every measured process's CPU and RSS at now to
// row, with the per-agent spread across shards, and keeps the peaks.
func (m *Measurer) sampleProcesses(row map[string]float64, snap proc.Snapshot, now time.Time) {
	var shardCPU, shardRSS []float64
	for _, p := range m.procs {
		var u proc.Usage
		var ok bool
		if p.self {
			var st proc.Stat
			st, ok = snap[p.pid]
			u = proc.Usage{CPU: st.CPU, RSS: st.RSS}
		} else {
			u, ok = snap.Tree(p.pid)
		}
		if !ok {
			continue
		}
		rss := float64(u.RSS)
		if p.have && now.After(p.lastAt) {
			rate := (u.CPU - p.cpu).Seconds() / now.Sub(p.lastAt).Seconds()
			if rate < 0 {
				rate = 0
			}
			p.lastRate = rate
			p.peakCPU = math.Max(p.peakCPU, rate)
			row[results.SeriesName(results.SeriesCPU, "process", p.name)] = rate
			if p.agents > 0 {
				shardCPU = append(shardCPU, rate/float64(p.agents))
			}
		}
		if !p.have {
			p.have, p.firstCPU, p.firstAt = true, u.CPU, now
		}
		p.cpu, p.lastAt = u.CPU, now
		p.peakRSS = math.Max(p.peakRSS, rss)
		p.sumRSS += rss
		p.nRSS++
		row[results.SeriesName(results.SeriesRSS, "process", p.name)] = rss
		if p.agents > 0 {
			shardRSS = append(shardRSS, rss/float64(p.agents))
		}
	}
	spreadRow(row, shardCPU, results.SeriesAgentsCPUMean, results.SeriesAgentsCPUMin, results.SeriesAgentsCPUMax)
	spreadRow(row, shardRSS, results.SeriesAgentsRSSMean, results.SeriesAgentsRSSMin, results.SeriesAgentsRSSMax)
	var total float64
	for _, p := range m.procs {
		if p.have && p.lastAt.Equal(now) {
			total += row[results.SeriesName(results.SeriesRSS, "process", p.name)]
		}
	}
	m.mem.processes = math.Max(m.mem.processes, total)
}

// sampleMachineMemory adds the machine's used memory to row and keeps
// its peak.
func (m *Measurer) sampleMachineMemory(row map[string]float64) {
	if mi, err := proc.ReadMemInfo(); err == nil {
		used := float64(mi.Used())
		if m.mem.samples == 0 {
			m.mem.atStart = used
		}
		m.mem.samples++
		m.mem.total = float64(mi.Total)
		m.mem.machine = math.Max(m.mem.machine, used)
		row[results.SeriesMachineMemoryUsed] = used
	}
}

// scrapeRows adds the rates and gauges from the answers that arrived
// (scraped[i] from targets[i], at answered[i]; nil: none) and makes them
// the last answers.
func (m *Measurer) scrapeRows(row map[string]float64, targets []*scrapeTarget, scraped []Metrics, answered []time.Time, realStart time.Time, dt time.Duration) {
	// Rates compare the components that answered this tick and the last
	// one, over the same span (ratable): both sides hold the same
	// components, so one left out does not count as a drop to zero.
	cur := map[string]Metrics{}
	rateCur, ratePrev := map[string]Metrics{}, map[string]Metrics{}
	tickGap := realStart.Sub(m.lastRealAt)
	for i, t := range targets {
		if scraped[i] == nil {
			continue
		}
		c := t.component
		cur[c] = scraped[i]
		if _, ok := m.first[c]; !ok {
			m.first[c] = scraped[i]
		}
		if prevAt, ok := m.scrapedAt[c]; ok && ratable(answered[i].Sub(prevAt), tickGap) {
			rateCur[c], ratePrev[c] = scraped[i], m.last[c]
		}
		m.scrapedAt[c] = answered[i]
	}
	m.lastRealAt = realStart
	if dt > 0 {
		m.metricRows(row, ratePrev, rateCur, dt.Seconds())
	}
	gaugeRows(row, cur)
	if a := cur["apiserver"]; a != nil {
		if n, ok := m.conns.sample(a); ok {
			row[results.SeriesAPIServerWatchConnections] = n
		}
	}
	for k, v := range cur {
		m.prev[k] = m.last[k]
		m.last[k] = v
	}
}

// drainProbes adds the probes' figures for the interval dt to row.
func (m *Measurer) drainProbes(row map[string]float64, dt time.Duration) {
	if m.probe != nil {
		for k, v := range m.probe.TakeInterval(dt) {
			row[k] = v
		}
	}
	if m.kv != nil {
		for k, v := range m.kv.TakeInterval() {
			row[k] = v
		}
	}
}

// scrape reads t's /metrics and leaves the answer in t for the next tick.
// It outlives the tick that started it (at most scrapeTimeout), and the
// mode's cancellation: the last tick still waits for its answer.
func (m *Measurer) scrape(ctx context.Context, t *scrapeTarget) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), scrapeTimeout)
	defer cancel()
	ms, err := Scrape(sctx, m.http, t.url, t.token)
	at := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.log.Debug("scrape", "component", t.component, "err", err)
		t.failed++
	} else {
		t.got, t.at = ms, at
		t.answered++
		t.maxGap = max(t.maxGap, at.Sub(t.since))
		t.since = at
	}
	close(t.done)
	t.done = nil
}

// ratable reports whether a component's counters, answered gap apart,
// may be turned into rates over a tick that came tickGap after the last.
// An overloaded component answers seconds late; its two readings then
// span a different time than the tick, and a rate over the tick's
// duration would be off by as much (one late answer from one shard is
// enough for a summed rate to spike by orders of magnitude). Such a tick
// leaves the component out of the rates; totals come from the first and
// last readings and lose nothing.
func ratable(gap, tickGap time.Duration) bool {
	if gap <= 0 || tickGap <= 0 {
		return false
	}
	d := gap - tickGap
	if d < 0 {
		d = -d
	}
	return d <= tickGap/4+50*time.Millisecond
}

// spreadRow adds the mean, minimum and maximum of v to row as the series
// mean, min and max.
func spreadRow(row map[string]float64, v []float64, meanName, minName, maxName string) {
	if len(v) == 0 {
		return
	}
	s := spreadOf(v)
	row[meanName], row[minName], row[maxName] = s.Mean, s.Min, s.Max
}

func spreadOf(v []float64) results.Spread {
	if len(v) == 0 {
		return results.Spread{}
	}
	s := results.Spread{Min: v[0], Max: v[0]}
	var sum float64
	for _, x := range v {
		sum += x
		s.Min, s.Max = math.Min(s.Min, x), math.Max(s.Max, x)
	}
	s.Mean = sum / float64(len(v))
	return s
}

// consumer reports whether a component is a client of the API server
// whose own counters are summed: the agent shards and the control plane.
func consumer(comp string) bool {
	return strings.HasPrefix(comp, "agents-") || comp == "controlplane"
}

// agentsSum sums family name over every agent shard and the control plane
// in ms (each family is exposed by one of them only).
func agentsSum(ms map[string]Metrics, name string, match map[string]string) (float64, bool) {
	var s float64
	found := false
	for comp, m := range ms {
		if !consumer(comp) {
			continue
		}
		if v, ok := m.Sum(name, match); ok {
			s += v
			found = true
		}
	}
	return s, found
}

func agentsSumBy(ms map[string]Metrics, name string, by ...string) map[string]float64 {
	out := map[string]float64{}
	for comp, m := range ms {
		if !consumer(comp) {
			continue
		}
		for k, v := range m.SumBy(name, nil, by...) {
			out[k] += v
		}
	}
	return out
}

// eventsSum is the watch events received by agents and the control plane.
func eventsSum(ms map[string]Metrics) (float64, bool) {
	a, ok1 := agentsSum(ms, mAgentEvents, nil)
	c, ok2 := agentsSum(ms, mCPEvents, nil)
	return a + c, ok1 || ok2
}

func eventsSumBy(ms map[string]Metrics) map[string]float64 {
	out := agentsSumBy(ms, mAgentEvents, "resource")
	for k, v := range agentsSumBy(ms, mCPEvents, "resource") {
		out[k] += v
	}
	return out
}

// createdSum is the identities created by agents and the operator.
func createdSum(ms map[string]Metrics) (float64, bool) {
	a, ok1 := agentsSum(ms, mAgentCreated, nil)
	c, ok2 := agentsSum(ms, mOpCreated, nil)
	return a + c, ok1 || ok2
}

func agentsHistograms(ms map[string]Metrics, name string, by ...string) map[string]*Histogram {
	out := map[string]*Histogram{}
	for comp, m := range ms {
		if !strings.HasPrefix(comp, "agents-") {
			continue
		}
		for k, h := range m.Histograms(name, nil, by...) {
			if out[k] == nil {
				out[k] = &Histogram{}
			}
			out[k].Merge(h)
		}
	}
	return out
}

func deltaHists(cur, prev map[string]*Histogram) map[string]*Histogram {
	out := map[string]*Histogram{}
	for k, h := range cur {
		out[k] = h.Sub(prev[k])
	}
	return out
}

func isWrite(verb string) bool {
	switch strings.ToLower(verb) {
	case "create", "post", "update", "put", "patch", "apply", "delete", "deletecollection":
		return true
	}
	return false
}

func writeVerb(v string) string {
	switch v = strings.ToLower(v); v {
	case "post":
		return "create"
	case "put":
		return "update"
	}
	return v
}

// writeCounts turns request counters keyed "<verb> <resource> <code>" at
// the end (cur) and start (prev) of a mode into the writes made in it by
// "<verb> <resource>", all and those not answered with a 2xx (the agents'
// code "error" is a request without an answer; a series without a code is
// not counted as rejected). Either map is nil when empty.
func writeCounts(cur, prev map[string]float64) (all, rejected map[string]int64) {
	for k, v := range cur {
		verb, rest := splitKey(k)
		res, code := splitKey(rest)
		n := int64(v - prev[k])
		if !isWrite(verb) || n <= 0 {
			continue
		}
		key := writeVerb(verb) + " " + res
		if all == nil {
			all = map[string]int64{}
		}
		all[key] += n
		if code != "" && !strings.HasPrefix(code, "2") {
			if rejected == nil {
				rejected = map[string]int64{}
			}
			rejected[key] += n
		}
	}
	return all, rejected
}

// gaugeRows adds the levels read from this tick's answers. Unlike rates
// they need no earlier answer: a component that answers late still gives
// its level.
func gaugeRows(row map[string]float64, cur map[string]Metrics) {
	n, ok := 0.0, false
	if a := cur["apiserver"]; a != nil {
		// kube-apiserver and the fake label apiserver_storage_objects with
		// the group resource ("ciliumidentities.cilium.io"); the bare
		// plural is accepted too.
		for _, r := range []string{"ciliumidentities.cilium.io", "ciliumidentities"} {
			if v, found := a.Sum(mAPIObjects, map[string]string{"resource": r}); found {
				n, ok = n+v, true
			}
		}
	}
	if c, cok := agentsSum(cur, mCPIdentities, nil); cok && c > n {
		n, ok = c, true
	}
	if ok {
		row[results.SeriesIdentities] = n
	}
}

// metricRows adds the rates and interval quantiles between two scrapes.
func (m *Measurer) metricRows(row map[string]float64, prev, cur map[string]Metrics, dt float64) {
	rate := func(c, p float64) float64 { return math.Max(0, c-p) / dt }
	if a, p := cur["apiserver"], prev["apiserver"]; a != nil && p != nil {
		// Server-side latency (watches excluded: their duration is their
		// lifetime).
		ch := a.Histograms(mAPIDuration, nil, "verb", "resource")
		ph := p.Histograms(mAPIDuration, nil, "verb", "resource")
		all := &Histogram{}
		for k, h := range deltaHists(ch, ph) {
			verb, res := splitKey(k)
			if strings.EqualFold(verb, "WATCH") || strings.EqualFold(verb, "CONNECT") || h.Count == 0 {
				continue
			}
			all.Merge(h)
			row[results.SeriesName(results.SeriesServerLatencyP99, "verb", verb, "resource", res)] = h.Quantile(0.99)
		}
		if all.Count > 0 {
			row[results.SeriesServerLatencyP99] = all.Quantile(0.99)
		}
		cw := a.SumBy(mAPIRequests, nil, "verb", "resource")
		pw := p.SumBy(mAPIRequests, nil, "verb", "resource")
		for k, v := range cw {
			verb, res := splitKey(k)
			if isWrite(verb) {
				if r := rate(v, pw[k]); r > 0 {
					row[results.SeriesName(results.SeriesAPIWritesRate, "type", writeVerb(verb)+" "+res)] = r
				}
			}
		}
		c429, _ := a.Sum(mAPIRequests, map[string]string{"code": "429"})
		p429, _ := p.Sum(mAPIRequests, map[string]string{"code": "429"})
		row[results.SeriesAPI429Rate] = rate(c429, p429)
		ce, _ := a.Sum(mAPIWatchEvents, nil)
		pe, _ := p.Sum(mAPIWatchEvents, nil)
		row[results.SeriesAPIServerWatchEventsRate] = rate(ce, pe)
		cb, _ := a.HistogramSum(mAPIWatchSizes, nil)
		pb, _ := p.HistogramSum(mAPIWatchSizes, nil)
		row[results.SeriesAPIServerWatchBytesRate] = rate(cb, pb)
		if cm, ok := a.Sum(mModelledCPU, nil); ok {
			pm, _ := p.Sum(mModelledCPU, nil)
			row[results.SeriesAPIServerModelledCPU] = rate(cm, pm)
		}
	}
	// Agents' own counters, summed over shards.
	if ce, ok := eventsSum(cur); ok {
		pe, _ := eventsSum(prev)
		r := rate(ce, pe)
		row[results.SeriesWatchEventsRate] = r
		m.peakEv = math.Max(m.peakEv, r)
		pby := eventsSumBy(prev)
		for k, v := range eventsSumBy(cur) {
			row[results.SeriesName(results.SeriesWatchEventsRate, "resource", k)] = rate(v, pby[k])
		}
	}
	if cb, ok := agentsSum(cur, mAgentBytes, nil); ok {
		pb, _ := agentsSum(prev, mAgentBytes, nil)
		r := rate(cb, pb)
		row[results.SeriesWatchBytesRate] = r
		m.peakBy = math.Max(m.peakBy, r)
	}
	if c, ok := agentsSum(cur, mAgentThrottle, nil); ok {
		p, _ := agentsSum(prev, mAgentThrottle, nil)
		row[results.SeriesClientThrottleRate] = rate(c, p)
	}
	if c, ok := createdSum(cur); ok {
		p, _ := createdSum(prev)
		row[results.SeriesIdentitiesCreate] = rate(c, p)
	}
	if c, ok := agentsSum(cur, mAgentDatapath, nil); ok {
		p, _ := agentsSum(prev, mAgentDatapath, nil)
		row[results.SeriesDatapathUpdatesRate] = rate(c, p)
	}
	if c, ok := agentsSum(cur, mAgent429, nil); ok {
		p, _ := agentsSum(prev, mAgent429, nil)
		if _, have := row[results.SeriesAPI429Rate]; !have {
			row[results.SeriesAPI429Rate] = rate(c, p)
		}
	}
	for op, h := range deltaHists(agentsHistograms(cur, mAgentKV, "op"), agentsHistograms(prev, mAgentKV, "op")) {
		if h.Count > 0 {
			row[results.SeriesName(results.SeriesKVStoreLatencyP50, "op", op)] = h.Quantile(0.5)
			row[results.SeriesName(results.SeriesKVStoreLatencyP99, "op", op)] = h.Quantile(0.99)
		}
	}
	if c, p := cur["kvstore"], prev["kvstore"]; c != nil && p != nil {
		h := deltaHists(c.Histograms(mEtcdFsync, nil), p.Histograms(mEtcdFsync, nil))[""]
		if h != nil && h.Count > 0 {
			row[results.SeriesKVStoreFsyncP99] = h.Quantile(0.99)
		}
	}
	if c, p := cur["controlplane"], prev["controlplane"]; c != nil && p != nil {
		h := deltaHists(c.Histograms(mXDSPush, nil), p.Histograms(mXDSPush, nil))[""]
		if h != nil && h.Count > 0 {
			row[results.SeriesXDSPushLatencyP50] = h.Quantile(0.5)
			row[results.SeriesXDSPushLatencyP99] = h.Quantile(0.99)
		}
	}
}

// histSummary condenses a histogram delta into a LatencySummary; Max is
// the upper bound of the highest non-empty bucket.
func histSummary(verb, res string, h *Histogram) results.LatencySummary {
	s := results.LatencySummary{Verb: verb, Resource: res, Count: int64(h.Count)}
	if h.Count == 0 {
		return s
	}
	s.P50, s.P90, s.P99 = finite(h.Quantile(0.5)), finite(h.Quantile(0.9)), finite(h.Quantile(0.99))
	prev := 0.0
	for i, c := range h.Counts {
		if c > prev {
			s.Max = h.Bounds[i]
		}
		prev = c
	}
	if h.Count > prev && len(h.Bounds) > 0 {
		s.Max = h.Bounds[len(h.Bounds)-1] // beyond the last bound
	}
	return s
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func agentsHistSum(ms map[string]Metrics, name string) (float64, bool) {
	var s float64
	found := false
	for comp, m := range ms {
		if !strings.HasPrefix(comp, "agents-") {
			continue
		}
		if v, ok := m.HistogramSum(name, nil); ok {
			s += v
			found = true
		}
	}
	return s, found
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
