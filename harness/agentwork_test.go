package harness

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/reports/results"
)

// TestAgentWorkSummary aggregates known reports: sums over agents,
// nearest-rank p50/p99 and the maximum of one agent's, a resource an agent
// lacks counting zero for it, and "*" summing each agent's resources.
func TestAgentWorkSummary(t *testing.T) {
	kb := func(n uint64) *uint64 { return &n }
	var ws []*agentcontract.Work
	for i := 1; i <= 4; i++ {
		w := &agentcontract.Work{
			Received:   map[string]agentcontract.Traffic{"ciliumendpoints": {Events: uint64(10 * i), Bytes: uint64(1000 * i)}},
			Cached:     map[string]agentcontract.Holding{"ciliumendpoints": {Objects: int64(i), Bytes: int64(100 * i)}},
			Identities: 5, PolicyRecomputations: uint64(i), EndpointPolicyChanges: 2, PolicyMapKeys: 30 * i,
			Datapath: "bpf", DatapathUpdates: uint64(100 * i), MapWrites: uint64(i), KernelMapBytes: kb(uint64(4096 * i)),
		}
		if i == 4 {
			// Only the last agent has its own pods.
			w.Received["pods"] = agentcontract.Traffic{Events: 1, Bytes: 50}
		}
		ws = append(ws, w)
	}
	ws = append(ws, nil) // an agent that sent no report
	got := agentWorkSummary(ws)
	pa := func(sum, p50, p99, max float64) results.PerAgent {
		return results.PerAgent{Sum: sum, P50: p50, P99: p99, Max: max}
	}
	want := &results.AgentWorkSummary{
		Agents: 4, Datapath: "bpf",
		Received: map[string]results.TrafficPerAgent{
			"ciliumendpoints": {Events: pa(100, 20, 40, 40), Bytes: pa(10000, 2000, 4000, 4000)},
			"pods":            {Events: pa(1, 0, 1, 1), Bytes: pa(50, 0, 50, 50)},
			"*":               {Events: pa(101, 20, 41, 41), Bytes: pa(10050, 2000, 4050, 4050)},
		},
		Cached: map[string]results.HoldingPerAgent{
			"ciliumendpoints": {Objects: pa(10, 2, 4, 4), Bytes: pa(1000, 200, 400, 400)},
			"*":               {Objects: pa(10, 2, 4, 4), Bytes: pa(1000, 200, 400, 400)},
		},
		Identities:            pa(20, 5, 5, 5),
		PolicyRecomputations:  pa(10, 2, 4, 4),
		EndpointPolicyChanges: pa(8, 2, 2, 2),
		PolicyMapKeys:         pa(300, 60, 120, 120),
		DatapathUpdates:       pa(1000, 200, 400, 400),
		MapWrites:             pa(10, 2, 4, 4),
	}
	k := pa(40960, 8192, 16384, 16384)
	want.KernelMapBytes = &k
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("agentWorkSummary (-want +got):\n%s", d)
	}

	// With the mem datapath there is no kernel figure, not a zero.
	for _, w := range ws[:4] {
		w.Datapath, w.KernelMapBytes = "mem", nil
	}
	if got := agentWorkSummary(ws); got.KernelMapBytes != nil || got.Datapath != "mem" {
		t.Errorf("mem datapath: kernel bytes %v, datapath %q", got.KernelMapBytes, got.Datapath)
	}
	if got := agentWorkSummary([]*agentcontract.Work{nil}); got != nil {
		t.Errorf("no reports: got %+v, want nil", got)
	}
}

// TestShardAgentsReadWork: the work an agent shard reports reaches the
// harness's AgentStatus.
func TestShardAgentsReadWork(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != agentcontract.StatusPath {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `[{"node":"n1","work":{"received":{"pods":{"events":3,"bytes":900}},"identities":7,"policyMapKeys":2}}]`)
	}))
	defer srv.Close()
	src := &shardAgents{client: srv.Client(), urls: []string{srv.URL}}
	sts, err := src.Agents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := &agentcontract.Work{Received: map[string]agentcontract.Traffic{"pods": {Events: 3, Bytes: 900}}, Identities: 7, PolicyMapKeys: 2}
	if len(sts) != 1 || !cmp.Equal(sts[0].Work, want) {
		t.Errorf("got %+v, want one agent with work %+v", sts, want)
	}
}
