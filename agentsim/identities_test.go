package agentsim

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// TestIdentityEventsReachEverySubsystem checks the Agent's composition:
// an identity that comes or goes reaches the ipcache's digest (entries
// that carry it), the selector cache (its count), the policy digest and
// the local endpoints waiting for its label set or using it.
func TestIdentityEventsReachEverySubsystem(t *testing.T) {
	cfg := AgentConfig{Node: "n1", Mode: scenarios.ModeOperator, Metrics: newMetrics(prometheus.NewRegistry(), nil)}
	cfg.setDefaults()
	a := newAgentState(cfg)
	a.mu.Lock()
	defer a.mu.Unlock()

	l, err := identity.ParseKey("k8s:app=a;")
	if err != nil {
		t.Fatal(err)
	}
	const id = identity.ID(70000)
	// An ipcache entry that refers to the identity before it is known
	// (its CiliumEndpoint came first), and a local endpoint waiting for
	// the label set (operator mode: the operator creates it).
	a.setIP(10<<24|1, id, 1)
	a.ipc.recomputeDigest()
	a.dig.policyStale = false
	p := a.eps.add("ns/p", "ns", "p", "")
	p.ip = netip.MustParseAddr("10.0.0.2")
	p.want, p.wantKey = l, l.Key()
	if n := a.eps.queue.len(); n != 0 {
		t.Fatalf("queue holds %d endpoints before the identity came", n)
	}

	a.upsertIdentity(id, l, l.Key())
	if !a.ipc.stale {
		t.Error("ipcache digest not marked stale by an identity its entries carry")
	}
	if !a.dig.policyStale {
		t.Error("policy digest not marked stale by a new identity")
	}
	if n := a.pol.cache.Identities(); n != 1 {
		t.Errorf("selector cache holds %d identities, want 1", n)
	}
	wantQueued(t, a, "the endpoint waiting for the label set")

	a.ipc.recomputeDigest()
	if a.ipc.digest.Count != 1 {
		t.Errorf("ipcache digest counts %d entries, want 1", a.ipc.digest.Count)
	}
	p.id = id
	a.dig.policyStale = false
	a.deleteIdentity(id)
	if !a.ipc.stale || !a.dig.policyStale {
		t.Errorf("after delete: ipcache stale %v, policy stale %v; want both", a.ipc.stale, a.dig.policyStale)
	}
	if n := a.pol.cache.Identities(); n != 0 {
		t.Errorf("selector cache holds %d identities after the delete, want 0", n)
	}
	wantQueued(t, a, "the endpoint that used the identity")
}

// wantQueued checks that ns/p, and only it, is queued, and that a
// regeneration was asked for; it empties both.
func wantQueued(t *testing.T, a *Agent, what string) {
	t.Helper()
	if n := a.eps.queue.len(); n != 1 {
		t.Fatalf("queue holds %d endpoints, want %s", n, what)
	}
	if k, _, _ := a.eps.queue.get(); k != "ns/p" {
		t.Errorf("queued %q, want %s", k, what)
	}
	a.eps.queue.done("ns/p")
	select {
	case <-a.pol.sig:
	default:
		t.Error("no regeneration asked for")
	}
}
