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

// stormAgent is a crd-mode agent in the state relabel-1k's identity storm
// leaves it in: ids identities over 500 label sets (duplicates), all
// selected by one rule, 20,000 remote endpoints and 20 local ones.
func stormAgent(b *testing.B, ids int) *Agent {
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
	pol := scenarios.Policy{Name: "allow-from-staging", Ingress: []scenarios.IngressRule{{
		FromNamespaceLabels: map[string]string{"env": "staging"},
		Ports:               []scenarios.PortProtocol{{Port: 9090, Protocol: "TCP"}},
	}}}
	for n := 0; n < 5; n++ {
		cnp := policy.Render(pol, fmt.Sprint("ns-", n))
		rules, err := policy.Compile(&cnp)
		if err != nil {
			b.Fatal(err)
		}
		a.rules[podKey(cnp.Metadata.Namespace, cnp.Metadata.Name)] = rules
	}
	a.rulesDirty = true
	var sets []identity.Labels
	for i := 0; i < 500; i++ {
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
		id := identity.ID(identity.MinID) + identity.ID(i)
		a.pods[fmt.Sprint("ns-0/pod-", i)] = &localPod{ns: "ns-0", ip: netip.AddrFrom4([4]byte{10, 200, 0, byte(i)}), id: id, cepID: id, cepCreated: true}
	}
	a.mu.Unlock()
	a.regenerate()
	return a
}

// BenchmarkPolicyDigest is what one agent's status report costs while its
// policy changes, as in an identity storm: the harness polls every agent's
// digest twice a second, and a changed policy is summed again. Reports
// ns/digest for the given number of identities.
func BenchmarkPolicyDigest(b *testing.B) {
	for _, ids := range []int{2000, 16000} {
		b.Run(fmt.Sprintf("identities=%d", ids), func(b *testing.B) {
			a := stormAgent(b, ids)
			a.mu.Lock()
			defer a.mu.Unlock()
			b.ReportAllocs()
			for b.Loop() {
				a.polDirty = true
				a.statusLocked()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/digest")
		})
	}
}
