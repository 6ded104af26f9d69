package agentsim

import (
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// frameCache shares the decoding of watch frames between the agents of a
// process. Every agent reads its own watch stream from the API server over
// its own connection, as cilium-agents do; but the API server sends every
// watcher of an unfiltered watch (CiliumIdentities, CiliumEndpoints,
// CiliumEndpointSlices, policies, nodes, namespaces) the same bytes for the
// same event, so every agent of a shard would decode the same (large)
// CiliumEndpointSlice once each. With the cache, the first agent to read a
// frame decodes it and the others get its result: the decoded object is
// shared and read-only.
//
// An agent never waits for another's decoding: one that reads a frame
// while another agent is still decoding it decodes its own copy. (Waiting,
// with sync.Once, made the agents of a loaded shard file one by one
// through each frame's mutex: their CiliumIdentity watches fell so far
// behind that the API server closed them, and the agents, relisting,
// allocated many more duplicate identities.)
//
// Frames are keyed by a 128-bit hash of the resource name and their bytes,
// in frameStripes independent parts. Each keeps two generations and drops
// the older when the newer has held its share of maxBytes of frames, so
// memory stays bounded while an event is still found by agents that read
// it some seconds after the first.
type frameCache struct {
	seeds   [2]maphash.Seed
	stripes [frameStripes]frameStripe
	hits    prometheus.Counter
	misses  prometheus.Counter
	busy    prometheus.Counter
}

const frameStripes = 16

type frameStripe struct {
	mu        sync.Mutex
	maxBytes  int
	cur, prev map[frameKey]*sharedFrame
	curBytes  int
}

type frameKey [2]uint64

// sharedFrame is one decoded frame, published by ready once v and err are
// set.
type sharedFrame struct {
	ready atomic.Bool
	v     any
	err   error
}

// defaultFrameCacheBytes bounds a generation: two are kept, and a decoded
// frame takes about twice its bytes (goccy/go-json keeps a copy of the
// frame that decoded strings point into).
const defaultFrameCacheBytes = 32 << 20

func newFrameCache(maxBytes int, m *Metrics) *frameCache {
	c := &frameCache{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
	for i := range c.stripes {
		c.stripes[i].maxBytes = max(1, maxBytes/frameStripes)
		c.stripes[i].cur = map[frameKey]*sharedFrame{}
	}
	if m != nil {
		c.hits = m.sharedFrames.WithLabelValues("hit")
		c.misses = m.sharedFrames.WithLabelValues("miss")
		c.busy = m.sharedFrames.WithLabelValues("busy")
	}
	return c
}

func (c *frameCache) key(resource string, frame []byte) frameKey {
	var k frameKey
	for i, s := range c.seeds {
		var h maphash.Hash
		h.SetSeed(s)
		h.WriteString(resource)
		h.WriteByte(0)
		h.Write(frame)
		k[i] = h.Sum64()
	}
	return k
}

// get returns the decoding of frame, calling decode only if no agent of
// the process decoded the same bytes of the same resource recently. What
// it returns is shared: the caller must not modify it.
func (c *frameCache) get(resource string, frame []byte, decode func([]byte) (any, error)) (any, error) {
	k := c.key(resource, frame)
	s := &c.stripes[k[0]%frameStripes]
	s.mu.Lock()
	f, found := s.cur[k]
	if !found {
		if f, found = s.prev[k]; !found {
			f = &sharedFrame{}
		}
		// New or still in use: keep it in the current generation.
		s.cur[k] = f
		s.curBytes += len(frame)
		if s.curBytes > s.maxBytes {
			s.prev, s.cur, s.curBytes = s.cur, make(map[frameKey]*sharedFrame, len(s.cur)), 0
		}
	}
	s.mu.Unlock()
	switch {
	case !found:
		count(c.misses)
		f.v, f.err = decode(frame)
		f.ready.Store(true)
		return f.v, f.err
	case f.ready.Load():
		count(c.hits)
		return f.v, f.err
	default:
		// Another agent is decoding it: do not wait for it.
		count(c.busy)
		return decode(frame)
	}
}

func count(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}
