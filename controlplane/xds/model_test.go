package xds_test

import (
	"net/netip"
	"testing"

	"github.com/stampede-sim/stampede/controlplane/xds"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/xdsapi"
)

// counts serves a Changes batch on a fresh server and returns the number
// of resources of each type it holds, for checking what a batch does.
func held(t *testing.T, batches ...*xds.Changes) map[string]int {
	t.Helper()
	srv := newServer(t)
	for _, c := range batches {
		if _, err := srv.Apply(c); err != nil {
			t.Fatal(err)
		}
	}
	return srv.Resources()
}

// TestModel drives the Model through pod, namespace and policy changes and
// checks the identities it allocates and the resources it publishes.
func TestModel(t *testing.T) {
	ip := netip.MustParseAddr
	m := xds.NewModel("c1", nil)
	m.SetNamespace("a", map[string]string{"env": "prod"})
	for i, name := range []string{"p1", "p2", "p3"} {
		if err := m.SetPod(xds.Pod{Namespace: "a", Name: name, Node: "n1", IP: ip("10.0.0." + string(rune('1'+i))), Labels: map[string]string{"app": "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	// A pod without IP yet is not published.
	if err := m.SetPod(xds.Pod{Namespace: "a", Name: "pending", Node: "n2", Labels: map[string]string{"app": "x"}}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetPod(xds.Pod{Namespace: "a", Name: "other", Node: "n2", IP: ip("10.0.1.1"), Labels: map[string]string{"app": "y"}}); err != nil {
		t.Fatal(err)
	}
	c1, err := m.Flush()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Identities(); got != 2 {
		t.Fatalf("identities = %d, want 2 (one per label set)", got)
	}
	id1, _ := m.IdentityOf("a", "p1")
	id2, _ := m.IdentityOf("a", "p2")
	if id1 != id2 || id1 < identity.MinID {
		t.Errorf("p1 and p2 share labels but got identities %d and %d", id1, id2)
	}
	if _, ok := m.IdentityOf("a", "pending"); ok {
		t.Error("pending pod has an identity")
	}
	want := map[string]int{xdsapi.TypeIdentity: 2, xdsapi.TypeIdentityHosts: 2, xdsapi.TypePolicy: 0, xdsapi.TypeEndpoint: 4}
	if got := held(t, c1); !equalCounts(got, want) {
		t.Errorf("after first flush: %v, want %v", got, want)
	}

	// Relabel the namespace: new identities, old ones withdrawn.
	m.SetNamespace("a", map[string]string{"env": "staging"})
	c2, err := m.Flush()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Identities(); got != 2 {
		t.Errorf("identities after relabel = %d, want 2", got)
	}
	if id, _ := m.IdentityOf("a", "p1"); id == id1 {
		t.Error("relabel kept the old identity")
	}
	if got := held(t, c1, c2); !equalCounts(got, want) {
		t.Errorf("after relabel: %v, want %v", got, want)
	}

	// Delete a pod, move another to a new node, delete the namespace.
	m.DeletePod("a", "p3")
	if err := m.SetPod(xds.Pod{Namespace: "a", Name: "p2", Node: "n3", IP: ip("10.0.3.1"), Labels: map[string]string{"app": "x"}}); err != nil {
		t.Fatal(err)
	}
	c3, err := m.Flush()
	if err != nil {
		t.Fatal(err)
	}
	want3 := map[string]int{xdsapi.TypeIdentity: 2, xdsapi.TypeIdentityHosts: 2, xdsapi.TypePolicy: 0, xdsapi.TypeEndpoint: 3}
	if got := held(t, c1, c2, c3); !equalCounts(got, want3) {
		t.Errorf("after delete and move: %v, want %v", got, want3)
	}
	m.DeleteNamespace("a")
	c4, err := m.Flush()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Identities(); got != 0 {
		t.Errorf("identities without namespace = %d, want 0", got)
	}
	if got := held(t, c1, c2, c3, c4); !equalCounts(got, map[string]int{}) {
		t.Errorf("after namespace delete: %v, want nothing", got)
	}

	// Bad input.
	if err := m.SetPod(xds.Pod{Name: "x"}); err == nil {
		t.Error("SetPod without namespace: no error")
	}
}

// TestModelReserve checks that reserved identities are reused for their
// label set and withdrawn when unused.
func TestModelReserve(t *testing.T) {
	m := xds.NewModel("c1", nil)
	m.SetNamespace("a", nil)
	pod := xds.Pod{Namespace: "a", Name: "p", Node: "n", IP: netip.MustParseAddr("10.0.0.1"), Labels: map[string]string{"app": "x"}}
	if err := m.SetPod(pod); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	want, _ := m.IdentityOf("a", "p")
	snap := m.Snapshot()

	// A new model (a restarted control plane) told about the old IDs.
	m2 := xds.NewModel("c1", nil)
	set, _ := snap.Identities()
	for _, id := range set {
		l, err := identity.ParseKey(joinLabels(id.GetLabels()))
		if err != nil {
			t.Fatal(err)
		}
		// Shift: reserve the real one and an unused extra.
		if err := m2.Reserve(identity.ID(id.GetId()), l); err != nil {
			t.Fatal(err)
		}
	}
	extra := identity.NewLabels(identity.Label{Source: identity.SourceK8s, Key: "gone", Value: "1"})
	if err := m2.Reserve(9999, extra); err != nil {
		t.Fatal(err)
	}
	if err := m2.Reserve(9999, extra); err == nil {
		t.Error("reserving twice: no error")
	}
	m2.SetNamespace("a", nil)
	if err := m2.SetPod(pod); err != nil {
		t.Fatal(err)
	}
	c, err := m2.Flush()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := m2.IdentityOf("a", "p"); got != want {
		t.Errorf("identity after restart = %d, want %d", got, want)
	}
	if _, del := c.Identities(); len(del) != 1 || del[0] != "9999" {
		t.Errorf("withdrawn = %v, want [9999]", del)
	}
}

func joinLabels(ls []string) string {
	s := ""
	for _, l := range ls {
		s += l + ";"
	}
	return s
}

func equalCounts(got, want map[string]int) bool {
	for _, typ := range xdsapi.Types {
		if got[typ] != want[typ] {
			return false
		}
	}
	return true
}
