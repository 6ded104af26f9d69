package harness

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stampede-sim/stampede/reports/results"
)

// metricsServer serves a /metrics page whose text the test sets.
type metricsServer struct {
	mu   sync.Mutex
	page string
}

func (m *metricsServer) set(s string) { m.mu.Lock(); m.page = s; m.mu.Unlock() }

func (m *metricsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer admin" {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprint(w, m.page)
}

func apiPage(creates, patches, events int, fast, slow int) string {
	return fmt.Sprintf(`# TYPE apiserver_request_total counter
apiserver_request_total{code="201",resource="pods",verb="CREATE"} %d
apiserver_request_total{code="200",resource="ciliumendpoints",verb="PATCH"} %d
apiserver_request_total{code="429",resource="ciliumendpoints",verb="PATCH"} 1
apiserver_request_total{code="201",resource="ciliumidentities",verb="POST"} %d
apiserver_request_total{code="409",resource="ciliumidentities",verb="POST"} %d
apiserver_request_total{code="200",resource="ciliumidentities",verb="GET"} %d
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{resource="pods",verb="CREATE",le="0.1"} %d
apiserver_request_duration_seconds_bucket{resource="pods",verb="CREATE",le="1"} %d
apiserver_request_duration_seconds_bucket{resource="pods",verb="CREATE",le="+Inf"} %d
apiserver_request_duration_seconds_sum{resource="pods",verb="CREATE"} 1
apiserver_request_duration_seconds_count{resource="pods",verb="CREATE"} %d
# TYPE apiserver_watch_events_total counter
apiserver_watch_events_total{group="",resource="pods",version="v1"} %d
`, creates, patches, creates/10, creates/5, creates, fast, fast+slow, fast+slow, fast+slow, events)
}

func agentPage(events, created, dups int) string {
	return fmt.Sprintf(`# TYPE stampede_agent_watch_events_total counter
stampede_agent_watch_events_total{resource="pods",type="ADDED"} %d
stampede_agent_watch_events_total{resource="ciliumidentities",type="ADDED"} %d
# TYPE stampede_agent_identities_created_total counter
stampede_agent_identities_created_total %d
# TYPE stampede_agent_identity_duplicates_total counter
stampede_agent_identity_duplicates_total %d
# TYPE stampede_agent_kvstore_operation_duration_seconds histogram
stampede_agent_kvstore_operation_duration_seconds_bucket{op="get",le="0.01"} %d
stampede_agent_kvstore_operation_duration_seconds_bucket{op="get",le="+Inf"} %d
stampede_agent_kvstore_operation_duration_seconds_sum{op="get"} 0.1
stampede_agent_kvstore_operation_duration_seconds_count{op="get"} %d
# TYPE stampede_agent_status_digest_seconds_total counter
stampede_agent_status_digest_seconds_total %g
# TYPE stampede_agent_shared_watch_frames_total counter
stampede_agent_shared_watch_frames_total{result="hit"} %d
stampede_agent_shared_watch_frames_total{result="miss"} %d
stampede_agent_shared_watch_frames_total{result="busy"} %d
`, events, events, created, dups, events, events, events, float64(events)/100, 3*events, events/2, events/2)
}

func TestMeasurerRatesAndSummary(t *testing.T) {
	api := &metricsServer{}
	agents := &metricsServer{}
	as := httptest.NewServer(api)
	defer as.Close()
	gs := httptest.NewServer(agents)
	defer gs.Close()

	m := NewMeasurer(as.Client(), nil)
	m.AddScrape("apiserver", as.URL+"/metrics", "admin")
	m.AddScrape("agents-0", gs.URL+"/metrics", "admin")
	m.AddProcess("agents-0", os.Getpid(), 10) // this test process stands in for a shard

	t0 := time.Unix(1000, 0)
	api.set(apiPage(100, 10, 1000, 100, 0))
	agents.set(agentPage(500, 5, 0))
	ctx := context.Background()
	if row := m.Tick(ctx, t0); row["agents.converged"] != 0 {
		t.Errorf("first tick row = %v", row)
	}
	// One interval later: 50 creates (40 fast, 10 slow), 20 patches, 2000
	// server events, 300 agent events of each resource, 3 identities.
	api.set(apiPage(150, 30, 3000, 140, 10))
	agents.set(agentPage(800, 8, 1))
	m.SetConverged(7)
	row := m.Tick(ctx, t0.Add(2*time.Second))
	want := map[string]float64{
		"api.writes.rate{type=create pods}":           25,
		"api.writes.rate{type=patch ciliumendpoints}": 10,
		"apiserver.watch.events.rate":                 1000,
		"watch.events.rate":                           300,
		"watch.events.rate{resource=pods}":            150,
		"identities.created.rate":                     1.5,
		"agents.converged":                            7,
		"api.429.rate":                                0,
	}
	for k, v := range want {
		if got, ok := row[k]; !ok || math.Abs(got-v) > 1e-9 {
			t.Errorf("row[%s] = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if p99 := row["apiserver.server.latency.p99"]; p99 <= 0.1 || p99 > 1 {
		t.Errorf("server p99 = %v, want in (0.1, 1] (10 of 50 slow)", p99)
	}
	if _, ok := row["cpu{process=agents-0}"]; !ok {
		t.Errorf("no cpu sample for agents-0 in %v", row)
	}
	if _, ok := row["agents.rss.mean"]; !ok {
		t.Errorf("no per-agent rss in %v", row)
	}

	s := m.Summary(&IdentityCensus{Final: 9, Duplicates: 2})
	if s.Writes["create pods"] != 50 || s.Writes["patch ciliumendpoints"] != 20 {
		t.Errorf("writes = %v", s.Writes)
	}
	// 5 identities created and 10 conflicts between the scrapes; the 429
	// answer to a patch came before the first scrape, and GETs are not writes.
	if s.Writes["create ciliumidentities"] != 15 || s.WritesRejected["create ciliumidentities"] != 10 || len(s.WritesRejected) != 1 {
		t.Errorf("writes = %v, rejected = %v: want 15 creates of ciliumidentities, 10 of them rejected, and nothing else rejected", s.Writes, s.WritesRejected)
	}
	if all, rejected := s.WriteTotals(); all != 85 || rejected != 10 {
		t.Errorf("WriteTotals = %d, %d; want 85, 10", all, rejected)
	}
	if s.Watch == nil || s.Watch.Events != 600 || s.Watch.EventsByResource["ciliumidentities"] != 300 || s.Watch.PeakEventsPerSecond != 300 {
		t.Errorf("watch = %+v", s.Watch)
	}
	if s.Identities == nil || s.Identities.Created != 3 || s.Identities.Duplicates != 2 || s.Identities.Final != 9 {
		t.Errorf("identities = %+v, want created 3, duplicates max(1, 2) = 2, final 9", s.Identities)
	}
	if len(s.ServerLatency) != 2 || s.ServerLatency[0].Count != 50 {
		t.Errorf("server latency = %+v", s.ServerLatency)
	}
	if len(s.KVStoreLatency) != 1 || s.KVStoreLatency[0].Verb != "get" || s.KVStoreLatency[0].Resource != "agents" || s.KVStoreLatency[0].Count != 300 {
		t.Errorf("kvstore latency = %+v", s.KVStoreLatency)
	}
	if s.Agents == nil || s.Agents.Count != 10 || s.Agents.Shards != 1 {
		t.Errorf("agents = %+v", s.Agents)
	}
	// 900 frames found decoded, 150 decoded first and 150 decoded again
	// (busy) between the scrapes.
	if s.Agents != nil && math.Abs(s.Agents.SharedFrames-0.75) > 1e-9 {
		t.Errorf("agents' shared frames = %v, want 0.75", s.Agents.SharedFrames)
	}
	if s.Harness == nil || s.Harness.FractionOfTotal < 0 || s.Harness.FractionOfTotal > 1 {
		t.Errorf("harness = %+v", s.Harness)
	}
	// The shard's digest counter went from 5 s to 8 s.
	if s.Harness != nil && math.Abs(s.Harness.AgentDigestSeconds-3) > 1e-9 {
		t.Errorf("harness agent digest seconds = %v, want 3", s.Harness.AgentDigestSeconds)
	}
}

func TestMeasurerSurvivesFailedScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	m := NewMeasurer(srv.Client(), nil)
	m.AddScrape("apiserver", srv.URL+"/metrics", "")
	row := m.Tick(context.Background(), time.Unix(1, 0))
	row = m.Tick(context.Background(), time.Unix(2, 0))
	if _, ok := row["api.429.rate"]; ok {
		t.Errorf("row has apiserver series although every scrape failed: %v", row)
	}
	if _, ok := row["cpu{process=harness}"]; !ok {
		t.Errorf("harness CPU should still be sampled: %v", row)
	}
}

// twoShards is a Measurer scraping two agent shards whose pages both
// start at 1,000 events; the second runs hold's function (if any) before
// it answers.
func twoShards(t *testing.T) (m *Measurer, fast, slow *metricsServer, hold func(func())) {
	fast, slow = &metricsServer{}, &metricsServer{}
	var mu sync.Mutex
	var before func()
	slowSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := before
		mu.Unlock()
		if f != nil {
			f()
		}
		slow.ServeHTTP(w, r)
	}))
	t.Cleanup(slowSrv.Close)
	fastSrv := httptest.NewServer(fast)
	t.Cleanup(fastSrv.Close)
	m = NewMeasurer(http.DefaultClient, nil)
	m.AddScrape("agents-0", fastSrv.URL+"/metrics", "admin")
	m.AddScrape("agents-1", slowSrv.URL+"/metrics", "admin")
	fast.set(agentPage(1000, 0, 0))
	slow.set(agentPage(1000, 0, 0))
	return m, fast, slow, func(f func()) { mu.Lock(); before = f; mu.Unlock() }
}

// A shard that answers late reads its counters over another span than the
// tick's: its increase is left out of that tick's rates rather than
// divided by the tick's duration (which made a 1,000-agent run report a
// peak of 162 million events/s).
func TestMeasurerLateScrapeLeftOutOfRates(t *testing.T) {
	m, fast, slow, hold := twoShards(t)
	m.Tick(context.Background(), time.Unix(1, 0))
	fast.set(agentPage(1100, 0, 0))
	slow.set(agentPage(31000, 0, 0))
	hold(func() { time.Sleep(400 * time.Millisecond) })
	row := m.Tick(context.Background(), time.Unix(2, 0))
	// agentPage counts events twice (two resources): the fast shard's
	// 100 more are 200 events in 1 s.
	if got := row["watch.events.rate"]; got != 200 {
		t.Errorf("watch.events.rate = %v, want 200 (the late shard left out)", got)
	}
	s := m.Summary(nil)
	if s.Watch == nil || s.Watch.Events != 2*(100+30000) {
		t.Errorf("summary events %+v, want %d: totals keep the late shard", s.Watch, 2*(100+30000))
	}
	if !ratable(time.Second, 1100*time.Millisecond) || ratable(30*time.Second, time.Second) || ratable(0, time.Second) {
		t.Error("ratable: a 10% longer span should pass, 30x or none should not")
	}
}

// A component that takes longer than a tick's wait does not hold the tick
// back: the row comes without it (the processes' CPU still in it), its
// answer goes into a later row and its totals, and the summary says how
// far apart its answers came.
func TestMeasurerTickDoesNotWaitForASlowComponent(t *testing.T) {
	m, _, slow, hold := twoShards(t)
	ctx := context.Background()
	m.Tick(ctx, time.Unix(1, 0))

	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	// A failing check must not leave the handler blocked: the server's
	// cleanup would wait for it forever.
	t.Cleanup(unblock)
	hold(func() { <-release })
	slow.set(agentPage(6000, 0, 0))
	const wait = 100 * time.Millisecond
	start := time.Now()
	var rows []map[string]float64
	for i := 0; i < 3; i++ {
		rows = append(rows, m.TickWithin(ctx, time.Unix(int64(2+i), 0), wait))
	}
	// Ticks that waited for the blocked component would take a scrape
	// timeout each; on a loaded machine 3 short waits may take seconds.
	if took := time.Since(start); took >= scrapeTimeout/2 {
		t.Fatalf("3 ticks with a blocked component took %v, want about %v", took, 3*wait)
	}
	for i, row := range rows {
		if _, ok := row["cpu{process=harness}"]; !ok && i > 0 {
			t.Errorf("row %d has no harness CPU while a component is blocked: %v", i, row)
		}
	}

	// It answers between ticks: the next tick takes the answer.
	unblock()
	hold(nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		m.mu.Lock()
		got := m.targets[1].got != nil
		m.mu.Unlock()
		if got || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	m.Tick(ctx, time.Unix(5, 0))
	s := m.Summary(nil)
	if s.Watch == nil || s.Watch.Events != 2*5000 {
		t.Errorf("summary events %+v, want %d: the late answer counts in the totals", s.Watch, 2*5000)
	}
	byName := map[string]results.ScrapeSummary{}
	for _, sc := range s.Scrapes {
		byName[sc.Component] = sc
	}
	f, sl := byName["agents-0"], byName["agents-1"]
	if f.Answered != 5 || f.Failed != 0 || f.MaxGapSeconds >= sl.MaxGapSeconds {
		t.Errorf("fast component %+v, want 5 answers and a smaller gap than the slow one's %+v", f, sl)
	}
	// The slow one: the first tick's answer, the blocked one, the last tick's.
	if sl.Answered != 3 || sl.Failed != 0 || sl.MaxGapSeconds < 2*wait.Seconds() {
		t.Errorf("slow component %+v, want 3 answers and a gap of at least %v", sl, 2*wait)
	}
}

// Levels such as the number of identities need no earlier answer: an API
// server that answers too late for its rates still gives its object count
// (at 1,000 agents in crd mode identities.count read 0 throughout, because
// the busy API server's answers were never on time for a rate).
func TestMeasurerLevelsFromALateAnswer(t *testing.T) {
	api := &metricsServer{}
	var delay atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(delay.Load()))
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	m := NewMeasurer(http.DefaultClient, nil)
	m.AddScrape("apiserver", srv.URL+"/metrics", "admin")
	page := func(ids int) string {
		return apiPage(10, 0, 0, 1, 0) + fmt.Sprintf(`# TYPE apiserver_storage_objects gauge
apiserver_storage_objects{resource="ciliumidentities.cilium.io"} %d
apiserver_storage_objects{resource="pods"} 20000
`, ids)
	}
	api.set(page(7))
	ctx := context.Background()
	if row := m.Tick(ctx, time.Unix(1, 0)); row[results.SeriesIdentities] != 7 {
		t.Errorf("first tick: identities.count = %v, want 7 (no earlier answer needed)", row[results.SeriesIdentities])
	}
	api.set(page(4321))
	delay.Store(int64(400 * time.Millisecond))
	row := m.Tick(ctx, time.Unix(2, 0))
	if _, ok := row["api.429.rate"]; ok {
		t.Fatalf("the late answer gave rates: %v", row)
	}
	if got := row[results.SeriesIdentities]; got != 4321 {
		t.Errorf("late answer: identities.count = %v, want 4321", got)
	}
}

// watchersPage is kube-apiserver v1.36's open watches by resource, beside
// a long-running request of another verb that must not count.
func watchersPage(byResource map[string]int) string {
	s := "# TYPE apiserver_longrunning_requests gauge\n"
	for _, r := range sortedKeys(byResource) {
		s += fmt.Sprintf("apiserver_longrunning_requests{component=\"apiserver\",group=\"\",resource=%q,scope=\"cluster\",subresource=\"\",verb=\"WATCH\",version=\"v1\"} %d\n", r, byResource[r])
	}
	s += "apiserver_longrunning_requests{component=\"apiserver\",group=\"\",resource=\"pods\",scope=\"namespace\",subresource=\"exec\",verb=\"CONNECT\",version=\"v1\"} 9\n"
	return s
}

// oldWatchersPage is apiserver_registered_watchers by kind, from a server
// that has that gauge instead.
func oldWatchersPage(byKind map[string]int) string {
	s := "# TYPE apiserver_registered_watchers gauge\n"
	for _, k := range sortedKeys(byKind) {
		s += fmt.Sprintf("apiserver_registered_watchers{group=\"\",kind=%q,version=\"v1\"} %d\n", k, byKind[k])
	}
	return s
}

func TestMeasurerWatchConnections(t *testing.T) {
	tests := []struct {
		name   string
		pages  []map[string]int // nil: a page without the family
		old    bool             // apiserver_registered_watchers by kind instead
		want   *results.WatchConnectionsSummary
		series []float64 // apiserver.watch.connections per tick (-1: absent)
	}{{
		name:  "peak, mean and each resource's peak",
		pages: []map[string]int{{"pods": 3, "ciliumidentities": 2}, {"pods": 4, "ciliumidentities": 0}, {"pods": 1, "ciliumidentities": 6}},
		// Sums 5, 4, 7 (the CONNECT requests left out); pods peaks at 4
		// in the second, ciliumidentities at 6 in the third.
		want:   &results.WatchConnectionsSummary{Peak: 7, Mean: 16.0 / 3, Samples: 3, ByResource: map[string]int64{"pods": 4, "ciliumidentities": 6}},
		series: []float64{5, 4, 7},
	}, {
		name:   "a server with apiserver_registered_watchers by kind",
		old:    true,
		pages:  []map[string]int{{"Pod": 3, "CiliumIdentity": 2}},
		want:   &results.WatchConnectionsSummary{Peak: 5, Mean: 5, Samples: 1, ByResource: map[string]int64{"Pod": 3, "CiliumIdentity": 2}},
		series: []float64{5},
	}, {
		name:   "a scrape without the family is not a sample of zero",
		pages:  []map[string]int{{"pods": 2}, nil, {"pods": 4}},
		want:   &results.WatchConnectionsSummary{Peak: 4, Mean: 3, Samples: 2, ByResource: map[string]int64{"pods": 4}},
		series: []float64{2, -1, 4},
	}, {
		name:   "no family at all",
		pages:  []map[string]int{nil, nil},
		series: []float64{-1, -1},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			api := &metricsServer{}
			as := httptest.NewServer(api)
			defer as.Close()
			m := NewMeasurer(as.Client(), nil)
			m.AddScrape("apiserver", as.URL+"/metrics", "admin")
			t0 := time.Unix(1000, 0)
			for i, p := range tc.pages {
				page := apiPage(10*(i+1), 0, 0, 0, 0)
				switch {
				case p != nil && tc.old:
					page += oldWatchersPage(p)
				case p != nil:
					page += watchersPage(p)
				}
				api.set(page)
				row := m.Tick(context.Background(), t0.Add(time.Duration(i)*time.Second))
				got, ok := row[results.SeriesAPIServerWatchConnections]
				if want := tc.series[i]; (want < 0) == ok || (ok && got != want) {
					t.Errorf("tick %d: series = %v (present %v), want %v", i, got, ok, want)
				}
			}
			s := m.Summary(nil)
			var got *results.WatchConnectionsSummary
			if s.Watch != nil {
				got = s.Watch.Connections
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateApprox(0, 1e-9)); diff != "" {
				t.Errorf("connections (-want +got):\n%s", diff)
			}
		})
	}
}

func meshAgentPage(failovers int, fallback float64) string {
	return fmt.Sprintf(`# TYPE stampede_agent_mesh_failovers_total counter
stampede_agent_mesh_failovers_total %d
# TYPE stampede_agent_mesh_fallback_seconds_total counter
stampede_agent_mesh_fallback_seconds_total %g
`, failovers, fallback)
}

// TestMeasurerMeshSummary: summary.mesh carries the probe's lags and the
// agents' failovers and fallback seconds over the mode, summed over
// shards; without the agents' counters they are 0 and agentMetrics false.
func TestMeasurerMeshSummary(t *testing.T) {
	for _, tc := range []struct {
		name                string
		first, last         [2]string
		failovers           int64
		fallback            float64
		agentMetrics, probe bool
	}{
		{name: "counters", first: [2]string{meshAgentPage(1, 2), meshAgentPage(0, 0)}, last: [2]string{meshAgentPage(4, 12.5), meshAgentPage(2, 3)},
			failovers: 5, fallback: 13.5, agentMetrics: true, probe: true},
		{name: "no counters", first: [2]string{agentPage(1, 0, 0), agentPage(1, 0, 0)}, last: [2]string{agentPage(2, 0, 0), agentPage(2, 0, 0)}, probe: true},
		{name: "no probe: no mesh", first: [2]string{meshAgentPage(1, 2), ""}, last: [2]string{meshAgentPage(4, 12.5), ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var shards [2]*metricsServer
			m := NewMeasurer(http.DefaultClient, nil)
			for i := range shards {
				shards[i] = &metricsServer{}
				srv := httptest.NewServer(shards[i])
				defer srv.Close()
				m.AddScrape(fmt.Sprintf("agents-%d", i), srv.URL+"/metrics", "admin")
			}
			if tc.probe {
				mp := &MeshProbe{cfg: MeshProbeConfig{Replicas: []string{"r0", "r1"}}, lags: [][]float64{{0.1, 0.3}, {0.2}}, last: []float64{0.3}, errs: []int64{0, 1}, allErrs: 1, seen: []int64{4, 2}}
				m.SetMeshProbe(mp)
			}
			for tick, pages := range [][2]string{tc.first, tc.last} {
				for i := range shards {
					shards[i].set(pages[i])
				}
				m.Tick(context.Background(), time.Unix(int64(1000+tick), 0))
			}
			got := m.Summary(nil).Mesh
			if !tc.probe {
				if got != nil {
					t.Errorf("mesh = %+v without a probe", got)
				}
				return
			}
			want := &results.MeshSummary{
				Replicas: 2, Failovers: tc.failovers, FallbackAgentSeconds: tc.fallback, AgentMetrics: tc.agentMetrics, ProbeEventsPerAgent: 4,
				MirrorLag: results.MirrorLagSummary{
					LagStats: results.LagStats{P50: 0.3, P90: 0.3, P99: 0.3, Max: 0.3, Count: 1, Errors: 1},
					PerReplica: []results.ReplicaLag{
						{Replica: 0, LagStats: results.LagStats{P50: 0.1, P90: 0.3, P99: 0.3, Max: 0.3, Count: 2}},
						{Replica: 1, LagStats: results.LagStats{P50: 0.2, P90: 0.2, P99: 0.2, Max: 0.2, Count: 1, Errors: 1}},
					},
				},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("mesh (-want +got):\n%s", diff)
			}
		})
	}
}
