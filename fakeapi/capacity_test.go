package fakeapi

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/internal/capacity"
)

// testProfile is the capacity package's hand-written placeholder (tests
// only) with the given costs.
func testProfile(t testing.TB, getBase, deliver float64) *capacity.Profile {
	t.Helper()
	p, err := capacity.Load("../internal/capacity/testdata/placeholder.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for verb, c := range p.Requests {
		c.Base.Value = 1e-6
		c.PerObject.Value, c.PerKiB.Value = 1e-9, 1e-9
		if verb == "get" {
			c.Base.Value = getBase
		}
		p.Requests[verb] = c
	}
	p.Watch.Encode.Value, p.Watch.EncodePerKiB.Value, p.Watch.DeliverPerKiB.Value = 1e-9, 1e-9, 1e-9
	p.Watch.Deliver.Value = deliver
	return p
}

// TestCapacityBoundsRequestLatency runs 40 GETs of 50 ms of CPU each from 8
// clients against a server of 2 cores: the budget cannot serve them in less
// than 40*0.05/2 = 1 s, and none faster than its own 50 ms. Without the
// model the same load takes a fraction of that.
func TestCapacityBoundsRequestLatency(t *testing.T) {
	const (
		clientsN, each = 8, 5
		cost, cores    = 0.05, 2.0
		floor          = clientsN * each * cost / cores
	)
	run := func(cfg Config) (time.Duration, time.Duration) {
		s := start(t, cfg)
		cs, _ := clients(t, s)
		var wg sync.WaitGroup
		var mu sync.Mutex
		fastest := time.Hour
		begin := time.Now()
		for range clientsN {
			wg.Go(func() {
				for range each {
					t0 := time.Now()
					if _, err := cs.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					fastest = min(fastest, time.Since(t0))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(begin)
		if cfg.Capacity != nil {
			if got := metricValue(t, s, "stampede_fakeapi_modelled_cpu_seconds_total", `kind="request"`); got < clientsN*each*cost {
				t.Errorf("modelled request CPU = %v s, want >= %v", got, clientsN*each*cost)
			}
		}
		return elapsed, fastest
	}
	on, fastestOn := run(Config{Capacity: &Capacity{Cores: cores, Profile: testProfile(t, cost, 1e-6)}})
	if on < time.Duration(floor*float64(time.Second)) {
		t.Errorf("with capacity: %d GETs took %s, less than the budget's %v s", clientsN*each, on, floor)
	}
	if fastestOn < 50*time.Millisecond {
		t.Errorf("with capacity: a GET of 50 ms of CPU took %s", fastestOn)
	}
	off, _ := run(Config{})
	if off >= time.Duration(floor*float64(time.Second)) {
		t.Errorf("without capacity: %d GETs took %s, as long as with the model (%s)", clientsN*each, off, on)
	}
	t.Logf("40 GETs: %s with 2 cores of capacity, %s without", on, off)
}

// TestCapacitySlowWatcherIsTerminated checks kube-apiserver's cacheWatcher
// behaviour under the model: a watcher whose deliveries the budget cannot
// keep up with falls more than 2 channel sizes (2*10 events) behind and is
// closed; without the model the same watcher gets every event.
func TestCapacitySlowWatcherIsTerminated(t *testing.T) {
	for _, tc := range []struct {
		name       string
		capacity   *Capacity
		terminated bool
	}{
		{"capacity", &Capacity{Cores: 1, Profile: testProfile(t, 1e-6, 1)}, true},
		{"no capacity", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, Config{Capacity: tc.capacity, WatchBatchWindow: -1})
			tr, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: s.CAData()}})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequestWithContext(t.Context(), "GET", s.URL()+"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1", nil)
			req.Header.Set("Authorization", "Bearer "+s.AdminToken())
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			waitFor(t, func() bool { return metricValue(t, s, "apiserver_longrunning_requests", `resource="configmaps"`) == 1 })
			st := s.storeFor("", "v1", "configmaps")
			appendN := func(from, n int) { appendConfigMaps(st, "c", from, n) }
			// One event: with the model its delivery costs the watcher a
			// second of the single core.
			appendN(0, 1)
			if tc.capacity != nil {
				waitFor(t, func() bool {
					return metricValue(t, s, "stampede_fakeapi_modelled_cpu_seconds_total", `kind="watch"`) >= 1
				})
			}
			// 30 more while it waits: more than its 2*10 buffered events.
			appendN(1, 30)
			got := 0
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(nil, 1<<20)
			for got < 31 && sc.Scan() {
				got++
			}
			terminated := metricValue(t, s, "apiserver_terminated_watchers_total", `resource="configmaps"`) == 1
			if terminated != tc.terminated || (tc.terminated && got >= 31) || (!tc.terminated && got != 31) {
				t.Errorf("watcher got %d of 31 events, terminated %v; want terminated %v", got, terminated, tc.terminated)
			}
		})
	}
}

// TestCapacityOverloadIsRejectedByAPF sends one user's GETs at a steady
// 200/s to a server whose global-default level has a seat or two (server
// limit 1). Without the model each is served in milliseconds and nothing
// queues; with a budget that serves 2 GETs/s (0.5 CPU-s each, 1 core) the
// requests hold their seats while they wait for it, the flow's 6 queues of
// 50 fill in about 1.5 s, and APF rejects what comes after with 429
// (queue-full): overload shows as kube-apiserver shows it.
func TestCapacityOverloadIsRejectedByAPF(t *testing.T) {
	for _, tc := range []struct {
		name     string
		capacity *Capacity
	}{
		{"capacity", &Capacity{Cores: 1, Profile: testProfile(t, 0.5, 1e-6)}},
		{"no capacity", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := Token{Token: "u-tok", User: "someone"}
			s := start(t, Config{Tokens: []Token{u}, MaxRequestsInflight: 1, MaxMutatingRequestsInflight: -1, Capacity: tc.capacity})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			client := httpClient(t, s)
			var wg sync.WaitGroup
			var rejected atomic.Int64
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && rejected.Load() == 0; <-tick.C {
				wg.Go(func() {
					req, _ := http.NewRequestWithContext(ctx, "GET", s.URL()+"/api/v1/namespaces/default", nil)
					req.Header.Set("Authorization", "Bearer "+u.Token)
					resp, err := client.Do(req)
					if err != nil {
						return // cancelled below
					}
					_ = resp.Body.Close()
					if resp.StatusCode == http.StatusTooManyRequests {
						rejected.Add(1)
					}
				})
			}
			cancel()
			wg.Wait()
			if got := rejected.Load() > 0; got != (tc.capacity != nil) {
				t.Errorf("429s: %d, want them only with the model", rejected.Load())
			}
		})
	}
}

// TestCapacityReplayEncodesPerWatcher: kube-apiserver serializes a live
// event once for all its watchers, but a watch that starts from an older
// resourceVersion replays history whose events carry no shared
// serialization, so each watcher pays the encoding (cacher.go
// dispatchEvent, v0.36.3). Two watchers replaying 5 events cost 10
// encodings; 3 live events to the same two watchers cost 3.
func TestCapacityReplayEncodesPerWatcher(t *testing.T) {
	const encode = 0.01
	p := testProfile(t, 1e-6, 1e-9)
	p.Watch.Encode.Value = encode
	s := start(t, Config{Capacity: &Capacity{Cores: 64, Profile: p}, WatchBatchWindow: -1})
	st := s.storeFor("", "v1", "configmaps")
	appendN := func(from, n int) { appendConfigMaps(st, "r", from, n) }
	from := st.rv.Load()
	appendN(0, 5)
	tr, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: s.CAData()}})
	if err != nil {
		t.Fatal(err)
	}
	var scanners []*bufio.Scanner
	for range 2 {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", fmt.Sprintf("%s/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%d", s.URL(), from), nil)
		req.Header.Set("Authorization", "Bearer "+s.AdminToken())
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		scanners = append(scanners, sc)
	}
	read := func(n int) {
		for _, sc := range scanners {
			for range n {
				if !sc.Scan() {
					t.Fatalf("watch ended early: %v", sc.Err())
				}
			}
		}
	}
	watchCPU := func() float64 { return metricValue(t, s, capacity.ModelledCPUMetric, `kind="watch"`) }
	read(5)
	waitFor(t, func() bool { return watchCPU() >= 10*encode*0.999 })
	if got := watchCPU(); got > 10.5*encode {
		t.Fatalf("replaying 5 events to 2 watchers charged %v s of watch CPU, want 10 encodings (%v s)", got, 10*encode)
	}
	appendN(5, 3)
	read(3)
	waitFor(t, func() bool { return watchCPU() >= 13*encode*0.999 })
	if got := watchCPU(); got > 13.5*encode {
		t.Errorf("3 live events to 2 watchers charged %v s more, want 3 encodings (%v s): a live event is encoded once", got-10*encode, 3*encode)
	}
}

// appendConfigMaps appends n ConfigMaps named <prefix><from>... to st as
// ADDED events, as a write would, without going through a request.
func appendConfigMaps(st *store, prefix string, from, n int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := from; i < from+n; i++ {
		rv := st.rv.Add(1)
		name := fmt.Sprintf("%s%d", prefix, i)
		e := newEvent(eventAdded, fmt.Appendf(nil, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q,"namespace":"default","resourceVersion":"%d"}}`, name, rv), "default", name, nil, "", rv, nil)
		st.objs[e.obj.key] = e.obj
		st.appendLocked(e)
	}
}

// TestCapacityResourceFactorScalesRequests: a profile that measured
// ConfigMap creates at three times the pooled create cost charges them
// three times as much as ServiceAccount creates, for which it has no factor.
func TestCapacityResourceFactorScalesRequests(t *testing.T) {
	p := testProfile(t, 1e-6, 1e-6)
	c := p.Requests["create"]
	c.Base.Value = 0.01
	p.Requests["create"] = c
	p.Resources = map[string]map[string]capacity.Coefficient{"configmaps": {"create": {Value: 3, StdErr: 0.1}}}
	s := start(t, Config{Capacity: &Capacity{Cores: 8, Profile: p}})
	cs, _ := clients(t, s)
	charged := func(create func() error) float64 {
		before := metricValue(t, s, capacity.ModelledCPUMetric, `kind="request"`)
		if err := create(); err != nil {
			t.Fatal(err)
		}
		return metricValue(t, s, capacity.ModelledCPUMetric, `kind="request"`) - before
	}
	cm := charged(func() error {
		_, err := cs.CoreV1().ConfigMaps("default").Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{})
		return err
	})
	sec := charged(func() error {
		_, err := cs.CoreV1().ServiceAccounts("default").Create(t.Context(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{})
		return err
	})
	if ratio := cm / sec; ratio < 2.9 || ratio > 3.1 {
		t.Errorf("configmap create charged %v s, serviceaccount create %v s: ratio %.2f, want 3 (the configmaps factor)", cm, sec, ratio)
	}
}

// TestCapacityChargesScrapesAndBackground: every scrape of /metrics is
// charged at the profile's metricsScrape cost except the validation
// meter's, and the idle rate is charged while the server runs.
func TestCapacityChargesScrapesAndBackground(t *testing.T) {
	p := testProfile(t, 1e-6, 1e-6)
	p.MetricsScrape = capacity.Coefficient{Value: 0.02}
	p.Background = capacity.Coefficient{Value: 0.5}
	s := start(t, Config{Capacity: &Capacity{Cores: 2, Profile: p}})
	scrape := func(meter bool) {
		req, err := http.NewRequestWithContext(t.Context(), "GET", s.URL()+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		if meter {
			req.Header.Set(capacity.MeterHeader, "1")
		}
		tr, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: s.CAData()}})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	for range 3 {
		scrape(false)
	}
	scrape(true)
	if got := metricValue(t, s, capacity.ModelledCPUMetric, `kind="metrics"`); got < 0.0599 || got > 0.0601 {
		t.Errorf("modelled scrape CPU = %v s after 3 scrapes and one meter reading, want 0.06", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for metricValue(t, s, capacity.ModelledCPUMetric, `kind="background"`) < 0.25 {
		if time.Now().After(deadline) {
			t.Fatalf("modelled background CPU = %v s after 5 s at 0.5 cores, want >= 0.25",
				metricValue(t, s, capacity.ModelledCPUMetric, `kind="background"`))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCapacityServesRoundRobin: on a 1-core server a 5 ms GET that
// arrives just after a 1 s LIST is done after the LIST's first 10 ms slice
// and its own 5 ms (15 ms), not after the whole LIST as in arrival order;
// the LIST is done at 1.005 s. On 2 cores slices take half the time, but
// the LIST is still not done before one core alone would do it (1 s).
// The clock is the test's.
func TestCapacityServesRoundRobin(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	at := func(d time.Duration) { mu.Lock(); now = time.Unix(1000, 0).Add(d); mu.Unlock() }
	done := func(j *job) bool {
		select {
		case <-j.done:
			return true
		default:
			return false
		}
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		cores                                    float64
		getOpenAt, getDone, listOpenAt, listDone time.Duration
	}{
		{cores: 1, getOpenAt: 14 * ms, getDone: 16 * ms, listOpenAt: 1004 * ms, listDone: 1006 * ms},
		{cores: 2, getOpenAt: 7 * ms, getDone: 8 * ms, listOpenAt: 502 * ms, listDone: 503 * ms},
	} {
		at(0)
		b, err := newBudget(&Capacity{Cores: tc.cores, Profile: testProfile(t, 1e-6, 1e-6)}, clock, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		list := b.start("request", 1.0, true)
		get := b.start("request", 0.005, true)
		step := func(d time.Duration) {
			at(d)
			b.mu.Lock()
			b.advance(clock())
			b.mu.Unlock()
		}
		step(tc.getOpenAt)
		if done(get) {
			t.Errorf("%v cores: the GET is done at %v, before the LIST's slice and its own were served", tc.cores, tc.getOpenAt)
		}
		step(tc.getDone)
		if !done(get) {
			t.Errorf("%v cores: the GET is not done at %v: it waits behind the whole LIST instead of its first slice", tc.cores, tc.getDone)
		}
		step(tc.listOpenAt)
		if done(list) {
			t.Errorf("%v cores: the LIST is done at %v", tc.cores, tc.listOpenAt)
		}
		step(tc.listDone)
		if !done(list) {
			t.Errorf("%v cores: the LIST is not done at %v", tc.cores, tc.listDone)
		}
		if want := time.Unix(1000, 0).Add(time.Second); !list.notBefore.Equal(want) {
			t.Errorf("%v cores: the LIST may end at %v, want not before %v (one core alone)", tc.cores, list.notBefore, want)
		}
		if got := b.backlogSeconds(); got != 0 {
			t.Errorf("%v cores: backlog %v s with nothing queued", tc.cores, got)
		}
	}
}
