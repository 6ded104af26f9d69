package controlplane

import (
	"fmt"

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

// fromUnstructured decodes an unstructured object into a slim typed one.
func fromUnstructured(obj any, into any) error {
	u, ok := obj.(interface{ UnstructuredContent() map[string]any })
	if !ok {
		return fmt.Errorf("unexpected object %T", obj)
	}
	return runtime.DefaultUnstructuredConverter.FromUnstructured(u.UnstructuredContent(), into)
}
