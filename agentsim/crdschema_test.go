package agentsim

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/stampede-sim/stampede/internal/testenv"
)

// crdSchema is the part of an OpenAPI v3 schema that Cilium's CRDs use.
type crdSchema struct {
	Type                 string                `json:"type"`
	Format               string                `json:"format"`
	Properties           map[string]*crdSchema `json:"properties"`
	Required             []string              `json:"required"`
	Items                *crdSchema            `json:"items"`
	AdditionalProperties *crdSchema            `json:"additionalProperties"`
	Enum                 []any                 `json:"enum"`
	PreserveUnknown      bool                  `json:"x-kubernetes-preserve-unknown-fields"`
}

// loadCRDSchema reads the openAPIV3Schema of a CRD's first version.
func loadCRDSchema(t testing.TB, path string) *crdSchema {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read CRD: %v", err)
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema *crdSchema `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatalf("parse CRD %s: %v", path, err)
	}
	if len(crd.Spec.Versions) == 0 || crd.Spec.Versions[0].Schema.OpenAPIV3Schema == nil {
		t.Fatalf("CRD %s has no schema", path)
	}
	return crd.Spec.Versions[0].Schema.OpenAPIV3Schema
}

// validate checks a JSON value against the schema strictly: unknown
// fields are errors (the API server would prune them silently).
func (s *crdSchema) validate(path string, v any) []string {
	var errs []string
	bad := func(format string, args ...any) {
		errs = append(errs, path+": "+fmt.Sprintf(format, args...))
	}
	if len(s.Enum) > 0 {
		ok := false
		for _, e := range s.Enum {
			if e == v {
				ok = true
			}
		}
		if !ok {
			bad("value %v not in enum %v", v, s.Enum)
		}
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("want object, got %T", v)
			return errs
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				bad("missing required field %q", r)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch {
			case s.Properties[k] != nil:
				errs = append(errs, s.Properties[k].validate(path+"."+k, m[k])...)
			case s.AdditionalProperties != nil:
				errs = append(errs, s.AdditionalProperties.validate(path+"["+k+"]", m[k])...)
			case s.PreserveUnknown || (s.Properties == nil && s.AdditionalProperties == nil):
			default:
				bad("unknown field %q", k)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			bad("want array, got %T", v)
			return errs
		}
		if s.Items != nil {
			for i, x := range a {
				errs = append(errs, s.Items.validate(fmt.Sprintf("%s[%d]", path, i), x)...)
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			bad("want string, got %T", v)
		}
	case "integer":
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			bad("want integer, got %v", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want boolean, got %T", v)
		}
	}
	return errs
}

// validateObject validates a JSON document.
func validateObject(t testing.TB, s *crdSchema, data []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decode object: %v", err)
	}
	return s.validate("", v)
}

func TestSchemaValidatorRejects(t *testing.T) {
	s := requireRefCRD(t, "ciliumendpoints.yaml")
	tests := []struct {
		name string
		obj  string
	}{
		{"unknown status field", `{"metadata":{},"status":{"bogus":1}}`},
		{"bad state", `{"metadata":{},"status":{"state":"sleeping"}}`},
		{"identity id not integer", `{"metadata":{},"status":{"identity":{"id":"7"}}}`},
		{"networking without addressing", `{"metadata":{},"status":{"networking":{"node":"1.2.3.4"}}}`},
		{"no metadata", `{"status":{}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if errs := validateObject(t, s, []byte(tt.obj)); len(errs) == 0 {
				t.Error("want a validation error")
			}
		})
	}
}

// refCRD is the path of a reference Cilium CRD (see
// /work/shared/reference/cilium-crds/SOURCE.md); tests that need it skip
// (or fail under STAMPEDE_STRICT_SKIPS=1) when it is absent.
func refCRD(name string) string { return "../../shared/reference/cilium-crds/" + name }

func requireRefCRD(t testing.TB, name string) *crdSchema {
	t.Helper()
	p := refCRD(name)
	if _, err := os.Stat(p); err != nil {
		testenv.Skip(t, "reference CRD %s not found: %v", p, err)
	}
	return loadCRDSchema(t, p)
}
