package truth

import (
	"net/netip"
	"testing"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/scenarios"
)

func smallState(t *testing.T) (*scenarios.Scenario, *scenarios.Topology, *State) {
	t.Helper()
	s, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	topo, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st, err := FromTopology(s, topo)
	if err != nil {
		t.Fatal(err)
	}
	return s, topo, st
}

func TestComputeChangesOnRelabel(t *testing.T) {
	_, topo, st := smallState(t)
	before, err := st.Compute()
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 20 {
		t.Fatalf("got %d nodes, want 20", len(before))
	}
	ns, _ := topo.Namespace("ns-0")
	ns.Labels["env"] = "staging"
	after, err := st.Compute()
	if err != nil {
		t.Fatal(err)
	}
	for n := range before {
		if before[n].IPCache == after[n].IPCache {
			t.Errorf("%s: ipcache digest unchanged by relabel", n)
		}
		if before[n].Policy == after[n].Policy {
			t.Errorf("%s: policy digest unchanged by relabel", n)
		}
	}
	if m := Compare(before, after); len(m) != 20 {
		t.Errorf("Compare found %d mismatches, want 20", len(m))
	}
	if m := Compare(after, after); len(m) != 0 {
		t.Errorf("Compare of equal maps: %v", m)
	}
}

// TestAgentSideMatches builds the digests as an agent does (numeric IDs,
// duplicates, a stale identity, incremental updates) and checks they equal
// the ground truth.
func TestAgentSideMatches(t *testing.T) {
	_, topo, st := smallState(t)
	want, err := st.Compute()
	if err != nil {
		t.Fatal(err)
	}
	const node = "node-0003"
	// Identity cache with two IDs per label set, plus a stale set.
	var cands []policy.Candidate
	idOf := map[string]identity.ID{}
	hashOf := map[identity.ID]LabelsHash{}
	next := identity.ID(256)
	used := map[LabelsHash]int{}
	var ipc Digest
	for _, p := range topo.Pods {
		l, err := st.PodIdentityLabels(p)
		if err != nil {
			t.Fatal(err)
		}
		k := l.Key()
		if _, ok := idOf[k]; !ok {
			idOf[k] = next
			for i := 0; i < 2; i++ {
				cands = append(cands, policy.Candidate{ID: next, Labels: l})
				hashOf[next] = HashLabels(l)
				next++
			}
		}
		lh := hashOf[idOf[k]]
		ipc.Add(IPCacheEntry(p.IP, lh))
		used[lh]++
	}
	// A stale identity: env=prod labels of a pod that no longer exists.
	stale := topo.Pods[0]
	old := *stale
	old.Labels = map[string]string{"app": "gone"}
	ls, _ := st.PodIdentityLabels(&old)
	cands = append(cands, policy.Candidate{ID: next, Labels: ls})
	hashOf[next] = HashLabels(ls)
	// A transient entry added and removed again.
	tmp := IPCacheEntry(netip.MustParseAddr("10.200.0.1"), 42)
	ipc.Add(tmp)
	ipc.Remove(tmp)

	var pol Digest
	for _, p := range topo.Pods {
		if p.Node != node {
			continue
		}
		l, _ := st.PodIdentityLabels(p)
		keys := policy.Resolve(st.Rules, cands, l)
		pol.Merge(EndpointPolicy(p.IP, Entries(keys, func(id identity.ID) (LabelsHash, bool) {
			lh := hashOf[id]
			return lh, used[lh] > 0
		})))
	}
	got := Expected{IPCache: ipc.String(), Policy: pol.String()}
	if got != want[node] {
		t.Errorf("agent-side digest %+v, want %+v", got, want[node])
	}
}
