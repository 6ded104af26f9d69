package fakeapi

import (
	"context"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-sim/stampede/internal/capacity"
)

// budget is the virtual CPU of a kube-apiserver (with its etcd) of cores
// cores. Work is served round robin in slices of at most quantum
// CPU-seconds, as the Go scheduler serves a process's goroutines (each
// request, and each watcher's write, is one): a runnable goroutine waits
// in a first-in first-out run queue, runs until it blocks or has run for
// 10 ms, when the scheduler preempts it and puts it at the back of the
// queue (runtime/proc.go, forcePreemptNS and sysmon's retake, Go 1.26).
// So a request that needs less than a slice (a GET, a write) waits for
// the work queued before it, once, and a LIST that needs many slices
// waits for the queue once per slice: on a saturated server a large LIST
// slows down far more than a small GET. No piece is done faster than one
// core would do it alone. What is in service is bounded by API Priority
// and Fairness's seats, which requests hold while they are served, as on
// kube-apiserver.
//
// Slices are served one after the other at the rate of cores CPU-seconds
// per second (a fluid server: with 2 cores a slice takes half its
// CPU-seconds of wall time).
type budget struct {
	cores   float64
	profile *capacity.Profile
	now     func() time.Time

	mu      sync.Mutex
	queue   []*job    // run queue; queue[0] is in service
	headEnd time.Time // when queue[0]'s current slice ends
	timer   *time.Timer

	cpu     *prometheus.CounterVec // modelled CPU-seconds by kind
	backlog prometheus.GaugeFunc
}

// quantum is the longest a goroutine runs before the Go scheduler
// preempts it (runtime/proc.go forcePreemptNS, Go 1.26). It is an upper
// bound of a slice: a request that blocks (on etcd, on a full HTTP/2
// flow-control window) yields sooner.
const quantum = 0.010

// job is one piece of work in the run queue.
type job struct {
	left      float64       // CPU-seconds still to serve
	done      chan struct{} // closed when served; nil: nobody waits
	notBefore time.Time     // arrival plus cost: no faster than one core
}

func newBudget(c *Capacity, now func() time.Time, reg prometheus.Registerer) (*budget, error) {
	b := &budget{cores: c.Cores, profile: c.Profile, now: now}
	b.cpu = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: capacity.ModelledCPUMetric,
		Help: "CPU-seconds the capacity model charged (kube-apiserver and etcd as the calibration profile prices them), by kind: request, watch, background or metrics.",
	}, []string{"kind"})
	b.backlog = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "stampede_fakeapi_modelled_backlog_seconds",
		Help: "How far the capacity model's virtual CPU is behind: the work in its run queue, in seconds of all its cores.",
	}, b.backlogSeconds)
	for _, c := range []prometheus.Collector{b.cpu, b.backlog} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// slice is the wall time the head's next slice takes.
func (b *budget) slice() time.Duration {
	return seconds(math.Min(quantum, b.queue[0].left) / b.cores)
}

// advance serves the slices that end by now. b.mu is held.
func (b *budget) advance(now time.Time) {
	for len(b.queue) > 0 && !b.headEnd.After(now) {
		head := b.queue[0]
		head.left -= math.Min(quantum, head.left)
		b.queue = b.queue[1:]
		end := b.headEnd
		if head.left > 1e-12 {
			b.queue = append(b.queue, head) // preempted: back of the queue
		} else if head.done != nil {
			close(head.done)
		}
		if len(b.queue) > 0 {
			b.headEnd = end.Add(b.slice())
		}
	}
}

// schedule sets the timer for the end of the head's slice. b.mu is held.
func (b *budget) schedule() {
	if len(b.queue) == 0 {
		if b.timer != nil {
			b.timer.Stop()
		}
		return
	}
	d := b.headEnd.Sub(b.now())
	if b.timer == nil {
		b.timer = time.AfterFunc(d, b.tick)
		return
	}
	b.timer.Reset(d)
}

func (b *budget) tick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(b.now())
	b.schedule()
}

// start queues cost CPU-seconds of kind and returns its job (nil for no
// cost); wait: somebody waits for it.
func (b *budget) start(kind string, cost float64, wait bool) *job {
	if cost <= 0 {
		return nil
	}
	b.cpu.WithLabelValues(kind).Add(cost)
	now := b.now()
	j := &job{left: cost, notBefore: now.Add(seconds(cost))}
	if wait {
		j.done = make(chan struct{})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(now)
	b.queue = append(b.queue, j)
	if len(b.queue) == 1 {
		b.headEnd = now.Add(b.slice())
	}
	b.schedule()
	return j
}

// charge queues cost CPU-seconds of kind that nobody waits for (the
// background work): it takes its turns like any other.
func (b *budget) charge(kind string, cost float64) { b.start(kind, cost, false) }

// wait queues cost CPU-seconds of kind and returns when they are served
// (and not before one core alone could serve them) or ctx ends; work whose
// request was cancelled leaves the queue.
func (b *budget) wait(ctx context.Context, kind string, cost float64) {
	j := b.start(kind, cost, true)
	if j == nil {
		return
	}
	select {
	case <-j.done:
	case <-ctx.Done():
		b.remove(j)
		return
	}
	if d := j.notBefore.Sub(b.now()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// remove takes a cancelled job out of the run queue.
func (b *budget) remove(j *job) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.advance(now)
	for i, q := range b.queue {
		if q != j {
			continue
		}
		b.queue = append(b.queue[:i], b.queue[i+1:]...)
		if i == 0 && len(b.queue) > 0 {
			b.headEnd = now.Add(b.slice())
		}
		b.schedule()
		return
	}
}

// backlogSeconds is the work in the run queue over the server's cores.
func (b *budget) backlogSeconds() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(b.now())
	var left float64
	for _, j := range b.queue {
		left += j.left
	}
	return left / b.cores
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func kib(n int64) float64 { return float64(max(n, 0)) / 1024 }

// requestCost is what a request of verb on resource costs with objects
// objects and bytes of request and response bodies; verbs without a
// profile entry (discovery, deletecollection) are priced as the nearest
// one.
func (b *budget) requestCost(verb, resource string, objects int, bytes int64) float64 {
	switch verb {
	case "watch":
		verb = "list" // a watch's initial events are its list
	case "deletecollection":
		verb = "delete"
	case "get", "list", "create", "update", "patch", "delete":
	default:
		verb = "get"
	}
	return b.profile.RequestSeconds(verb, resource, objects, kib(bytes))
}

// backgroundTick is how often the background work is charged.
const backgroundTick = 250 * time.Millisecond

// runBackground charges the profile's idle CPU rate until ctx ends: the
// work kube-apiserver and etcd do with no request in flight (watch-cache
// bookmarks, lease renewals, etcd's housekeeping) takes its share of the
// server's cores whether or not the simulated cluster asks for anything.
func (b *budget) runBackground(ctx context.Context) {
	rate := b.profile.Background.Value
	if rate <= 0 {
		return
	}
	t := time.NewTicker(backgroundTick)
	defer t.Stop()
	last := b.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := b.now()
			b.charge("background", rate*now.Sub(last).Seconds())
			last = now
		}
	}
}

// chargeScrape charges one scrape of the server's /metrics at what a
// scrape of kube-apiserver's and etcd's costs them: the harness scrapes
// every API server it measures once a second, and on kube-apiserver that
// is work the server does (its metric registry holds thousands of series).
func (b *budget) chargeScrape(ctx context.Context) {
	b.wait(ctx, "metrics", b.profile.MetricsScrape.Value)
}

// isMutating tells the verbs charged before they run: a write's cost is
// spent before it commits (decoding, admission, the etcd transaction), so
// its watch event must not go out before the write has been served.
func isMutating(verb string) bool {
	switch verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// chargeRequest serves serve within the budget: a write is charged before
// it runs (its bodies estimated as twice the request's Content-Length),
// a read after, by the objects and bytes it returned. Watches charge
// their initial events and deliveries themselves (serveWatch).
func (b *budget) chargeRequest(w http.ResponseWriter, r *http.Request, rq *request, serve func()) {
	if rq.verb == "watch" {
		serve()
		return
	}
	if isMutating(rq.verb) {
		b.wait(r.Context(), "request", b.requestCost(rq.verb, rq.res.name, 1, 2*r.ContentLength))
		serve()
		return
	}
	serve()
	var size int64
	if rec, ok := w.(*recorder); ok {
		size = rec.size
	}
	b.wait(r.Context(), "request", b.requestCost(rq.verb, rq.res.name, max(rq.objects, 1), size))
}

// watchCharge prices an event one watcher writes: Deliver per watcher,
// and Encode once for all watchers of a live event (kube-apiserver wraps
// an event in a cachingObject while it dispatches it, which serializes it
// once per encoding and shares the bytes, k8s.io/apiserver
// pkg/storage/cacher/cacher.go dispatchEvent and caching_object.go,
// v0.36.3), but once per watcher for a replayed one: a watch that starts
// or resumes from an older resourceVersion is served from the watch
// cache's history, whose events carry no cached serialization (the same
// comment in dispatchEvent: serializations are dropped after dispatch).
func (b *budget) watchCharge(e *event, size int, replay bool) float64 {
	k := float64(size) / 1024
	cost := b.profile.Watch.DeliverSeconds(k)
	if replay || (e != nil && e.encoded.CompareAndSwap(false, true)) {
		cost += b.profile.Watch.EncodeSeconds(k)
	}
	return cost
}

// Watch channel sizes of kube-apiserver's watch cache
// (k8s.io/apiserver pkg/storage/cacher/watch_cache.go, v1.36,
// suggestedWatchChannelSize): about one second of the resource's events,
// at least 10, at most 10 for a watcher served by an indexed trigger (pods
// by spec.nodeName), 1000 for other watchers of an indexed resource, 100
// otherwise.
const (
	minWatchChanSize                        = 10
	maxWatchChanSizeWithIndexAndTrigger     = 10
	maxWatchChanSizeWithIndexWithoutTrigger = 1000
	maxWatchChanSizeWithoutIndex            = 100
	// eventFreshDuration is the watch cache's history window
	// (cacher.go DefaultEventFreshDuration: bookmark frequency + 15 s).
	eventFreshDuration = 75 * time.Second
)

// watchChanSize is the channel size kube-apiserver would give a watcher
// of st (indexed: served by the spec.nodeName trigger): the watch cache's
// capacity, which starts at 100 events and doubles while the cache holds
// less than eventFreshDuration of history (up to 100*1024), divided by
// eventFreshDuration in seconds (watch_cache.go, resizeCacheLocked and
// suggestedWatchChannelSize, v1.36).
func watchChanSize(st *store, indexed bool) int {
	events := st.eventRate.recent(st.now(), st.head.Load())
	capacity := 100
	for capacity < events && capacity < 100*1024 {
		capacity *= 2
	}
	size := max(int(math.Ceil(float64(capacity)/eventFreshDuration.Seconds())), minWatchChanSize)
	switch {
	case st.res.name == "pods" && indexed:
		return min(size, maxWatchChanSizeWithIndexAndTrigger)
	case st.res.name == "pods":
		return min(size, maxWatchChanSizeWithIndexWithoutTrigger)
	default:
		return min(size, maxWatchChanSizeWithoutIndex)
	}
}

// rateWindow counts a store's events over the last eventFreshDuration.
type rateWindow struct {
	mu        sync.Mutex
	start     time.Time
	startHead uint64
	last      int // events of the last full window
}

// recent is the number of events in about the last eventFreshDuration.
func (w *rateWindow) recent(now time.Time, head uint64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.start.IsZero() {
		w.start, w.startHead = now, head
	}
	if now.Sub(w.start) >= eventFreshDuration {
		w.last = int(head - w.startHead)
		w.start, w.startHead = now, head
	}
	return max(w.last, int(head-w.startHead))
}

// tooFarBehind tells whether, with the capacity model, a watcher must be
// closed after its batch waited for the budget while arrived events came
// in: those are what would have queued in kube-apiserver's cacheWatcher,
// which buffers chanSize events in its input channel and chanSize in its
// result channel; when both are full the dispatcher waits at most its
// timeout budget (0.1 s) and terminates the watcher (k8s.io/apiserver
// pkg/storage/cacher/cache_watcher.go, cacheWatcher.add, v1.36), and the
// client re-lists and re-watches. Only the modelled wait counts, not the
// time the fake itself takes to write or its batching window, so that the
// outcome depends on the budget and not on the machine the fake runs on.
// Indexed watchers are woken only for their node's events; their backlog
// is not tracked.
func (s *Server) tooFarBehind(st *store, indexed bool, arrived uint64) bool {
	if s.budget == nil || indexed || arrived == 0 {
		return false
	}
	return arrived > uint64(2*watchChanSize(st, indexed))
}
