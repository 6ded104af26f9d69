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
