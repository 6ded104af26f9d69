package agentsim

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/truth"
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
	a.dig.policyStale = true
	first := a.statusLocked() // first report: computed at once
	if a.ipc.stale || a.dig.policyStale {
		t.Fatal("first report left the digests dirty")
	}

	now = now.Add(time.Second)
	a.upsertIdentity(300, nil, "k8s:app=a;")
	a.changed()
	waiting := a.statusLocked()
	if !a.ipc.stale {
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
	if a.ipc.stale {
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

// TestPolicyDigestCountsLabelSetsOnce checks the agent's policy digest
// against the ground truth's way of summing it (truth.Entries, then
// EndpointPolicy per endpoint) while duplicates come and go, label sets
// stop being used by the ipcache, and endpoints have policies of several
// ports.
func TestPolicyDigestCountsLabelSetsOnce(t *testing.T) {
	a := relabelAgent(t, 1000)
	a.regenerate()
	a.mu.Lock()
	defer a.mu.Unlock()
	want := func() truth.Digest {
		var d truth.Digest
		used := func(id identity.ID) (truth.LabelsHash, bool) {
			e := a.ids.get(identity.ID(id))
			if e == nil {
				return 0, false
			}
			return e.lh, a.ipc.isUsed(e.lh)
		}
		for _, p := range a.eps.pods {
			if p.allowed != nil {
				d.Merge(truth.EndpointPolicy(p.ip, truth.Entries(p.allowed, used)))
			}
		}
		return d
	}
	check := func(when string) {
		t.Helper()
		a.dig.policyStale = true
		a.refreshDigests()
		if w := want(); a.dig.policy != w || w.Count == 0 {
			t.Fatalf("%s: digest %v, want %v (non-empty)", when, a.dig.policy, w)
		}
	}
	check("start")
	// Identities 250-499 are the first duplicates of every label set
	// (1,000 identities over 250 sets): other identities of each set stay
	// in the ipcache, so the digest must not change.
	before := a.dig.policy
	for i := 250; i < 500; i++ {
		a.deleteIdentity(identity.ID(identity.MinID) + identity.ID(i))
	}
	a.mu.Unlock()
	a.regenerate()
	a.mu.Lock()
	check("after deleting one identity per label set")
	if a.dig.policy != before {
		t.Fatalf("deleting duplicates changed the digest: %v, was %v", a.dig.policy, before)
	}
	// Every ipcache entry of the first 10 label sets goes: those sets
	// are no longer used.
	for ip, e := range a.ipc.entries {
		if id := e.id - identity.ID(identity.MinID); id%250 < 10 {
			a.deleteIP(ip, e.owner)
		}
	}
	check("after ipcache deletes")
	if a.dig.policy == before {
		t.Fatal("the digest did not change when label sets stopped being used")
	}
	// Prod identities (the other policy's port), two per label set, the
	// second only in the ipcache.
	for i := 0; i < 10; i++ {
		l := identity.PodLabels(a.cfg.Filter, identity.PodInfo{
			Cluster: "default", Namespace: fmt.Sprint("ns-", i%5), ServiceAccount: "default",
			PodLabels:       map[string]string{"app": fmt.Sprint("deploy-", i), "tier": "backend"},
			NamespaceLabels: map[string]string{"env": "prod"},
		}, a.cfg.Interner)
		first, second := identity.ID(50000+2*i), identity.ID(50001+2*i)
		a.upsertIdentity(first, l, l.Key())
		a.upsertIdentity(second, l, l.Key())
		a.setIP(uint32(11<<24|i), second, uint32(900000+i))
	}
	a.mu.Unlock()
	a.regenerate()
	a.mu.Lock()
	check("after prod identities")
}
