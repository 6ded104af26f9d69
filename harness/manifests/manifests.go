package manifests

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

//go:embed crds/*.yaml
var crdFiles embed.FS

// CRDResource is the resource of CustomResourceDefinitions.
var CRDResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// Resource is one cilium.io type Stampede uses.
type Resource struct {
	GVR        schema.GroupVersionResource
	Kind       string
	Namespaced bool
}

// Resources lists the cilium.io types of the embedded CRDs, sorted by
// resource name.
func Resources() []Resource {
	return []Resource{
		{GVR: gvr("v2", "ciliumcidrgroups"), Kind: "CiliumCIDRGroup"},
		{GVR: gvr("v2", "ciliumclusterwidenetworkpolicies"), Kind: "CiliumClusterwideNetworkPolicy"},
		{GVR: gvr("v2", "ciliumendpoints"), Kind: "CiliumEndpoint", Namespaced: true},
		{GVR: gvr("v2alpha1", "ciliumendpointslices"), Kind: "CiliumEndpointSlice"},
		{GVR: gvr("v2", "ciliumidentities"), Kind: "CiliumIdentity"},
		{GVR: gvr("v2", "ciliumnetworkpolicies"), Kind: "CiliumNetworkPolicy", Namespaced: true},
		{GVR: gvr("v2", "ciliumnodes"), Kind: "CiliumNode"},
	}
}

func gvr(version, resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "cilium.io", Version: version, Resource: resource}
}

// CRDs returns the embedded CustomResourceDefinitions, sorted by name.
func CRDs() ([]*unstructured.Unstructured, error) {
	names, err := fs.Glob(crdFiles, "crds/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("embedded crds: %w", err)
	}
	var out []*unstructured.Unstructured
	for _, n := range names {
		data, err := crdFiles.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("embedded crds: %w", err)
		}
		objs, err := ParseCRDs(n, data)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// ParseCRDs decodes the CustomResourceDefinitions in a YAML stream of one
// or more documents (empty documents are skipped); source names the
// stream in errors.
func ParseCRDs(source string, data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("%s: document %d: %w", source, i, err)
		}
		if len(obj) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: obj}
		if gvk := u.GroupVersionKind(); gvk.Group != CRDResource.Group || gvk.Kind != "CustomResourceDefinition" {
			return nil, fmt.Errorf("%s: document %d: kind %q of %q is not a CustomResourceDefinition", source, i, gvk.Kind, u.GetAPIVersion())
		}
		if u.GetName() == "" {
			return nil, fmt.Errorf("%s: document %d: CustomResourceDefinition has no metadata.name", source, i)
		}
		// Generated manifests carry an empty status; the server owns it.
		unstructured.RemoveNestedField(u.Object, "status")
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		out = append(out, u)
	}
}

// InstallCRDs creates each CRD, or updates it if it exists, with labels
// added, then waits until every one is Established (or ctx ends).
func InstallCRDs(ctx context.Context, dyn dynamic.Interface, crds []*unstructured.Unstructured, labels map[string]string) error {
	client := dyn.Resource(CRDResource)
	names := make([]string, 0, len(crds))
	for _, c := range crds {
		c = c.DeepCopy()
		if len(labels) > 0 {
			l := c.GetLabels()
			if l == nil {
				l = map[string]string{}
			}
			for k, v := range labels {
				l[k] = v
			}
			c.SetLabels(l)
		}
		_, err := client.Create(ctx, c, metav1.CreateOptions{FieldManager: "stampede"})
		if apierrors.IsAlreadyExists(err) {
			err = updateCRD(ctx, client, c)
		}
		if err != nil {
			return fmt.Errorf("install CRD %s: %w", c.GetName(), err)
		}
		names = append(names, c.GetName())
	}
	return WaitEstablished(ctx, dyn, names)
}

func updateCRD(ctx context.Context, client dynamic.ResourceInterface, c *unstructured.Unstructured) error {
	cur, err := client.Get(ctx, c.GetName(), metav1.GetOptions{})
	if err != nil {
		return err
	}
	c.SetResourceVersion(cur.GetResourceVersion())
	_, err = client.Update(ctx, c, metav1.UpdateOptions{FieldManager: "stampede"})
	return err
}

// WaitEstablished polls until every named CRD has conditions Established
// and NamesAccepted true.
func WaitEstablished(ctx context.Context, dyn dynamic.Interface, names []string) error {
	client := dyn.Resource(CRDResource)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	pending := append([]string(nil), names...)
	var lastErr error
	for {
		var still []string
		for _, n := range pending {
			ok, err := established(ctx, client, n)
			if err != nil {
				lastErr = err
			}
			if !ok {
				still = append(still, n)
			}
		}
		if pending = still; len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("CRDs %v not established: %w (last error: %v)", pending, ctx.Err(), lastErr)
		case <-t.C:
		}
	}
}

func established(ctx context.Context, client dynamic.ResourceInterface, name string) (bool, error) {
	u, err := client.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	want := map[string]bool{"Established": false, "NamesAccepted": false}
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok {
			continue
		}
		typ, _ := m["type"].(string)
		if _, ok := want[typ]; ok && m["status"] == "True" {
			want[typ] = true
		}
	}
	return want["Established"] && want["NamesAccepted"], nil
}

// MissingCRDs returns the names of the embedded CRDs the server lacks.
func MissingCRDs(ctx context.Context, dyn dynamic.Interface) ([]string, error) {
	crds, err := CRDs()
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, c := range crds {
		_, err := dyn.Resource(CRDResource).Get(ctx, c.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			missing = append(missing, c.GetName())
		case err != nil:
			return nil, fmt.Errorf("look up CRD %s: %w", c.GetName(), err)
		}
	}
	return missing, nil
}
