package agentsim

import (
	"hash/maphash"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/stampede-sim/stampede/internal/agentcontract"
)

// agentWork counts what the agent received, holds and did, by resource
// (agentcontract.Work): the figures a cilium-agent of the same cluster
// would show, which the simulator's own CPU and memory are not. Counting
// is atomic adds on counters each watch looks up once, when it starts;
// mu guards only the lookup.
type agentWork struct {
	mu  sync.Mutex
	res map[string]*resourceWork

	// regens counts policy recomputations of every local endpoint,
	// epChanges the endpoint policies they changed.
	regens    atomic.Uint64
	epChanges atomic.Uint64
}

// resourceWork is what arrived and is held of one resource.
type resourceWork struct {
	events, bytes        atomic.Uint64
	objects, cachedBytes atomic.Int64
}

func newAgentWork() *agentWork { return &agentWork{res: map[string]*resourceWork{}} }

// resource returns the counters of resource name, creating them.
func (w *agentWork) resource(name string) *resourceWork {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.res[name]
	if !ok {
		r = &resourceWork{}
		w.res[name] = r
	}
	return r
}

// add puts the counters of every resource into out.
func (w *agentWork) add(out *agentcontract.Work) {
	w.mu.Lock()
	names := make([]string, 0, len(w.res))
	res := make(map[string]*resourceWork, len(w.res))
	for n, r := range w.res {
		names = append(names, n)
		res[n] = r
	}
	w.mu.Unlock()
	sort.Strings(names)
	for _, n := range names {
		r := res[n]
		addTraffic(out, n, agentcontract.Traffic{Events: r.events.Load(), Bytes: r.bytes.Load()})
		addHolding(out, n, agentcontract.Holding{Objects: r.objects.Load(), Bytes: r.cachedBytes.Load()})
	}
	out.PolicyRecomputations = w.regens.Load()
	out.EndpointPolicyChanges = w.epChanges.Load()
}

func addTraffic(out *agentcontract.Work, name string, t agentcontract.Traffic) {
	if t == (agentcontract.Traffic{}) {
		return
	}
	if out.Received == nil {
		out.Received = map[string]agentcontract.Traffic{}
	}
	out.Received[name] = t
}

func addHolding(out *agentcontract.Work, name string, h agentcontract.Holding) {
	if h == (agentcontract.Holding{}) {
		return
	}
	if out.Cached == nil {
		out.Cached = map[string]agentcontract.Holding{}
	}
	out.Cached[name] = h
}

// countingReader adds the bytes read to a counter (one atomic add per
// Read of the buffered reader above it, not per frame).
type countingReader struct {
	r io.Reader
	n *atomic.Uint64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n.Add(uint64(n))
	}
	return n, err
}

// objectKeySeed hashes object keys for objectSizes.
var objectKeySeed = maphash.MakeSeed()

// objectKey hashes an object's namespace and name (or a kvstore key): the
// sizes of a watch's objects are kept by hash so that they pin no decoded
// string (and with it its watch frame).
func objectKey(namespace, name string) uint64 {
	// Two one-shot hashes, mixed: maphash.Hash's streaming state costs
	// more than the map update.
	return maphash.String(objectKeySeed, namespace)*0x9e3779b97f4a7c15 ^ maphash.String(objectKeySeed, name)
}

// kvObjectKey hashes a kvstore key as objectKey hashes names.
func kvObjectKey(key []byte) uint64 { return maphash.Bytes(objectKeySeed, key) }

// kvObjectKeyString is kvObjectKey of a string key (the same hash).
func kvObjectKeyString(key string) uint64 { return maphash.String(objectKeySeed, key) }

// objectSizes is the size, as last received, of every object a watch
// holds, as a cilium-agent's informer store holds the objects: lists
// replace it, ADDED and MODIFIED set an object's size, DELETED removes
// it. Cilium's k8s resources (pkg/k8s/resource/resource.go,
// (*resource).newInformer, read on main in 2026-12) keep every object of
// a watched resource, after an optional transform to a slim type, in a
// client-go Indexer keyed by namespace/name: added and updated objects are
// stored, deleted ones removed. Used by the watch's goroutine only; its
// totals go to the resource's counters.
type objectSizes struct {
	rw    *resourceWork
	sizes map[uint64]uint32
	total int64
}

func newObjectSizes(rw *resourceWork) *objectSizes {
	return &objectSizes{rw: rw, sizes: map[uint64]uint32{}}
}

// reset forgets every object (a list follows; its publish makes the new
// totals visible at once, so Status never sees an empty cache between).
func (s *objectSizes) reset() {
	clear(s.sizes)
	s.total = 0
}

// set records the size of object k (no publish: call publish after a
// batch).
func (s *objectSizes) set(k uint64, size int) {
	s.total += int64(size) - int64(s.sizes[k])
	s.sizes[k] = uint32(min(size, 1<<32-1))
}

func (s *objectSizes) delete(k uint64) {
	s.total -= int64(s.sizes[k])
	delete(s.sizes, k)
}

// publish makes the totals visible to Status.
func (s *objectSizes) publish() {
	s.rw.objects.Store(int64(len(s.sizes)))
	s.rw.cachedBytes.Store(s.total)
}
