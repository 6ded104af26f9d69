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
	kb := uint64(4096)
	work := &agentcontract.Work{
		Received:   map[string]agentcontract.Traffic{"ciliumendpoints": {Events: 3, Bytes: 900}},
		Cached:     map[string]agentcontract.Holding{"ciliumendpoints": {Objects: 2, Bytes: 600}},
		Identities: 7, PolicyRecomputations: 2, EndpointPolicyChanges: 4, PolicyMapKeys: 40,
		Datapath: "bpf", DatapathUpdates: 50, MapWrites: 10, KernelMapBytes: &kb,
	}
	served := []Status{{
		Node: "node-1", Mode: "crd", Synced: true,
		IPCacheDigest: "3/abc", PolicyDigest: "2/def" + agentcontract.PolicyOverflowMarker + "1",
		LastChange: at, Identities: 7, PolicyOverflow: 1, Work: work,
	}}
	body, err := json.Marshal(served)
	if err != nil {
		t.Fatal(err)
	}
	got, err := agentcontract.DecodeStatuses(body)
	if err != nil {
		t.Fatal(err)
	}
	want := []agentcontract.Status{{Node: "node-1", IPCacheDigest: "3/abc", PolicyDigest: "2/def overflow:1", LastChange: at, Work: work}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("decoded status (-want +got):\n%s", d)
	}
}
