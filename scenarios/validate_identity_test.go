package scenarios

import (
	"strings"
	"testing"
	"time"
)

func TestIdentityKnobsPerRelease(t *testing.T) {
	tests := []struct {
		version      string
		wantJitter   time.Duration
		wantAllocJit bool
	}{
		{"1.17", 0, false},
		{"1.18", 30 * time.Second, false},
		{"1.19", 30 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			s, err := Parse("t", []byte(base+"cilium: {version: \""+tt.version+"\"}\nmodes: [crd, kvstore]\n"))
			if err != nil {
				t.Fatal(err)
			}
			a := s.Agent
			if a.IdentityMaxJitter == nil || a.IdentityMaxJitter.Duration != tt.wantJitter {
				t.Errorf("agent.identityMaxJitter = %v, want %s", a.IdentityMaxJitter, tt.wantJitter)
			}
			if a.AllocationJitter == nil || *a.AllocationJitter != tt.wantAllocJit {
				t.Errorf("agent.allocationJitter = %v, want %v", a.AllocationJitter, tt.wantAllocJit)
			}
			if a.KVStoreLockLeaseTTL.Duration != 25*time.Second || a.PolicyTriggerInterval.Duration != time.Second || a.EndpointWorkers != 8 {
				t.Errorf("lock TTL %s, policy trigger %s, workers %d; want 25s, 1s, 8", a.KVStoreLockLeaseTTL, a.PolicyTriggerInterval, a.EndpointWorkers)
			}
			for _, k := range s.Knobs() {
				switch k.Path {
				case "agent.identityMaxJitter", "agent.allocationJitter", "agent.kvstoreLockLeaseTTL", "agent.policyTriggerInterval", "agent.endpointWorkers":
				default:
					continue
				}
				if !strings.Contains(k.Source, "PR #") && !strings.Contains(k.Source, "pkg/") && !strings.Contains(k.Source, "stampede:") {
					t.Errorf("%s has no source", k.Path)
				}
			}
		})
	}
}

// TestIdentityMaxJitterZeroIsKept checks that an explicit 0 (jitter off)
// is not replaced by the release's 30s.
func TestIdentityMaxJitterZeroIsKept(t *testing.T) {
	s, err := Parse("t", []byte(base+"agent: {identityMaxJitter: 0s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if j := s.Agent.IdentityMaxJitter; j == nil || j.Duration != 0 {
		t.Fatalf("agent.identityMaxJitter = %v, want the scenario's 0s", j)
	}
}

func TestIdentityKnobsRejected(t *testing.T) {
	tests := []struct {
		name, yaml, path, msg string
	}{
		{"jitter before 1.18", "cilium: {version: \"1.17\"}\nagent: {identityMaxJitter: 30s}\n", "agent.identityMaxJitter", "1.17"},
		{"negative jitter", "agent: {identityMaxJitter: -1s}\n", "agent.identityMaxJitter", ">= 0"},
		{"allocation jitter before 1.19", "cilium: {version: \"1.18\"}\nagent: {allocationJitter: true}\n", "agent.allocationJitter", "1.18"},
		{"lock TTL below a second", "agent: {kvstoreLockLeaseTTL: 500ms}\n", "agent.kvstoreLockLeaseTTL", "whole number"},
		{"policy trigger too long", "agent: {policyTriggerInterval: 2h}\n", "agent.policyTriggerInterval", "[1ms, 1m]"},
		{"no endpoint workers", "agent: {endpointWorkers: -1}\n", "agent.endpointWorkers", "[1, 1024]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t", []byte(base+tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.path+": ") || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("want an error at %s mentioning %q, got %v", tt.path, tt.msg, err)
			}
		})
	}
	if _, err := Parse("t", []byte(base+"cilium: {version: \"1.17\"}\nmodes: [crd]\nagent: {identityMaxJitter: 0s, allocationJitter: false}\n")); err != nil {
		t.Fatalf("switching off what 1.17 lacks is fine: %v", err)
	}
}
