package mesh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fakeKV records writes; a write blocks while gate is held, and the
// first failN writes fail.
type fakeKV struct {
	gate  sync.RWMutex
	mu    sync.Mutex
	ops   []string // "put key=value", "delete key"
	failN int
}

func (f *fakeKV) record(op string) error {
	f.gate.RLock()
	defer f.gate.RUnlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failN > 0 {
		f.failN--
		return errors.New("injected failure")
	}
	f.ops = append(f.ops, op)
	return nil
}

func (f *fakeKV) Put(_ context.Context, key, val string, _ ...clientv3.OpOption) (*clientv3.PutResponse, error) {
	return nil, f.record("put " + key + "=" + val)
}

func (f *fakeKV) Delete(_ context.Context, key string, _ ...clientv3.OpOption) (*clientv3.DeleteResponse, error) {
	return nil, f.record("delete " + key)
}

func (f *fakeKV) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...)
}

func testStoreMetrics() *storeMetrics {
	return &storeMetrics{
		apply:     prometheus.NewHistogram(prometheus.HistogramOpts{Name: "a"}),
		writes:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "w"}, []string{"op", "outcome"}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{Name: "c"}),
		skipped:   prometheus.NewCounter(prometheus.CounterOpts{Name: "s"}),
		queue:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "q"}),
	}
}

func runStore(t *testing.T, s *syncStore) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestSyncStoreCoalesces: while the writer is busy, 50 updates of one key
// become one write of the last value, as a workqueue holds a key once
// (wqSyncStore.UpsertKey adds the key, handle reads the latest value).
// With coalescing off every update is written: the test tells the two
// apart.
func TestSyncStoreCoalesces(t *testing.T) {
	for _, coalesce := range []bool{true, false} {
		t.Run(fmt.Sprint("coalesce=", coalesce), func(t *testing.T) {
			f := &fakeKV{}
			s := newSyncStore(f, 1, "p/", "synced", coalesce, testStoreMetrics())
			f.gate.Lock() // the writer blocks on its first write
			runStore(t, s)
			s.upsert("other", []byte("x"), time.Now())
			for i := range 50 {
				s.upsert("k", fmt.Appendf(nil, "v%d", i), time.Now())
			}
			f.gate.Unlock()
			waitFor(t, 10*time.Second, "writes", func() bool {
				ops := f.list()
				return len(ops) > 0 && ops[len(ops)-1] == "put p/k=v49"
			})
			puts := 0
			for _, op := range f.list() {
				if len(op) > 6 && op[:6] == "put p/" && op[6] == 'k' {
					puts++
				}
			}
			if coalesce && puts != 1 {
				t.Errorf("coalescing: %d puts of k, want 1 (%v)", puts, f.list())
			}
			if !coalesce && puts != 50 {
				t.Errorf("no coalescing: %d puts of k, want 50", puts)
			}
		})
	}
}

// TestSyncStoreSkipsUnchanged: an upsert of the value held and a delete of
// a key never written cause no write (wqSyncStore.UpsertKey, DeleteKey).
func TestSyncStoreSkipsUnchanged(t *testing.T) {
	f := &fakeKV{}
	s := newSyncStore(f, 1, "p/", "synced", true, testStoreMetrics())
	runStore(t, s)
	s.upsert("k", []byte("v"), time.Now())
	waitFor(t, 10*time.Second, "first put", func() bool { return len(f.list()) == 1 })
	s.upsert("k", []byte("v"), time.Now())
	s.delete("never", time.Now())
	s.delete("k", time.Now())
	waitFor(t, 10*time.Second, "delete", func() bool { return len(f.list()) == 2 })
	if got, want := f.list(), []string{"put p/k=v", "delete p/k"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("writes = %v, want %v", got, want)
	}
}

// TestSyncStoreCanaryAfterFirstList: no canary before markSynced; then the
// canary comes after every key queued before it, even when a write of
// one of them failed and was retried behind it (handleSync refuses while
// pendingSync is not empty).
func TestSyncStoreCanaryAfterFirstList(t *testing.T) {
	f := &fakeKV{failN: 1}
	s := newSyncStore(f, 1, "p/", "synced", true, testStoreMetrics())
	f.gate.Lock() // the writer blocks on its first write
	runStore(t, s)
	for _, k := range []string{"a", "b", "c"} {
		s.upsert(k, []byte("1"), time.Now())
	}
	if s.hasSynced() {
		t.Fatal("synced before the first list was marked")
	}
	// The first write (a) fails and is queued again behind the canary.
	s.markSynced(time.Now())
	f.gate.Unlock()
	waitFor(t, 10*time.Second, "canary", s.hasSynced)
	ops := f.list()
	if len(ops) != 4 || !strings.HasPrefix(ops[3], "put synced=") || !slices.Contains(ops[:3], "put p/a=1") {
		t.Fatalf("writes = %v, want the three keys (a retried) then the canary", ops)
	}
	// A key changed after the canary was queued does not hold it back.
	s.upsert("d", []byte("1"), time.Now())
	waitFor(t, 10*time.Second, "d", func() bool { return len(f.list()) == 5 })
}
