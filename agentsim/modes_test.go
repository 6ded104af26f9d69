package agentsim

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"

	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	etcdserver "github.com/stampede-sim/stampede/controlplane/etcd"
	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestKVStoreModeConverges(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ectx, ecancel := context.WithCancel(context.Background())
	etcd, err := etcdserver.Start(ectx, etcdserver.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		ecancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		etcd.Close()
		ecancel()
	})
	s := smallScenario(t, scenarios.ModeKVStore, true)
	s.Agent.LeaseTTL = scenarios.D(time.Minute)
	// Registered before the fleet's cleanup, so it runs after the agents
	// stopped.
	s.Agent.KVStorePeriodicSync = scenarios.D(2 * time.Second)
	c := startCluster(t, s)
	c.setup(ctx)
	cfg := c.fleetConfig(scenarios.ModeKVStore)
	cfg.KVStore = []string{etcd.ClientURL()}
	f := runFleet(t, ctx, cfg)
	c.waitConverged(ctx, f, "after setup")
	// Every etcd operation but locks passed Cilium's etcd.qps limiter:
	// lists and watch starts too, so at least as many as the counted
	// gets, creates, puts, deletes, syncs and lists.
	limited := testutil.ToFloat64(f.Metrics().kvLimited)
	var ops float64
	for _, op := range []string{"get", "create", "put", "delete", "sync", "list"} {
		for _, outcome := range []string{"ok", "error"} {
			ops += testutil.ToFloat64(f.Metrics().kvOps.WithLabelValues(op, outcome))
		}
	}
	if ops == 0 || limited < ops {
		t.Errorf("rate-limited etcd operations = %v, want >= the %v non-lock operations counted", limited, ops)
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.ClientURL()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	before, err := cli.Get(ctx, agentcontract.KVValuePrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	deletes := func() float64 { return testutil.ToFloat64(f.Metrics().kvOps.WithLabelValues("delete", "ok")) }
	deletesBefore := deletes()
	c.relabel(ctx, map[string]string{"env": "staging", "version": "v10.46"})
	c.waitConverged(ctx, f, "after relabel")
	c.checkKVStoreKeys(ctx, cli, 10*time.Second)
	// The relabel leaves every value key of setup unused: each is deleted
	// once, however many of the node's endpoint syncs find it unused at
	// the same time.
	if got := deletes() - deletesBefore; got != float64(before.Count) {
		t.Errorf("kvstore deletes after the relabel = %v, want one per value key of setup (%d)", got, before.Count)
	}
	c.checkObjects(ctx)
	c.checkWork(ctx, f, scenarios.ModeKVStore)

	// Every node loses its session (as when keepalives miss the TTL):
	// etcd deletes the node's keys with the lease, and each agent opens a
	// new session and writes them again at its next keepalive (TTL/3).
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each node has its main session and its lock session (whose lease
	// has the lock TTL).
	main := 0
	for _, l := range leases.Leases {
		ttl, err := cli.TimeToLive(ctx, l.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ttl.GrantedTTL == int64(s.Agent.LeaseTTL.Seconds()) {
			main++
		}
	}
	if main != len(c.topo.Nodes) {
		t.Fatalf("%d main session leases before the revocation, want one per node (%d)", main, len(c.topo.Nodes))
	}
	for _, l := range leases.Leases {
		if _, err := cli.Revoke(ctx, l.ID); err != nil {
			t.Fatal(err)
		}
	}
	if resp, err := cli.Get(ctx, agentcontract.KVIPPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Fatalf("ipcache keys after revoking every lease: %v, %v", resp, err)
	}
	c.checkKVStoreKeys(ctx, cli, time.Minute)
	c.waitConverged(ctx, f, "after every session was lost")

	// The operator's GC (or anyone) deletes the master key of an identity
	// in use: the nodes that use it write it again at their next periodic
	// sync, and every agent learns it back.
	used, err := cli.Get(ctx, agentcontract.KVValuePrefix, clientv3.WithPrefix(), clientv3.WithLimit(1))
	if err != nil || len(used.Kvs) != 1 {
		t.Fatalf("a value key: %v, %v", used, err)
	}
	gone := agentcontract.KVIDPrefix + string(used.Kvs[0].Value)
	if _, err := cli.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	c.checkKVStoreKeys(ctx, cli, time.Minute)
	c.waitConverged(ctx, f, "after the master key "+gone+" was deleted")
}

// checkKVStoreKeys checks that the kvstore holds exactly the documented
// keys: master keys id/<ID> = label key; per-node value keys
// value/<label key>/<node> = ID (with a lease) for the label sets the
// node's pods use now; ipcache entries ip/v1/default/<IP> for every pod
// with its current identity (with a lease); nothing else (locks are gone
// once allocations finished).
func (c *testCluster) checkKVStoreKeys(ctx context.Context, cli *clientv3.Client, wait time.Duration) {
	t := c.t
	// Value keys of released identities are deleted asynchronously after
	// the last endpoint switched; poll until the key set settles.
	deadline := time.Now().Add(wait)
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
		case strings.HasPrefix(k, agentcontract.KVIDPrefix):
			id := strings.TrimPrefix(k, agentcontract.KVIDPrefix)
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
		case strings.HasPrefix(k, agentcontract.KVValuePrefix):
			rest := strings.TrimPrefix(k, agentcontract.KVValuePrefix)
			i := strings.LastIndexByte(rest, '/')
			if i < 0 {
				errs = append(errs, fmt.Sprintf("value key %s: no node", k))
				continue
			}
			if kv.Lease == 0 {
				errs = append(errs, fmt.Sprintf("value key %s has no lease", k))
			}
			values[rest] = v
		case strings.HasPrefix(k, agentcontract.KVIPPrefix):
			var pair IPIdentityPair
			if err := json.Unmarshal(kv.Value, &pair); err != nil {
				errs = append(errs, fmt.Sprintf("ipcache key %s: %v", k, err))
				continue
			}
			if kv.Lease == 0 {
				errs = append(errs, fmt.Sprintf("ipcache key %s has no lease", k))
			}
			ips[strings.TrimPrefix(k, agentcontract.KVIPPrefix)] = pair
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
