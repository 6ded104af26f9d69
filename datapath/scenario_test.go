package datapath_test

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"testing"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/policykey"
	"github.com/stampede-sim/stampede/internal/testenv"
	"github.com/stampede-sim/stampede/scenarios"
)

// cluster is the ground truth of a scenario's topology: every pod's
// identity, allocated one number per distinct label set.
type cluster struct {
	scn    *scenarios.Scenario
	topo   *scenarios.Topology
	nsLbls map[string]map[string]string
	ids    map[string]identity.ID // label key -> identity
	labels map[identity.ID]identity.Labels
	podID  []identity.ID // by index in topo.Pods
	next   identity.ID
}

func newCluster(t *testing.T, name string) *cluster {
	t.Helper()
	s, err := scenarios.Builtin(name)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{scn: s, topo: topo, nsLbls: map[string]map[string]string{},
		ids: map[string]identity.ID{}, labels: map[identity.ID]identity.Labels{}, next: 256}
	for _, ns := range topo.Namespaces {
		c.nsLbls[ns.Name] = maps.Clone(ns.Labels)
	}
	c.computeIdentities()
	return c
}

func (c *cluster) computeIdentities() {
	f := identity.DefaultFilter()
	c.podID = c.podID[:0]
	for _, p := range c.topo.Pods {
		l := identity.PodLabels(f, identity.PodInfo{
			Cluster: c.scn.Cluster.Name, Namespace: p.Namespace, ServiceAccount: p.ServiceAccount,
			PodLabels: p.Labels, NamespaceLabels: c.nsLbls[p.Namespace],
		}, nil)
		id, ok := c.ids[l.Key()]
		if !ok {
			id = c.next
			c.next++
			c.ids[l.Key()] = id
			c.labels[id] = l
		}
		c.podID = append(c.podID, id)
	}
}

// relabel applies the scenario's relabel step to the namespaces.
func (c *cluster) relabel(t *testing.T) {
	t.Helper()
	for _, st := range c.scn.Steps {
		if st.Relabel == nil {
			continue
		}
		for ns, l := range c.nsLbls {
			if len(st.Relabel.Namespaces) > 0 && !contains(st.Relabel.Namespaces, ns) {
				continue
			}
			maps.Copy(l, st.Relabel.Set)
			for _, k := range st.Relabel.Remove {
				delete(l, k)
			}
		}
		c.computeIdentities()
		return
	}
	t.Fatalf("scenario %s has no relabel step", c.scn.Name)
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// sync brings an agent's datapath to the cluster's state as the agent of
// node would: the full ipcache, and each local endpoint's resolved policy.
func (c *cluster) sync(t *testing.T, d datapath.Datapath, node int) {
	t.Helper()
	var es []datapath.IPCacheEntry
	for i, p := range c.topo.Pods {
		es = append(es, datapath.IPCacheEntry{Prefix: netip.PrefixFrom(p.IP, 32), Identity: c.podID[i]})
	}
	if err := d.UpsertIPCache(es); err != nil {
		t.Fatal(err)
	}
	cache := policy.NewCache()
	for id, l := range c.labels {
		cache.UpsertIdentity(id, l)
	}
	var nss []string
	for _, ns := range c.topo.Namespaces {
		nss = append(nss, ns.Name)
	}
	var rules []policy.Rule
	for _, cnp := range policy.RenderAll(c.scn.Policies, nss) {
		r, err := policy.Compile(&cnp)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r...)
	}
	cache.SetRules(rules)
	for i, p := range c.topo.Pods {
		if p.NodeIndex != node {
			continue
		}
		if err := d.ReplacePolicy(p.IP, cache.Resolve(c.labels[c.podID[i]])); err != nil {
			t.Fatal(err)
		}
	}
}

// TestScenarioRelabel drives an agent's datapath through the relabel-small
// scenario with the project's own identity and policy resolution: before
// the relabel (env=prod) pods of other namespaces reach a local endpoint on
// 8080 and not on 9090; after it (env=staging) the reverse. bpf and mem
// agree on every checked packet and on the digest.
func TestScenarioRelabel(t *testing.T) {
	c := newCluster(t, "relabel-small")
	const node = 0
	local := c.topo.PodsOnNode(node)
	if len(local) == 0 {
		t.Fatal("node 0 has no pods")
	}
	cfg := datapath.SizeFor(datapath.KindBPF, len(c.topo.Pods), len(local), 2*len(c.ids)+16)
	bpfd := openBPF(t, cfg)
	cfg.Kind = datapath.KindMem
	mem, _, err := datapath.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := mem.Close(); err != nil {
			t.Error(err)
		}
	}()

	dst := local[0].IP
	var srcs []int // one pod of every namespace, none on this node
	seen := map[string]bool{}
	for i, p := range c.topo.Pods {
		if p.NodeIndex != node && !seen[p.Namespace] {
			seen[p.Namespace] = true
			srcs = append(srcs, i)
		}
	}
	checkAll := func(phase string, want8080, want9090 datapath.Verdict) {
		t.Helper()
		if mem.Digest() != bpfd.Digest() {
			t.Fatalf("%s: digests differ: mem %s, bpf %s", phase, mem.Digest(), bpfd.Digest())
		}
		for _, i := range srcs {
			src := c.topo.Pods[i]
			for port, want := range map[uint16]datapath.Verdict{8080: want8080, 9090: want9090, 22: datapath.VerdictDrop} {
				p := datapath.Packet{Src: src.IP, Dst: dst, DstPort: port, Proto: policykey.ProtoTCP}
				for _, d := range []datapath.Datapath{bpfd, mem} {
					got, err := d.Check(p)
					if err != nil {
						t.Fatal(err)
					}
					if got != want {
						t.Errorf("%s: %s (from namespace %s): got %s, want %s", phase, p, src.Namespace, got, want)
					}
				}
			}
		}
	}

	for _, d := range []datapath.Datapath{bpfd, mem} {
		c.sync(t, d, node)
	}
	checkAll("before relabel", datapath.VerdictAllow, datapath.VerdictDrop)

	before := len(c.ids)
	c.relabel(t)
	if len(c.ids) != 2*before {
		t.Fatalf("relabel: %d label sets before, %d after: want every pod to get a new identity", before, len(c.ids))
	}
	for _, d := range []datapath.Datapath{bpfd, mem} {
		c.sync(t, d, node)
	}
	checkAll("after relabel", datapath.VerdictDrop, datapath.VerdictAllow)
}

func openBPF(t *testing.T, cfg datapath.Config) datapath.Datapath {
	t.Helper()
	testenv.RequireRoot(t)
	d, _, err := datapath.Open(context.Background(), cfg, nil)
	if errors.Is(err, datapath.ErrNoBPF) {
		testenv.Skip(t, "bpf datapath: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}
