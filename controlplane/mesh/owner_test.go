package mesh

import (
	"encoding/json"
	"net"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stampede-sim/stampede/internal/agentcontract"
)

// TestPrimaryOwner follows CachedConverter (converters.go entryGroup) and
// testdata/ciliumendpoints.txtar: a second endpoint claiming an IP does
// not replace the first's entry; when the first goes the second's entry is
// written; when both are gone the key is deleted.
func TestPrimaryOwner(t *testing.T) {
	dyn := startAPI(t)
	create(t, dyn, gvrNamespace, map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "ns1"}})
	cli := startEtcd(t)
	runMirror(t, Config{Source: SourceCEP, Kube: dyn, Etcd: cli})
	cep := func(name string, id int64) map[string]any {
		return map[string]any{"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint", "metadata": map[string]any{"name": name, "namespace": "ns1"},
			"status": map[string]any{"identity": map[string]any{"id": id},
				"networking": map[string]any{"addressing": []any{map[string]any{"ipv4": "10.0.9.9"}}, "node": "192.168.0.1"}}}
	}
	key := agentcontract.KVIPPrefix + "10.0.9.9"
	owner := func() string {
		resp, err := cli.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return ""
		}
		var p agentcontract.IPIdentityPair
		if err := json.Unmarshal(resp.Kvs[0].Value, &p); err != nil {
			t.Fatal(err)
		}
		if !p.IP.Equal(net.ParseIP("10.0.9.9")) {
			t.Fatalf("value of %s names IP %s", key, p.IP)
		}
		return p.K8sPodName
	}
	waitOwner := func(want string) {
		t.Helper()
		waitFor(t, 10*time.Second, "owner "+want, func() bool { return owner() == want })
	}
	del := func(name string) {
		t.Helper()
		if err := dyn.Resource(gvrEndpoint).Namespace("ns1").Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create(t, dyn, gvrEndpoint, cep("first", 70001))
	waitOwner("first")
	create(t, dyn, gvrEndpoint, cep("second", 70002))
	// A third object that the mirror must see after second: once its key
	// is there, second's event has been handled too.
	create(t, dyn, gvrEndpoint, map[string]any{"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint", "metadata": map[string]any{"name": "marker", "namespace": "ns1"},
		"status": map[string]any{"identity": map[string]any{"id": int64(70003)}, "networking": map[string]any{"addressing": []any{map[string]any{"ipv4": "10.0.9.10"}}}}})
	waitFor(t, 10*time.Second, "marker", func() bool {
		resp, err := cli.Get(t.Context(), agentcontract.KVIPPrefix+"10.0.9.10")
		return err == nil && len(resp.Kvs) == 1
	})
	if got := owner(); got != "first" {
		t.Fatalf("after a second claim the owner is %q, want first (the primary keeps it)", got)
	}
	del("first")
	waitOwner("second")
	del("second")
	waitOwner("")
}
