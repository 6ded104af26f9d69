package agentsim

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/truth"
	"github.com/stampede-sim/stampede/scenarios"
)

// rssBytes reads this process's resident set size from /proc.
func rssBytes(tb testing.TB) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb * 1024
		}
	}
	tb.Skip("no VmRSS in /proc/self/status")
	return 0
}

func heapBytes() float64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapInuse + ms.StackInuse)
}

// seedCluster writes what the rest of the cluster's agents would have
// written: one CiliumIdentity per label set and a CiliumEndpoint for every
// pod, plus the pods of the given nodes (those the benchmark's agents run).
func (c *testCluster) seedCluster(ctx context.Context, localNodes map[string]bool) {
	var nss []string
	for _, ns := range c.topo.Namespaces {
		nss = append(nss, ns.Name)
		c.post(ctx, pathNamespaces, map[string]any{"apiVersion": "v1", "kind": "Namespace",
			"metadata": map[string]any{"name": ns.Name, "labels": ns.Labels}})
	}
	for _, n := range c.topo.Nodes {
		c.post(ctx, pathNodes, map[string]any{"apiVersion": "v1", "kind": "Node",
			"metadata": map[string]any{"name": n.Name},
			"status":   map[string]any{"addresses": []map[string]string{{"type": "InternalIP", "address": n.IP.String()}}}})
	}
	for _, cnp := range policy.RenderAll(c.s.Policies, nss) {
		c.post(ctx, "/apis/cilium.io/v2/namespaces/"+cnp.Metadata.Namespace+"/ciliumnetworkpolicies", cnp)
	}
	ids := map[string]identity.ID{}
	next := identity.MinID
	for _, l := range c.labelSets() {
		c.post(ctx, pathCIDs, identity.NewCiliumIdentity(next, l))
		ids[l.Key()] = next
		next++
	}
	c.parallel(len(c.topo.Pods), func(i int) {
		p := c.topo.Pods[i]
		l, _ := c.st.PodIdentityLabels(p)
		id := ids[l.Key()]
		labels := make([]string, len(l))
		for j, x := range l {
			labels[j] = x.String()
		}
		c.post(ctx, "/apis/cilium.io/v2/namespaces/"+p.Namespace+"/ciliumendpoints", CiliumEndpoint{
			APIVersion: "cilium.io/v2", Kind: "CiliumEndpoint",
			Metadata: cepMeta{Name: p.Name, Namespace: p.Namespace},
			Status: EndpointStatus{
				ID: int64(i%4000 + 1), Identity: EndpointIdentity{ID: int64(id), Labels: labels},
				Networking:          EndpointNetworking{Addressing: []AddressPair{{IPv4: p.IP.String()}}, Node: c.topo.Nodes[p.NodeIndex].IP.String()},
				State:               "ready",
				ExternalIdentifiers: ExternalIdentifiers{K8sNamespace: p.Namespace, K8sPodName: p.Name, PodName: p.Namespace + "/" + p.Name},
			},
		})
		if !localNodes[p.Node] {
			return
		}
		c.post(ctx, "/api/v1/namespaces/"+p.Namespace+"/pods", map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": p.Name, "namespace": p.Namespace, "labels": p.Labels},
			"spec": map[string]any{"nodeName": p.Node, "serviceAccountName": p.ServiceAccount,
				"containers": []map[string]any{{"name": "app", "image": "registry.k8s.io/pause:3.10"}}},
		})
		c.patch(ctx, "/api/v1/namespaces/"+p.Namespace+"/pods/"+p.Name+"/status", map[string]any{
			"status": map[string]any{"phase": "Running", "podIP": p.IP.String()}})
	})
}

// waitShardConverged waits until the fleet's agents match the truth.
func waitShardConverged(tb testing.TB, ctx context.Context, f *Fleet, want map[string]truth.Expected) time.Duration {
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		bad := 0
		for _, st := range f.Statuses() {
			if w := want[st.Node]; w.IPCache != st.IPCacheDigest || w.Policy != st.PolicyDigest {
				bad++
			}
		}
		if bad == 0 {
			return time.Since(start)
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("%d of %d agents did not converge", bad, len(f.agents))
		case <-tick.C:
		}
	}
}

// benchShard runs a shard of agents of scenario s against an in-process
// fakeapi seeded with the whole cluster, waits until every agent converged
// and reports memory and time per agent.
func benchShard(b *testing.B, s *scenarios.Scenario, shards int) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c := startCluster(b, s)
	local := map[string]bool{}
	for _, n := range c.topo.Nodes {
		if n.Index%shards == 0 {
			local[n.Name] = true
		}
	}
	c.seedCluster(ctx, local)
	want := c.expected()
	heap0, rss0 := heapBytes(), rssBytes(b)
	cfg := c.fleetConfig(scenarios.ModeCRD)
	cfg.Shards = shards
	cfg.Workers = 0
	cfg.RegenInterval = 0
	for b.Loop() {
		start := time.Now()
		f, err := New(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		fctx, fcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); f.Run(fctx) }()
		converged := waitShardConverged(b, ctx, f, want)
		heap1, rss1 := heapBytes(), rssBytes(b)
		n := float64(len(f.agents))
		var cpu float64
		b.ReportMetric(n, "agents")
		b.ReportMetric(converged.Seconds(), "s-to-converge")
		b.ReportMetric((heap1-heap0)/n/(1<<20), "heap-MiB/agent")
		b.ReportMetric((rss1-rss0)/n/(1<<20), "rss-MiB/agent")
		_ = cpu
		b.Logf("%d agents, %d pods: converged %v after start (%v incl. build); heap +%.0f MiB, RSS +%.0f MiB",
			len(f.agents), len(c.topo.Pods), converged, time.Since(start), (heap1-heap0)/(1<<20), (rss1-rss0)/(1<<20))
		fcancel()
		<-done
	}
}

// BenchmarkAgentMemory20k: agents of the relabel scenario (200 nodes,
// 20,000 pods) in crd mode, one shard of 8 (25 agents), each with its own
// connection and watches, caching 20,000 CiliumEndpoints, 250 identities,
// policies and its 100 local endpoints. Target: <= 4 MiB per agent.
func BenchmarkAgentMemory20k(b *testing.B) {
	s, err := scenarios.Builtin("relabel")
	if err != nil {
		b.Fatal(err)
	}
	s.Agent.Datapath = "mem"
	s.Modes = s.Modes[:1] // crd, the first preset
	benchShard(b, s, 8)
}

// Benchmark1000Agents: 1,000 agents in one shard (1,000 nodes, 2,000 pods),
// each with its own TLS connection, rate limiter and seven watches.
func Benchmark1000Agents(b *testing.B) {
	s, err := scenarios.Builtin("relabel")
	if err != nil {
		b.Fatal(err)
	}
	s.Cluster.Nodes = 1000
	s.Cluster.Workloads.DeploymentsPerNamespace = 10
	s.Cluster.Workloads.Replicas = 40
	s.Agent.Datapath = "mem"
	s.Modes = s.Modes[:1] // crd, the first preset
	benchShard(b, s, 1)
}

// BenchmarkRelabelSmall runs the relabel-small scenario at full size (20
// nodes, 2,000 pods) in crd mode against an in-process fakeapi: setup,
// convergence, the namespace relabel, convergence again. It reports the
// convergence times and the identities and duplicates the agents created.
func BenchmarkRelabelSmall(b *testing.B) {
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		s := smallScenario(b, scenarios.ModeCRD, false)
		s.Agent.ClientQPS = scenarios.DefaultClientQPS
		s.Agent.ClientBurst = scenarios.DefaultClientBurst
		c := startCluster(b, s)
		c.setup(ctx)
		start := time.Now()
		f := runFleet(b, ctx, c.fleetConfig(scenarios.ModeCRD))
		c.waitConverged(ctx, f, "after setup")
		setup := time.Since(start)
		start = time.Now()
		c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
		c.waitConverged(ctx, f, "after relabel")
		relabel := time.Since(start)
		var created, dups uint64
		for _, st := range f.Statuses() {
			created += st.IdentitiesMade
			dups += st.Duplicates
		}
		b.ReportMetric(setup.Seconds(), "s-setup-converge")
		b.ReportMetric(relabel.Seconds(), "s-relabel-converge")
		b.ReportMetric(float64(created), "identities")
		b.ReportMetric(float64(dups), "duplicates")
		cancel()
	}
}
