package fakeapi

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

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

func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	f, err := parseFilter(rq.res, rq.namespace, q)
	if err != nil {
		writeError(w, err)
		return
	}
	bookmarks := q.Get("allowWatchBookmarks") == "true"
	sendInitial := q.Get("sendInitialEvents")
	rvParam, match := q.Get("resourceVersion"), q.Get("resourceVersionMatch")
	switch {
	case sendInitial != "" && sendInitial != "true" && sendInitial != "false":
		writeError(w, invalidListOptions("sendInitialEvents", sendInitial, "must be true or false"))
		return
	case sendInitial == "true" && match != string(metav1.ResourceVersionMatchNotOlderThan):
		writeError(w, invalidListOptions("resourceVersionMatch", match, "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"))
		return
	case sendInitial == "true" && !bookmarks:
		writeError(w, invalidListOptions("allowWatchBookmarks", "false", "sendInitialEvents requires allowWatchBookmarks=true"))
		return
	case sendInitial == "" && match != "":
		writeError(w, invalidListOptions("resourceVersionMatch", match, "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"))
		return
	}
	var from uint64
	if rvParam != "" {
		from, err = strconv.ParseUint(rvParam, 10, 64)
		if err != nil {
			writeError(w, invalidListOptions("resourceVersion", rvParam, "must be a non-negative integer"))
			return
		}
	}
	timeout := DefaultWatchTimeout
	if t := q.Get("timeoutSeconds"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 {
			writeError(w, invalidListOptions("timeoutSeconds", t, "must be a non-negative integer"))
			return
		}
		if n > 0 {
			timeout = time.Duration(n) * time.Second
		}
	}
	initial := sendInitial == "true" || (sendInitial == "" && from == 0)

	st := rq.store
	var snap []*object
	var pos, snapRV uint64
	var tooOld error
	st.mu.RLock()
	// Events already in the history when the watch starts are replayed
	// and do not count towards WatchBuffer (kube-apiserver's watch cache
	// sends them from its cache, not through the watcher's buffer): a
	// watcher resuming far behind is not closed at once.
	startHead := st.head.Load()
	switch {
	case initial:
		st.mu.RUnlock()
		snap, pos, snapRV = st.snapshot(f)
		st.mu.RLock()
	case from < st.floor:
		tooOld = apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", from, st.floor))
	default:
		// The first retained event newer than from.
		n := uint64(len(st.ring))
		lo := uint64(0)
		if startHead > n {
			lo = startHead - n
		}
		i := sort.Search(int(startHead-lo), func(i int) bool { return st.ring[(lo+uint64(i))%n].Load().obj.rv > from })
		pos = lo + uint64(i)
	}
	st.mu.RUnlock()

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if tooOld != nil {
		writeErrorEvent(w, tooOld)
		return
	}

	res := rq.res
	gauge := s.metrics.registeredWatchers.WithLabelValues(res.group, res.version, res.kind)
	gauge.Inc()
	defer gauge.Dec()
	events := s.metrics.watchEvents.WithLabelValues(res.group, res.version, res.name)
	sizes := s.metrics.watchEventSizes.WithLabelValues(res.group, res.version, res.name)

	// Writes of one batch go through a pooled buffer, so the connection
	// sees a few large writes per batch rather than one per event.
	var bw *bufio.Writer
	sent := 0
	write := func(b ...[]byte) error {
		if bw == nil {
			bw = writerPool.Get().(*bufio.Writer)
			bw.Reset(w)
		}
		size := 0
		for _, p := range b {
			if _, err := bw.Write(p); err != nil {
				return err
			}
			size += len(p)
		}
		sent++
		sizes.Observe(float64(size))
		return nil
	}
	flush := func() error {
		if bw == nil {
			return nil
		}
		err := bw.Flush()
		bw.Reset(nil)
		writerPool.Put(bw)
		bw = nil
		if err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
	defer func() { _ = flush() }()
	if initial {
		sort.Slice(snap, func(i, j int) bool { return snap[i].key < snap[j].key })
		for _, o := range snap {
			if err := write(framePrefix[eventAdded], o.raw, frameSuffix); err != nil {
				return
			}
		}
		if sendInitial == "true" {
			if err := write(bookmarkFrame(res, snapRV, true)); err != nil {
				return
			}
		}
		snap = nil
	}
	if err := flush(); err != nil {
		return
	}
	if flusher != nil {
		flusher.Flush()
	}
	events.Add(float64(sent))
	sent = 0
	// The watch holds its APF seats until here, as kube-apiserver's
	// cacheWatcher.process signals once the initial events are out
	// (k8s.io/apiserver pkg/storage/cacher/cache_watcher.go, v1.36).
	utilflowcontrol.WatchInitialized(r.Context())

	ctx := r.Context()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	var tick <-chan time.Time
	if bookmarks && s.cfg.BookmarkInterval > 0 {
		t := time.NewTicker(s.cfg.BookmarkInterval)
		defer t.Stop()
		tick = t.C
	}
	wantBookmark := false
	window := s.cfg.WatchBatchWindow
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	defer coalesce.Stop()
	everything := f.namespace == "" && f.labels == nil && len(f.fields) == 0
	var batch []*event
	lag := uint64(s.cfg.WatchBuffer)
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
		ok := indexed || head-max(pos, startHead) <= lag
		if ok {
			batch, ok = st.readEvents(batch[:0], pos, head)
		}
		if !ok {
			s.metrics.terminatedWatchers.WithLabelValues(res.group, res.name).Inc()
			s.log.Debug("fakeapi watcher too slow, closing", "resource", res.name, "behind", head-pos, "user", rq.user.name)
			return
		}
		pos = head
		for _, e := range batch {
			var err error
			if everything {
				err = write(e.frame)
			} else {
				err = writeFiltered(write, e, f)
			}
			if err != nil {
				return
			}
		}
		if wantBookmark {
			wantBookmark = false
			if err := write(bookmarkFrame(res, curRV, false)); err != nil {
				return
			}
		}
		if sent > 0 {
			if err := flush(); err != nil {
				return
			}
			events.Add(float64(sent))
			sent = 0
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
func writeFiltered(write func(...[]byte) error, e *event, f *filter) error {
	cur := f.matches(e.obj)
	old := e.prev != nil && f.matches(e.prev)
	switch e.typ {
	case eventAdded:
		if cur {
			return write(e.frame)
		}
	case eventDeleted:
		if cur || old {
			return write(e.frame)
		}
	case eventModified:
		switch {
		case cur && old:
			return write(e.frame)
		case cur:
			return write(framePrefix[eventAdded], e.obj.raw, frameSuffix)
		case old:
			return write(framePrefix[eventDeleted], e.obj.raw, frameSuffix)
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
