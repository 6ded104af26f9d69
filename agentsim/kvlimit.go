package agentsim

import (
	"context"
	"time"

	"golang.org/x/time/rate"
)

// kvListBatch is how many keys one page of a kvstore list holds: Cilium
// lists a prefix in pages of etcd.limit keys, 256 unless set
// (pkg/kvstore/etcd.go newClient ListBatchSize and paginatedList; read at
// a v1.16/v1.17 revision of the file, later ones not read).
const kvListBatch = 256

// kvLimiter is the rate limiter in front of an agent's etcd operations:
// Cilium's etcd client waits on one before every Get, Update, Delete,
// CreateOnly, their ...IfLocked forms, ListPrefix, the list before a
// watch and each watch (re)start, but not before LockPath, Unlock or lease
// keepalives (pkg/kvstore/etcd.go; read at a v1.16/v1.17 revision). The
// limiter is a pkg/rate APILimiter with RateLimit = RateBurst = etcd.qps
// (pkg/defaults KVstoreQPS, 20) and ParallelRequests = etcd.maxInflight,
// which defaults to etcd.qps: at most qps operations a second and qps in
// flight. A nil *kvLimiter does not limit.
type kvLimiter struct {
	rate  *rate.Limiter
	slots chan struct{}
	m     *Metrics
}

// newKVLimiter limits to qps operations a second, qps at a time; qps < 1
// means no limit (nil).
func newKVLimiter(qps int, m *Metrics) *kvLimiter {
	if qps < 1 {
		return nil
	}
	return &kvLimiter{rate: rate.NewLimiter(rate.Limit(qps), qps), slots: make(chan struct{}, qps), m: m}
}

// wait blocks until one more operation may start, and returns the function
// that ends it (frees its in-flight slot).
func (l *kvLimiter) wait(ctx context.Context) (done func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	start := time.Now()
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := l.rate.Wait(ctx); err != nil {
		<-l.slots
		return nil, err
	}
	if l.m != nil {
		l.m.kvLimited.Inc()
		l.m.kvLimitWait.Add(time.Since(start).Seconds())
	}
	return func() { <-l.slots }, nil
}
