package controlplane

import (
	"context"
	"testing"
	"time"
)

// TestGCLimiterIsWindowed: Cilium's GC limiter lets rateLimit deletions
// through at once and then holds the next until the window ends; a token
// bucket of the same average rate would let the fourth through after a
// third of the window.
func TestGCLimiterIsWindowed(t *testing.T) {
	const window = 600 * time.Millisecond
	l, err := newGCLimiter(window, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var at []time.Duration
	for i := 0; i < 6; i++ {
		if err := l.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		at = append(at, time.Since(start))
	}
	for i := 0; i < 3; i++ {
		if at[i] > window/4 {
			t.Errorf("deletion %d waited %v; the window's first 3 go at once", i, at[i])
		}
	}
	for i := 3; i < 6; i++ {
		if at[i] < window*9/10 {
			t.Errorf("deletion %d came after %v, inside the first %v window of 3", i, at[i], window)
		}
	}
	if at[5]-at[3] > window/4 {
		t.Errorf("the second window's deletions spread over %v; they go at once", at[5]-at[3])
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for i := 0; i < 3; i++ {
		if err := l.Wait(ctx); err != nil {
			break
		}
		if i == 2 {
			t.Fatal("Wait kept granting past the limit with a cancelled context")
		}
	}
	if _, err := newGCLimiter(0, 3, nil); err == nil {
		t.Error("a zero rate interval was accepted")
	}
}
