package scenarios

import (
	"strings"
	"testing"
)

// TestResolveWithRelease: the release replaces the file's before defaults
// are applied, so the release's own knob values follow it; an unknown
// release is refused.
func TestResolveWithRelease(t *testing.T) {
	latest, err := Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	old, err := ResolveWithRelease("relabel-small", "1.17", []string{"crd", "kvstore"})
	if err != nil {
		t.Fatal(err)
	}
	if old.Cilium.Version != "1.17" || old.Name != latest.Name {
		t.Fatalf("got release %q, scenario %q", old.Cilium.Version, old.Name)
	}
	if latest.Agent.IdentityMaxJitter.Duration == 0 || old.Agent.IdentityMaxJitter.Duration != 0 {
		t.Errorf("identityMaxJitter: latest %v, 1.17 %v; want 1.17's default (none) after the override",
			latest.Agent.IdentityMaxJitter.Duration, old.Agent.IdentityMaxJitter.Duration)
	}
	if _, err := ResolveWithRelease("relabel-small", "1.17", nil); err == nil || !strings.Contains(err.Error(), "modes[3]") {
		t.Errorf("relabel-small's operator mode on 1.17: %v, want an error naming modes[3]", err)
	}
	if _, err := ResolveWithRelease("relabel-small", "1.5", nil); err == nil || !strings.Contains(err.Error(), "1.5") {
		t.Errorf("unknown release: %v", err)
	}
}
