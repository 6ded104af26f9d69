package agentcontract

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeStatuses(t *testing.T) {
	want := []Status{{Node: "n1", IPCacheDigest: "a/1", PolicyDigest: "b/2", LastChange: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	for _, tc := range []struct{ name, body string }{
		{"array with extra fields", `[{"node":"n1","ipcacheDigest":"a/1","policyDigest":"b/2","lastChange":"2026-01-01T00:00:00Z","synced":true}]`},
		{"object", ` {"agents":[{"node":"n1","ipcacheDigest":"a/1","policyDigest":"b/2","lastChange":"2026-01-01T00:00:00Z"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeStatuses([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("DecodeStatuses (-want +got):\n%s", d)
			}
		})
	}
	for _, body := range []string{`{"agents":`, `[{"node":1}]`, ``} {
		if _, err := DecodeStatuses([]byte(body)); err == nil {
			t.Errorf("DecodeStatuses(%q) succeeded, want an error", body)
		}
	}
}

func TestDecodeStatusesWork(t *testing.T) {
	body := `[{"node":"n1","work":{"received":{"pods":{"events":2,"bytes":300}},"cached":{"pods":{"objects":1,"bytes":150}},` +
		`"identities":4,"policyRecomputations":3,"endpointPolicyChanges":1,"policyMapKeys":9,"datapath":"bpf","datapathUpdates":12,"mapWrites":5,"kernelMapBytes":8192}},` +
		`{"node":"n2","work":{"datapath":"mem"}}]`
	got, err := DecodeStatuses([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	kb := uint64(8192)
	want := []Status{
		{Node: "n1", Work: &Work{
			Received: map[string]Traffic{"pods": {Events: 2, Bytes: 300}}, Cached: map[string]Holding{"pods": {Objects: 1, Bytes: 150}},
			Identities: 4, PolicyRecomputations: 3, EndpointPolicyChanges: 1, PolicyMapKeys: 9,
			Datapath: "bpf", DatapathUpdates: 12, MapWrites: 5, KernelMapBytes: &kb,
		}},
		// The mem datapath has no kernel maps: no figure, not zero.
		{Node: "n2", Work: &Work{Datapath: "mem"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("DecodeStatuses (-want +got):\n%s", d)
	}
}
