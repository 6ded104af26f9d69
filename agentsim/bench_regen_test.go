package agentsim

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/scenarios"
)

// relabelAgent is a crd-mode agent of relabel-1k during its identity
// storm: the scenario's two policies rendered into each of 5 namespaces,
// 20 local endpoints spread over those namespaces, and ids identities over
// 250 label sets of the relabelled (staging) namespaces.
func relabelAgent(b testing.TB, ids int) *Agent {
	b.Helper()
	dp, _, err := datapath.Open(b.Context(), datapath.Config{Kind: datapath.KindMem, MaxIPCacheEntries: 1 << 20, MaxPolicyEntries: 1 << 20}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dp.Close() })
	cfg := AgentConfig{Node: "node-0000", Mode: scenarios.ModeCRD, Datapath: dp, Metrics: newMetrics(prometheus.NewRegistry(), nil)}
	cfg.setDefaults()
	a := newAgentState(cfg)
	a.mu.Lock()
	defer a.mu.Unlock()
	pols := []scenarios.Policy{
		{Name: "allow-from-prod", Ingress: []scenarios.IngressRule{{
			FromNamespaceLabels: map[string]string{"env": "prod"},
			Ports:               []scenarios.PortProtocol{{Port: 8080, Protocol: "TCP"}},
		}}},
		{Name: "allow-from-staging", Ingress: []scenarios.IngressRule{{
			FromNamespaceLabels: map[string]string{"env": "staging"},
			Ports:               []scenarios.PortProtocol{{Port: 9090, Protocol: "TCP"}},
		}}},
	}
	for n := 0; n < 5; n++ {
		for _, pol := range pols {
			cnp := policy.Render(pol, fmt.Sprint("ns-", n))
			rules, err := policy.Compile(&cnp)
			if err != nil {
				b.Fatal(err)
			}
			a.pol.rules[podKey(cnp.Metadata.Namespace, cnp.Metadata.Name)] = rules
		}
	}
	a.pol.dirty = true
	var sets []identity.Labels
	for i := 0; i < 250; i++ {
		sets = append(sets, identity.PodLabels(a.cfg.Filter, identity.PodInfo{
			Cluster: "default", Namespace: fmt.Sprint("ns-", i%5), ServiceAccount: "default",
			PodLabels:       map[string]string{"app": fmt.Sprint("deploy-", i/5), "tier": "backend"},
			NamespaceLabels: map[string]string{"env": "staging", "version": "v10.46"},
		}, a.cfg.Interner))
	}
	for i := 0; i < ids; i++ {
		l := sets[i%len(sets)]
		a.upsertIdentity(identity.ID(identity.MinID)+identity.ID(i), l, l.Key())
	}
	for i := 0; i < 20000; i++ {
		a.setIP(uint32(10<<24|i), identity.ID(identity.MinID)+identity.ID(i%ids), uint32(i))
	}
	for i := 0; i < 20; i++ {
		// Endpoint i runs in namespace i%5 with that namespace's label set.
		id := identity.ID(identity.MinID) + identity.ID(i%5)
		a.eps.pods[fmt.Sprint("ns-", i%5, "/pod-", i)] = &localPod{ns: fmt.Sprint("ns-", i%5), ip: netip.AddrFrom4([4]byte{10, 200, 0, byte(i)}), id: id, cepID: id, cepCreated: true}
	}
	return a
}

// BenchmarkRegenerateInStorm is one step of an agent's identity storm: a
// CiliumIdentity arrives (a duplicate of a label set the policies select),
// the agent regenerates its endpoints' policies and writes them to the
// datapath, and its status digests are summed again. Metrics: ns/identity
// and the bytes allocated per identity (the shard's garbage collector pays
// for those at 1,000 agents).
func BenchmarkRegenerateInStorm(b *testing.B) {
	for _, ids := range []int{2000, 10000} {
		b.Run(fmt.Sprintf("identities=%d", ids), func(b *testing.B) {
			a := relabelAgent(b, ids)
			a.regenerate()
			a.flushDP()
			next := identity.ID(identity.MinID) + identity.ID(ids)
			l := a.ids.get(identity.ID(identity.MinID)).labels
			b.ReportAllocs()
			for b.Loop() {
				a.mu.Lock()
				a.upsertIdentity(next, l, l.Key())
				a.mu.Unlock()
				a.regenerate()
				a.flushDP()
				a.mu.Lock()
				a.statusLocked()
				a.mu.Unlock()
				next++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/identity")
			st := a.Status()
			if st.EndpointsReady != 20 || st.PolicyOverflow != 0 {
				b.Fatalf("endpoints ready %d, overflow %d; want 20 and 0", st.EndpointsReady, st.PolicyOverflow)
			}
		})
	}
}
