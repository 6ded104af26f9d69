package fakeapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilflowcontrol "k8s.io/apiserver/pkg/util/flowcontrol"
)

// Watch events are written as {"type":"T","object":OBJECT}\n. The object
// bytes are the stored ones, shared by every watcher: no watcher encodes
// anything per event.
var framePrefix = [...][]byte{
	eventAdded:    []byte(`{"type":"ADDED","object":`),
	eventModified: []byte(`{"type":"MODIFIED","object":`),
	eventDeleted:  []byte(`{"type":"DELETED","object":`),
}

var frameSuffix = []byte("}\n")

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 32<<10) }}

// frame builds the watch frame of an event of type t carrying raw, and
// returns it with raw's position inside it, so an object's raw JSON and
// its event frame are one allocation.
func frame(t eventType, raw []byte) (full, obj []byte) {
	p := framePrefix[t]
	full = make([]byte, 0, len(p)+len(raw)+len(frameSuffix))
	full = append(full, p...)
	full = append(full, raw...)
	full = append(full, frameSuffix...)
	return full, full[len(p) : len(p)+len(raw)]
}

// watchParams are a watch request's options.
type watchParams struct {
	f           *filter
	bookmarks   bool
	sendInitial string
	from        uint64
	timeout     time.Duration
	initial     bool // send the current state first
}

func parseWatchParams(rq *request, r *http.Request) (*watchParams, error) {
	q := r.URL.Query()
	f, err := parseFilter(rq.res, rq.namespace, q)
	if err != nil {
		return nil, err
	}
	p := &watchParams{f: f, bookmarks: q.Get("allowWatchBookmarks") == "true", sendInitial: q.Get("sendInitialEvents"), timeout: DefaultWatchTimeout}
	rvParam, match := q.Get("resourceVersion"), q.Get("resourceVersionMatch")
	switch {
	case p.sendInitial != "" && p.sendInitial != "true" && p.sendInitial != "false":
		return nil, invalidListOptions("sendInitialEvents", p.sendInitial, "must be true or false")
	case p.sendInitial == "true" && match != string(metav1.ResourceVersionMatchNotOlderThan):
		return nil, invalidListOptions("resourceVersionMatch", match, "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")
	case p.sendInitial == "true" && !p.bookmarks:
		return nil, invalidListOptions("allowWatchBookmarks", "false", "sendInitialEvents requires allowWatchBookmarks=true")
	case p.sendInitial == "" && match != "":
		return nil, invalidListOptions("resourceVersionMatch", match, "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided")
	}
	if rvParam != "" {
		if p.from, err = strconv.ParseUint(rvParam, 10, 64); err != nil {
			return nil, invalidListOptions("resourceVersion", rvParam, "must be a non-negative integer")
		}
	}
	if t := q.Get("timeoutSeconds"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 {
			return nil, invalidListOptions("timeoutSeconds", t, "must be a non-negative integer")
		}
		if n > 0 {
			p.timeout = time.Duration(n) * time.Second
		}
	}
	p.initial = p.sendInitial == "true" || (p.sendInitial == "" && p.from == 0)
	return p, nil
}

// watchStart is where a watch starts: the initial state (snap at snapRV)
// and the first event to send (pos). startHead is the head when the watch
// started: events already in the history are replayed and do not count
// towards the watcher's backlog (kube-apiserver's watch cache sends them
// from its cache, not through the watcher's buffer), so a watcher resuming
// far behind is not closed at once.
func watchStart(st *store, p *watchParams) (snap []*object, pos, snapRV, startHead uint64, err error) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	startHead = st.head.Load()
	switch {
	case p.initial:
		st.mu.RUnlock()
		snap, pos, snapRV = st.snapshot(p.f)
		st.mu.RLock()
	case p.from < st.floor:
		err = apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", p.from, st.floor))
	default:
		// The first retained event newer than from.
		n := uint64(len(st.ring))
		lo := uint64(0)
		if startHead > n {
			lo = startHead - n
		}
		i := sort.Search(int(startHead-lo), func(i int) bool { return st.ring[(lo+uint64(i))%n].Load().obj.rv > p.from })
		pos = lo + uint64(i)
	}
	return snap, pos, snapRV, startHead, err
}

// watchWriter writes one watcher's events in batches through a pooled
// buffer, so the connection sees a few large writes per batch rather than
// one per event, and with a capacity model charges each batch to the
// budget before it goes out.
type watchWriter struct {
	w       http.ResponseWriter
	flusher http.Flusher
	bw      *bufio.Writer
	sent    int
	cost    float64 // CPU-seconds of the batch (capacity model)
	budget  *budget
	st      *store
	arrived uint64 // events appended while the last batch waited for the budget
	events  prometheus.Counter
	sizes   prometheus.Observer
	// replay is set while the writer sends events the store appended
	// before the watch started: kube-apiserver serves those from the
	// watch cache's history, whose objects carry no shared serialization,
	// so each watcher encodes them itself.
	replay bool
}

func (ww *watchWriter) write(e *event, b ...[]byte) error {
	if ww.bw == nil {
		ww.bw = writerPool.Get().(*bufio.Writer)
		ww.bw.Reset(ww.w)
	}
	size := 0
	for _, p := range b {
		if _, err := ww.bw.Write(p); err != nil {
			return err
		}
		size += len(p)
	}
	ww.sent++
	ww.sizes.Observe(float64(size))
	if ww.budget != nil {
		ww.cost += ww.budget.watchCharge(e, size, ww.replay)
	}
	return nil
}

// flush waits until the budget has served the batch, then writes it.
func (ww *watchWriter) flush(ctx context.Context) error {
	if ww.bw == nil {
		return nil
	}
	ww.arrived = 0
	if ww.cost > 0 {
		h0 := ww.st.head.Load()
		ww.budget.wait(ctx, "watch", ww.cost)
		ww.arrived = ww.st.head.Load() - h0
		ww.cost = 0
	}
	err := ww.bw.Flush()
	ww.bw.Reset(nil)
	writerPool.Put(ww.bw)
	ww.bw = nil
	if err != nil {
		return err
	}
	if ww.flusher != nil {
		ww.flusher.Flush()
	}
	ww.events.Add(float64(ww.sent))
	ww.sent = 0
	return nil
}

func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, rq *request) {
	p, err := parseWatchParams(rq, r)
	if err != nil {
		writeError(w, err)
		return
	}
	st, res, ctx := rq.store, rq.res, r.Context()
	snap, pos, snapRV, startHead, tooOld := watchStart(st, p)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if tooOld != nil {
		writeErrorEvent(w, tooOld)
		return
	}
	gauge := s.metrics.longRunning.WithLabelValues("WATCH", res.group, res.version, res.name, rq.subresource, rq.scope(), "apiserver")
	gauge.Inc()
	defer gauge.Dec()
	ww := &watchWriter{w: w, flusher: flusher, st: st,
		events: s.metrics.watchEvents.WithLabelValues(res.group, res.version, res.name),
		sizes:  s.metrics.watchEventSizes.WithLabelValues(res.group, res.version, res.name)}
	defer func() { _ = ww.flush(context.WithoutCancel(ctx)) }()
	if p.initial {
		sort.Slice(snap, func(i, j int) bool { return snap[i].key < snap[j].key })
		var size int64
		for _, o := range snap {
			if err := ww.write(nil, framePrefix[eventAdded], o.raw, frameSuffix); err != nil {
				return
			}
			size += int64(len(o.raw))
		}
		if p.sendInitial == "true" {
			if err := ww.write(nil, bookmarkFrame(res, snapRV, true)); err != nil {
				return
			}
		}
		if s.budget != nil {
			// The initial events are the watch's list (kube-apiserver
			// serves them from the watch cache like a LIST).
			s.budget.wait(ctx, "request", s.budget.requestCost("watch", res.name, len(snap), size))
		}
		snap = nil
	}
	if err := ww.flush(ctx); err != nil {
		return
	}
	if flusher != nil {
		flusher.Flush()
	}
	// The watch holds its APF seats until here, as kube-apiserver's
	// cacheWatcher.process signals once the initial events are out
	// (k8s.io/apiserver pkg/storage/cacher/cache_watcher.go, v1.36).
	utilflowcontrol.WatchInitialized(ctx)
	ww.budget = s.budget
	s.followWatch(ctx, rq, p, ww, pos, startHead)
}

// followWatch writes st's events from pos on until the watch ends, times
// out, or falls further behind than its backlog allows.
func (s *Server) followWatch(ctx context.Context, rq *request, p *watchParams, ww *watchWriter, pos, startHead uint64) {
	st, res := rq.store, rq.res
	deadline := time.NewTimer(p.timeout)
	defer deadline.Stop()
	var tick <-chan time.Time
	if p.bookmarks && s.cfg.BookmarkInterval > 0 {
		t := time.NewTicker(s.cfg.BookmarkInterval)
		defer t.Stop()
		tick = t.C
	}
	wantBookmark := false
	window := s.cfg.WatchBatchWindow
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	defer coalesce.Stop()
	f := p.f
	everything := f.namespace == "" && f.labels == nil && len(f.fields) == 0
	var batch []*event
	indexNode, indexed := f.nodeIndex()
	for {
		// The wake-up channel first, then head: an event appended after
		// head was read closes this channel (see appendLocked). The lock
		// is only taken to register an indexed watcher's node waiter and
		// for a bookmark, whose resourceVersion must not pass an event of
		// this store still being written (writers take it under the lock).
		var notify chan struct{}
		unlock := func() {}
		switch {
		case indexed:
			st.mu.Lock()
			unlock = st.mu.Unlock
			notify = st.nodeWaiterLocked(indexNode)
		case wantBookmark:
			st.mu.RLock()
			unlock = st.mu.RUnlock
			fallthrough
		default:
			notify = st.notifyChan()
		}
		head := st.head.Load()
		curRV := st.rv.Load()
		unlock()
		// An indexed watcher is only woken for its node's events, so only
		// losing events to the ring's eviction makes it too slow.
		ok := indexed || head-max(pos, startHead) <= uint64(s.cfg.WatchBuffer)
		if ok {
			batch, ok = st.readEvents(batch[:0], pos, head)
		}
		if !ok {
			s.metrics.terminatedWatchers.WithLabelValues(res.group, res.name).Inc()
			s.log.Debug("fakeapi watcher too slow, closing", "resource", res.name, "behind", head-pos, "user", rq.user.name)
			return
		}
		first := pos
		pos = head
		for i, e := range batch {
			ww.replay = first+uint64(i) < startHead
			var err error
			if everything {
				err = ww.write(e, e.frame)
			} else {
				err = writeFiltered(ww.write, e, f)
			}
			if err != nil {
				return
			}
		}
		if wantBookmark {
			wantBookmark = false
			if err := ww.write(nil, bookmarkFrame(res, curRV, false)); err != nil {
				return
			}
		}
		if err := ww.flush(ctx); err != nil {
			return
		}
		if s.tooFarBehind(st, indexed, ww.arrived) {
			s.metrics.terminatedWatchers.WithLabelValues(res.group, res.name).Inc()
			s.log.Debug("fakeapi watcher fell behind the capacity model, closing", "resource", res.name, "user", rq.user.name)
			return
		}
		select {
		case <-notify:
		case <-tick:
			wantBookmark = true
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
		if window > 0 {
			// Let a burst accumulate: one batch per window per watcher.
			coalesce.Reset(window)
			select {
			case <-coalesce.C:
			case <-ctx.Done():
				return
			}
		}
	}
}

// writeFiltered writes e as a watcher with filter f sees it: an object
// that starts matching is ADDED, one that stops matching is DELETED.
func writeFiltered(write func(*event, ...[]byte) error, e *event, f *filter) error {
	cur := f.matches(e.obj)
	old := e.prev != nil && f.matches(e.prev)
	switch e.typ {
	case eventAdded:
		if cur {
			return write(e, e.frame)
		}
	case eventDeleted:
		if cur || old {
			return write(e, e.frame)
		}
	case eventModified:
		switch {
		case cur && old:
			return write(e, e.frame)
		case cur:
			return write(e, framePrefix[eventAdded], e.obj.raw, frameSuffix)
		case old:
			return write(e, framePrefix[eventDeleted], e.obj.raw, frameSuffix)
		}
	}
	return nil
}

func bookmarkFrame(res *resource, rv uint64, initialEnd bool) []byte {
	ann := ""
	if initialEnd {
		ann = `,"annotations":{"k8s.io/initial-events-end":"true"}`
	}
	return fmt.Appendf(nil, `{"type":"BOOKMARK","object":{"kind":%q,"apiVersion":%q,"metadata":{"resourceVersion":"%d","creationTimestamp":null%s}}}`+"\n", res.kind, res.apiVersion(), rv, ann)
}

func writeErrorEvent(w http.ResponseWriter, err error) {
	var se *apierrors.StatusError
	if !errors.As(err, &se) {
		se = apierrors.NewInternalError(err)
	}
	st := se.ErrStatus
	st.Kind, st.APIVersion = "Status", "v1"
	b, _ := json.Marshal(&st)
	_, _ = w.Write([]byte(`{"type":"ERROR","object":`))
	_, _ = w.Write(b)
	_, _ = w.Write(frameSuffix)
}

var _ = field.NewPath
