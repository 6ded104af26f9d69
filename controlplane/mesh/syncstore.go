package mesh

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// kvWriter is the part of the etcd client a syncStore writes with.
type kvWriter interface {
	Put(ctx context.Context, key, val string, opts ...clientv3.OpOption) (*clientv3.PutResponse, error)
	Delete(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.DeleteResponse, error)
}

// syncStore writes the keys of one prefix, as Cilium's wqSyncStore does
// (pkg/kvstore/store/syncstore.go NewWorkqueueSyncStore, UpsertKey,
// DeleteKey, Synced, handleSync; read at v1.19-era main): it keeps the
// latest value of every key; an upsert whose value equals the one held is
// dropped; a delete of a key it does not hold is dropped; a key waiting in
// the queue is queued once, and the worker writes whatever value the key
// has when its turn comes, so repeated updates of one key coalesce into
// one write. One worker (workers: 1) writes one key at a time, with the
// lease (withLease: true). A failed write is queued again after a
// backoff. The sync canary is queued after the first list and written only
// once every key queued before it has been written.
type syncStore struct {
	cli    kvWriter
	lease  clientv3.LeaseID
	prefix string // etcd prefix of the keys, with its trailing slash
	canary string // canary key, written once
	// coalesce off writes every update, for the test that proves
	// coalescing matters.
	coalesce bool
	m        *storeMetrics

	mu       sync.Mutex
	state    map[string][]byte    // key -> latest value (absent: deleted)
	queued   map[string]time.Time // key -> receipt of its oldest unwritten change
	order    []queueItem
	canaryAt time.Time // zero until Synced; then when it was queued
	// pending holds the keys changed before the canary was queued and not
	// written since (wqSyncStore's pendingSync): the canary waits for them.
	pending map[string]bool
	synced  bool // canary written
	wake    chan struct{}
}

type queueItem struct {
	key    string
	canary bool
	// value is set only when coalescing is off: the value to write then.
	value []byte
	del   bool
	at    time.Time
}

func newSyncStore(cli kvWriter, lease clientv3.LeaseID, prefix, canary string, coalesce bool, m *storeMetrics) *syncStore {
	return &syncStore{
		cli: cli, lease: lease, prefix: prefix, canary: canary, coalesce: coalesce, m: m,
		state: map[string][]byte{}, queued: map[string]time.Time{}, pending: map[string]bool{}, wake: make(chan struct{}, 1),
	}
}

// upsert queues key (relative to the prefix) with value, received at at.
func (s *syncStore) upsert(key string, value []byte, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.state[key]; ok && bytes.Equal(prev, value) {
		s.m.skipped.Inc()
		return
	}
	s.state[key] = value
	s.enqueue(queueItem{key: key, value: value, at: at})
}

// delete queues the deletion of key if the store holds it.
func (s *syncStore) delete(key string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.state[key]; !ok {
		s.m.skipped.Inc()
		return
	}
	delete(s.state, key)
	s.enqueue(queueItem{key: key, del: true, at: at})
}

// markSynced queues the sync canary (once).
func (s *syncStore) markSynced(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.canaryAt.IsZero() {
		return
	}
	s.canaryAt = at
	s.order = append(s.order, queueItem{canary: true, at: at})
	s.signal()
}

// enqueue adds an item; s.mu is held.
func (s *syncStore) enqueue(it queueItem) {
	if s.canaryAt.IsZero() {
		s.pending[it.key] = true
	}
	if s.coalesce {
		if _, ok := s.queued[it.key]; ok {
			s.m.coalesced.Inc()
			return
		}
		s.queued[it.key] = it.at
		it.value, it.del = nil, false
	}
	s.order = append(s.order, it)
	s.m.queue.Set(float64(len(s.order)))
	s.signal()
}

func (s *syncStore) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// hasSynced tells whether the canary has been written.
func (s *syncStore) hasSynced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.synced
}

// run is the single worker; it returns when ctx ends.
func (s *syncStore) run(ctx context.Context) {
	b := backoff{min: 5 * time.Millisecond, max: 10 * time.Second}
	for {
		s.mu.Lock()
		if len(s.order) == 0 {
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
			continue
		}
		it := s.order[0]
		s.order = s.order[1:]
		s.m.queue.Set(float64(len(s.order)))
		var (
			value []byte
			del   bool
		)
		if !it.canary {
			if s.coalesce {
				// The value the key has now; its receipt time is that of
				// its oldest change not yet written.
				it.at = s.queued[it.key]
				delete(s.queued, it.key)
				v, ok := s.state[it.key]
				value, del = v, !ok
			} else {
				value, del = it.value, it.del
			}
		}
		if it.canary && len(s.pending) > 0 {
			// Keys of the first list are still to be written (a retry
			// went behind the canary): the canary goes after them.
			s.order = append(s.order, it)
			s.mu.Unlock()
			continue
		}
		s.mu.Unlock()

		err := s.apply(ctx, it, value, del)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.requeue(it, value, del)
			select {
			case <-ctx.Done():
				return
			case <-time.After(b.next()):
			}
			continue
		}
		b.reset()
	}
}

func (s *syncStore) apply(ctx context.Context, it queueItem, value []byte, del bool) error {
	var (
		err error
		op  string
	)
	switch {
	case it.canary:
		op = "canary"
		_, err = s.cli.Put(ctx, s.canary, time.Now().UTC().Format(time.RFC3339), clientv3.WithLease(s.lease))
		if err == nil {
			s.mu.Lock()
			s.synced = true
			s.mu.Unlock()
		}
	case del:
		op = "delete"
		_, err = s.cli.Delete(ctx, s.prefix+it.key)
	default:
		op = "put"
		_, err = s.cli.Put(ctx, s.prefix+it.key, string(value), clientv3.WithLease(s.lease))
	}
	if err != nil {
		s.m.writes.WithLabelValues(op, "error").Inc()
		return err
	}
	s.m.writes.WithLabelValues(op, "ok").Inc()
	if !it.canary {
		s.m.apply.Observe(time.Since(it.at).Seconds())
		s.mu.Lock()
		delete(s.pending, it.key)
		s.mu.Unlock()
	}
	return nil
}

// requeue puts a failed item back at the end of the queue. A key changed
// meanwhile is already queued again (coalescing): nothing to add then.
func (s *syncStore) requeue(it queueItem, value []byte, del bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if it.canary {
		s.order = append(s.order, it)
		return
	}
	if s.coalesce {
		if _, ok := s.queued[it.key]; ok {
			return
		}
		s.queued[it.key] = it.at
		s.order = append(s.order, queueItem{key: it.key, at: it.at})
		return
	}
	s.order = append(s.order, queueItem{key: it.key, value: value, del: del, at: it.at})
}

// storeMetrics are one prefix's series.
type storeMetrics struct {
	apply     prometheus.Observer
	writes    *prometheus.CounterVec
	coalesced prometheus.Counter
	skipped   prometheus.Counter
	queue     prometheus.Gauge
}

type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else if b.cur *= 2; b.cur > b.max {
		b.cur = b.max
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }
