package controlplane

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// gcLimiter bounds identity deletions as Cilium's operator does
// (cilium/cilium pkg/rate Limiter, used by operator/identitygc gc.go
// registerGC with --identity-gc-rate-interval and --identity-gc-rate-limit,
// v1.17-v1.19): at most limit deletions in each interval-long window, the
// windows following each other from the limiter's start. Unlike a token
// bucket (golang.org/x/time/rate) it does not refill during a window: a
// GC run with more than limit identities to delete deletes limit of them
// at once, then waits for the next window, and so on.
type gcLimiter struct {
	interval time.Duration
	limit    int
	now      func() time.Time

	mu    sync.Mutex
	start time.Time // of the current window
	used  int       // deletions in the current window
}

func newGCLimiter(interval time.Duration, limit int, now func() time.Time) (*gcLimiter, error) {
	if interval <= 0 || limit < 1 {
		return nil, fmt.Errorf("controlPlane.identityGC: rateInterval (%v) and rateLimit (%d) must be positive", interval, limit)
	}
	if now == nil {
		now = time.Now
	}
	return &gcLimiter{interval: interval, limit: limit, now: now, start: now()}, nil
}

// Wait takes one deletion from the current window, waiting for the next
// window if this one is used up, or returns ctx's error.
func (l *gcLimiter) Wait(ctx context.Context) error {
	for {
		l.mu.Lock()
		now := l.now()
		if n := now.Sub(l.start) / l.interval; n > 0 {
			l.start = l.start.Add(n * l.interval)
			l.used = 0
		}
		if l.used < l.limit {
			l.used++
			l.mu.Unlock()
			return nil
		}
		wait := l.start.Add(l.interval).Sub(now)
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
