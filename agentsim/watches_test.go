package agentsim

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stampede-sim/stampede/scenarios"
)

var updateWatches = flag.Bool("update", false, "rewrite testdata/watches-new-presets.golden")

// dumpWatches writes each watch as "name path params", for the presets
// named, on each release and with both values of disableEndpointCRD.
func dumpWatches(t *testing.T, versions []string, modes []scenarios.Mode) string {
	t.Helper()
	var b strings.Builder
	for _, v := range versions {
		r, err := scenarios.LookupRelease(v)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range modes {
			p, ok := scenarios.Preset(m)
			if !ok {
				t.Fatalf("no preset %s", m)
			}
			for _, dis := range []bool{false, true} {
				fmt.Fprintf(&b, "## cilium %s, preset %s, disableEndpointCRD %v\n", v, m, dis)
				for _, w := range agentWatches(r, p.Axes, "node-1", dis) {
					var ps []string
					for k, val := range w.params {
						ps = append(ps, k+"="+val)
					}
					sort.Strings(ps)
					fmt.Fprintf(&b, "%s %s %s\n", w.name, w.path, strings.Join(ps, ","))
				}
			}
		}
	}
	return b.String()
}

// TestWatchesOfTheFivePresetsUnchanged: testdata/watches-presets.golden
// was written by agentWatches as it was before modes became axes (commit
// 3044d1b, switching on the mode's name); asking the axes must give the
// five presets exactly the same watches. It has no -update on purpose.
func TestWatchesOfTheFivePresetsUnchanged(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "watches-presets.golden"))
	if err != nil {
		t.Fatal(err)
	}
	got := dumpWatches(t, []string{"1.17", "1.19"}, []scenarios.Mode{scenarios.ModeCRD, scenarios.ModeCES, scenarios.ModeKVStore, scenarios.ModeOperator})
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("watches of the presets (-before +now):\n%s", diff)
	}
}

// TestWatchesOfTheNewPresets pins ces-slim (the 13 apiserver watches with
// slices, kept with disableEndpointCRD) and mesh (the 10 base watches:
// no CiliumIdentities, CiliumEndpoint(Slice)s or all-CiliumNodes watch
// on the API server).
func TestWatchesOfTheNewPresets(t *testing.T) {
	got := dumpWatches(t, []string{"1.20"}, []scenarios.Mode{scenarios.ModeCESSlim, scenarios.ModeMesh})
	golden := filepath.Join("testdata", "watches-new-presets.golden")
	if *updateWatches {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("watches (-want +got):\n%s", diff)
	}
	r, _ := scenarios.LookupRelease("1.20")
	mesh, _ := scenarios.Preset(scenarios.ModeMesh)
	for _, w := range agentWatches(r, mesh.Axes, "node-1", true) {
		switch w.name {
		case "ciliumidentities", "ciliumendpoints", "ciliumendpointslices", "ciliumnodes":
			t.Errorf("mesh agents watch %s on the API server", w.name)
		}
	}
}
