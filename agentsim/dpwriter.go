package agentsim

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// datapathWriter is the agent's way to its datapath.Datapath: writes are
// queued under Agent.mu and applied, in order and batched, by the agent's
// writer goroutine (dpWriter) under the writer's own lock, so that event
// handlers never wait for map updates. The two locks are never held
// together: flushDP takes the queue under Agent.mu, lets go, and applies it
// under mu.
type datapathWriter struct {
	dp  datapath.Datapath
	log *slog.Logger
	m   *Metrics

	// ops are the queued writes and overflow the endpoints whose current
	// policy the datapath refused as larger than an endpoint's policy map:
	// they still enforce an older policy, so the agent does not report
	// their new one. Both guarded by Agent.mu.
	ops      []dpOp
	overflow map[netip.Addr]struct{}
	sig      chan struct{}

	// mu serialises the calls into the datapath; lastStats are the
	// counters of the last Stats call.
	mu        sync.Mutex
	lastStats atomic.Pointer[datapath.Stats]
}

func newDatapathWriter(dp datapath.Datapath, log *slog.Logger, m *Metrics) *datapathWriter {
	return &datapathWriter{dp: dp, log: log, m: m, overflow: map[netip.Addr]struct{}{}, sig: make(chan struct{}, 1)}
}

type dpOpKind uint8

const (
	dpUpsertIP dpOpKind = iota
	dpDeleteIP
	dpReplacePolicy
	dpDeleteEndpoint
)

type dpOp struct {
	kind dpOpKind
	ip   uint32
	id   identity.ID
	ep   netip.Addr
	eps  []netip.Addr // dpReplacePolicy: every endpoint that gets keys
	keys []policykey.Key
}

// queue queues a datapath write (caller holds Agent.mu).
func (w *datapathWriter) queue(op dpOp) {
	w.ops = append(w.ops, op)
	select {
	case w.sig <- struct{}{}:
	default:
	}
}

// queueDP queues a datapath write (caller holds mu).
func (a *Agent) queueDP(op dpOp) { a.dp.queue(op) }

// dpFlushInterval is the least time between two flushes of one agent's
// queued datapath writes. Writes queued meanwhile go to the kernel in one
// batched call per run of ipcache upserts: every agent sees every
// CiliumEndpoint event of the cluster, so a map syscall per event per
// agent grows with nodes times endpoints and would take the CPU the
// agents' control-plane work is measured with. The agent's digests (what
// convergence is judged on) never wait for it; the kernel maps lag by at
// most this.
const dpFlushInterval = 50 * time.Millisecond

// dpWriter applies queued writes until ctx ends, then applies what is left.
func (a *Agent) dpWriter(ctx context.Context) {
	pause := time.NewTimer(0)
	defer pause.Stop()
	for {
		select {
		case <-ctx.Done():
			a.flushDP()
			return
		case <-a.dp.sig:
		}
		a.flushDP()
		pause.Reset(dpFlushInterval)
		select {
		case <-ctx.Done():
			a.flushDP()
			return
		case <-pause.C:
		}
	}
}

// flushDP applies every queued write: runs of ipcache upserts and deletes
// become one batched call each, and endpoints with the same new policy
// one group update. Endpoints whose policy the datapath refused as too
// large for its policy map are recorded (datapathWriter.overflow) once
// the writes are done.
func (a *Agent) flushDP() {
	a.mu.Lock()
	ops := a.dp.ops
	a.dp.ops = nil
	a.mu.Unlock()
	if len(ops) == 0 {
		return
	}
	over, fit := a.dp.apply(ops)
	if len(over)+len(fit) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ep := range fit {
		if _, ok := a.dp.overflow[ep]; ok {
			delete(a.dp.overflow, ep)
			a.dig.policyStale = true
		}
	}
	for _, ep := range over {
		if _, ok := a.dp.overflow[ep]; !ok {
			a.dp.overflow[ep] = struct{}{}
			a.dig.policyStale = true
		}
	}
}

// apply writes ops to the datapath and returns the endpoints whose new
// policy overflowed the policy map and those whose policy was written.
func (w *datapathWriter) apply(ops []dpOp) (over, fit []netip.Addr) {
	w.mu.Lock()
	defer w.mu.Unlock()
	dp := w.dp
	var ups []datapath.IPCacheEntry
	var dels []netip.Prefix
	flush := func() {
		if len(ups) > 0 {
			if err := dp.UpsertIPCache(ups); err != nil {
				w.log.Warn("datapath ipcache upsert", "entries", len(ups), "err", err)
			}
			ups = ups[:0]
		}
		if len(dels) > 0 {
			if err := dp.DeleteIPCache(dels); err != nil {
				w.log.Warn("datapath ipcache delete", "entries", len(dels), "err", err)
			}
			dels = dels[:0]
		}
	}
	for _, op := range ops {
		switch op.kind {
		case dpUpsertIP:
			if len(dels) > 0 {
				flush()
			}
			ups = append(ups, datapath.IPCacheEntry{Prefix: netip.PrefixFrom(keyAddr(op.ip), 32), Identity: op.id})
		case dpDeleteIP:
			if len(ups) > 0 {
				flush()
			}
			dels = append(dels, netip.PrefixFrom(keyAddr(op.ip), 32))
		case dpReplacePolicy:
			flush()
			err := dp.ReplacePolicyGroup(op.eps, op.keys)
			switch {
			case err == nil:
				fit = append(fit, op.eps...)
			case errors.Is(err, datapath.ErrPolicyOverflow):
				// Cilium keeps the endpoint's old policy and fails the
				// regeneration; so does the agent here.
				over = append(over, op.eps...)
				w.m.policyOverflows.Add(float64(len(op.eps)))
			default:
				w.log.Warn("datapath policy update", "endpoints", len(op.eps), "first", op.eps[0], "err", err)
			}
		case dpDeleteEndpoint:
			flush()
			if err := dp.DeleteEndpoint(op.ep); err != nil {
				w.log.Warn("datapath endpoint delete", "endpoint", op.ep, "err", err)
			}
		}
	}
	flush()
	return over, fit
}

// closeDatapath applies what is queued and closes the datapath.
func (a *Agent) closeDatapath() {
	a.flushDP()
	a.dp.mu.Lock()
	defer a.dp.mu.Unlock()
	if err := a.dp.dp.Close(); err != nil {
		a.log.Warn("close datapath", "err", err)
	}
}

// peekStats returns the datapath's counters without ever waiting: those
// of the last call while the writer applies a batch (false if there were
// none). It only tries the writer's lock, so Status may call it under
// Agent.mu.
func (w *datapathWriter) peekStats() (datapath.Stats, bool) {
	if w.mu.TryLock() {
		defer w.mu.Unlock()
		if w.dp == nil {
			return datapath.Stats{}, false
		}
		st := w.dp.Stats()
		w.lastStats.Store(&st)
		return st, true
	}
	if st := w.lastStats.Load(); st != nil {
		return *st, true
	}
	return datapath.Stats{}, false
}

// stats returns the datapath's counters. While the writer applies a batch
// (which can take seconds in a storm of large policy updates), it returns
// the counters of the last call instead of waiting, so that /metrics
// answers at once.
func (w *datapathWriter) stats() (datapath.Stats, bool) {
	if !w.mu.TryLock() {
		if st := w.lastStats.Load(); st != nil {
			return *st, true
		}
		w.mu.Lock()
	}
	defer w.mu.Unlock()
	if w.dp == nil {
		return datapath.Stats{}, false
	}
	st := w.dp.Stats()
	w.lastStats.Store(&st)
	return st, true
}
