package agentsim

import (
	"testing"
	"time"

	"github.com/stampede-sim/stampede/scenarios"
)

// TestStatusDoesNotWaitForBusyAgent checks that Status answers while the
// agent's lock is held (a long regeneration): with the last report, which
// is the not-synced placeholder before any report was computed.
func TestStatusDoesNotWaitForBusyAgent(t *testing.T) {
	cfg := AgentConfig{Node: "n1", Mode: scenarios.ModeCRD}
	cfg.setDefaults()
	a := newAgentState(cfg)
	a.synced.Store(true)
	a.mu.Lock()
	st := a.Status()
	if st.Node != "n1" || st.Synced {
		a.mu.Unlock()
		t.Fatalf("busy agent: got %+v, want the placeholder of n1 (not synced)", st)
	}
	a.mu.Unlock()
	// The busy call started a refresh that waited for the lock; it holds
	// the lock for a moment once the test lets go. Wait for it, so that
	// the next call finds the agent idle.
	for deadline := time.Now().Add(10 * time.Second); a.status.refreshing.Load(); {
		if time.Now().After(deadline) {
			t.Fatal("the refresh the busy call started never finished")
		}
		time.Sleep(time.Millisecond)
	}
	if st := a.Status(); !st.Synced {
		t.Fatalf("idle agent: got %+v, want a fresh report (synced)", st)
	}
	a.mu.Lock()
	st = a.Status()
	a.mu.Unlock()
	if !st.Synced {
		t.Fatalf("busy agent after a report: got %+v, want the last report (synced)", st)
	}
}
