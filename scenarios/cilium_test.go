package scenarios

import (
	"errors"
	"strings"
	"testing"
)

func TestCiliumVersionDefaultsToLatest(t *testing.T) {
	s, err := Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	if s.Cilium.Version != latestVersion {
		t.Fatalf("cilium.version = %q, want the latest profile %q", s.Cilium.Version, latestVersion)
	}
	// 1.20 has a profile but is not "latest" until its presets run.
	if rs := Releases(); rs[len(rs)-1] != "1.20" {
		t.Fatalf("releases %v: want 1.20 the newest", rs)
	}
}

func TestCiliumUnknownVersionListsKnown(t *testing.T) {
	_, err := Parse("t", []byte(base+"cilium: {version: \"1.2\"}\n"))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a ValidationError, got %v", err)
	}
	if len(ve.Errors) != 1 || ve.Errors[0].Path != "cilium.version" {
		t.Fatalf("want exactly one error at cilium.version, got %v", ve.Errors)
	}
	for _, v := range Releases() {
		if !strings.Contains(ve.Errors[0].Msg, v) {
			t.Errorf("error %q does not list known release %s", ve.Errors[0].Msg, v)
		}
	}
}

func TestOperatorModeNeedsItsRelease(t *testing.T) {
	_, err := Parse("t", []byte(base+"cilium: {version: \"1.17\"}\nmodes: [crd, operator]\n"))
	if err == nil || !strings.Contains(err.Error(), "modes[1]") || !strings.Contains(err.Error(), "1.17") {
		t.Fatalf("want an error at modes[1] naming release 1.17, got %v", err)
	}
	if _, err := Parse("t", []byte(base+"cilium: {version: \"1.18\"}\nmodes: [crd, operator]\n")); err != nil {
		t.Fatalf("1.18 has operator-managed identities: %v", err)
	}
}

func TestReleaseFillsOnlyUnsetKnobs(t *testing.T) {
	s, err := Parse("t", []byte(base+"agent: {clientQPS: 7}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Release()
	if s.Agent.ClientQPS != 7 {
		t.Errorf("agent.clientQPS = %g, the scenario's 7 was overwritten", s.Agent.ClientQPS)
	}
	if s.Agent.ClientBurst != r.Agent.ClientBurst {
		t.Errorf("agent.clientBurst = %d, want the release's %d", s.Agent.ClientBurst, r.Agent.ClientBurst)
	}
	// The scenario must not share memory with the profile.
	*s.ControlPlane.XDS.Delta = !*s.ControlPlane.XDS.Delta
	if *r.ControlPlane.XDS.Delta == *s.ControlPlane.XDS.Delta {
		t.Fatal("changing the scenario's controlPlane.xds.delta changed the release profile")
	}
}

func TestKnobsNameTheirSource(t *testing.T) {
	s, err := Parse("t", []byte(base+"agent: {clientQPS: 7}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Knob{}
	for _, k := range s.Knobs() {
		got[k.Path] = k
	}
	if k := got["agent.clientQPS"]; k.Value != "7" || k.Source != "scenario" {
		t.Errorf("agent.clientQPS = %+v, want 7 from the scenario", k)
	}
	k := got["agent.clientBurst"]
	if !strings.HasPrefix(k.Source, "Cilium "+s.Cilium.Version+":") || !strings.Contains(k.Source, "k8s-client-burst") {
		t.Errorf("agent.clientBurst source = %q, want the release and its Cilium source", k.Source)
	}
}
