package controlplane

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stampede-sim/stampede/scenarios"
)

func cep(name string, id int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
		"metadata": map[string]any{"namespace": "ns", "name": name},
		"status":   map[string]any{"identity": map[string]any{"id": id}},
	}}
}

// TestCESEmptiedSliceNotRefilled: an endpoint created after its
// namespace's only slice was emptied goes into a new slice, as Cilium
// forgets an empty slice at once (RemoveCEPMapping) and deletes it.
func TestCESEmptiedSliceNotRefilled(t *testing.T) {
	for _, mode := range []string{scenarios.SliceModeFCFS, scenarios.SliceModeIdentity} {
		c, err := newCESController(cesConfig{
			knobs: scenarios.CESKnobs{MaxEndpointsPerSlice: 100, WriteQPS: 10, WriteBurst: 20, BatchInterval: scenarios.D(time.Second), SliceMode: mode},
			log:   slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry(),
		})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		c.upsert(cep("a", 256), now)
		first := c.member["ns/a"]
		c.remove(cep("a", 256), now)
		c.upsert(cep("b", 256), now)
		if got := c.member["ns/b"]; got == first {
			t.Errorf("%s: endpoint b went into the emptied slice %s", mode, first)
		}
		if n := len(c.slices); n != 2 {
			t.Errorf("%s: %d slices, want the emptied one (to delete) and a new one", mode, n)
		}
	}
}
