package agentsim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	json "github.com/goccy/go-json"
)

// Watch event types.
const (
	evAdded    = "ADDED"
	evModified = "MODIFIED"
	evDeleted  = "DELETED"
	evBookmark = "BOOKMARK"
	evError    = "ERROR"
)

// resourceSpec names what one watch lists and watches.
type resourceSpec struct {
	// name is the resource's metric label ("pods").
	name string
	// path is the collection URL path.
	path string
	// params are extra query parameters (fieldSelector).
	params map[string]string
}

// handler receives what a watch decodes. replace gets the full set after
// every list (the handler reconciles: items absent from it are gone);
// event gets ADDED, MODIFIED and DELETED objects. Both are called from the
// watch's goroutine only.
type handler[T any] struct {
	replace func(items []T)
	event   func(typ string, obj *T)
}

// watchFrame is one frame of a watch stream, decoded in one pass.
type watchFrame[T any] struct {
	Type   string `json:"type"`
	Object T      `json:"object"`
}

type listBody[T any] struct {
	Metadata listMeta `json:"metadata"`
	Items    []T      `json:"items"`
	// sizes are the items' sizes in the body, bytes.
	sizes []int
}

// decodeList decodes a list response item by item from the stream, so
// that the raw body of a large list is never held in memory at once.
func decodeList[T any](body io.Reader) (listBody[T], error) {
	var lb listBody[T]
	dec := json.NewDecoder(body)
	if err := expectDelim(dec, '{'); err != nil {
		return lb, err
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return lb, err
		}
		switch tok {
		case "metadata":
			if err := dec.Decode(&lb.Metadata); err != nil {
				return lb, fmt.Errorf("metadata: %w", err)
			}
		case "items":
			if err := expectDelim(dec, '['); err != nil {
				return lb, fmt.Errorf("items: %w", err)
			}
			for dec.More() {
				var it T
				at := dec.InputOffset()
				if err := dec.Decode(&it); err != nil {
					return lb, fmt.Errorf("items[%d]: %w", len(lb.Items), err)
				}
				lb.Items = append(lb.Items, it)
				lb.sizes = append(lb.sizes, int(dec.InputOffset()-at))
			}
			if err := expectDelim(dec, ']'); err != nil {
				return lb, fmt.Errorf("items: %w", err)
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return lb, fmt.Errorf("%v: %w", tok, err)
			}
		}
	}
	return lb, expectDelim(dec, '}')
}

func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != d {
		return fmt.Errorf("want %v, got %v", d, tok)
	}
	return nil
}

// errGone means the resourceVersion is too old: list again.
var errGone = errors.New("resource version gone")

// reflector lists and watches one resource for one agent, resuming from the
// last resourceVersion, listing again on 410 Gone, and backing off on
// errors like client-go's reflector (800ms doubling to 30s, jittered).
type reflector[T any, PT interface {
	*T
	slimObject
}] struct {
	c    *kubeClient
	spec resourceSpec
	h    handler[T]
	log  *slog.Logger
	m    *Metrics
	// synced is closed after the first successful list.
	synced chan struct{}
	lists  int
	// events counts the events the watches delivered (run's goroutine
	// only).
	events uint64
	// frames, if set, shares decoded watch frames with the other agents of
	// the process; the handler then gets objects it must not modify.
	frames *frameCache
	// work counts what the resource's lists and watches brought (events,
	// bytes) and held keeps the size of every object the agent holds of
	// it, as a cilium-agent's informer store holds them.
	work *resourceWork
	held *objectSizes
}

// newReflector is a's reflector of spec; frames, if set, shares decoded
// frames with the process's other agents (unfiltered watches only).
func newReflector[T any, PT interface {
	*T
	slimObject
}](a *Agent, spec resourceSpec, h handler[T], frames *frameCache) *reflector[T, PT] {
	rw := a.work.resource(spec.name)
	return &reflector[T, PT]{c: a.kc, spec: spec, h: h, log: a.log, m: a.m, synced: make(chan struct{}), frames: frames,
		work: rw, held: newObjectSizes(rw)}
}

func (r *reflector[T, PT]) run(ctx context.Context) {
	rv := ""
	backoff := newBackoff(800*time.Millisecond, 30*time.Second)
	failing := false
	for ctx.Err() == nil {
		var err error
		if rv == "" {
			rv, err = r.list(ctx)
		}
		if err == nil {
			rv, err = r.watch(ctx, rv)
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			// The server ended the watch (timeout): resume.
			backoff.reset()
			if failing {
				r.log.Info("watch recovered", "resource", r.spec.name)
				failing = false
			}
			continue
		case errors.Is(err, errGone):
			r.log.Debug("resource version expired, listing again", "resource", r.spec.name)
			rv = ""
			continue
		}
		r.m.watchErrors.WithLabelValues(r.spec.name).Inc()
		if errors.Is(err, errShortWatch) {
			// List again: resuming from the same resourceVersion would
			// end the same way (client-go's reflector relists too).
			rv = ""
		}
		d := backoff.next()
		lvl := slog.LevelDebug
		if !failing {
			lvl = slog.LevelWarn
			failing = true
		}
		r.log.Log(ctx, lvl, "list/watch failed, retrying", "resource", r.spec.name, "retryIn", d, "err", err)
		if httpCode(err) == http.StatusForbidden || httpCode(err) == http.StatusUnauthorized {
			rv = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

func (r *reflector[T, PT]) list(ctx context.Context) (string, error) {
	params := map[string]string{"resourceVersion": "0"}
	for k, v := range r.spec.params {
		params[k] = v
	}
	if r.lists > 0 {
		r.m.relists.WithLabelValues(r.spec.name).Inc()
	}
	r.lists++
	body, err := r.c.stream(ctx, r.spec.path, params)
	if err != nil {
		return "", fmt.Errorf("list %s: %w", r.spec.name, err)
	}
	lb, err := decodeList[T](countingReader{r: body, n: &r.work.bytes})
	body.Close()
	if err != nil {
		return "", fmt.Errorf("list %s: decode: %w", r.spec.name, err)
	}
	r.held.reset()
	for i := range lb.Items {
		prepare[T, PT](&lb.Items[i])
		r.held.set(objectKey(PT(&lb.Items[i]).objectName()), lb.sizes[i])
	}
	r.held.publish()
	r.h.replace(lb.Items)
	select {
	case <-r.synced:
	default:
		close(r.synced)
	}
	return lb.Metadata.ResourceVersion, nil
}

// watch streams events until the server ends the stream (nil error and
// the last resourceVersion) or an error.
func (r *reflector[T, PT]) watch(ctx context.Context, rv string) (string, error) {
	params := map[string]string{
		"watch":               "true",
		"resourceVersion":     rv,
		"allowWatchBookmarks": "true",
		// client-go's reflector picks 5 to 10 minutes.
		"timeoutSeconds": strconv.Itoa(300 + rand.IntN(300)),
	}
	for k, v := range r.spec.params {
		params[k] = v
	}
	body, err := r.c.stream(ctx, r.spec.path, params)
	if err != nil {
		if httpCode(err) == http.StatusGone {
			return rv, errGone
		}
		return rv, err
	}
	defer body.Close()
	start := time.Now()
	events := r.events
	rv2, err := r.consume(countingReader{r: body, n: &r.work.bytes}, rv)
	if err == nil && r.events == events && time.Since(start) < time.Second {
		// The server closed the watch at once without an event: it may
		// be closing this client as too slow, as a fake API server or a
		// watch cache does to a watcher too far behind, and a watch from
		// the same resourceVersion would be closed again (a loop that
		// never delivers an event). client-go's reflector reports such
		// a "very short watch" as an error and lists again.
		return rv2, fmt.Errorf("watch %s: %w", r.spec.name, errShortWatch)
	}
	return rv2, err
}

// errShortWatch is a watch that the server ended within a second without
// delivering an event.
var errShortWatch = errors.New("very short watch: closed within a second without events")

// consume decodes and handles the frames of one watch stream until it
// ends (nil error at EOF) or fails; it returns the last resourceVersion.
func (r *reflector[T, PT]) consume(body io.Reader, rv string) (string, error) {
	fr := frameReader{r: bufio.NewReaderSize(body, 4<<10)}
	for {
		line, err := fr.next()
		var f *watchFrame[T]
		if err == nil {
			f, err = r.decodeFrame(line)
		}
		if f != nil && f.Type == evError {
			st := PT(&f.Object).apiStatus()
			if st.Code == http.StatusGone {
				return rv, errGone
			}
			return rv, fmt.Errorf("watch %s: error event: %d %s: %s", r.spec.name, st.Code, st.Reason, st.Message)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return rv, nil
			}
			return rv, fmt.Errorf("watch %s: %w", r.spec.name, err)
		}
		if v := PT(&f.Object).resourceVersion(); v != "" {
			rv = v
		}
		switch f.Type {
		case evBookmark:
			continue
		case evAdded, evModified, evDeleted:
			r.events++
			r.m.events.WithLabelValues(r.spec.name, f.Type).Inc()
			r.work.events.Add(1)
			if k := objectKey(PT(&f.Object).objectName()); f.Type == evDeleted {
				r.held.delete(k)
			} else {
				r.held.set(k, len(line))
			}
			r.held.publish()
			start := time.Now()
			r.h.event(f.Type, &f.Object)
			r.m.eventLatency.WithLabelValues(r.spec.name).Observe(time.Since(start).Seconds())
		default:
			return rv, fmt.Errorf("watch %s: unknown event type %q", r.spec.name, f.Type)
		}
	}
}

// decodeFrame decodes one watch frame, through the process's frame cache
// if the reflector has one. A frame that fails to decode may still carry
// its type (an ERROR frame whose object does not fit T).
func (r *reflector[T, PT]) decodeFrame(line []byte) (*watchFrame[T], error) {
	if r.frames == nil {
		return decodeWatchFrame[T, PT](line)
	}
	v, err := r.frames.get(r.spec.name, line, func(b []byte) (any, error) {
		return decodeWatchFrame[T, PT](b)
	})
	f, _ := v.(*watchFrame[T])
	return f, err
}

func decodeWatchFrame[T any, PT interface {
	*T
	slimObject
}](line []byte) (*watchFrame[T], error) {
	f := new(watchFrame[T])
	if err := json.Unmarshal(line, f); err != nil {
		return f, err
	}
	prepare[T, PT](&f.Object)
	return f, nil
}

// preparer is a slim type that derives what its handler needs once, after
// decoding, so agents sharing a decoded object do not each derive it.
type preparer interface{ prepare() }

func prepare[T any, PT interface {
	*T
	slimObject
}](o *T) {
	if p, ok := any(PT(o)).(preparer); ok {
		p.prepare()
	}
}

// frameReader splits a watch stream into its frames: kube-apiserver and
// the fake both end every JSON frame with a newline, and compact JSON has
// none inside. A frame is decoded from its own bytes: a streaming decoder
// keeps a read-ahead buffer per watch that grows with the largest frames
// (CiliumEndpointSlices) and is held by every watch of every agent of a
// shard.
type frameReader struct {
	r   *bufio.Reader
	buf []byte // a frame longer than r's buffer, assembled
}

// next returns the next non-empty frame, valid until the next call, or
// io.EOF at the end of the stream.
func (f *frameReader) next() ([]byte, error) {
	for {
		line, err := f.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			f.buf = append(f.buf[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = f.r.ReadSlice('\n')
				f.buf = append(f.buf, line...)
			}
			line = f.buf
			if cap(f.buf) > 1<<20 {
				f.buf = nil // do not keep one huge frame's buffer
			}
		}
		blank := len(bytes.TrimSpace(line)) == 0
		switch {
		case err != nil && (blank || !errors.Is(err, io.EOF)):
			return nil, err
		case !blank:
			return line, nil
		}
	}
}

// backoff is an exponential backoff with jitter.
type backoff struct {
	min, max, cur time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur *= 2
		if b.cur > b.max {
			b.cur = b.max
		}
	}
	return b.cur/2 + time.Duration(rand.Int64N(int64(b.cur/2)+1))
}

func (b *backoff) reset() { b.cur = 0 }
