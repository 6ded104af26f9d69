package mesh

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	etcdserver "github.com/stampede-sim/stampede/controlplane/etcd"
	"github.com/stampede-sim/stampede/fakeapi"
	"github.com/stampede-sim/stampede/internal/agentcontract"
)

var gvrNamespace = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*loggingT).flushDaemon"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Typed[...]).updateUnfinishedWorkLoop"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreTopFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreAnyFunction("go.etcd.io/etcd/pkg/v3/schedule.(*fifo).run"),
		goleak.IgnoreAnyFunction("github.com/golang/glog.(*fileSink).flushDaemon"),
	)
}

// startAPI starts a fakeapi server and returns its admin dynamic client.
func startAPI(t *testing.T) dynamic.Interface {
	t.Helper()
	api, err := fakeapi.New(fakeapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := api.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); api.Close() })
	dyn, err := dynamic.NewForConfig(api.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	return dyn
}

// startEtcd starts an embedded etcd and returns a client of it.
func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	s, err := etcdserver.Start(t.Context(), etcdserver.Config{Dir: t.TempDir(), UnsafeNoFsync: true, LogLevel: "fatal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.ClientURL()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func create(t *testing.T, dyn dynamic.Interface, gvr schema.GroupVersionResource, obj map[string]any) {
	t.Helper()
	u := &unstructured.Unstructured{Object: obj}
	var err error
	if ns := u.GetNamespace(); ns != "" {
		_, err = dyn.Resource(gvr).Namespace(ns).Create(t.Context(), u, metav1.CreateOptions{})
	} else {
		_, err = dyn.Resource(gvr).Create(t.Context(), u, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatalf("create %s %s: %v", gvr.Resource, u.GetName(), err)
	}
}

// The fixed objects: two identities (and one without labels, ignored),
// endpoints as a slice and as CiliumEndpoints (the same three pods, one
// with IPv6 and named ports, one with a pod UID and an encryption key),
// and two CiliumNodes. Values follow clustermesh-apiserver's testdata.
func seed(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	create(t, dyn, gvrNamespace, map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "ns1"}})
	for _, cid := range []map[string]any{
		{"apiVersion": "cilium.io/v2", "kind": "CiliumIdentity", "metadata": map[string]any{"name": "70001"},
			"security-labels": map[string]any{"k8s:app": "web", "k8s:io.kubernetes.pod.namespace": "ns1"}},
		{"apiVersion": "cilium.io/v2", "kind": "CiliumIdentity", "metadata": map[string]any{"name": "70002"},
			"security-labels": map[string]any{"k8s:app": "db", "k8s:io.kubernetes.pod.namespace": "ns1"}},
		{"apiVersion": "cilium.io/v2", "kind": "CiliumIdentity", "metadata": map[string]any{"name": "70003"}},
	} {
		create(t, dyn, gvrIdentity, cid)
	}
	create(t, dyn, gvrSlice, map[string]any{
		"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumEndpointSlice", "metadata": map[string]any{"name": "ces-aaa"},
		"namespace": "ns1",
		"endpoints": []any{
			map[string]any{"name": "web-1", "id": int64(70001), "service-account": "default",
				"networking":  map[string]any{"addressing": []any{map[string]any{"ipv4": "10.0.1.5", "ipv6": "fd00::105"}}, "node": "192.168.0.1"},
				"encryption":  map[string]any{},
				"named-ports": []any{map[string]any{"name": "http", "port": int64(8080), "protocol": "TCP"}}},
			map[string]any{"name": "db-1", "id": int64(70002), "service-account": "db", "pod-uid": "uid-db-1",
				"networking": map[string]any{"addressing": []any{map[string]any{"ipv4": "10.0.2.7"}}, "node": "192.168.0.2"},
				"encryption": map[string]any{"key": int64(3)}},
		},
	})
	for _, cep := range []map[string]any{
		{"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint", "metadata": map[string]any{"name": "web-1", "namespace": "ns1"},
			"status": map[string]any{"identity": map[string]any{"id": int64(70001)}, "service-account": "default",
				"networking":  map[string]any{"addressing": []any{map[string]any{"ipv4": "10.0.1.5", "ipv6": "fd00::105"}}, "node": "192.168.0.1"},
				"named-ports": []any{map[string]any{"name": "http", "port": int64(8080), "protocol": "TCP"}}}},
		{"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint", "metadata": map[string]any{"name": "db-1", "namespace": "ns1",
			"ownerReferences": []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": "db-1", "uid": "uid-db-1"}}},
			"status": map[string]any{"identity": map[string]any{"id": int64(70002)}, "service-account": "db",
				"networking": map[string]any{"addressing": []any{map[string]any{"ipv4": "10.0.2.7"}}, "node": "192.168.0.2"},
				"encryption": map[string]any{"key": int64(3)}}},
	} {
		create(t, dyn, gvrEndpoint, cep)
	}
	for i, name := range []string{"node-1", "node-2"} {
		create(t, dyn, gvrNode, map[string]any{
			"apiVersion": "cilium.io/v2", "kind": "CiliumNode",
			"metadata": map[string]any{"name": name, "labels": map[string]any{"kubernetes.io/hostname": name}},
			"spec": map[string]any{
				"addresses": []any{map[string]any{"type": "InternalIP", "ip": fmt.Sprintf("192.168.0.%d", i+1)}},
				"ipam":      map[string]any{"podCIDRs": []any{fmt.Sprintf("10.0.%d.0/24", i+1)}},
			},
		})
	}
}

// runMirror runs a mirror until the test ends and waits for its canaries.
func runMirror(t *testing.T, cfg Config) *Mirror {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 30*time.Second, "canaries", func() bool { return m.Synced() })
	return m
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) //nolint:forbidigo // polling an external store
	}
}

// dump lists every key: "# key" then the value (timestamps masked), as the
// txtar files of clustermesh-apiserver show them.
func dump(t *testing.T, cli *clientv3.Client) (string, []*kv) {
	t.Helper()
	resp, err := cli.Get(t.Context(), "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	var kvs []*kv
	for _, x := range resp.Kvs {
		k, v := string(x.Key), string(x.Value)
		kvs = append(kvs, &kv{key: k, value: x.Value, create: x.CreateRevision, lease: x.Lease})
		if strings.HasPrefix(k, agentcontract.KVSyncedPrefix) || k == agentcontract.KVHeartbeatKey {
			if _, err := time.Parse(time.RFC3339, v); err != nil {
				t.Errorf("%s: value %q is not a timestamp", k, v)
			}
			v = "<timestamp>"
		}
		fmt.Fprintf(&b, "# %s\n%s\n", k, v)
	}
	return b.String(), kvs
}

type kv struct {
	key    string
	value  []byte
	create int64
	lease  int64
}

func TestMirrorGolden(t *testing.T) {
	for _, src := range []Source{SourceCES, SourceCEP} {
		t.Run(string(src), func(t *testing.T) {
			dyn := startAPI(t)
			seed(t, dyn)
			cli := startEtcd(t)
			reg := prometheus.NewRegistry()
			runMirror(t, Config{Replica: 3, Source: src, Kube: dyn, Etcd: cli, Cluster: "c1", Registerer: reg})
			got, kvs := dump(t, cli)
			golden := filepath.Join("testdata", "mirror-"+string(src)+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(string(want), got); d != "" {
				t.Errorf("keys (-want +got):\n%s", d)
			}
			checkFields(t, kvs)
			checkMetrics(t, reg)
			checkCanaries(t, kvs, "c1")
			for _, x := range kvs {
				if x.lease == 0 {
					t.Errorf("%s has no lease; every key is on the replica's lease", x.key)
				}
			}
		})
	}
}

// checkFields asserts the JSON field names of each value kind (those of
// clustermesh-apiserver's testdata), independently of the golden file.
func checkFields(t *testing.T, kvs []*kv) {
	t.Helper()
	want := map[string][]string{
		agentcontract.KVIPPrefix:            {"IP", "HostIP", "ID", "Key", "Metadata", "K8sNamespace", "K8sPodName"},
		agentcontract.KVNodesPrefix:         {"Name", "Cluster", "IPAddresses", "IPv4AllocCIDR", "IPv4SecondaryAllocCIDRs", "IPv6AllocCIDR", "IPv6SecondaryAllocCIDRs", "IPv4HealthIP", "IPv6HealthIP", "IPv4IngressIP", "IPv6IngressIP", "ClusterID", "Source", "EncryptionKey", "Labels", "Annotations", "WireguardPubKey", "BootID"},
		agentcontract.KVClusterConfigPrefix: {"capabilities"},
	}
	seen := map[string]bool{}
	for _, x := range kvs {
		for prefix, fields := range want {
			if !strings.HasPrefix(x.key, prefix) {
				continue
			}
			seen[prefix] = true
			var m map[string]json.RawMessage
			if err := json.Unmarshal(x.value, &m); err != nil {
				t.Errorf("%s: %v", x.key, err)
				continue
			}
			for _, f := range fields {
				if _, ok := m[f]; !ok {
					t.Errorf("%s: no field %q in %s", x.key, f, x.value)
				}
			}
			if _, ok := m["Mask"]; ok && prefix == agentcontract.KVIPPrefix {
				t.Errorf("%s: has Mask; the newest IPIdentityPair omits it for an endpoint", x.key)
			}
		}
	}
	for prefix := range want {
		if !seen[prefix] {
			t.Errorf("no key under %s", prefix)
		}
	}
}

// checkCanaries asserts that each canary exists and was created after
// every key of its prefix written for the first list.
func checkCanaries(t *testing.T, kvs []*kv, cluster string) {
	t.Helper()
	for prefix, synced := range map[string]string{
		agentcontract.KVIDPrefix: agentcontract.KVSyncedIdentities, agentcontract.KVIPPrefix: agentcontract.KVSyncedIPCache,
		agentcontract.KVNodesPrefix: agentcontract.KVSyncedNodes,
	} {
		key := agentcontract.SyncedKey(cluster, synced)
		i := slices.IndexFunc(kvs, func(x *kv) bool { return x.key == key })
		if i < 0 {
			t.Errorf("no canary %s", key)
			continue
		}
		for _, x := range kvs {
			if strings.HasPrefix(x.key, prefix) && x.create > kvs[i].create {
				t.Errorf("%s was created after the canary %s", x.key, key)
			}
		}
	}
}

// checkMetrics: every prefix's writes were timed from event receipt to
// acknowledgement and counted, under the replica's label.
func checkMetrics(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]uint64{}
	puts := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["replica"] != "3" {
				t.Errorf("%s without replica label 3: %v", mf.GetName(), labels)
			}
			switch mf.GetName() {
			case "stampede_mesh_apply_seconds":
				applied[labels["prefix"]] = m.GetHistogram().GetSampleCount()
			case "stampede_mesh_writes_total":
				if labels["op"] == "put" && labels["outcome"] == "ok" {
					puts[labels["prefix"]] = m.GetCounter().GetValue()
				}
			}
		}
	}
	for _, p := range []string{"identities", "ipcache", "nodes"} {
		if applied[p] == 0 || puts[p] == 0 || float64(applied[p]) != puts[p] {
			t.Errorf("prefix %s: %d apply times, %v puts; want as many as the (non-zero) puts", p, applied[p], puts[p])
		}
	}
}
