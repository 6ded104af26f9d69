package controlplane_test

import (
	"fmt"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// TestCESCarriesRunLabel: a slice of endpoints that carry the run label
// carries it too (the kubeconfig backend's clean-up finds slices by it);
// a slice of unlabelled endpoints, as Cilium's, has no labels.
func TestCESCarriesRunLabel(t *testing.T) {
	c := startCluster(t, "relabel-small", false)
	c.sc.ControlPlane.CES.BatchInterval = scenarios.Duration{Duration: 200 * time.Millisecond}
	for i, ns := range []string{"ns-0", "ns-1"} {
		o := cepObject(ns, "p0", 256, fmt.Sprintf("10.0.0.%d", i+1), "node-0000")
		if ns == "ns-0" {
			o.SetLabels(map[string]string{identity.RunLabel: "r1", "app": "web"})
		}
		if _, err := c.dyn.Resource(gvrCEP).Namespace(ns).Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_, stop := runControlplane(t, c, scenarios.ModeCES, "")
	defer stop()
	eventually(t, time.Minute, "a slice per namespace, labelled as its endpoints", func() error {
		list, err := c.dyn.Resource(gvrCES).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		got := map[string]map[string]string{}
		for _, it := range list.Items {
			ns, _ := it.Object["namespace"].(string)
			got[ns] = it.GetLabels()
		}
		if len(got) != 2 {
			return fmt.Errorf("slices of namespaces %v, want ns-0 and ns-1", got)
		}
		if l := got["ns-0"]; len(l) != 1 || l[identity.RunLabel] != "r1" {
			return fmt.Errorf("slice of ns-0 labelled %v, want only %s=r1", l, identity.RunLabel)
		}
		if l := got["ns-1"]; len(l) != 0 {
			return fmt.Errorf("slice of ns-1 labelled %v, want no labels", l)
		}
		return nil
	})
}

// TestCESLeavesForeignSlices: at start the controller deletes the slices an
// earlier run left (they carry a run label) but not a slice without one,
// as Cilium's own operator writes on a kubeconfig cluster. The foreign
// slice sorts first, so a controller that deleted every slice it did not
// create would have deleted it before the leftover.
func TestCESLeavesForeignSlices(t *testing.T) {
	c := startCluster(t, "relabel-small", false)
	c.sc.ControlPlane.CES.BatchInterval = scenarios.Duration{Duration: 200 * time.Millisecond}
	slice := func(name string, labels map[string]string) *unstructured.Unstructured {
		o := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "cilium.io/v2alpha1", "kind": "CiliumEndpointSlice",
			"metadata":  map[string]any{"name": name},
			"namespace": "ns-0",
			"endpoints": []any{},
		}}
		o.SetLabels(labels)
		return o
	}
	for _, o := range []*unstructured.Unstructured{
		slice("ces-aaaaaaaaa-foreign", nil),
		slice("ces-zzzzzzzzz-leftover", map[string]string{identity.RunLabel: "an-earlier-run"}),
	} {
		if _, err := c.dyn.Resource(gvrCES).Create(t.Context(), o, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_, stop := runControlplane(t, c, scenarios.ModeCES, "")
	defer stop()
	eventually(t, time.Minute, "the leftover slice deleted", func() error {
		_, err := c.dyn.Resource(gvrCES).Get(t.Context(), "ces-zzzzzzzzz-leftover", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (err %v)", err)
	})
	if _, err := c.dyn.Resource(gvrCES).Get(t.Context(), "ces-aaaaaaaaa-foreign", metav1.GetOptions{}); err != nil {
		t.Errorf("the unlabelled slice: %v, want it left alone", err)
	}
}
