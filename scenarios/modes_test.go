package scenarios

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestModeForms checks the two YAML forms of a mode and that a preset
// given by name or as {name} gets the preset's axes.
func TestModeForms(t *testing.T) {
	s, err := Parse("t", []byte(base+`modes:
  - crd
  - {name: kvstore}
  - {name: op-ces, identity: operator, endpoints: ces, readPath: apiserver}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []ModeSpec{
		{ModeCRD, Axes{IdentityAgent, EndpointsCEP, ReadAPIServer}},
		{ModeKVStore, Axes{IdentityKVStore, EndpointsKVStore, ReadKVStore}},
		{"op-ces", Axes{IdentityOperator, EndpointsCES, ReadAPIServer}},
	}
	if diff := cmp.Diff(want, s.Modes); diff != "" {
		t.Errorf("modes (-want +got):\n%s", diff)
	}
	// Written as objects, read back the same.
	js, err := json.Marshal(s.Modes)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `{"name":"crd","identity":"agent","endpoints":"cep","readPath":"apiserver"}`) {
		t.Errorf("modes are not written as objects: %s", js)
	}
	var back []ModeSpec
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// TestModesDefaultToTheReleasesPresets: modes unset is every preset the
// release has.
func TestModesDefaultToTheReleasesPresets(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    []Mode
	}{
		{"1.17", []Mode{ModeCRD, ModeCES, ModeKVStore, ModeXDS}},
		{"1.19", []Mode{ModeCRD, ModeCES, ModeKVStore, ModeOperator, ModeXDS}},
	} {
		s, err := Parse("t", []byte(base+"cilium: {version: \""+tc.version+"\"}\n"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, s.ModeNames()); diff != "" {
			t.Errorf("%s: default modes (-want +got):\n%s", tc.version, diff)
		}
	}
}

// TestModeValidation is the validation table of the design (section 2.1):
// each case wants one error at its path, whose message holds the reason.
func TestModeValidation(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		path, msg  string // empty path: valid
	}{
		{name: "presets", yaml: "modes: [crd, ces, kvstore, operator, xds]\n"},
		{name: "operator identities with ces", yaml: "modes: [{name: op-ces, identity: operator, endpoints: ces, readPath: apiserver}]\n"},
		{name: "unknown preset", yaml: "modes: [crd, meshh]\n", path: "modes[1]", msg: `unknown preset "meshh"`},
		{name: "duplicate", yaml: "modes: [crd, crd]\n", path: "modes[1]", msg: "duplicate"},
		{name: "bad name", yaml: "modes: [{name: Op_CES, identity: operator, endpoints: ces, readPath: apiserver}]\n", path: "modes[0].name", msg: "directory"},
		{name: "preset with other axes", yaml: "modes: [{name: crd, identity: operator, endpoints: cep, readPath: apiserver}]\n", path: "modes[0].name", msg: "is a preset (agent/cep/apiserver)"},
		{name: "missing axis", yaml: "modes: [{name: x, identity: operator, endpoints: ces}]\n", path: "modes[0].readPath", msg: "required"},
		{name: "unknown axis value", yaml: "modes: [{name: x, identity: operator, endpoints: cesx, readPath: apiserver}]\n", path: "modes[0].endpoints", msg: `unknown value "cesx"`},
		{name: "unknown field", yaml: "modes: [{name: x, identity: operator, endpoints: ces, readPath: apiserver, replicas: 2}]\n", path: "modes[0].replicas", msg: "unknown field"},
		{name: "not a mode", yaml: "modes: [3]\n", path: "modes[0]", msg: "preset's name or a mapping"},
		{name: "xds half", yaml: "modes: [{name: x, identity: central, endpoints: xds, readPath: apiserver}]\n", path: "modes[0].readPath", msg: "come together"},
		{name: "kvstore identity on the API server", yaml: "modes: [{name: x, identity: kvstore, endpoints: cep, readPath: apiserver}]\n", path: "modes[0].readPath", msg: "kvstore identities"},
		{name: "kvstore read path with CRD identities", yaml: "modes: [{name: x, identity: agent, endpoints: kvstore, readPath: kvstore}]\n", path: "modes[0].identity", msg: "kvstore read path"},
		{name: "kvstore read path with ces", yaml: "modes: [{name: x, identity: kvstore, endpoints: ces, readPath: kvstore}]\n", path: "modes[0].endpoints", msg: "cilium/cilium#35741"},
		{name: "kvstore endpoints on the API server", yaml: "modes: [{name: x, identity: agent, endpoints: kvstore, readPath: apiserver}]\n", path: "modes[0].endpoints", msg: "kvstore endpoints"},
		{name: "operator before 1.18", yaml: "cilium: {version: \"1.17\"}\nmodes: [operator]\n", path: "modes[0].identity", msg: "1.18"},
		{name: "ces-slim before 1.20", yaml: "cilium: {version: \"1.19\"}\nmodes: [ces-slim]\n", path: "modes[0].endpoints", msg: "#45698"},
		{name: "mesh before 1.20", yaml: "cilium: {version: \"1.19\"}\nmodes: [{name: m, identity: operator, endpoints: ces, readPath: mesh}]\n", path: "modes[0].readPath", msg: "CFP-44774"},
		{name: "disableEndpointCRD with cep", yaml: "agent: {disableEndpointCRD: true}\nmodes: [kvstore, crd]\n", path: "modes[1]", msg: "disableEndpointCRD"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t", []byte(base+tc.yaml))
			if tc.path == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a ValidationError at %s, got %v", tc.path, err)
			}
			if len(ve.Errors) != 1 || ve.Errors[0].Path != tc.path || !strings.Contains(ve.Errors[0].Msg, tc.msg) {
				t.Fatalf("want exactly one error at %s containing %q, got %v", tc.path, tc.msg, ve.Errors)
			}
		})
	}
}

func TestSelectModes(t *testing.T) {
	s, err := Parse("t", []byte(base+"modes: [crd, {name: op-ces, identity: operator, endpoints: ces, readPath: apiserver}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SelectModes([]Mode{"op-ces", ModeKVStore}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Mode{"op-ces", ModeKVStore}, s.ModeNames()); diff != "" {
		t.Errorf("selected (-want +got):\n%s", diff)
	}
	if m, _ := s.ModeSpec(ModeKVStore); m.Axes != (Axes{IdentityKVStore, EndpointsKVStore, ReadKVStore}) {
		t.Errorf("added preset kvstore has axes %s", m.Axes)
	}
	if err := s.SelectModes([]Mode{"nope"}); err == nil || !strings.Contains(err.Error(), "no preset") {
		t.Errorf("unknown name: got %v", err)
	}
}

// TestRelease120Presets: 1.20 has the slim CES controller, so ces-slim
// and mesh validate there and are among its default modes.
func TestRelease120Presets(t *testing.T) {
	s, err := Parse("t", []byte(base+"cilium: {version: \"1.20\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Mode{ModeCRD, ModeCES, ModeKVStore, ModeOperator, ModeXDS, ModeCESSlim, ModeMesh}
	if diff := cmp.Diff(want, s.ModeNames()); diff != "" {
		t.Errorf("1.20 default modes (-want +got):\n%s", diff)
	}
	if !s.Release().SupportsCESController(CESControllerSlim) {
		t.Error("1.20 has no slim CES controller")
	}
	for _, y := range []string{
		"modes: [{name: mesh-from-ces, identity: operator, endpoints: ces, readPath: mesh}]\n",
		"modes: [{name: mesh-from-ceps, identity: operator, endpoints: cep, readPath: mesh}]\n",
		"modes: [{name: agent-slim, identity: agent, endpoints: ces-slim, readPath: apiserver}]\n",
		"agent: {disableEndpointCRD: true}\nmodes: [ces-slim, mesh, kvstore]\n",
	} {
		if _, err := Parse("t", []byte(base+"cilium: {version: \"1.20\"}\n"+y)); err != nil {
			t.Errorf("%s: %v", y, err)
		}
	}
}

func TestModeValidation120(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		path, msg  string
	}{
		{name: "mesh with CRD identities", yaml: "modes: [{name: m, identity: agent, endpoints: ces-slim, readPath: mesh}]\n", path: "modes[0].identity", msg: "crdBackend.ListAndWatch"},
		{name: "mesh with kvstore endpoints", yaml: "modes: [{name: m, identity: operator, endpoints: kvstore, readPath: mesh}]\n", path: "modes[0].endpoints", msg: "kvstore endpoints"},
		{name: "slim with central identities", yaml: "modes: [{name: m, identity: central, endpoints: ces-slim, readPath: xds}]\n", path: "modes[0].endpoints", msg: "come together"},
		{name: "mesh preset renamed axes", yaml: "modes: [{name: mesh, identity: operator, endpoints: ces, readPath: mesh}]\n", path: "modes[0].name", msg: "operator/ces-slim/mesh"},
		{name: "replicas", yaml: "controlPlane: {mesh: {replicas: -1}}\n", path: "controlPlane.mesh.replicas", msg: "[1, 16]"},
		{name: "storage medium", yaml: "controlPlane: {mesh: {storageMedium: tmpfs}}\n", path: "controlPlane.mesh.storageMedium", msg: "storageMedium"},
		{name: "probe rate", yaml: "measure: {meshProbeRate: 1000}\n", path: "measure.meshProbeRate", msg: "(0, 100]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t", []byte(base+"cilium: {version: \"1.20\"}\n"+tc.yaml))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a ValidationError at %s, got %v", tc.path, err)
			}
			if len(ve.Errors) != 1 || ve.Errors[0].Path != tc.path || !strings.Contains(ve.Errors[0].Msg, tc.msg) {
				t.Fatalf("want exactly one error at %s containing %q, got %v", tc.path, tc.msg, ve.Errors)
			}
		})
	}
}
