package agentsim

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestKVLimiterRateAndInflight checks both halves of Cilium's etcd client
// limiter: no more than qps operations start in a second after the burst,
// and no more than qps are in flight at once.
func TestKVLimiterRateAndInflight(t *testing.T) {
	const qps = 10
	l := newKVLimiter(qps, nil)
	ctx := context.Background()

	// Rate: the first qps pass at once (the burst), the next qps take at
	// least (qps-1)/qps of a second more. A lower bound only: a slow
	// machine cannot make it fail.
	start := time.Now()
	for range 2 * qps {
		done, err := l.wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		done()
	}
	if d := time.Since(start); d < 850*time.Millisecond {
		t.Errorf("%d operations at %d a second took %v, want >= 0.9s", 2*qps, qps, d)
	}

	// In flight: 3*qps operations that each hold their slot a while
	// never have more than qps running.
	l = newKVLimiter(qps, nil)
	l.rate.SetLimit(1e6) // only the slots limit here
	l.rate.SetBurst(1e6)
	var running, peak atomic.Int64
	var wg sync.WaitGroup
	for range 3 * qps {
		wg.Go(func() {
			done, err := l.wait(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			running.Add(-1)
			done()
		})
	}
	wg.Wait()
	if p := peak.Load(); p > qps {
		t.Errorf("peak operations in flight = %d, want <= %d", p, qps)
	}

	// A cancelled wait frees nothing it did not take.
	l = newKVLimiter(1, nil)
	done, _ := l.wait(ctx)
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := l.wait(cctx); err == nil {
		t.Error("a second wait with the only slot taken did not fail when its context ended")
	}
	done()
	if newKVLimiter(0, nil) != nil {
		t.Error("qps 0 made a limiter, want none")
	}
}
