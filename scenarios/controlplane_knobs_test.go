package scenarios

import (
	"errors"
	"strings"
	"testing"
)

// withNodes rewrites base's node count.
func withNodes(n string) string { return strings.Replace(base, "nodes: 4", "nodes: "+n, 1) }

func TestCESSliceModeFollowsRelease(t *testing.T) {
	for _, tc := range []struct{ version, want string }{
		{"1.17", SliceModeIdentity},
		{"1.18", SliceModeFCFS},
		{"1.19", SliceModeFCFS},
	} {
		s, err := Parse("t", []byte(base+"cilium: {version: \""+tc.version+"\"}\nmodes: [ces]\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.version, err)
		}
		if got := s.ControlPlane.CES.SliceMode; got != tc.want {
			t.Errorf("Cilium %s: controlPlane.ces.sliceMode = %q, want %q", tc.version, got, tc.want)
		}
	}
	// 1.17 has both modes: FCFS may be chosen.
	if _, err := Parse("t", []byte(base+"cilium: {version: \"1.17\"}\nmodes: [ces]\ncontrolPlane: {ces: {sliceMode: fcfs}}\n")); err != nil {
		t.Errorf("1.17 with fcfs: %v", err)
	}
}

func TestCESSliceModeTheReleaseLacksIsAnError(t *testing.T) {
	_, err := Parse("t", []byte(base+"cilium: {version: \"1.18\"}\ncontrolPlane: {ces: {sliceMode: identity}}\n"))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a ValidationError, got %v", err)
	}
	if len(ve.Errors) != 1 || ve.Errors[0].Path != "controlPlane.ces.sliceMode" || !strings.Contains(ve.Errors[0].Msg, "1.18") {
		t.Fatalf("want one error at controlPlane.ces.sliceMode naming release 1.18, got %v", ve.Errors)
	}
	_, err = Parse("t", []byte(base+"controlPlane: {ces: {sliceMode: greedy}}\n"))
	if err == nil || !strings.Contains(err.Error(), "controlPlane.ces.sliceMode") {
		t.Fatalf("unknown slice mode: want an error at controlPlane.ces.sliceMode, got %v", err)
	}
}

// TestCESWriteRateStepsByNodes: unset, controlPlane.ces.writeQPS and
// writeBurst are the Helm chart's step for cluster.nodes; set, they stay.
func TestCESWriteRateStepsByNodes(t *testing.T) {
	r, err := LookupRelease("")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.CESWriteRate) < 2 {
		t.Fatalf("release %s has %d CES write rate steps, want a ladder", r.Version, len(r.CESWriteRate))
	}
	small, large := r.CESWriteRate[0], r.CESWriteRate[1]
	for _, tc := range []struct {
		nodes string
		want  CESRateStep
	}{
		{"4", small},
		{"250", large},
	} {
		s, err := Parse("t", []byte(withNodes(tc.nodes)))
		if err != nil {
			t.Fatal(err)
		}
		ces := s.ControlPlane.CES
		if ces.WriteQPS != tc.want.QPS || ces.WriteBurst != tc.want.Burst {
			t.Errorf("%s nodes: writeQPS/writeBurst = %g/%d, want the step from %d nodes, %g/%d",
				tc.nodes, ces.WriteQPS, ces.WriteBurst, tc.want.Nodes, tc.want.QPS, tc.want.Burst)
		}
		for _, k := range s.Knobs() {
			if k.Path != "controlPlane.ces.writeQPS" && k.Path != "controlPlane.ces.writeBurst" {
				continue
			}
			if !strings.Contains(k.Source, "ciliumEndpointSlice.rateLimits") || !strings.Contains(k.Source, "cluster.nodes "+tc.nodes) {
				t.Errorf("%s nodes: %s source = %q, want the Helm value and the node count", tc.nodes, k.Path, k.Source)
			}
		}
	}
	if small.QPS == large.QPS {
		t.Fatalf("steps %v and %v have the same rate: the test shows nothing", small, large)
	}
	s, err := Parse("t", []byte(withNodes("250")+"controlPlane: {ces: {writeQPS: 3}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.ControlPlane.CES.WriteQPS != 3 || s.ControlPlane.CES.WriteBurst != large.Burst {
		t.Errorf("writeQPS set to 3: got %g/%d, want 3 and the step's burst %d", s.ControlPlane.CES.WriteQPS, s.ControlPlane.CES.WriteBurst, large.Burst)
	}
}

func TestControlPlaneKnobErrorsNameTheirField(t *testing.T) {
	for _, tc := range []struct{ yaml, path string }{
		{"controlPlane: {identityGC: {rateInterval: -1s}}", "controlPlane.identityGC.rateInterval"},
		{"controlPlane: {identityGC: {rateLimit: -3}}", "controlPlane.identityGC.rateLimit"},
		{"controlPlane: {operatorIdentity: {retryBaseDelay: -1s}}", "controlPlane.operatorIdentity.retryBaseDelay"},
		{"controlPlane: {operatorIdentity: {retryBaseDelay: 10s, retryMaxDelay: 2s}}", "controlPlane.operatorIdentity.retryMaxDelay"},
		{"controlPlane: {operatorIdentity: {maxRetries: -1}}", "controlPlane.operatorIdentity.maxRetries"},
		{"agent: {kvstorePeriodicSync: -5m}", "agent.kvstorePeriodicSync"},
		{"controlPlane: {xds: {flushInterval: -1ms}}", "controlPlane.xds.flushInterval"},
	} {
		_, err := Parse("t", []byte(base+tc.yaml+"\n"))
		var ve *ValidationError
		if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Path != tc.path {
			t.Errorf("%s: want one error at %s, got %v", tc.yaml, tc.path, err)
		}
	}
	// maxRetries 0 is a value (never retry), not unset.
	s, err := Parse("t", []byte(base+"controlPlane: {operatorIdentity: {maxRetries: 0}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if *s.ControlPlane.OperatorIdentity.MaxRetries != 0 {
		t.Errorf("maxRetries: 0 became %d", *s.ControlPlane.OperatorIdentity.MaxRetries)
	}
}

func TestControlPlaneKnobsNameCiliumSources(t *testing.T) {
	s, err := Parse("t", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"controlPlane.identityGC.rateInterval":         "identity-gc-rate-interval",
		"controlPlane.identityGC.rateLimit":            "identity-gc-rate-limit",
		"controlPlane.operatorIdentity.retryBaseDelay": "operator/pkg/ciliumidentity",
		"controlPlane.operatorIdentity.retryMaxDelay":  "operator/pkg/ciliumidentity",
		"controlPlane.operatorIdentity.maxRetries":     "operator/pkg/ciliumidentity",
		"agent.kvstorePeriodicSync":                    "kvstore-periodic-sync",
		"controlPlane.ces.sliceMode":                   "37211",
		"controlPlane.xds.flushInterval":               "stampede",
	}
	for _, k := range s.Knobs() {
		if w, ok := want[k.Path]; ok {
			if !strings.Contains(k.Source, w) {
				t.Errorf("%s source = %q, want it to name %q", k.Path, k.Source, w)
			}
			delete(want, k.Path)
		}
	}
	for p := range want {
		t.Errorf("knob %s not listed", p)
	}
}

func TestCESWriteRateAboveTheReleaseCapIsAnError(t *testing.T) {
	_, err := Parse("t", []byte(base+"cilium: {version: \"1.18\"}\ncontrolPlane: {ces: {writeQPS: 80}}\n"))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Path != "controlPlane.ces.writeQPS" || !strings.Contains(ve.Errors[0].Msg, "1.18") {
		t.Fatalf("want one error at controlPlane.ces.writeQPS naming release 1.18, got %v", err)
	}
	if _, err := Parse("t", []byte(base+"cilium: {version: \"1.18\"}\ncontrolPlane: {ces: {writeQPS: 50, writeBurst: 100}}\n")); err != nil {
		t.Errorf("the cap itself is allowed: %v", err)
	}
}
