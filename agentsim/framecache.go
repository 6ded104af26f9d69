package agentsim

import (
	"hash/maphash"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// frameCache shares the decoding of watch frames between the agents of a
// process. Every agent reads its own watch stream from the API server over
// its own connection, as cilium-agents do; but the API server sends every
// watcher of an unfiltered watch (CiliumIdentities, CiliumEndpoints,
// CiliumEndpointSlices, policies, nodes, namespaces) the same bytes for the
// same event, so the 250 agents of a shard would decode the same 15 KiB
// CiliumEndpointSlice 250 times. With the cache, the first agent to read a
// frame decodes it and the others get its result: the decoded object is
// shared and read-only.
//
// Frames are keyed by a 128-bit hash of the resource name and their bytes.
// The cache keeps two generations and drops the older when the newer has
// held maxBytes of frames, so memory stays bounded while an event is still
// found by agents that read it some seconds after the first.
type frameCache struct {
	seeds    [2]maphash.Seed
	maxBytes int
	hits     prometheus.Counter
	misses   prometheus.Counter

	mu        sync.Mutex
	cur, prev map[frameKey]*sharedFrame
	curBytes  int
}

type frameKey [2]uint64

// sharedFrame is one decoded frame; once guards its decoding, so agents
// that read it while the first decodes wait instead of decoding it again.
type sharedFrame struct {
	once sync.Once
	v    any
	err  error
}

// defaultFrameCacheBytes bounds a generation: two are kept, and a decoded
// frame takes about twice its bytes (goccy/go-json keeps a copy of the
// frame that decoded strings point into).
const defaultFrameCacheBytes = 32 << 20

func newFrameCache(maxBytes int, m *Metrics) *frameCache {
	c := &frameCache{
		seeds:    [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		maxBytes: maxBytes,
		cur:      map[frameKey]*sharedFrame{},
	}
	if m != nil {
		c.hits = m.sharedFrames.WithLabelValues("hit")
		c.misses = m.sharedFrames.WithLabelValues("miss")
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
	c.mu.Lock()
	f, hit := c.cur[k]
	if !hit {
		if f, hit = c.prev[k]; !hit {
			f = &sharedFrame{}
		}
		// New or still in use: keep it in the current generation.
		c.cur[k] = f
		c.curBytes += len(frame)
		if c.curBytes > c.maxBytes {
			c.prev, c.cur, c.curBytes = c.cur, make(map[frameKey]*sharedFrame, len(c.cur)), 0
		}
	}
	c.mu.Unlock()
	if hit {
		if c.hits != nil {
			c.hits.Inc()
		}
	} else if c.misses != nil {
		c.misses.Inc()
	}
	f.once.Do(func() { f.v, f.err = decode(frame) })
	return f.v, f.err
}
