package fakeapi

import (
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
)

// The resources a cilium-agent lists and watches besides the seed's six
// are served with kube-apiserver's (or Cilium's CRDs') group, version,
// scope, short names and status subresource, and can be listed and
// watched.
func TestAgentWatchedResources(t *testing.T) {
	s := start(t, Config{})
	cs, dc := clients(t, s)
	for _, tc := range []struct {
		gvr        schema.GroupVersionResource
		kind       string
		namespaced bool
		status     bool
		shortNames []string
	}{
		{gvr: schema.GroupVersionResource{Version: "v1", Resource: "services"}, kind: "Service", namespaced: true, status: true, shortNames: []string{"svc"}},
		{gvr: schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}, kind: "EndpointSlice", namespaced: true},
		{gvr: schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}, kind: "NetworkPolicy", namespaced: true, shortNames: []string{"netpol"}},
		{gvr: schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumclusterwidenetworkpolicies"}, kind: "CiliumClusterwideNetworkPolicy", status: true, shortNames: []string{"ccnp"}},
		{gvr: schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumcidrgroups"}, kind: "CiliumCIDRGroup", shortNames: []string{"ccg"}},
		{gvr: schema.GroupVersionResource{Group: "cilium.io", Version: "v2alpha1", Resource: "ciliumcidrgroups"}, kind: "CiliumCIDRGroup", shortNames: []string{"ccg"}},
		{gvr: schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnodes"}, kind: "CiliumNode", status: true, shortNames: []string{"cn", "ciliumn"}},
	} {
		t.Run(tc.gvr.GroupResource().String()+"/"+tc.gvr.Version, func(t *testing.T) {
			ctx := t.Context()
			rl, err := cs.Discovery().ServerResourcesForGroupVersion(tc.gvr.GroupVersion().String())
			if err != nil {
				t.Fatal(err)
			}
			var found, status bool
			for _, r := range rl.APIResources {
				switch r.Name {
				case tc.gvr.Resource:
					found = true
					if r.Kind != tc.kind || r.Namespaced != tc.namespaced || !slices.Equal(r.ShortNames, tc.shortNames) {
						t.Errorf("discovery: kind %s namespaced %v shortNames %v, want %s %v %v", r.Kind, r.Namespaced, r.ShortNames, tc.kind, tc.namespaced, tc.shortNames)
					}
				case tc.gvr.Resource + "/status":
					status = true
				}
			}
			if !found || status != tc.status {
				t.Fatalf("discovery: resource found %v, status subresource %v, want true, %v", found, status, tc.status)
			}
			ri := dc.Resource(tc.gvr)
			ns := ""
			if tc.namespaced {
				ns = "default"
			}
			obj := func(name string) *unstructured.Unstructured {
				o := &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": tc.gvr.GroupVersion().String(), "kind": tc.kind,
					"metadata": map[string]any{"name": name},
				}}
				if ns != "" {
					o.SetNamespace(ns)
				}
				if tc.kind == "EndpointSlice" {
					o.Object["addressType"] = "IPv4"
				}
				return o
			}
			if _, err := ri.Namespace(ns).Create(ctx, obj("a"), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			l, err := ri.List(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(l.Items) != 1 || l.Items[0].GetName() != "a" {
				t.Fatalf("list: %d items, want a", len(l.Items))
			}
			w, err := ri.Watch(ctx, metav1.ListOptions{ResourceVersion: l.GetResourceVersion()})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			if _, err := ri.Namespace(ns).Create(ctx, obj("b"), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			select {
			case ev := <-w.ResultChan():
				o, ok := ev.Object.(*unstructured.Unstructured)
				if ev.Type != watch.Added || !ok || o.GetName() != "b" {
					t.Fatalf("watch: %s %v, want ADDED b", ev.Type, ev.Object)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("watch: no event for b")
			}
		})
	}
}
