package results_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// v1RunFile is a results.json of a real run written by the v1 code:
// relabel-small, all five modes, fake backend (`stampede run` of
// 2026-12-03 13:03 UTC, before modes had axes).
const v1RunFile = "testdata/v1-relabel-small-run.json"

// TestReadV1Upgrades: a v1 file validates against the embedded v1 schema
// and is upgraded in memory: each mode and each mode of the effective
// scenario gets its preset's axes, the version becomes v2, and
// re-encoding it gives a valid v2 file.
func TestReadV1Upgrades(t *testing.T) {
	raw, err := os.ReadFile(v1RunFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"schemaVersion": "stampede.results/v1"`)) {
		t.Fatalf("%s is not a v1 file", v1RunFile)
	}
	r, err := results.ReadFile(v1RunFile)
	if err != nil {
		t.Fatal(err)
	}
	if r.SchemaVersion != results.SchemaVersion || r.UpgradedFrom != results.SchemaVersionV1 {
		t.Errorf("version %q upgraded from %q, want %q from %q", r.SchemaVersion, r.UpgradedFrom, results.SchemaVersion, results.SchemaVersionV1)
	}
	if len(r.Modes) != 5 {
		t.Fatalf("%d modes, want the run's 5", len(r.Modes))
	}
	for _, m := range r.Modes {
		p, _ := scenarios.Preset(m.Mode)
		if m.Axes != p.Axes || m.Axes == (scenarios.Axes{}) {
			t.Errorf("mode %s: axes %s, want the preset's %s", m.Mode, m.Axes, p.Axes)
		}
	}
	sc := r.Run.EffectiveScenario
	if sc == nil || len(sc.Modes) != 5 {
		t.Fatalf("effective scenario modes: %+v", sc)
	}
	for _, m := range sc.Modes {
		if p, _ := scenarios.Preset(m.Name); m != p {
			t.Errorf("effective scenario mode %v, want the preset %v", m, p)
		}
	}
	data, err := results.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := results.Validate(data); err != nil {
		t.Fatalf("upgraded file re-encoded is not valid v2: %v", err)
	}
	if !bytes.Contains(data, []byte(`"schemaVersion": "stampede.results/v2"`)) {
		t.Error("re-encoded file is not v2")
	}
}

// TestV2NeedsAxes: in v2 a mode without axes, or with an unknown axis
// value, is invalid, and a mode's name is any valid name.
func TestV2NeedsAxes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "results-full.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(m map[string]any)
		want string // empty: valid
	}{
		{"no axes", func(m map[string]any) { delete(m, "axes") }, "/modes/0"},
		{"unknown read path", func(m map[string]any) { m["axes"].(map[string]any)["readPath"] = "gossip" }, "/modes/0/axes/readPath"},
		{"custom name", func(m map[string]any) { m["mode"] = "mesh-from-ces" }, ""},
		{"bad name", func(m map[string]any) { m["mode"] = "Mesh" }, "/modes/0/mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			tc.edit(doc["modes"].([]any)[0].(map[string]any))
			data, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			err = results.Validate(data)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("want an error at %s, got %v", tc.want, err)
			}
		})
	}
}
