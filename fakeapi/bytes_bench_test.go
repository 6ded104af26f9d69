package fakeapi

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// BenchmarkWatchBytesPerEvent writes the objects a relabel's agents and
// harness write (pods with labels, CiliumEndpoints created and then
// JSON-patched on /status-less objects, CiliumIdentities with security
// labels) through client-go, and reports the mean size of a watch event
// (the bytes every watcher receives) per resource: what the capacity model
// charges by KiB and what agents decode.
//
//	go test -run '^$' -bench WatchBytesPerEvent -benchtime 1x ./fakeapi
func BenchmarkWatchBytesPerEvent(b *testing.B) {
	for range b.N {
		s := start(b, Config{})
		cfg := s.RESTConfig()
		cfg.UserAgent = "stampede-agent/node-1"
		cs, dc := clientsFor(b, cfg)
		ctx := b.Context()
		ceps := dc.Resource(schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumendpoints"})
		cids := dc.Resource(schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumidentities"})
		for i := range 50 {
			labels := map[string]string{"app": fmt.Sprintf("app-%d", i%5), "pod-template-hash": "7d4b9c8f6d"}
			if _, err := cs.CoreV1().Pods("default").Create(ctx, pod("default", fmt.Sprintf("p-%d", i), "node-1", labels), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			if _, err := ceps.Namespace("default").Create(ctx, cep("default", fmt.Sprintf("p-%d", i), int64(1000+i%5)), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			patch := fmt.Appendf(nil, `[{"op":"replace","path":"/status/identity/id","value":%d}]`, 2000+i%5)
			if _, err := ceps.Namespace("default").Patch(ctx, fmt.Sprintf("p-%d", i), types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
				b.Fatal(err)
			}
			cid := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "cilium.io/v2", "kind": "CiliumIdentity",
				"metadata":        map[string]any{"name": fmt.Sprint(1000 + i), "labels": map[string]any{"io.kubernetes.pod.namespace": "default", "app": fmt.Sprintf("app-%d", i)}},
				"security-labels": map[string]any{"k8s:app": fmt.Sprintf("app-%d", i), "k8s:io.kubernetes.pod.namespace": "default"},
			}}
			if _, err := cids.Create(ctx, cid, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		for _, r := range []string{"pods", "ciliumendpoints", "ciliumidentities"} {
			for res, st := range s.stores {
				if res.name != r {
					continue
				}
				var n, bytes int
				for i := range st.head.Load() {
					if e := st.ring[i%uint64(len(st.ring))].Load(); e != nil {
						n++
						bytes += len(e.frame)
					}
				}
				b.ReportMetric(float64(bytes)/float64(max(n, 1)), "bytes/event-"+r)
			}
		}
	}
}

func clientsFor(t testing.TB, cfg *rest.Config) (*kubernetes.Clientset, *dynamic.DynamicClient) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, dc
}
