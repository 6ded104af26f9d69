package harness

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/stampede-sim/stampede/scenarios"
)

// TestCleanupLeftoversOneLine: what clean-up leaves is counted by kind in
// one line, whatever the number of objects, and only the run's objects
// count.
func TestCleanupLeftoversOneLine(t *testing.T) {
	obj := func(gvr schema.GroupVersionResource, kind, ns, name, run string) runtime.Object {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(gvr.GroupVersion().String())
		u.SetKind(kind)
		u.SetNamespace(ns)
		u.SetName(name)
		if run != "" {
			u.SetLabels(map[string]string{RunLabel: run})
		}
		return u
	}
	var objs []runtime.Object
	for i := range 700 {
		objs = append(objs, obj(podsGVR, "Pod", "ns-0", fmt.Sprintf("p%d", i), "r1"))
	}
	objs = append(objs,
		obj(podsGVR, "Pod", "ns-9", "other-run", "r2"),
		obj(podsGVR, "Pod", "ns-9", "unlabelled", ""),
		obj(namespacesGVR, "Namespace", "", "ns-0", "r1"),
		obj(nodesGVR, "Node", "", "node-0", "r1"),
	)
	listKinds := map[schema.GroupVersionResource]string{
		podsGVR: "PodList", namespacesGVR: "NamespaceList", nodesGVR: "NodeList", saGVR: "ServiceAccountList",
	}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, objs...)
	b := &KubeconfigBackend{}
	got := b.leftovers(t.Context(), dyn, RunLabel+"=r1",
		[]schema.GroupVersionResource{podsGVR, saGVR}, []schema.GroupVersionResource{nodesGVR})
	if want := "1 namespaces, 700 pods, 1 nodes"; got != want {
		t.Errorf("leftovers = %q, want %q", got, want)
	}
	if strings.Contains(got, "\n") {
		t.Errorf("leftovers span lines: %q", got)
	}
}

// TestCleanupBudgetScales: the clean-up budget grows with what a run
// creates, so that a bigger run is not cut short where a small one ends.
func TestCleanupBudgetScales(t *testing.T) {
	small, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	big, err := scenarios.Builtin("relabel-1k")
	if err != nil {
		t.Fatal(err)
	}
	ns, nb := createdObjects(small), createdObjects(big)
	if ns < 2*small.PodCount() || nb < 2*big.PodCount() {
		t.Errorf("createdObjects: %d for %d pods, %d for %d pods; want at least a Pod and a CiliumEndpoint per pod", ns, small.PodCount(), nb, big.PodCount())
	}
	if bs, bb := cleanupBudget(ns), cleanupBudget(nb); !(bb > bs && bs > cleanupBudget(0)) {
		t.Errorf("cleanupBudget: %v (none), %v (%d objects), %v (%d objects); want it to grow", cleanupBudget(0), bs, ns, bb, nb)
	}
}
