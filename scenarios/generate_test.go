package scenarios

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestGenerateRelabel(t *testing.T) {
	s, err := Builtin("relabel")
	if err != nil {
		t.Fatal(err)
	}
	top, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Nodes) != 200 || len(top.Pods) != 20000 || len(top.Namespaces) != 5 {
		t.Fatalf("got %d nodes, %d pods, %d namespaces", len(top.Nodes), len(top.Pods), len(top.Namespaces))
	}
	cidr := netip.MustParsePrefix(s.Cluster.PodCIDR)
	names := map[string]bool{}
	ips := map[netip.Addr]bool{}
	perNode := map[int]int{}
	for _, p := range top.Pods {
		key := p.Namespace + "/" + p.Name
		if names[key] {
			t.Fatalf("duplicate pod name %s", key)
		}
		names[key] = true
		if ips[p.IP] {
			t.Fatalf("duplicate pod IP %s", p.IP)
		}
		ips[p.IP] = true
		if !cidr.Contains(p.IP) || !top.Nodes[p.NodeIndex].PodCIDR.Contains(p.IP) {
			t.Fatalf("pod %s IP %s outside its node's %s", key, p.IP, top.Nodes[p.NodeIndex].PodCIDR)
		}
		if p.Labels[LabelApp] != p.Deployment || p.Labels[LabelPodTemplateHash] == "" || p.Labels["tier"] != "backend" {
			t.Fatalf("pod %s labels %v", key, p.Labels)
		}
		perNode[p.NodeIndex]++
	}
	for i := range top.Nodes {
		if perNode[i] != 100 {
			t.Errorf("node %d runs %d pods, want 100 (spread)", i, perNode[i])
		}
	}
}

func TestGenerateDeterministic(t *testing.T) {
	for _, strategy := range []string{PlacementSpread, PlacementRandom} {
		s, err := Builtin("relabel-small")
		if err != nil {
			t.Fatal(err)
		}
		s.Cluster.Placement.Strategy = strategy
		a, err := s.Generate()
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(a.Pods, b.Pods, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Errorf("%s: two generations differ (-a +b):\n%s", strategy, diff)
		}
		s.Seed++
		c, err := s.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if a.Pods[0].Name == c.Pods[0].Name {
			t.Errorf("%s: another seed gave the same pod name %s", strategy, a.Pods[0].Name)
		}
	}
}

func TestTopologyAddRemove(t *testing.T) {
	s, err := Parse("t", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	s.Cluster.Placement.MaxPodsPerNode = 3
	top, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Pods) != 12 {
		t.Fatalf("%d pods, want 12", len(top.Pods))
	}
	// Every node is full: one more pod does not fit.
	if _, err := top.AddPod("a", DeploymentName(0)); err == nil {
		t.Fatal("AddPod on a full cluster succeeded")
	}
	victim := top.Pods[5]
	top.RemovePod(victim)
	p, err := top.AddPod("b", DeploymentName(1))
	if err != nil {
		t.Fatal(err)
	}
	if p.NodeIndex != victim.NodeIndex || p.IP != victim.IP {
		t.Errorf("replacement on node %d with %s, want node %d with the freed %s", p.NodeIndex, p.IP, victim.NodeIndex, victim.IP)
	}
	if got := len(top.PodsOnNode(p.NodeIndex)); got != 3 {
		t.Errorf("node %d has %d pods, want 3", p.NodeIndex, got)
	}
	if _, err := top.AddPod("a", "web"); err == nil {
		t.Error("AddPod with a bad deployment name succeeded")
	}
}

func TestDeploymentIndex(t *testing.T) {
	for _, tt := range []struct {
		in   string
		i    int
		want bool
	}{{"deploy-0", 0, true}, {"deploy-49", 49, true}, {"deploy-07", 0, false}, {"deploy--1", 0, false}, {"web", 0, false}} {
		i, ok := DeploymentIndex(tt.in)
		if ok != tt.want || (ok && i != tt.i) {
			t.Errorf("DeploymentIndex(%q) = %d, %v", tt.in, i, ok)
		}
	}
}

func BenchmarkGenerateRelabel(b *testing.B) {
	s, err := Builtin("relabel")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Generate(); err != nil {
			b.Fatal(err)
		}
	}
}
