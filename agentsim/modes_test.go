package agentsim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stampede-sim/stampede/internal/etcdserver"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// createOperatorCIDs stands in for the operator of identity-management-mode
// operator: it creates one CiliumIdentity per current label set of the
// ground truth that has none yet.
func (c *testCluster) createOperatorCIDs(ctx context.Context, next *identity.ID) {
	have := c.cidsByKey(ctx)
	for _, l := range c.labelSets() {
		if have[l.Key()] > 0 {
			continue
		}
		c.post(ctx, pathCIDs, identity.NewCiliumIdentity(*next, l))
		*next++
	}
}

func TestOperatorModeNoDuplicates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := smallScenario(t, scenarios.ModeOperator, true)
	c := startCluster(t, s)
	c.setup(ctx)
	f := runFleet(t, ctx, c.fleetConfig(scenarios.ModeOperator))
	next := identity.MinID
	c.createOperatorCIDs(ctx, &next)
	c.waitConverged(ctx, f, "after setup")
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	c.createOperatorCIDs(ctx, &next)
	c.waitConverged(ctx, f, "after relabel")
	for _, st := range f.Statuses() {
		if st.IdentitiesMade != 0 || st.Duplicates != 0 {
			t.Errorf("%s created %d identities (%d duplicates); in operator mode agents create none", st.Node, st.IdentitiesMade, st.Duplicates)
		}
	}
	for k, n := range c.cidsByKey(ctx) {
		if n != 1 {
			t.Errorf("%d CiliumIdentities for %s, want 1", n, k)
		}
	}
	c.checkObjects(ctx)
}

// runCESController stands in for the operator's CiliumEndpointSlice
// controller: every 100ms it packs the CiliumEndpoints of each namespace
// into slices of at most 100 endpoints and writes the slices that changed.
func (c *testCluster) runCESController(ctx context.Context, t *testing.T) {
	written := map[string]string{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		raw, err := c.admin.do(ctx, http.MethodGet, pathCEPs, "", nil, nil)
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("list CEPs: %v", err)
			}
			return
		}
		var l struct {
			Items []CiliumEndpoint `json:"items"`
		}
		if err := json.Unmarshal(raw, &l); err != nil {
			t.Errorf("decode CEPs: %v", err)
			return
		}
		byNS := map[string][]CiliumEndpoint{}
		for _, cep := range l.Items {
			byNS[cep.Metadata.Namespace] = append(byNS[cep.Metadata.Namespace], cep)
		}
		for ns, ceps := range byNS {
			sort.Slice(ceps, func(i, j int) bool { return ceps[i].Metadata.Name < ceps[j].Metadata.Name })
			for i := 0; i*100 < len(ceps); i++ {
				name := fmt.Sprintf("ces-%s-%d", ns, i)
				var eps []map[string]any
				for _, cep := range ceps[i*100 : min(len(ceps), (i+1)*100)] {
					eps = append(eps, map[string]any{
						"name": cep.Metadata.Name, "id": cep.Status.Identity.ID,
						"networking": cep.Status.Networking,
					})
				}
				obj := map[string]any{
					"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumEndpointSlice",
					"metadata": map[string]any{"name": name}, "namespace": ns, "endpoints": eps,
				}
				body, _ := json.Marshal(obj)
				if written[name] == string(body) {
					continue
				}
				var err error
				if _, ok := written[name]; ok {
					_, err = c.admin.do(ctx, http.MethodPut, pathCESs+"/"+name, "application/json", body, nil)
				} else {
					_, err = c.admin.do(ctx, http.MethodPost, pathCESs, "application/json", body, nil)
				}
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("write %s: %v", name, err)
					}
					return
				}
				written[name] = string(body)
			}
		}
	}
}

func TestCESModeConverges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := smallScenario(t, scenarios.ModeCES, true)
	c := startCluster(t, s)
	c.setup(ctx)
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.runCESController(cctx, t)
	}()
	t.Cleanup(func() {
		ccancel()
		<-done
	})
	f := runFleet(t, ctx, c.fleetConfig(scenarios.ModeCES))
	c.waitConverged(ctx, f, "after setup")
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	c.waitConverged(ctx, f, "after relabel")
	c.checkObjects(ctx)
}

func TestKVStoreModeConverges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ectx, ecancel := context.WithCancel(context.Background())
	etcd, err := etcdserver.Start(ectx, etcdserver.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		ecancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		etcd.Close(cctx)
		ecancel()
	})
	s := smallScenario(t, scenarios.ModeKVStore, true)
	s.Agent.LeaseTTL = scenarios.D(time.Minute)
	c := startCluster(t, s)
	c.setup(ctx)
	cfg := c.fleetConfig(scenarios.ModeKVStore)
	cfg.KVStore = []string{etcd.ClientURL()}
	f := runFleet(t, ctx, cfg)
	c.waitConverged(ctx, f, "after setup")
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	c.waitConverged(ctx, f, "after relabel")

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	c.checkKVStoreKeys(ctx, cli)
	c.checkObjects(ctx)
}

// checkKVStoreKeys checks that the kvstore holds exactly the documented
// keys: master keys id/<ID> = label key; per-node value keys
// value/<label key>/<node> = ID (with a lease) for the label sets the
// node's pods use now; ipcache entries ip/v1/default/<IP> for every pod
// with its current identity (with a lease); nothing else (locks are gone
// once allocations finished).
func (c *testCluster) checkKVStoreKeys(ctx context.Context, cli *clientv3.Client) {
	t := c.t
	// Value keys of released identities are deleted asynchronously after
	// the last endpoint switched; poll until the key set settles.
	deadline := time.Now().Add(10 * time.Second)
	for {
		errs := c.kvstoreProblems(ctx, cli)
		if len(errs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for i, e := range errs {
				if i == 10 {
					t.Errorf("... and %d more", len(errs)-10)
					break
				}
				t.Error(e)
			}
			return
		}
		time.Sleep(100 * time.Millisecond) //nolint:forbidigo // polling an external store's eventual state
	}
}

func (c *testCluster) kvstoreProblems(ctx context.Context, cli *clientv3.Client) []string {
	resp, err := cli.Get(ctx, "", clientv3.WithPrefix())
	if err != nil {
		c.t.Fatal(err)
	}
	var errs []string
	masters := map[string]string{} // ID -> label key
	values := map[string]string{}  // labelkey/node -> ID
	ips := map[string]IPIdentityPair{}
	for _, kv := range resp.Kvs {
		k, v := string(kv.Key), string(kv.Value)
		switch {
		case strings.HasPrefix(k, KVIDPrefix):
			id := strings.TrimPrefix(k, KVIDPrefix)
			if _, err := identity.ParseID(id); err != nil {
				errs = append(errs, fmt.Sprintf("master key %s: bad ID", k))
			}
			if _, err := identity.ParseKey(v); err != nil {
				errs = append(errs, fmt.Sprintf("master key %s: value %q is not a label key", k, v))
			}
			if kv.Lease != 0 {
				errs = append(errs, fmt.Sprintf("master key %s has a lease; master keys are persistent", k))
			}
			masters[id] = v
		case strings.HasPrefix(k, KVValuePrefix):
			rest := strings.TrimPrefix(k, KVValuePrefix)
			i := strings.LastIndexByte(rest, '/')
			if i < 0 {
				errs = append(errs, fmt.Sprintf("value key %s: no node", k))
				continue
			}
			if kv.Lease == 0 {
				errs = append(errs, fmt.Sprintf("value key %s has no lease", k))
			}
			values[rest] = v
		case strings.HasPrefix(k, KVIPPrefix):
			var pair IPIdentityPair
			if err := json.Unmarshal(kv.Value, &pair); err != nil {
				errs = append(errs, fmt.Sprintf("ipcache key %s: %v", k, err))
				continue
			}
			if kv.Lease == 0 {
				errs = append(errs, fmt.Sprintf("ipcache key %s has no lease", k))
			}
			ips[strings.TrimPrefix(k, KVIPPrefix)] = pair
		default:
			errs = append(errs, fmt.Sprintf("undocumented key %s", k))
		}
	}
	wantValues := map[string]bool{}
	for _, p := range c.topo.Pods {
		l, _ := c.st.PodIdentityLabels(p)
		key := l.Key()
		wantValues[key+"/"+p.Node] = true
		pair, ok := ips[p.IP.String()]
		if !ok {
			errs = append(errs, fmt.Sprintf("no ipcache key for pod %s/%s (%s)", p.Namespace, p.Name, p.IP))
			continue
		}
		if got := masters[identity.ID(pair.ID).String()]; got != key {
			errs = append(errs, fmt.Sprintf("ipcache %s: identity %d has labels %q, want %q", p.IP, pair.ID, got, key))
		}
		if ip, ok := netip.AddrFromSlice(pair.IP); !ok || ip.Unmap() != p.IP {
			errs = append(errs, fmt.Sprintf("ipcache %s: IP field %v", p.IP, pair.IP))
		}
		if pair.K8sNamespace != p.Namespace || pair.K8sPodName != p.Name {
			errs = append(errs, fmt.Sprintf("ipcache %s: pod %s/%s, want %s/%s", p.IP, pair.K8sNamespace, pair.K8sPodName, p.Namespace, p.Name))
		}
	}
	if len(ips) != len(c.topo.Pods) {
		errs = append(errs, fmt.Sprintf("%d ipcache keys, want %d", len(ips), len(c.topo.Pods)))
	}
	for k, id := range values {
		if !wantValues[k] {
			errs = append(errs, fmt.Sprintf("value key %s: no pod of that node uses these labels now", k))
		}
		if key := k[:strings.LastIndexByte(k, '/')]; masters[id] != key {
			errs = append(errs, fmt.Sprintf("value key %s -> %s: master key has %q", k, id, masters[id]))
		}
	}
	for k := range wantValues {
		if _, ok := values[k]; !ok {
			errs = append(errs, fmt.Sprintf("missing value key %s", k))
		}
	}
	return errs
}
