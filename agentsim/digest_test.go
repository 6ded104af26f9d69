package agentsim

import (
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestDigestBudgetInterval(t *testing.T) {
	var none *digestBudget
	if got := none.interval(); got != 0 {
		t.Errorf("nil budget interval = %v, want 0", got)
	}
	none.record(0, time.Second) // no panic
	b := newDigestBudget(0.1)
	b.record(0, 3*time.Millisecond)                  // agent 1
	b.record(0, 2*time.Millisecond)                  // agent 2
	b.record(3*time.Millisecond, 1*time.Millisecond) // agent 1 again: replaces its cost
	// 3 ms of digests per round at a tenth of a core: a round every 30 ms.
	if got, want := b.interval(), 30*time.Millisecond; got != want {
		t.Errorf("interval = %v, want %v", got, want)
	}
}

// TestStatusDigestsWaitForTheirTurn checks that an agent whose state keeps
// changing recomputes its digests only once per budget interval, serves
// its previous digests meanwhile with a current LastChange, and
// recomputes at the first report after the interval.
func TestStatusDigestsWaitForTheirTurn(t *testing.T) {
	dp, _, err := datapath.Open(t.Context(), datapath.Config{Kind: datapath.KindMem}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	budget := newDigestBudget(0.1)
	budget.total.Store(int64(time.Second)) // the other agents' digests: a round every 10 s
	cfg := AgentConfig{
		Node: "node-0000", Mode: scenarios.ModeCRD, Datapath: dp, DigestBudget: budget,
		Metrics: newMetrics(prometheus.NewRegistry(), nil), Now: func() time.Time { return now },
	}
	cfg.setDefaults()
	a := newAgentState(cfg)
	a.mu.Lock()
	defer a.mu.Unlock()

	a.setIP(10<<24|1, 300, 1)
	a.polDirty = true
	first := a.statusLocked() // first report: computed at once
	if a.ipDirty || a.polDirty {
		t.Fatal("first report left the digests dirty")
	}

	now = now.Add(time.Second)
	a.upsertIdentity(300, nil, "k8s:app=a;")
	a.changed()
	waiting := a.statusLocked()
	if !a.ipDirty {
		t.Fatal("digest recomputed 1 s after the last one, inside a 10 s interval")
	}
	if waiting.IPCacheDigest != first.IPCacheDigest {
		t.Errorf("waiting report's ipcache digest %s, want the previous %s", waiting.IPCacheDigest, first.IPCacheDigest)
	}
	if !waiting.LastChange.Equal(now) {
		t.Errorf("waiting report's LastChange %v, want the change at %v", waiting.LastChange, now)
	}

	now = now.Add(10 * time.Second)
	turn := a.statusLocked()
	if a.ipDirty {
		t.Fatal("digest not recomputed after its interval")
	}
	if turn.IPCacheDigest == first.IPCacheDigest {
		t.Errorf("ipcache digest %s unchanged after the entry's identity became known", turn.IPCacheDigest)
	}
}

func TestThreadCPUCountsWorkNotWaiting(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	time.Sleep(50 * time.Millisecond)
	slept := threadCPU() - start
	x := 0
	for i := 0; i < 20_000_000; i++ {
		x += i ^ x>>3
	}
	worked := threadCPU() - start - slept
	runtime.KeepAlive(x)
	if slept > 20*time.Millisecond {
		t.Errorf("50 ms of sleep counted as %v of CPU", slept)
	}
	if worked <= 0 {
		t.Errorf("a busy loop counted %v of CPU", worked)
	}
}

func TestDigestIntervalIsBounded(t *testing.T) {
	b := newDigestBudget(0.1)
	b.record(0, time.Hour)
	if got := b.interval(); got != maxDigestInterval {
		t.Errorf("interval = %v, want the bound %v", got, maxDigestInterval)
	}
}
