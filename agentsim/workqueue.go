package agentsim

import "sync"

// workQueue hands pod keys to the endpoint workers: a key is queued at most
// once and processed by one worker at a time.
type workQueue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	items      []string
	queued     map[string]bool
	processing map[string]bool
	redo       map[string]bool
	deletes    map[string]*localPod
	closed     bool
}

func newWorkQueue() *workQueue {
	q := &workQueue{queued: map[string]bool{}, processing: map[string]bool{}, redo: map[string]bool{}, deletes: map[string]*localPod{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *workQueue) add(k string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if q.processing[k] {
		q.redo[k] = true
		return
	}
	if !q.queued[k] {
		q.queued[k] = true
		q.items = append(q.items, k)
		q.cond.Signal()
	}
}

// addDelete queues the deletion of a removed pod's endpoint.
func (q *workQueue) addDelete(k string, p *localPod) {
	q.mu.Lock()
	q.deletes[k] = p
	q.mu.Unlock()
	q.add(k)
}

// get blocks for the next key; ok is false once the queue is shut down.
func (q *workQueue) get() (k string, del *localPod, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", nil, false
	}
	k = q.items[0]
	q.items = q.items[1:]
	delete(q.queued, k)
	q.processing[k] = true
	del = q.deletes[k]
	delete(q.deletes, k)
	return k, del, true
}

func (q *workQueue) done(k string) {
	q.mu.Lock()
	delete(q.processing, k)
	redo := q.redo[k]
	delete(q.redo, k)
	q.mu.Unlock()
	if redo {
		q.add(k)
	}
}

func (q *workQueue) shutdown() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

func (q *workQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
