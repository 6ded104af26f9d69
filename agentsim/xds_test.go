package agentsim

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-sim/stampede/agentsim/xdsclient"
	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/truth"
	"github.com/stampede-sim/stampede/scenarios"
)

// pushTruth does what the xDS control plane pushes to one node: every
// identity and its hosts, the policies, the node's endpoints. ids keeps
// label key -> ID across calls; identities no pod uses any more lose their
// hosts and are deleted.
func pushTruth(t *testing.T, x *XDSAgent, c *testCluster, node string, ids map[string]identity.ID, next *identity.ID) {
	t.Helper()
	hosts := map[identity.ID][]netip.Addr{}
	for _, p := range c.topo.Pods {
		l, err := c.st.PodIdentityLabels(p)
		if err != nil {
			t.Fatal(err)
		}
		id, ok := ids[l.Key()]
		if !ok {
			id = *next
			*next++
			ids[l.Key()] = id
			strs := make([]string, len(l))
			for i, x := range l {
				strs[i] = x.String()
			}
			if err := x.UpsertIdentity(uint32(id), strs); err != nil {
				t.Fatal(err)
			}
		}
		hosts[id] = append(hosts[id], p.IP)
		if p.Node == node {
			if err := x.SetEndpoint(xdsclient.Endpoint{Namespace: p.Namespace, Name: p.Name, IP: p.IP, Identity: uint32(id)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for id, addrs := range hosts {
		if err := x.SetIdentityHosts(uint32(id), addrs); err != nil {
			t.Fatal(err)
		}
	}
	for key, id := range ids {
		if _, ok := hosts[id]; !ok {
			if err := x.DeleteIdentityHosts(uint32(id)); err != nil {
				t.Fatal(err)
			}
			if err := x.DeleteIdentity(uint32(id)); err != nil {
				t.Fatal(err)
			}
			delete(ids, key)
		}
	}
	var nss []string
	for _, ns := range c.topo.Namespaces {
		nss = append(nss, ns.Name)
	}
	for _, cnp := range policy.RenderAll(c.s.Policies, nss) {
		rules, err := policy.Compile(&cnp)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.UpsertPolicy(cnp.Metadata.Namespace, cnp.Metadata.Name, rules); err != nil {
			t.Fatal(err)
		}
	}
}

// TestXDSAgentSinkConverges drives an xds agent through the Sink the
// xdsclient calls, with what the control plane would push before and after
// a relabel, and checks its digests against the ground truth.
func TestXDSAgentSinkConverges(t *testing.T) {
	s := smallScenario(t, scenarios.ModeXDS, true)
	topo, err := s.Generate()
	if err != nil {
		t.Fatal(err)
	}
	st, err := truth.FromTopology(s, topo)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, s: s, topo: topo, st: st}
	dp, _, err := datapath.Open(context.Background(), datapath.Config{Kind: datapath.KindMem}, nil)
	if err != nil {
		t.Fatal(err)
	}
	x, err := NewXDSAgent(AgentConfig{
		Node: "node-0003", Datapath: dp, Metrics: newMetrics(prometheus.NewRegistry(), nil),
		Interner: &identity.Interner{}, RegenInterval: 10 * time.Millisecond,
	}, "127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, f := range []func(context.Context){x.a.regenLoop, x.a.dpWriter} {
		wg.Add(1)
		go func() { defer wg.Done(); f(ctx) }()
	}
	defer func() {
		cancel()
		wg.Wait()
		x.a.closeDatapath()
	}()
	ids := map[string]identity.ID{}
	next := identity.MinID
	check := func(what string) {
		t.Helper()
		want := c.expected()["node-0003"]
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := x.Status()
			if got.IPCacheDigest == want.IPCache && got.PolicyDigest == want.Policy {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: got %s %s, want %+v", what, got.IPCacheDigest, got.PolicyDigest, want)
			}
			time.Sleep(10 * time.Millisecond) //nolint:forbidigo // waiting for the regeneration loop
		}
	}
	pushTruth(t, x, c, "node-0003", ids, &next)
	check("after setup")
	for i := range topo.Namespaces {
		topo.Namespaces[i].Labels["env"] = "staging"
	}
	pushTruth(t, x, c, "node-0003", ids, &next)
	check("after relabel")
	if st := x.Status(); st.LocalEndpoints != len(topo.PodsOnNode(3)) {
		t.Errorf("%d local endpoints, want %d", st.LocalEndpoints, len(topo.PodsOnNode(3)))
	}
}
