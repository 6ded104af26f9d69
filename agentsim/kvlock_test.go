package agentsim

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestKeyedMutexExcludes checks that the per-path lock lets one holder
// per key in at a time, keys are independent, a waiter gives up with its
// context, and no lock is left behind.
func TestKeyedMutexExcludes(t *testing.T) {
	var m keyedMutex
	ctx := context.Background()
	const workers, rounds = 8, 50
	var wg sync.WaitGroup
	inside := map[string]int{}
	var mu sync.Mutex
	for w := 0; w < workers; w++ {
		key := []string{"a", "b"}[w%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				if err := m.lock(ctx, key); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside[key]++
				if inside[key] != 1 {
					t.Errorf("key %s: %d holders", key, inside[key])
				}
				mu.Unlock()
				mu.Lock()
				inside[key]--
				mu.Unlock()
				m.unlock(key)
			}
		}()
	}
	wg.Wait()

	if err := m.lock(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := m.lock(cctx, "c"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock of a held key: got %v, want deadline exceeded", err)
	}
	m.unlock("c")
	m.mu.Lock()
	left := len(m.locks)
	m.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d locks left behind", left)
	}
}
