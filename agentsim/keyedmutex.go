package agentsim

import (
	"context"
	"sync"
)

// keyedMutex is a set of mutexes by key, created on demand and dropped
// when nobody holds or waits for them.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	ch   chan struct{} // one token: held when empty
	refs int
}

// lock takes the mutex of key, or returns ctx's error.
func (m *keyedMutex) lock(ctx context.Context, key string) error {
	m.mu.Lock()
	if m.locks == nil {
		m.locks = map[string]*keyedLock{}
	}
	l := m.locks[key]
	if l == nil {
		l = &keyedLock{ch: make(chan struct{}, 1)}
		l.ch <- struct{}{}
		m.locks[key] = l
	}
	l.refs++
	m.mu.Unlock()
	select {
	case <-l.ch:
		return nil
	case <-ctx.Done():
		m.release(key, l)
		return ctx.Err()
	}
}

// unlock releases the mutex of key taken by lock.
func (m *keyedMutex) unlock(key string) {
	m.mu.Lock()
	l := m.locks[key]
	m.mu.Unlock()
	l.ch <- struct{}{}
	m.release(key, l)
}

func (m *keyedMutex) release(key string, l *keyedLock) {
	m.mu.Lock()
	l.refs--
	if l.refs == 0 {
		delete(m.locks, key)
	}
	m.mu.Unlock()
}
