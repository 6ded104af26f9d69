package harness

import (
	"math"
	"strings"

	"github.com/stampede-sim/stampede/harness/manifests"
	"github.com/stampede-sim/stampede/reports/results"
)

// IdentityCensus is the result of listing identities at the end of a mode.
type IdentityCensus struct {
	Final      int64
	Duplicates int64 // identities beyond the first for each label set
}

// Summary condenses the mode from the first and last scrapes and the
// process samples.
func (m *Measurer) Summary(census *IdentityCensus) *results.Summary {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := &results.Summary{}
	if m.probe != nil {
		s.APILatency, s.Probe = m.probe.Summary()
	}
	first, last := m.first, m.last
	summarizeAPIServer(s, first, last)
	m.summarizeLatency(s, first, last)
	m.summarizeWatch(s, first, last)
	summarizeIdentities(s, first, last, census)
	m.summarizeProcesses(s, first, last)
	m.summarizeScrapes(s)
	m.summarizeMesh(s, first, last)
	return s
}

// summarizeAPIServer adds the server-side latency, the writes and the
// throttling between the first and the last scrapes; without server
// metrics, the agents' own counts of their writes and 429s.
func summarizeAPIServer(s *results.Summary, first, last map[string]Metrics) {
	if a, f := last["apiserver"], first["apiserver"]; a != nil && f != nil {
		d := deltaHists(a.Histograms(mAPIDuration, nil, "verb", "resource"), f.Histograms(mAPIDuration, nil, "verb", "resource"))
		keys := sortedKeys(d)
		all := &Histogram{}
		for _, k := range keys {
			verb, res := splitKey(k)
			if strings.EqualFold(verb, "WATCH") || strings.EqualFold(verb, "CONNECT") || d[k].Count == 0 {
				continue
			}
			all.Merge(d[k])
			s.ServerLatency = append(s.ServerLatency, histSummary(verb, res, d[k]))
		}
		if all.Count > 0 {
			s.ServerLatency = append(s.ServerLatency, histSummary("*", "*", all))
		}
		s.Writes, s.WritesRejected = writeCounts(a.SumBy(mAPIRequests, nil, "verb", "resource", "code"), f.SumBy(mAPIRequests, nil, "verb", "resource", "code"))
		s.Writes, s.WritesRejected = runWritesOnly(s.Writes), runWritesOnly(s.WritesRejected)
		if cur := a.SumBy(mModelledCPU, nil, "kind"); len(cur) > 0 {
			prev := f.SumBy(mModelledCPU, nil, "kind")
			ms := &results.APIServerModelSummary{ByKind: map[string]float64{}}
			for k, v := range cur {
				d := math.Max(0, v-prev[k])
				ms.ByKind[k] = d
				ms.CPUSeconds += d
			}
			s.APIServerModel = ms
		}
		c429, _ := a.Sum(mAPIRequests, map[string]string{"code": "429"})
		f429, _ := f.Sum(mAPIRequests, map[string]string{"code": "429"})
		s.Throttling = &results.ThrottlingSummary{HTTP429: int64(c429 - f429)}
	}
	if len(s.Writes) == 0 {
		// No server metrics: count the agents' own writes.
		s.Writes, s.WritesRejected = writeCounts(agentsSumBy(last, mAgentRequests, "verb", "resource", "code"), agentsSumBy(first, mAgentRequests, "verb", "resource", "code"))
	}
	if c, ok := agentsSum(last, mAgentThrottle, nil); ok {
		f, _ := agentsSum(first, mAgentThrottle, nil)
		if s.Throttling == nil {
			s.Throttling = &results.ThrottlingSummary{}
		}
		s.Throttling.ClientThrottledRequests = int64(c - f)
		cs, _ := agentsHistSum(last, mAgentThrottle)
		fs, _ := agentsHistSum(first, mAgentThrottle)
		s.Throttling.ClientThrottledSeconds = math.Max(0, cs-fs)
		if c4, ok := agentsSum(last, mAgent429, nil); ok && s.Throttling.HTTP429 == 0 {
			f4, _ := agentsSum(first, mAgent429, nil)
			s.Throttling.HTTP429 = int64(c4 - f4)
		}
	}

}

// runWritesOnly keeps the counts of the resource types the run's own
// clients write (runWriteResources): the API server counts every writer's
// requests, its own too (kube-apiserver rewrites the kubernetes Service's
// Endpoints, its identity Lease and its bootstrap objects, and on a real
// cluster other controllers write as well).
func runWritesOnly(m map[string]int64) map[string]int64 {
	var out map[string]int64
	for k, v := range m {
		_, res := splitKey(k)
		if !runWriteResources[res] {
			continue
		}
		if out == nil {
			out = map[string]int64{}
		}
		out[k] = v
	}
	return out
}

// runWriteResources are the resource types the harness, the agents and
// the control plane write: the topology (nodes, namespaces, service
// accounts, pods), the probe's configmap, and the cilium.io kinds.
var runWriteResources = func() map[string]bool {
	m := map[string]bool{"nodes": true, "namespaces": true, "serviceaccounts": true, "pods": true, "configmaps": true}
	for _, r := range manifests.Resources() {
		m[r.GVR.Resource] = true
	}
	return m
}()

// summarizeLatency adds the kvstore latency (as agents and the harness's
// probe saw it) and the xDS push latency.
func (m *Measurer) summarizeLatency(s *results.Summary, first, last map[string]Metrics) {
	kv := deltaHists(agentsHistograms(last, mAgentKV, "op"), agentsHistograms(first, mAgentKV, "op"))
	for _, op := range sortedKeys(kv) {
		if kv[op].Count > 0 {
			s.KVStoreLatency = append(s.KVStoreLatency, histSummary(op, "agents", kv[op]))
		}
	}
	if m.kv != nil {
		s.KVStoreLatency = append(s.KVStoreLatency, m.kv.Summary()...)
	}
	if c, f := last["controlplane"], first["controlplane"]; c != nil {
		var fh map[string]*Histogram
		if f != nil {
			fh = f.Histograms(mXDSPush, nil)
		}
		if h := deltaHists(c.Histograms(mXDSPush, nil), fh)[""]; h != nil && h.Count > 0 {
			s.XDSPushLatency = append(s.XDSPushLatency, histSummary("push", "*", h))
		}
	}

}

// summarizeWatch adds the watch events and bytes the agents received and
// the API server's watch connections.
func (m *Measurer) summarizeWatch(s *results.Summary, first, last map[string]Metrics) {
	if ce, ok := eventsSum(last); ok {
		fe, _ := eventsSum(first)
		cb, _ := agentsSum(last, mAgentBytes, nil)
		fb, _ := agentsSum(first, mAgentBytes, nil)
		w := &results.WatchSummary{Events: int64(ce - fe), Bytes: int64(cb - fb), PeakEventsPerSecond: m.peakEv, PeakBytesPerSecond: m.peakBy, EventsByResource: map[string]int64{}}
		fby := eventsSumBy(first)
		for k, v := range eventsSumBy(last) {
			if n := int64(v - fby[k]); n > 0 {
				w.EventsByResource[k] = n
			}
		}
		if a, f := last["apiserver"], first["apiserver"]; a != nil && f != nil {
			prev := f.SumBy(mAPITerminated, nil, "resource")
			for k, v := range a.SumBy(mAPITerminated, nil, "resource") {
				if n := int64(v - prev[k]); n > 0 {
					if w.TerminatedWatchers == nil {
						w.TerminatedWatchers = map[string]int64{}
					}
					w.TerminatedWatchers[k] = n
				}
			}
		}
		s.Watch = w
	}
	if a, f := last["apiserver"], first["apiserver"]; a != nil && f != nil {
		if c, ok := a.Sum(mAPIWatchEvents, nil); ok {
			p, _ := f.Sum(mAPIWatchEvents, nil)
			if n := int64(c - p); n > 0 {
				if s.Watch == nil {
					s.Watch = &results.WatchSummary{}
				}
				s.Watch.APIServerEvents = n
			}
		}
	}
	if c := m.conns; c.samples > 0 {
		if s.Watch == nil {
			s.Watch = &results.WatchSummary{}
		}
		wc := &results.WatchConnectionsSummary{Peak: int64(c.peak), Mean: c.sum / float64(c.samples), Samples: c.samples, ByResource: map[string]int64{}}
		for k, v := range c.byKind {
			wc.ByResource[k] = int64(v)
		}
		s.Watch.Connections = wc
	}
}

// summarizeIdentities adds the identities created and left, the larger of
// the control plane's count and the census, and the datapath updates.
func summarizeIdentities(s *results.Summary, first, last map[string]Metrics, census *IdentityCensus) {
	if c, ok := createdSum(last); ok || census != nil {
		f, _ := createdSum(first)
		id := &results.IdentitySummary{Created: int64(c - f)}
		if cd, ok := agentsSum(last, mAgentDuplicates, nil); ok {
			fd, _ := agentsSum(first, mAgentDuplicates, nil)
			id.Duplicates = int64(cd - fd)
		}
		if n, ok := agentsSum(last, mCPIdentities, nil); ok {
			id.Final = int64(n)
		}
		if census != nil && census.Final > id.Final {
			id.Final = census.Final
			id.Duplicates = max(id.Duplicates, census.Duplicates)
		}
		s.Identities = id
	}
	if c, ok := agentsSum(last, mAgentDatapath, nil); ok {
		f, _ := agentsSum(first, mAgentDatapath, nil)
		s.Datapath = &results.DatapathSummary{Updates: int64(c - f)}
	}

}

// summarizeProcesses adds every process's CPU and memory, the per-agent
// spread across shards, the memory peaks and the harness's own share.
func (m *Measurer) summarizeProcesses(s *results.Summary, first, last map[string]Metrics) {
	var total, harness float64
	haveHarness := false
	var perAgentCPU, perAgentMean, perAgentPeak, perAgentPeakRSS, perAgentMeanRSS []float64
	shards, agents := 0, 0
	for _, p := range m.procs {
		if !p.have {
			continue
		}
		cpu := (p.cpu - p.firstCPU).Seconds()
		mean := 0.0
		if p.nRSS > 0 {
			mean = p.sumRSS / float64(p.nRSS)
		}
		s.Processes = append(s.Processes, results.ProcessSummary{Name: p.name, CPUSeconds: cpu, PeakCPU: p.peakCPU, PeakRSS: int64(p.peakRSS), MeanRSS: int64(mean)})
		total += cpu
		if p.self {
			harness, haveHarness = cpu, true
		}
		if p.agents > 0 {
			shards++
			agents += p.agents
			n := float64(p.agents)
			perAgentCPU = append(perAgentCPU, cpu/n)
			if d := p.lastAt.Sub(p.firstAt); d > 0 {
				perAgentMean = append(perAgentMean, cpu/d.Seconds()/n)
			}
			perAgentPeak = append(perAgentPeak, p.peakCPU/n)
			perAgentPeakRSS = append(perAgentPeakRSS, p.peakRSS/n)
			perAgentMeanRSS = append(perAgentMeanRSS, mean/n)
		}
	}
	if shards > 0 {
		s.Agents = &results.AgentSummary{Count: agents, Shards: shards, CPUSeconds: spreadOf(perAgentCPU), MeanCPU: spreadOf(perAgentMean),
			PeakCPU: spreadOf(perAgentPeak), PeakRSS: spreadOf(perAgentPeakRSS), MeanRSS: spreadOf(perAgentMeanRSS)}
		delta := func(result string) float64 {
			c, _ := agentsSum(last, mAgentFrames, map[string]string{"result": result})
			f, _ := agentsSum(first, mAgentFrames, map[string]string{"result": result})
			return max(c-f, 0)
		}
		if hit, all := delta("hit"), delta("hit")+delta("miss")+delta("busy"); all > 0 {
			s.Agents.SharedFrames = hit / all
		}
	}
	if m.mem.samples > 0 || m.mem.processes > 0 {
		s.Memory = &results.MemorySummary{
			PeakProcessesRSS:   int64(m.mem.processes),
			PeakMachineUsed:    int64(m.mem.machine),
			MachineUsedAtStart: int64(m.mem.atStart),
			MachineTotal:       int64(m.mem.total),
		}
	}
	if haveHarness {
		// Over a short or idle stretch /proc's clock ticks may show no CPU
		// at all; the harness then used none of none.
		frac := 0.0
		if total > 0 {
			frac = harness / total
		}
		s.Harness = &results.HarnessSummary{CPUSeconds: harness, FractionOfTotal: frac}
		if c, ok := agentsSum(last, mAgentDigest, nil); ok {
			f, _ := agentsSum(first, mAgentDigest, nil)
			s.Harness.AgentDigestSeconds = max(c-f, 0)
		}
	}
}

// summarizeScrapes adds how each scraped component answered.
func (m *Measurer) summarizeScrapes(s *results.Summary) {
	for _, t := range m.targets {
		if t.answered+t.failed == 0 {
			continue
		}
		gap := t.maxGap
		if m.lastRealAt.After(t.since) {
			// Not answered since: the hole lasts until the last tick.
			gap = max(gap, m.lastRealAt.Sub(t.since))
		}
		s.Scrapes = append(s.Scrapes, results.ScrapeSummary{Component: t.component, Answered: t.answered, Failed: t.failed, MaxGapSeconds: gap.Seconds()})
	}
}

// summarizeMesh adds the mirror lag, the probe's share of the agents'
// events and the agents' failovers and fallback time (mesh read path).
// What the replicas served comes from the agents' reports, which the mode
// adds later (meshServed).
func (m *Measurer) summarizeMesh(s *results.Summary, first, last map[string]Metrics) {
	if m.mesh == nil {
		return
	}
	lag, probeEvents := m.mesh.Summary()
	ms := &results.MeshSummary{Replicas: len(m.mesh.cfg.Replicas), MirrorLag: lag, ProbeEventsPerAgent: probeEvents}
	if c, ok := agentsSum(last, mAgentMeshFailovers, nil); ok {
		f, _ := agentsSum(first, mAgentMeshFailovers, nil)
		ms.Failovers, ms.AgentMetrics = int64(max(c-f, 0)), true
	}
	if c, ok := agentsSum(last, mAgentMeshFallback, nil); ok {
		f, _ := agentsSum(first, mAgentMeshFallback, nil)
		ms.FallbackAgentSeconds, ms.AgentMetrics = max(c-f, 0), true
	}
	s.Mesh = ms
}
