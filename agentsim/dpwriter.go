package agentsim

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// Datapath writes are queued under the agent's lock and applied, in order
// and batched, by the agent's datapath writer goroutine under dpMu, so that
// event handlers never wait for map updates.

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

// queueDP queues a datapath write (caller holds mu).
func (a *Agent) queueDP(op dpOp) {
	a.dpOps = append(a.dpOps, op)
	select {
	case a.dpSig <- struct{}{}:
	default:
	}
}

// dpFlushInterval is the least time between two flushes of one agent's
// queued datapath writes. Writes queued meanwhile go to the kernel in one
// batched call per run of ipcache upserts: with 1,000 agents each seeing
// every CiliumEndpoint event, one map syscall per event per agent was a
// fifth of the agents' CPU. The agent's digests (what convergence is
// judged on) never wait for it; the kernel maps lag by at most this.
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
		case <-a.dpSig:
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
// large for its policy map are recorded (see Agent.overflow) once the
// writes are done.
func (a *Agent) flushDP() {
	a.mu.Lock()
	ops := a.dpOps
	a.dpOps = nil
	a.mu.Unlock()
	if len(ops) == 0 {
		return
	}
	over, fit := a.applyDP(ops)
	if len(over)+len(fit) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ep := range fit {
		if _, ok := a.overflow[ep]; ok {
			delete(a.overflow, ep)
			a.polDirty = true
		}
	}
	for _, ep := range over {
		if _, ok := a.overflow[ep]; !ok {
			a.overflow[ep] = struct{}{}
			a.polDirty = true
		}
	}
}

// applyDP writes ops to the datapath and returns the endpoints whose new
// policy overflowed the policy map and those whose policy was written.
func (a *Agent) applyDP(ops []dpOp) (over, fit []netip.Addr) {
	a.dpMu.Lock()
	defer a.dpMu.Unlock()
	dp := a.cfg.Datapath
	var ups []datapath.IPCacheEntry
	var dels []netip.Prefix
	flush := func() {
		if len(ups) > 0 {
			if err := dp.UpsertIPCache(ups); err != nil {
				a.log.Warn("datapath ipcache upsert", "entries", len(ups), "err", err)
			}
			ups = ups[:0]
		}
		if len(dels) > 0 {
			if err := dp.DeleteIPCache(dels); err != nil {
				a.log.Warn("datapath ipcache delete", "entries", len(dels), "err", err)
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
				a.cfg.Metrics.policyOverflows.Add(float64(len(op.eps)))
			default:
				a.log.Warn("datapath policy update", "endpoints", len(op.eps), "first", op.eps[0], "err", err)
			}
		case dpDeleteEndpoint:
			flush()
			if err := dp.DeleteEndpoint(op.ep); err != nil {
				a.log.Warn("datapath endpoint delete", "endpoint", op.ep, "err", err)
			}
		}
	}
	flush()
	return over, fit
}

// closeDatapath applies what is queued and closes the datapath.
func (a *Agent) closeDatapath() {
	a.flushDP()
	a.dpMu.Lock()
	defer a.dpMu.Unlock()
	if err := a.cfg.Datapath.Close(); err != nil {
		a.log.Warn("close datapath", "err", err)
	}
}
