package agentsim

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stampede-sim/stampede/internal/agentcontract"
)

// TestStatusMeetsContract: what an agent serves at agentcontract.StatusPath
// decodes into the fields the harness reads.
func TestStatusMeetsContract(t *testing.T) {
	at := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	served := []Status{{
		Node: "node-1", Mode: "crd", Synced: true,
		IPCacheDigest: "3/abc", PolicyDigest: "2/def" + agentcontract.PolicyOverflowMarker + "1",
		LastChange: at, Identities: 7, PolicyOverflow: 1,
	}}
	body, err := json.Marshal(served)
	if err != nil {
		t.Fatal(err)
	}
	got, err := agentcontract.DecodeStatuses(body)
	if err != nil {
		t.Fatal(err)
	}
	want := []agentcontract.Status{{Node: "node-1", IPCacheDigest: "3/abc", PolicyDigest: "2/def overflow:1", LastChange: at}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("decoded status (-want +got):\n%s", d)
	}
}
