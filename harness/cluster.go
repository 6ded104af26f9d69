package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/scenarios"
)

// Cluster is what the timeline writes to: the API server as the admin sees
// it. kubeCluster implements it over HTTP; tests use a fake.
type Cluster interface {
	CreateNode(ctx context.Context, n scenarios.Node) error
	CreateNamespace(ctx context.Context, ns scenarios.Namespace) error
	CreateServiceAccount(ctx context.Context, namespace, name string) error
	CreatePolicy(ctx context.Context, cnp policy.CiliumNetworkPolicy) error
	// CreatePod creates the pod bound to its node (spec.nodeName set) and
	// then writes its status (podIP, phase Running), as a kubelet would.
	CreatePod(ctx context.Context, p *scenarios.Pod, hostIP string) error
	// SetNamespaceLabels replaces the labels of a namespace.
	SetNamespaceLabels(ctx context.Context, namespace string, labels map[string]string, removed []string) error
	DeletePod(ctx context.Context, namespace, name string) error
}

// kubeCluster writes Kubernetes objects as JSON over HTTP. labels, if
// any, are put on every object it creates (the backend's clean-up finds
// them by these labels).
type kubeCluster struct {
	c      *apiClient
	labels map[string]string
}

// withLabels merges the cluster's object labels into l (which may be nil).
func (k kubeCluster) withLabels(l map[string]string) map[string]string {
	if len(k.labels) == 0 {
		return l
	}
	out := make(map[string]string, len(l)+len(k.labels))
	for key, v := range l {
		out[key] = v
	}
	for key, v := range k.labels {
		out[key] = v
	}
	return out
}

func (k kubeCluster) create(ctx context.Context, path string, obj any) error {
	if m, ok := obj.(map[string]any); ok && len(k.labels) > 0 {
		if meta, ok := m["metadata"].(map[string]any); ok {
			l, _ := meta["labels"].(map[string]string)
			meta["labels"] = k.withLabels(l)
		}
	}
	err := k.c.do(ctx, "POST", path, "", obj, nil)
	if IsConflict(err) {
		return nil // already there (a retried create)
	}
	return err
}

func (k kubeCluster) CreateNode(ctx context.Context, n scenarios.Node) error {
	return k.create(ctx, "/api/v1/nodes", map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{"name": n.Name, "labels": map[string]string{"kubernetes.io/hostname": n.Name}},
		"spec":     map[string]any{"podCIDR": n.PodCIDR.String(), "podCIDRs": []string{n.PodCIDR.String()}},
		"status": map[string]any{
			"addresses":  []map[string]string{{"type": "InternalIP", "address": n.IP.String()}},
			"conditions": []map[string]string{{"type": "Ready", "status": "True"}},
		},
	})
}

func (k kubeCluster) CreateNamespace(ctx context.Context, ns scenarios.Namespace) error {
	return k.create(ctx, "/api/v1/namespaces", map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": ns.Name, "labels": ns.Labels},
	})
}

func (k kubeCluster) CreateServiceAccount(ctx context.Context, namespace, name string) error {
	return k.create(ctx, "/api/v1/namespaces/"+url.PathEscape(namespace)+"/serviceaccounts", map[string]any{
		"apiVersion": "v1", "kind": "ServiceAccount",
		"metadata": map[string]any{"name": name, "namespace": namespace},
	})
}

func (k kubeCluster) CreatePolicy(ctx context.Context, cnp policy.CiliumNetworkPolicy) error {
	if len(k.labels) == 0 {
		return k.create(ctx, "/apis/cilium.io/v2/namespaces/"+url.PathEscape(cnp.Metadata.Namespace)+"/"+policy.Resource, cnp)
	}
	// The slim policy type has no labels: add them on the JSON form.
	b, err := json.Marshal(cnp)
	if err != nil {
		return fmt.Errorf("encode policy %s/%s: %w", cnp.Metadata.Namespace, cnp.Metadata.Name, err)
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("encode policy %s/%s: %w", cnp.Metadata.Namespace, cnp.Metadata.Name, err)
	}
	return k.create(ctx, "/apis/cilium.io/v2/namespaces/"+url.PathEscape(cnp.Metadata.Namespace)+"/"+policy.Resource, obj)
}

func (k kubeCluster) CreatePod(ctx context.Context, p *scenarios.Pod, hostIP string) error {
	base := "/api/v1/namespaces/" + url.PathEscape(p.Namespace) + "/pods"
	if len(k.labels) > 0 {
		// Pod labels are identity labels: the ground truth (which reads
		// the topology's pods) must see the backend's labels too.
		p.Labels = k.withLabels(p.Labels)
	}
	err := k.create(ctx, base, map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": p.Name, "namespace": p.Namespace, "labels": p.Labels},
		"spec": map[string]any{
			"nodeName":           p.Node,
			"serviceAccountName": p.ServiceAccount,
			"containers":         []map[string]any{{"name": "app", "image": "registry.k8s.io/pause:3.10"}},
		},
	})
	if err != nil {
		return err
	}
	// A real API server resets status on create: write it separately.
	status := map[string]any{"status": map[string]any{
		"phase":      "Running",
		"podIP":      p.IP.String(),
		"podIPs":     []map[string]string{{"ip": p.IP.String()}},
		"hostIP":     hostIP,
		"conditions": []map[string]string{{"type": "Ready", "status": "True"}},
	}}
	if err := k.c.do(ctx, "PATCH", base+"/"+url.PathEscape(p.Name)+"/status", "application/merge-patch+json", status, nil); err != nil {
		return fmt.Errorf("set status of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

func (k kubeCluster) SetNamespaceLabels(ctx context.Context, namespace string, labels map[string]string, removed []string) error {
	patch := map[string]any{}
	for k, v := range labels {
		patch[k] = v
	}
	for _, r := range removed {
		patch[r] = nil
	}
	body := map[string]any{"metadata": map[string]any{"labels": patch}}
	return k.c.do(ctx, "PATCH", "/api/v1/namespaces/"+url.PathEscape(namespace), "application/merge-patch+json", body, nil)
}

func (k kubeCluster) DeletePod(ctx context.Context, namespace, name string) error {
	err := k.c.do(ctx, "DELETE", "/api/v1/namespaces/"+url.PathEscape(namespace)+"/pods/"+url.PathEscape(name), "", nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}
