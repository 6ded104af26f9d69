package controlplane_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stampede-sim/stampede/controlplane"
	"github.com/stampede-sim/stampede/controlplane/etcd"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// cidsByLabels lists the CiliumIdentities and groups their names by label
// set (sorted "source:key=value" joined by commas).
func (c *cluster) cidsByLabels(t *testing.T) map[string][]string {
	t.Helper()
	list, err := c.dyn.Resource(gvrCID).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, it := range list.Items {
		sl, _, _ := unstructured.NestedStringMap(it.Object, "security-labels")
		l, err := identity.FromSecurityLabels(sl)
		if err != nil {
			t.Fatalf("CiliumIdentity %s: %v", it.GetName(), err)
		}
		ss := make([]string, len(l))
		for i, x := range l {
			ss[i] = x.String()
		}
		slices.Sort(ss)
		k := strings.Join(ss, ",")
		out[k] = append(out[k], it.GetName())
	}
	return out
}

// TestOperatorIdentitiesRelabelSmall runs operator mode against fakeapi
// with relabel-small: the operator creates exactly one CiliumIdentity per
// identity label set of the pods, before and after the relabel.
func TestOperatorIdentitiesRelabelSmall(t *testing.T) {
	c := startCluster(t, "relabel-small", true)
	// Keep the GC out of the way: no CiliumEndpoints exist in this test.
	c.sc.ControlPlane.IdentityGC.Interval = scenarios.Duration{Duration: time.Hour}
	_, stop := runControlplane(t, c, scenarios.ModeOperator, "")
	defer stop()
	wantSets := func() map[string]bool {
		want := map[string]bool{}
		for _, p := range c.topo.Pods {
			want[c.wantLabels(t, p)] = true
		}
		return want
	}
	var want map[string]bool
	check := func() error {
		got := c.cidsByLabels(t)
		for l := range want {
			switch n := len(got[l]); {
			case n == 0:
				return fmt.Errorf("no identity for %s", l)
			case n > 1:
				return fmt.Errorf("%d identities (duplicates) for %s: %v", n, l, got[l])
			}
		}
		return nil
	}
	want = wantSets()
	eventually(t, 2*time.Minute, "identities before relabel", check)
	before := len(c.cidsByLabels(t))
	c.relabel(t)
	want = wantSets()
	eventually(t, 2*time.Minute, "identities after relabel", check)
	for l, names := range c.cidsByLabels(t) {
		if len(names) > 1 {
			t.Errorf("duplicate identities %v for %s", names, l)
		}
	}
	if after := len(c.cidsByLabels(t)); after != 2*before {
		t.Errorf("identities after relabel = %d, want %d (old ones stay until GC)", after, 2*before)
	}
}

func (c *cluster) createCID(t *testing.T, id int, app string) {
	t.Helper()
	cid := identity.NewCiliumIdentity(identity.ID(id), identity.NewLabels(identity.Label{Source: identity.SourceK8s, Key: "app", Value: app}))
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": cid.APIVersion, "kind": cid.Kind,
		"metadata":        map[string]any{"name": cid.Metadata.Name},
		"security-labels": toAny(cid.SecurityLabels),
	}}
	if _, err := c.dyn.Resource(gvrCID).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func toAny(m map[string]string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func cepObject(ns, name string, id int64, ip, node string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"status": map[string]any{
			"id":         int64(1),
			"identity":   map[string]any{"id": id},
			"networking": map[string]any{"addressing": []any{map[string]any{"ipv4": ip}}, "node": node},
		},
	}}
}

// TestIdentityGC runs crd mode with a short GC interval and heartbeat
// timeout: identities a CiliumEndpoint uses survive; unused ones are first
// annotated for deletion and then deleted.
func TestIdentityGC(t *testing.T) {
	c := startCluster(t, "relabel-small", false)
	for id := 256; id < 261; id++ {
		c.createCID(t, id, "a"+strconv.Itoa(id))
	}
	for i, id := range []int64{256, 257} {
		if _, err := c.dyn.Resource(gvrCEP).Namespace("ns-0").Create(t.Context(), cepObject("ns-0", "p"+strconv.Itoa(i), id, "10.0.0."+strconv.Itoa(i+1), "node-0000"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.sc.ControlPlane.IdentityGC.Interval = scenarios.Duration{Duration: 100 * time.Millisecond}
	c.sc.ControlPlane.IdentityGC.HeartbeatTimeout = scenarios.Duration{Duration: 300 * time.Millisecond}
	_, stop := runControlplane(t, c, scenarios.ModeCRD, "")
	defer stop()
	eventually(t, 30*time.Second, "unused identities deleted", func() error {
		list, err := c.dyn.Resource(gvrCID).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		var names []string
		for _, it := range list.Items {
			names = append(names, it.GetName())
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"256", "257"}) {
			return fmt.Errorf("identities %v, want [256 257]", names)
		}
		return nil
	})
	for _, n := range []string{"256", "257"} {
		cid, err := c.dyn.Resource(gvrCID).Get(t.Context(), n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, marked := cid.GetAnnotations()[controlplane.HeartbeatAnnotation]; marked {
			t.Errorf("identity %s in use but marked for deletion", n)
		}
	}
}

// TestCESController runs ces mode: CiliumEndpoints are packed into
// CiliumEndpointSlices of their namespace, at most 100 per slice, each
// endpoint in exactly one slice, and slices follow deletions.
func TestCESController(t *testing.T) {
	c := startCluster(t, "relabel-small", false)
	c.sc.ControlPlane.CES.BatchInterval = scenarios.Duration{Duration: 50 * time.Millisecond}
	c.sc.ControlPlane.IdentityGC.Interval = scenarios.Duration{Duration: time.Hour}
	create := func(ns string, n int) {
		for i := 0; i < n; i++ {
			ip := fmt.Sprintf("10.%d.%d.%d", len(ns), i/250, i%250+1)
			if _, err := c.dyn.Resource(gvrCEP).Namespace(ns).Create(t.Context(), cepObject(ns, "p"+strconv.Itoa(i), int64(256+i%7), ip, "node-0001"), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	create("ns-0", 250)
	create("ns-1", 30)
	_, stop := runControlplane(t, c, scenarios.ModeCES, "")
	defer stop()
	check := func(want map[string]int) func() error {
		return func() error {
			list, err := c.dyn.Resource(gvrCES).List(t.Context(), metav1.ListOptions{})
			if err != nil {
				return err
			}
			seen := map[string]bool{}
			count := map[string]int{}
			for _, it := range list.Items {
				ns, _, _ := unstructured.NestedString(it.Object, "namespace")
				eps, _, _ := unstructured.NestedSlice(it.Object, "endpoints")
				if len(eps) > 100 {
					return fmt.Errorf("slice %s holds %d endpoints", it.GetName(), len(eps))
				}
				if it.GetAPIVersion() != "cilium.io/v2alpha1" || it.GetKind() != "CiliumEndpointSlice" || !strings.HasPrefix(it.GetName(), "ces-") {
					return fmt.Errorf("slice %s: bad shape %s %s", it.GetName(), it.GetAPIVersion(), it.GetKind())
				}
				for _, e := range eps {
					em := e.(map[string]any)
					name, _ := em["name"].(string)
					if _, ok := em["id"]; !ok {
						return fmt.Errorf("slice %s endpoint %s has no id", it.GetName(), name)
					}
					addr, _, _ := unstructured.NestedSlice(em, "networking", "addressing")
					if len(addr) != 1 {
						return fmt.Errorf("slice %s endpoint %s addressing %v", it.GetName(), name, addr)
					}
					if seen[ns+"/"+name] {
						return fmt.Errorf("endpoint %s/%s in two slices", ns, name)
					}
					seen[ns+"/"+name] = true
					count[ns]++
				}
			}
			for ns, n := range want {
				if count[ns] != n {
					return fmt.Errorf("namespace %s: %d endpoints in slices, want %d", ns, count[ns], n)
				}
			}
			return nil
		}
	}
	eventually(t, time.Minute, "slices hold every endpoint", check(map[string]int{"ns-0": 250, "ns-1": 30}))
	list, err := c.dyn.Resource(gvrCES).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 4 {
		t.Errorf("%d slices, want 4 (100+100+50 and 30)", len(list.Items))
	}
	for i := 0; i < 30; i++ {
		if err := c.dyn.Resource(gvrCEP).Namespace("ns-1").Delete(t.Context(), "p"+strconv.Itoa(i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, time.Minute, "slices follow deletions", check(map[string]int{"ns-0": 250, "ns-1": 0}))
	eventually(t, time.Minute, "empty slice deleted", func() error {
		list, err := c.dyn.Resource(gvrCES).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(list.Items) != 3 {
			return fmt.Errorf("%d slices, want 3", len(list.Items))
		}
		return nil
	})
}

// TestKVStoreGC runs kvstore mode against an embedded etcd: a master key
// with value keys survives; one without is deleted after two rounds.
func TestKVStoreGC(t *testing.T) {
	c := startCluster(t, "relabel-small", false)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	kv, err := etcd.Start(ctx, etcd.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{kv.ClientURL()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	base := "cilium/state/identities/v1/"
	for k, v := range map[string]string{
		base + "id/256":                     "k8s:app=a;",
		base + "id/257":                     "k8s:app=b;",
		base + "value/k8s:app=a;/node-0000": "256",
	} {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	c.sc.ControlPlane.IdentityGC.Interval = scenarios.Duration{Duration: 100 * time.Millisecond}
	rf := t.TempDir() + "/ready.json"
	done := make(chan error, 1)
	exited := make(chan struct{})
	rctx, rcancel := context.WithCancel(ctx)
	go func() {
		done <- controlplane.Run(rctx, controlplane.Config{Mode: scenarios.ModeKVStore, Scenario: c.sc, REST: restConfig(c), KVStore: []string{kv.ClientURL()}, ReadyFile: rf})
		close(exited)
	}()
	defer func() {
		rcancel()
		if err := <-done; err != nil {
			t.Errorf("controlplane: %v", err)
		}
	}()
	eventually(t, 30*time.Second, "stale master key deleted", func() error {
		r, err := cli.Get(ctx, base+"id/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		var keys []string
		for _, kv := range r.Kvs {
			keys = append(keys, string(kv.Key))
		}
		if !slices.Equal(keys, []string{base + "id/256"}) {
			return fmt.Errorf("master keys %v, want only id/256", keys)
		}
		return nil
	})
}

// TestIdentityGCDeletionRate: with controlPlane.identityGC.rateLimit 2 per
// hour-long window, the GC deletes 2 of 5 unused identities and leaves the
// rest for the next window.
func TestIdentityGCDeletionRate(t *testing.T) {
	c := startCluster(t, "relabel-small", false)
	for id := 256; id < 261; id++ {
		c.createCID(t, id, "a"+strconv.Itoa(id))
	}
	c.sc.ControlPlane.IdentityGC.Interval = scenarios.Duration{Duration: 100 * time.Millisecond}
	c.sc.ControlPlane.IdentityGC.HeartbeatTimeout = scenarios.Duration{Duration: 300 * time.Millisecond}
	c.sc.ControlPlane.IdentityGC.RateInterval = scenarios.Duration{Duration: time.Hour}
	c.sc.ControlPlane.IdentityGC.RateLimit = 2
	_, stop := runControlplane(t, c, scenarios.ModeCRD, "")
	defer stop()
	count := func() int {
		list, err := c.dyn.Resource(gvrCID).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(list.Items)
	}
	eventually(t, 30*time.Second, "two identities deleted", func() error {
		if n := count(); n > 3 {
			return fmt.Errorf("%d identities left, want 3", n)
		}
		return nil
	})
	// Ten more GC intervals: the window's deletions are used up.
	time.Sleep(time.Second)
	if n := count(); n != 3 {
		t.Errorf("%d identities left after the window's 2 deletions, want 3", n)
	}
}
