package agentsim

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/scenarios"
)

// Each agent writes its own CiliumNode at start as cilium-agent's node
// discovery does: a GET, then a create when there is none, or an update
// with the read resourceVersion when there is one (node-0000 here, left
// from a previous run with a stale address). The objects carry the node's
// InternalIP and pod CIDR and fit Cilium's CRD.
func TestCiliumNodeCreatedByAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := tinyScenario(t, scenarios.ModeCRD)
	c := startCluster(t, s)
	c.setup(ctx)
	stale := c.topo.Nodes[0].Name
	c.post(ctx, pathCiliumNodes, map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumNode",
		"metadata": map[string]any{"name": stale},
		"spec":     map[string]any{"addresses": []map[string]string{{"type": "InternalIP", "ip": "192.0.2.1"}}},
	})
	var log requestLog
	cfg := c.fleetConfig(scenarios.ModeCRD)
	cfg.REST = log.wrap(cfg.REST)
	f := runFleet(t, ctx, cfg)
	waitSynced(ctx, t, f)
	// The agents write their CiliumNodes beside their first lists.
	for len(c.list(ctx, pathCiliumNodes)) < len(c.topo.Nodes) || !c.ciliumNodeUpdated(ctx, stale) {
		select {
		case <-ctx.Done():
			t.Fatalf("CiliumNodes: %d of %d", len(c.list(ctx, pathCiliumNodes)), len(c.topo.Nodes))
		case <-time.After(20 * time.Millisecond):
		}
	}

	type cn struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Addresses []struct{ Type, IP string } `json:"addresses"`
			IPAM      struct {
				PodCIDRs []string `json:"podCIDRs"`
			} `json:"ipam"`
			Encryption struct {
				Key *int `json:"key"`
			} `json:"encryption"`
		} `json:"spec"`
	}
	items := c.list(ctx, pathCiliumNodes)
	got := map[string]cn{}
	for _, raw := range items {
		var o cn
		if err := json.Unmarshal(raw, &o); err != nil {
			t.Fatal(err)
		}
		got[o.Metadata.Name] = o
	}
	if len(got) != len(c.topo.Nodes) {
		t.Errorf("%d CiliumNodes, want one per node (%d)", len(got), len(c.topo.Nodes))
	}
	for _, n := range c.topo.Nodes {
		o, ok := got[n.Name]
		if !ok {
			t.Errorf("no CiliumNode %s", n.Name)
			continue
		}
		if len(o.Spec.Addresses) != 1 || o.Spec.Addresses[0].Type != "InternalIP" || o.Spec.Addresses[0].IP != n.IP.String() {
			t.Errorf("CiliumNode %s spec.addresses = %+v, want [InternalIP %s]", n.Name, o.Spec.Addresses, n.IP)
		}
		if !slices.Equal(o.Spec.IPAM.PodCIDRs, []string{n.PodCIDR.String()}) {
			t.Errorf("CiliumNode %s spec.ipam.podCIDRs = %v, want [%s]", n.Name, o.Spec.IPAM.PodCIDRs, n.PodCIDR)
		}
		if o.Spec.Encryption.Key != nil {
			t.Errorf("CiliumNode %s spec.encryption.key = %d, want 0 (omitted)", n.Name, *o.Spec.Encryption.Key)
		}
	}

	// The requests: GET then POST for new objects, GET then PUT for the
	// existing one.
	byNode := map[string][]string{}
	for _, r := range log.snapshot() {
		if !strings.HasPrefix(r.path, pathCiliumNodes) || r.query.Get("watch") == "true" || r.query.Get("fieldSelector") != "" {
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(r.path, pathCiliumNodes), "/")
		if r.method == http.MethodPost {
			var o cn
			_ = json.Unmarshal(r.body, &o)
			name = o.Metadata.Name
		}
		if name == "" { // the all-CiliumNodes list
			continue
		}
		byNode[name] = append(byNode[name], r.method)
	}
	for _, n := range c.topo.Nodes {
		want := []string{http.MethodGet, http.MethodPost}
		if n.Name == stale {
			want = []string{http.MethodGet, http.MethodPut}
		}
		if !slices.Equal(byNode[n.Name], want) {
			t.Errorf("CiliumNode %s requests %v, want %v", n.Name, byNode[n.Name], want)
		}
	}
	// The reference CRDs (../shared/reference/cilium-crds) have no
	// ciliumnodes.yaml to validate items against: TestCiliumNodeFieldNames
	// checks the object's field names instead.
}

// The object an agent sends has the field names of Cilium's
// ciliumnodes.cilium.io v2 schema (read from
// pkg/k8s/apis/cilium.io/client/crds/v2/ciliumnodes.yaml): checked here by
// name because that CRD is not among the reference copies yet.
func TestCiliumNodeFieldNames(t *testing.T) {
	a := &Agent{cfg: AgentConfig{Node: "node-0001"}}
	a.cfg.NodeIP = netip.MustParseAddr("100.64.0.2")
	a.cfg.PodCIDR = netip.MustParsePrefix("10.0.1.0/24")
	b, err := json.Marshal(a.ciliumNodeObject("0123"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"apiVersion":"cilium.io/v2","kind":"CiliumNode","metadata":{"name":"node-0001"},` +
		`"spec":{"addresses":[{"type":"InternalIP","ip":"100.64.0.2"}],"health":{},"ingress":{},"encryption":{},` +
		`"eni":{},"azure":{},"alibaba-cloud":{},"ipam":{"podCIDRs":["10.0.1.0/24"]},"bootid":"0123"}}`
	if string(b) != want {
		t.Errorf("CiliumNode JSON:\n got %s\nwant %s", b, want)
	}
}

// ciliumNodeUpdated says whether CiliumNode name no longer carries the
// stale address the test left in it.
func (c *testCluster) ciliumNodeUpdated(ctx context.Context, name string) bool {
	raw, err := c.admin.do(ctx, http.MethodGet, pathCiliumNodes+"/"+name, "", nil, nil)
	return err == nil && !strings.Contains(string(raw), "192.0.2.1")
}
