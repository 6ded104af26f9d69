package manifests

import (
	"strings"
	"testing"
)

func TestCRDsMatchResources(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	res := Resources()
	if len(crds) != len(res) {
		t.Fatalf("%d CRDs, %d resources", len(crds), len(res))
	}
	for i, c := range crds {
		r := res[i]
		if want := r.GVR.Resource + "." + r.GVR.Group; c.GetName() != want {
			t.Errorf("CRD %d name %q, want %q", i, c.GetName(), want)
		}
		kind, _, _ := unstructuredString(c.Object, "spec", "names", "kind")
		scope, _, _ := unstructuredString(c.Object, "spec", "scope")
		if kind != r.Kind {
			t.Errorf("%s: kind %q, want %q", c.GetName(), kind, r.Kind)
		}
		if (scope == "Namespaced") != r.Namespaced {
			t.Errorf("%s: scope %q, namespaced %v", c.GetName(), scope, r.Namespaced)
		}
		// The resource's version is the CRD's storage version.
		versions, _, _ := nestedSlice(c.Object, "spec", "versions")
		var storage []any
		for _, v := range versions {
			if v.(map[string]any)["storage"] == true {
				storage = append(storage, v.(map[string]any)["name"])
			}
		}
		if len(storage) != 1 || storage[0] != r.GVR.Version {
			t.Errorf("%s: storage versions %v, want one: %s", c.GetName(), storage, r.GVR.Version)
		}
	}
}

func TestParseCRDsErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not a CRD", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", `document 0: kind "ConfigMap" of "v1" is not a CustomResourceDefinition`},
		{"no name", "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n", "document 0: CustomResourceDefinition has no metadata.name"},
		{"bad yaml", "---\napiVersion: [\n", "x.yaml: document 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCRDs("x.yaml", []byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseCRDs error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	objs, err := ParseCRDs("multi", []byte("---\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: a.b, creationTimestamp: null}\nstatus: {conditions: []}\n"))
	if err != nil || len(objs) != 1 {
		t.Fatalf("ParseCRDs = %d objects, %v; want 1", len(objs), err)
	}
	if _, ok := objs[0].Object["status"]; ok {
		t.Error("status was not dropped")
	}
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	v, ok := nested(obj, fields...)
	s, _ := v.(string)
	return s, ok, nil
}

func nestedSlice(obj map[string]any, fields ...string) ([]any, bool, error) {
	v, ok := nested(obj, fields...)
	s, _ := v.([]any)
	return s, ok, nil
}

func nested(obj map[string]any, fields ...string) (any, bool) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[f]
		if !ok {
			return nil, false
		}
	}
	return cur, true
}
