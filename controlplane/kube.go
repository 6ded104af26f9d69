package controlplane

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/cache"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/scenarios"
)

// Cilium resources the control plane reads and writes.
var (
	gvrIdentity = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumidentities"}
	gvrEndpoint = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumendpoints"}
	gvrSlice    = schema.GroupVersionResource{Group: "cilium.io", Version: "v2alpha1", Resource: "ciliumendpointslices"}
	gvrPolicy   = schema.GroupVersionResource{Group: "cilium.io", Version: "v2", Resource: "ciliumnetworkpolicies"}
)

// kube holds the API clients of the process: one connection, the
// scenario's controlPlane.clientQPS/clientBurst (Cilium operator defaults).
type kube struct {
	core kubernetes.Interface
	dyn  dynamic.Interface
}

func newKube(rc *rest.Config, s *scenarios.Scenario) (*kube, error) {
	rc = rest.CopyConfig(rc)
	if s.ControlPlane.ClientQPS > 0 {
		rc.QPS = float32(s.ControlPlane.ClientQPS)
	}
	if s.ControlPlane.ClientBurst > 0 {
		rc.Burst = s.ControlPlane.ClientBurst
	}
	if rc.UserAgent == "" {
		rc.UserAgent = "stampede-controlplane"
	}
	core, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("controlplane: API client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("controlplane: API client: %w", err)
	}
	return &kube{core: core, dyn: dyn}, nil
}

// newWatchEvents is the counter of watch events every informer of the
// process feeds, by resource.
func newWatchEvents(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stampede_controlplane_watch_events_total", Help: "Watch events received by the control plane, by resource."}, []string{"resource"})
	return c, reg.Register(c)
}

// countEvents counts an informer's events in events.
func countEvents(inf cache.SharedIndexInformer, events *prometheus.CounterVec, resource string) error {
	c := events.WithLabelValues(resource)
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.Inc() },
		UpdateFunc: func(any, any) { c.Inc() },
		DeleteFunc: func(any) { c.Inc() },
	})
	return err
}

// fromUnstructured decodes an unstructured object into a slim typed one.
func fromUnstructured(obj any, into any) error {
	u, ok := obj.(interface{ UnstructuredContent() map[string]any })
	if !ok {
		return fmt.Errorf("unexpected object %T", obj)
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), into)
}
