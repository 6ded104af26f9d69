package scenarios

import (
	"errors"
	"testing"
	"time"
)

func TestValidateAgentK8s(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		// wantPath is the one error's field path; empty means valid.
		wantPath string
	}{
		{name: "defaults", yaml: ""},
		{name: "kvstore without endpoint CRD", yaml: "agent: {disableEndpointCRD: true}\nmodes: [kvstore, xds]\n"},
		{name: "crd without endpoint CRD", yaml: "agent: {disableEndpointCRD: true}\nmodes: [kvstore, crd]\n", wantPath: "modes[1]"},
		{name: "ces without endpoint CRD", yaml: "agent: {disableEndpointCRD: true}\nmodes: [ces]\n", wantPath: "modes[0]"},
		{name: "negative sync interval", yaml: "agent: {endpointSyncInterval: -1s}\n", wantPath: "agent.endpointSyncInterval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t", []byte(base+tc.yaml))
			if tc.wantPath == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a ValidationError at %s, got %v", tc.wantPath, err)
			}
			if len(ve.Errors) != 1 || ve.Errors[0].Path != tc.wantPath {
				t.Fatalf("want exactly one error at %s, got %v", tc.wantPath, ve.Errors)
			}
		})
	}
}

func TestEndpointSyncIntervalIsCiliums(t *testing.T) {
	s, err := Parse("t", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	// RunK8sCiliumEndpointSync's controller interval, v1.17 to v1.19.
	if got := s.Agent.EndpointSyncInterval.Duration; got != 10*time.Second {
		t.Errorf("agent.endpointSyncInterval = %s, want Cilium's 10s", got)
	}
	if s.Agent.DisableEndpointCRD {
		t.Error("agent.disableEndpointCRD defaults to true, Cilium's default is false")
	}
}
