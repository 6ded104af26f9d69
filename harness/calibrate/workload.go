package calibrate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Workload is the fixed, seeded sequence of requests calibrate sends.
type Workload struct {
	// Seed fixes every object's content and the order of the gets.
	Seed uint64
	// Sizes are the object sizes: the padding (bytes of an annotation)
	// added to the natural object.
	Sizes []ObjectSize
	// ListSizes are the numbers of objects a LIST returns, in increasing
	// order: the objects are created up to each size in turn, then listed.
	ListSizes []int
	// ListObjects is about how many objects every list phase returns in
	// total (its number of LISTs is ListObjects / size, at least 3).
	ListObjects int
	// Requests is the number of GETs, UPDATEs and PATCHes per kind and size
	// (at most the largest ListSize: every object is written once per
	// phase).
	Requests int
	// Watchers are the numbers of concurrent watchers of the watch phases
	// (a phase without watchers is always added as the reference).
	Watchers []int
	// WatchEvents is the number of events (updates) per watch phase.
	WatchEvents int
	// Concurrency is the number of requests in flight.
	Concurrency int
	// Scrapes is the number of scrapes of kube-apiserver's and etcd's
	// /metrics in each of the three scrape phases (0: none, and the
	// profile has no metricsScrape cost).
	Scrapes int
}

// ObjectSize is one object size of the workload.
type ObjectSize struct {
	Name string
	Pad  int
}

// DefaultWorkload is what `stampede calibrate` runs: about 4 minutes on a
// 2-core machine.
func DefaultWorkload() Workload {
	return Workload{
		Seed:        1,
		Sizes:       []ObjectSize{{"small", 0}, {"large", 6 << 10}},
		ListSizes:   []int{10, 100, 1000},
		ListObjects: 10000,
		Requests:    500,
		Watchers:    []int{1, 25, 50, 100, 200},
		WatchEvents: 300,
		Concurrency: 8,
		Scrapes:     20,
	}
}

// ShortWorkload is a small version for tests (under a minute).
func ShortWorkload() Workload {
	return Workload{
		Seed:        1,
		Sizes:       []ObjectSize{{"small", 0}, {"large", 6 << 10}},
		ListSizes:   []int{5, 20, 60},
		ListObjects: 600,
		Requests:    60,
		Watchers:    []int{1, 50, 200},
		WatchEvents: 60,
		Concurrency: 8,
		Scrapes:     5,
	}
}

// Validate checks w and names the field that is wrong.
func (w Workload) Validate() error {
	switch {
	case len(w.Sizes) < 2:
		return fmt.Errorf("workload.sizes: need at least 2 object sizes to separate per-request from per-KiB cost, got %d", len(w.Sizes))
	case len(w.ListSizes) < 2:
		return fmt.Errorf("workload.listSizes: need at least 2, got %d", len(w.ListSizes))
	case !sort.IntsAreSorted(w.ListSizes) || w.ListSizes[0] <= 0:
		return fmt.Errorf("workload.listSizes: must be positive and increasing, got %v", w.ListSizes)
	case w.ListObjects <= 0:
		return fmt.Errorf("workload.listObjects: must be positive, got %d", w.ListObjects)
	case w.Requests <= 0 || w.Requests > w.ListSizes[len(w.ListSizes)-1]:
		return fmt.Errorf("workload.requests: must be in 1..%d (the largest list size), got %d", w.ListSizes[len(w.ListSizes)-1], w.Requests)
	case len(w.Watchers) < 2:
		return fmt.Errorf("workload.watchers: need at least 2 watcher counts, got %d", len(w.Watchers))
	case w.WatchEvents <= 0:
		return fmt.Errorf("workload.watchEvents: must be positive, got %d", w.WatchEvents)
	case w.Scrapes < 0:
		return fmt.Errorf("workload.scrapes: must not be negative, got %d", w.Scrapes)
	case w.Concurrency <= 0:
		return fmt.Errorf("workload.concurrency: must be positive, got %d", w.Concurrency)
	}
	for i, n := range w.Watchers {
		if n <= 0 {
			return fmt.Errorf("workload.watchers[%d]: must be positive, got %d", i, n)
		}
	}
	return nil
}

// Phase is one measured step of the workload.
type Phase struct {
	// Verb is get, list, create, update, patch, delete or watch.
	Verb     string `json:"verb"`
	Resource string `json:"resource"`
	Size     string `json:"size"`
	// Requests sent, Objects they returned (a LIST's items; 1 for the
	// others) and Bytes of their request and response bodies.
	Requests int   `json:"requests"`
	Objects  int64 `json:"objects"`
	Bytes    int64 `json:"bytes"`
	// Watchers, Events each watcher received, and EventBytes one watcher
	// read in all (watch phases; the requests are the updates that made
	// the events).
	Watchers   int   `json:"watchers,omitempty"`
	Events     int   `json:"events,omitempty"`
	EventBytes int64 `json:"eventBytes,omitempty"`
	// Replay marks a watch phase whose watchers start from a
	// resourceVersion older than its events: kube-apiserver replays them
	// from the watch cache's history, encoding them once per watcher.
	// Requests are then the watch requests; the updates that made the
	// events ran before the phase and are not in it.
	Replay bool `json:"replay,omitempty"`
	// Wall is the phase's duration; GrossCPU the CPU-seconds kube-apiserver
	// and etcd used in it; CPU the same less the idle baseline.
	Wall     time.Duration `json:"wall"`
	GrossCPU float64       `json:"grossCPU"`
	CPU      float64       `json:"cpu"`
}

// KiB is the phase's request and response bodies in KiB.
func (p Phase) KiB() float64 { return float64(p.Bytes) / 1024 }

// EventKiB is the size of one watch event as a watcher read it.
func (p Phase) EventKiB() float64 {
	if p.Events == 0 {
		return 0
	}
	return float64(p.EventBytes) / 1024 / float64(p.Events)
}

func (p Phase) String() string {
	s := fmt.Sprintf("%s %s %s x%d", p.Verb, p.Resource, p.Size, p.Requests)
	if p.Verb == "list" && p.Requests > 0 {
		s += fmt.Sprintf(" (%d objects each)", p.Objects/int64(p.Requests))
	}
	if p.Verb == "watch" {
		s += fmt.Sprintf(" to %d watchers", p.Watchers)
		if p.Replay {
			s += fmt.Sprintf(", replaying %d events", p.Events)
		}
	}
	return s
}

// runner executes the workload against one API server.
type runner struct {
	w      Workload
	c      *client
	caFile string
	meter  *cpuMeter
	rng    *rand.Rand
	// onPhase is told of every finished phase.
	onPhase func(Phase)
	// objects holds the last answer for every object, for updates.
	objects map[string]map[string]any
	mu      sync.Mutex
	phases  []Phase
}

// measure runs fn as one phase and records it.
func (r *runner) measure(ctx context.Context, p Phase, fn func(ctx context.Context, p *Phase) error) error {
	c0, err := r.meter.read()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := fn(ctx, &p); err != nil {
		return fmt.Errorf("phase %s: %w", p, err)
	}
	c1, err := r.meter.settle(ctx, 3*time.Second)
	if err != nil {
		return err
	}
	p.Wall = time.Since(t0)
	p.GrossCPU = (c1 - c0).Seconds()
	p.CPU = p.GrossCPU - r.meter.baseline*p.Wall.Seconds()
	r.phases = append(r.phases, p)
	if r.onPhase != nil {
		r.onPhase(p)
	}
	return nil
}

// parallel runs fn(i) for i in [0, n) on the workload's concurrency and adds
// what they return (objects, bytes) into p.
func (r *runner) parallel(ctx context.Context, n int, p *Phase, fn func(ctx context.Context, i int) (int64, int64, error)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg             sync.WaitGroup
		mu             sync.Mutex
		objects, bytes int64
		firstErr       error
	)
	for range min(r.w.Concurrency, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				o, b, err := fn(ctx, i)
				mu.Lock()
				objects += o
				bytes += b
				if err != nil && firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
loop:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break loop
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	p.Requests += n
	p.Objects += objects
	p.Bytes += bytes
	return firstErr
}

// store records the server's answer for an object.
func (r *runner) store(path string, body []byte) error {
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	r.mu.Lock()
	r.objects[path] = obj
	r.mu.Unlock()
	return nil
}

// set is the objects of one kind and size.
type set struct {
	k     kind
	size  ObjectSize
	ns    string
	names []string
}

func (s *set) path(i int) string { return s.k.collection(s.ns) + "/" + s.names[i] }

func (s *set) name(i int) string {
	if s.k.numericNames {
		return strconv.Itoa(1_000_000 + 100_000*sizeIndex(s.size) + i)
	}
	return fmt.Sprintf("calib-%s-%d", s.size.Name, i)
}

func sizeIndex(s ObjectSize) int {
	if s.Pad == 0 {
		return 1
	}
	return 2 + s.Pad%7
}

// create creates objects [len(names), n) of the set.
func (r *runner) create(ctx context.Context, s *set, n int) error {
	from := len(s.names)
	bodies := make([][]byte, n-from)
	for i := from; i < n; i++ {
		name := s.name(i)
		if s.k.resource == "namespaces" {
			name = fmt.Sprintf("calib-ns-%s-%d", s.size.Name, i)
		}
		s.names = append(s.names, name)
		b, err := json.Marshal(s.k.object(r.rng, name, s.ns, pad(r.rng, s.size.Pad)))
		if err != nil {
			return err
		}
		bodies[i-from] = b
	}
	return r.measure(ctx, Phase{Verb: "create", Resource: s.k.resource, Size: s.size.Name}, func(ctx context.Context, p *Phase) error {
		return r.parallel(ctx, len(bodies), p, func(ctx context.Context, i int) (int64, int64, error) {
			out, n, err := r.c.do(ctx, "POST", s.k.collection(s.ns), "application/json", bodies[i])
			if err != nil {
				return 0, 0, err
			}
			return 1, n, r.store(s.path(from+i), out)
		})
	})
}

// list lists the set's collection repeatedly.
func (r *runner) list(ctx context.Context, s *set) error {
	n := max(3, r.w.ListObjects/len(s.names))
	return r.measure(ctx, Phase{Verb: "list", Resource: s.k.resource, Size: s.size.Name}, func(ctx context.Context, p *Phase) error {
		return r.parallel(ctx, n, p, func(ctx context.Context, _ int) (int64, int64, error) {
			out, b, err := r.c.do(ctx, "GET", s.k.collection(s.ns), "", nil)
			if err != nil {
				return 0, 0, err
			}
			var l struct {
				Items []json.RawMessage `json:"items"`
			}
			if err := json.Unmarshal(out, &l); err != nil {
				return 0, 0, fmt.Errorf("decode list: %w", err)
			}
			return int64(len(l.Items)), b, nil
		})
	})
}

func (r *runner) get(ctx context.Context, s *set) error {
	idx := make([]int, r.w.Requests)
	for i := range idx {
		idx[i] = r.rng.IntN(len(s.names))
	}
	return r.measure(ctx, Phase{Verb: "get", Resource: s.k.resource, Size: s.size.Name}, func(ctx context.Context, p *Phase) error {
		return r.parallel(ctx, len(idx), p, func(ctx context.Context, i int) (int64, int64, error) {
			_, b, err := r.c.do(ctx, "GET", s.path(idx[i]), "", nil)
			return 1, b, err
		})
	})
}

// update PUTs objects [0, n) of the set once each with a new rev label.
func (r *runner) update(ctx context.Context, s *set, n, rev int, p *Phase) error {
	return r.parallel(ctx, n, p, func(ctx context.Context, i int) (int64, int64, error) {
		path := s.path(i)
		r.mu.Lock()
		obj := r.objects[path]
		r.mu.Unlock()
		if obj == nil {
			return 0, 0, fmt.Errorf("update %s: not created", path)
		}
		if err := bumpRevision(obj, rev); err != nil {
			return 0, 0, fmt.Errorf("update %s: %w", path, err)
		}
		body, err := json.Marshal(obj)
		if err != nil {
			return 0, 0, err
		}
		out, b, err := r.c.do(ctx, "PUT", path, "application/json", body)
		if err != nil {
			return 0, 0, err
		}
		return 1, b, r.store(path, out)
	})
}

func (r *runner) patch(ctx context.Context, s *set, rev int) error {
	return r.measure(ctx, Phase{Verb: "patch", Resource: s.k.resource, Size: s.size.Name}, func(ctx context.Context, p *Phase) error {
		return r.parallel(ctx, r.w.Requests, p, func(ctx context.Context, i int) (int64, int64, error) {
			out, b, err := r.c.do(ctx, "PATCH", s.path(i), "application/merge-patch+json", revisionPatch(rev))
			if err != nil {
				return 0, 0, err
			}
			return 1, b, r.store(s.path(i), out)
		})
	})
}

// remove deletes objects [from, to) of the set.
func (r *runner) remove(ctx context.Context, s *set, from, to int) error {
	q := ""
	if s.k.resource == "pods" {
		q = "?gracePeriodSeconds=0"
	}
	return r.measure(ctx, Phase{Verb: "delete", Resource: s.k.resource, Size: s.size.Name}, func(ctx context.Context, p *Phase) error {
		return r.parallel(ctx, to-from, p, func(ctx context.Context, i int) (int64, int64, error) {
			_, b, err := r.c.do(ctx, "DELETE", s.path(from+i)+q, "", nil)
			return 1, b, err
		})
	})
}

// requestPhases runs creates, lists of every size, gets, updates, patches
// and deletes of one kind and size.
func (r *runner) requestPhases(ctx context.Context, k kind, size ObjectSize) error {
	s := &set{k: k, size: size}
	if k.namespaced {
		s.ns = "calib-" + k.resource + "-" + size.Name
		body, _ := json.Marshal(namespaceObject(r.rng, s.ns, "", ""))
		if _, _, err := r.c.do(ctx, "POST", "/api/v1/namespaces", "application/json", body); err != nil {
			return fmt.Errorf("create namespace %s: %w", s.ns, err)
		}
	}
	for _, n := range r.w.ListSizes {
		if err := r.create(ctx, s, n); err != nil {
			return err
		}
		if err := r.list(ctx, s); err != nil {
			return err
		}
	}
	if err := r.get(ctx, s); err != nil {
		return err
	}
	if err := r.measure(ctx, Phase{Verb: "update", Resource: k.resource, Size: size.Name}, func(ctx context.Context, p *Phase) error {
		return r.update(ctx, s, r.w.Requests, 1, p)
	}); err != nil {
		return err
	}
	if err := r.patch(ctx, s, 2); err != nil {
		return err
	}
	if !k.deletable {
		return nil
	}
	mid := r.w.ListSizes[len(r.w.ListSizes)-2]
	if err := r.remove(ctx, s, 0, mid); err != nil {
		return err
	}
	return r.remove(ctx, s, mid, len(s.names))
}

// watchPhases updates WatchEvents CiliumIdentities of one size with 0 and
// then each number of watchers of the collection (all CiliumIdentities,
// as agents watch them) connected, each watcher on its own connection.
func (r *runner) watchPhases(ctx context.Context, size ObjectSize) error {
	k := kinds[2] // ciliumidentities
	s := &set{k: k, size: size}
	if err := r.create(ctx, s, r.w.WatchEvents); err != nil {
		return err
	}
	for i, w := range append([]int{0}, r.w.Watchers...) {
		if err := r.watchPhase(ctx, s, w, 10+i); err != nil {
			return err
		}
	}
	for i, w := range r.w.Watchers {
		// Every other replay phase replays half the events, so that the
		// cost of a watch request is told apart from its events'.
		events := len(s.names)
		if i%2 == 1 {
			events = max(1, events/2)
		}
		if err := r.replayPhase(ctx, s, w, events, 100+i); err != nil {
			return err
		}
	}
	return r.remove(ctx, s, 0, len(s.names))
}

// replayPhase updates the first events objects of s (not measured), then measures
// watchers watchers that start from the resourceVersion before those
// updates and read them all: events kube-apiserver replays from its watch
// cache's history, which carry no serialization shared between watchers
// (k8s.io/apiserver pkg/storage/cacher/cacher.go dispatchEvent, v0.36.3,
// shares it only while an event is dispatched live). Against the live
// phases this resolves the per-watcher encoding.
func (r *runner) replayPhase(ctx context.Context, s *set, watchers, events, rev int) error {
	rv, err := r.collectionRV(ctx, s)
	if err != nil {
		return err
	}
	var discard Phase
	if err := r.update(ctx, s, events, rev, &discard); err != nil {
		return err
	}
	return r.measure(ctx, Phase{Verb: "watch", Resource: s.k.resource, Size: s.size.Name, Watchers: watchers, Replay: true}, func(ctx context.Context, p *Phase) error {
		p.Events = events
		p.Requests = watchers
		ws, stop, err := r.startWatchers(ctx, s, watchers, rv)
		defer stop()
		if err != nil {
			return err
		}
		return r.awaitWatchers(ctx, ws, p)
	})
}

// collectionRV is the resourceVersion of s's collection now.
func (r *runner) collectionRV(ctx context.Context, s *set) (string, error) {
	out, _, err := r.c.do(ctx, "GET", s.k.collection("")+"?limit=1", "", nil)
	if err != nil {
		return "", err
	}
	var l struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(out, &l); err != nil || l.Metadata.ResourceVersion == "" {
		return "", fmt.Errorf("list %s: no resourceVersion (%v)", s.k.resource, err)
	}
	return l.Metadata.ResourceVersion, nil
}

func (r *runner) watchPhase(ctx context.Context, s *set, watchers, rev int) error {
	rv, err := r.collectionRV(ctx, s)
	if err != nil {
		return err
	}
	ws, stop, err := r.startWatchers(ctx, s, watchers, rv)
	defer stop()
	if err != nil {
		return err
	}
	return r.measure(ctx, Phase{Verb: "watch", Resource: s.k.resource, Size: s.size.Name, Watchers: watchers}, func(ctx context.Context, p *Phase) error {
		if err := r.update(ctx, s, len(s.names), rev, p); err != nil {
			return err
		}
		p.Events = len(s.names)
		if watchers == 0 {
			return nil
		}
		return r.awaitWatchers(ctx, ws, p)
	})
}

// startWatchers connects n watchers of s's collection from resourceVersion
// rv, each on its own connection; stop closes them.
func (r *runner) startWatchers(ctx context.Context, s *set, n int, rv string) ([]*watcher, func(), error) {
	wctx, cancel := context.WithCancel(ctx)
	ws := make([]*watcher, 0, n)
	var wg sync.WaitGroup
	stop := func() {
		cancel()
		wg.Wait()
		for _, w := range ws {
			w.c.close()
		}
	}
	path := s.k.collection("") + "?watch=1&resourceVersion=" + rv
	for range n {
		c, err := newClient(r.c.base, r.caFile, r.c.token, 1)
		if err != nil {
			return ws, stop, err
		}
		w := &watcher{c: c, progress: make(chan struct{}, 1)}
		ws = append(ws, w)
		body, err := c.watch(wctx, path)
		if err != nil {
			return ws, stop, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w.read(body) && wctx.Err() == nil && w.rewatch() {
				// kube-apiserver closed the watch (a cacheWatcher it
				// found too slow, cache_watcher.go): watch again from
				// the phase's resourceVersion and count from zero, as
				// the history is replayed whole.
				if body, err = c.watch(wctx, path); err != nil {
					w.fail(err)
					return
				}
			}
		}()
	}
	return ws, stop, nil
}

// awaitWatchers waits until every watcher has read p.Events events and
// records what one watcher read on average.
func (r *runner) awaitWatchers(ctx context.Context, ws []*watcher, p *Phase) error {
	deadline := time.NewTimer(2 * time.Minute)
	defer deadline.Stop()
	for _, w := range ws {
		for {
			ev, b, err := w.state()
			if ev >= p.Events {
				p.EventBytes += b
				break
			}
			if err != nil {
				return fmt.Errorf("watcher: %d of %d events, then %w", ev, p.Events, err)
			}
			select {
			case <-w.progress:
			case <-deadline.C:
				return fmt.Errorf("watchers: %d of %d events after 2m", ev, p.Events)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	// Only now can every watcher's count be exact: more lines than
	// updates would mean the stream is not one event per line.
	for _, w := range ws {
		if ev, _, _ := w.state(); ev != p.Events {
			return fmt.Errorf("watcher read %d lines for %d events: the watch stream is not one event per line", ev, p.Events)
		}
	}
	// EventBytes is what one watcher read, on average.
	p.EventBytes /= int64(len(ws))
	return nil
}

// watcher reads one watch stream and counts its events. kube-apiserver
// writes a JSON watch stream as one event per line (the JSON serializer's
// encoder ends every object with a newline), so counting newlines counts
// events without decoding them here.
type watcher struct {
	c        *client
	progress chan struct{}

	mu        sync.Mutex
	events    int
	bytes     int64
	err       error
	rewatches int
}

// maxRewatches is how often a watcher watches again after the server
// closed its stream before it gives up.
const maxRewatches = 3

// rewatch resets the watcher's counts for a new stream, or records that
// it has watched again too often.
func (w *watcher) rewatch() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rewatches >= maxRewatches {
		return false
	}
	w.rewatches++
	w.events, w.bytes, w.err = 0, 0, nil
	return true
}

func (w *watcher) fail(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
	select {
	case w.progress <- struct{}{}:
	default:
	}
}

// read counts the events of one stream until it ends; it reports whether
// the server ended it (EOF), which a new watch can resume.
func (w *watcher) read(body io.ReadCloser) (closedByServer bool) {
	defer body.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			w.mu.Lock()
			w.events += bytes.Count(buf[:n], []byte{'\n'})
			w.bytes += int64(n)
			w.mu.Unlock()
			select {
			case w.progress <- struct{}{}:
			default:
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) && w.rewatchesLeft() {
				return true
			}
			w.fail(err)
			return false
		}
	}
}

func (w *watcher) rewatchesLeft() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rewatches < maxRewatches
}

func (w *watcher) state() (int, int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events, w.bytes, w.err
}

// scrapePhases measure what a scrape of kube-apiserver's and etcd's
// /metrics costs them: the harness scrapes both once a second during a
// run, and on kube-apiserver a scrape walks thousands of series (every
// verb, resource and bucket the workload touched). Three phases of
// w.Scrapes scrapes each, sequential as the harness's are, so that the
// fit has a spread.
func (r *runner) scrapePhases(ctx context.Context, urls map[string]string) error {
	if r.w.Scrapes == 0 {
		return nil
	}
	var clients []*client
	for _, name := range []string{"apiserver", "etcd"} {
		u, ok := urls[name]
		if !ok {
			return fmt.Errorf("scrape phases: the backend has no %s metrics URL", name)
		}
		c, err := newClient(u, r.caFile, r.c.token, 1)
		if err != nil {
			return err
		}
		defer c.close()
		clients = append(clients, c)
	}
	for range 3 {
		err := r.measure(ctx, Phase{Verb: "scrape", Resource: "metrics"}, func(ctx context.Context, p *Phase) error {
			for range r.w.Scrapes {
				for _, c := range clients {
					body, _, err := c.do(ctx, "GET", "", "", nil)
					if err != nil {
						return err
					}
					p.Bytes += int64(len(body))
				}
				p.Requests++
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
