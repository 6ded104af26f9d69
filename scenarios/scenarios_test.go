package scenarios

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/stampede-sim/stampede/internal/capacity"
)

var update = flag.Bool("update", false, "rewrite golden files")

// placeholderProfile is the capacity package's hand-written test profile
// (not a measured one; tests only).
const placeholderProfile = "../internal/capacity/testdata/placeholder.yaml"

// base is a small valid scenario that table tests mutate.
const base = `
name: t
cluster:
  nodes: 4
  namespaces:
    - {name: a, labels: {env: prod}}
    - {name: b, labels: {env: prod}}
  workloads: {deploymentsPerNamespace: 2, replicas: 3}
policies:
  - name: p
    ingress:
      - fromNamespaceLabels: {env: prod}
        ports: [{port: 80, protocol: TCP}]
steps:
  - setup: {}
  - waitConverged: {}
  - relabel: {namespaces: [a], set: {env: staging}}
  - observe: {duration: 1s}
`

func TestParseValid(t *testing.T) {
	s, err := Parse("base", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.PodCount(), 12; got != want {
		t.Errorf("PodCount() = %d, want %d", got, want)
	}
	if s.Agent.ClientQPS != DefaultClientQPS || s.ControlPlane.CES.MaxEndpointsPerSlice != 100 {
		t.Errorf("defaults not applied: %+v", s.Agent)
	}
	if got := s.Steps[1].WaitConverged.Timeout.Duration; got != DefaultWaitTimeout {
		t.Errorf("waitConverged.timeout = %s, want default %s", got, DefaultWaitTimeout)
	}
	if want := presetsOf(s.Release()); !reflect.DeepEqual(s.Modes, want) {
		t.Errorf("modes = %v, want every preset of %s: %v", s.Modes, s.Cilium.Version, want)
	}
}

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want []string // each must appear as a line "path: message-prefix"
	}{
		{"zero nodes", repl("nodes: 4", "nodes: 0"), []string{"cluster.nodes: must be >= 1"}},
		{"unknown field", repl("nodes: 4", "nodes: 4\n  nodez: 1"), []string{`cluster.nodez: unknown field (did you mean "nodes"?)`}},
		{"wrong type", repl("nodes: 4", "nodes: four"), []string{`cluster.nodes: must be an integer, got string "four"`}},
		{"relabel unknown namespace", repl("namespaces: [a]", "namespaces: [a, ns-9]"), []string{`steps[2].relabel.namespaces[1]: no namespace "ns-9"`}},
		{"unknown mode", repl("steps:", "modes: [crd, bogus]\nsteps:"), []string{`modes[1]: unknown preset "bogus"`}},
		{"duplicate mode", repl("steps:", "modes: [crd, crd]\nsteps:"), []string{`modes[1]: duplicate mode "crd"`}},
		{"bad duration", repl("duration: 1s", "duration: soon"), []string{`steps[3].observe.duration: invalid duration "soon"`}},
		{"negative duration", repl("duration: 1s", "duration: -1s"), []string{"steps[3].observe.duration: must be > 0"}},
		{"two kinds in one step", repl("  - setup: {}", "  - setup: {}\n    observe: {duration: 1s}"), []string{"steps[0]: must set exactly one of"}},
		{"first step not setup", repl("  - setup: {}\n", ""), []string{"steps[0]: waitConverged before setup"}},
		{"bad port", repl("port: 80", "port: 70000"), []string{"policies[0].ingress[0].ports[0].port: must be in [1, 65535]"}},
		{"bad protocol", repl("protocol: TCP", "protocol: ICMP"), []string{`policies[0].ingress[0].ports[0].protocol: must be TCP or UDP, got "ICMP"`}},
		{"bad label value", repl("{env: prod}}\n    - {name: b", "{env: 'no spaces'}}\n    - {name: b"), []string{`cluster.namespaces[0].labels[env]: invalid label value "no spaces"`}},
		{"duplicate namespace", repl("name: b,", "name: a,"), []string{`cluster.namespaces[1].name: duplicate namespace "a"`}},
		{"too many pods", repl("replicas: 3", "replicas: 300"), []string{"cluster: 1200 pods do not fit on 4 nodes of at most 110 pods"}},
		{"podCIDR too small", repl("nodes: 4", "nodes: 4\n  podCIDR: 10.0.0.0/23"), []string{`cluster.podCIDR: "10.0.0.0/23" holds 2 node /24s, fewer than cluster.nodes (4)`}},
		{"kubeconfig without path", repl("steps:", "api: {backend: kubeconfig}\nsteps:"), []string{"api.kubeconfig: must name a kubeconfig file"}},
		{"bad backend", repl("steps:", "api: {backend: docker}\nsteps:"), []string{`api.backend: must be fake, local, kind or kubeconfig, got "docker"`}},
		{"scale unknown deployment", repl("  - observe", "  - scale: {namespace: a, deployment: deploy-7, replicas: 2}\n  - observe"), []string{`steps[3].scale.deployment: no deployment "deploy-7"`}},
		{"delete fraction", repl("  - observe", "  - deletePods: {fraction: 2}\n  - observe"), []string{"steps[3].deletePods.fraction: must be in (0, 1]"}},
		{"scaleAll without rate", repl("  - observe", "  - scaleAll: {replicas: 2}\n  - observe"), []string{"steps[3].scaleAll.rate: must be > 0 pods per second, got 0"}},
		{"scaleAll negative rate", repl("  - observe", "  - scaleAll: {replicas: 2, rate: -5}\n  - observe"), []string{"steps[3].scaleAll.rate: must be > 0 pods per second, got -5"}},
		{"scaleAll negative replicas", repl("  - observe", "  - scaleAll: {replicas: -1, rate: 10}\n  - observe"), []string{"steps[3].scaleAll.replicas: must be in [0, 10000], got -1"}},
		{"scaleAll unknown namespace", repl("  - observe", "  - scaleAll: {replicas: 2, rate: 10, namespaces: [b, ns-9]}\n  - observe"), []string{`steps[3].scaleAll.namespaces[1]: no namespace "ns-9"`}},
		{"scaleAll duplicate namespace", repl("  - observe", "  - scaleAll: {replicas: 2, rate: 10, namespaces: [b, b]}\n  - observe"), []string{`steps[3].scaleAll.namespaces[1]: duplicate namespace "b"`}},
		{"scaleAll does not fit", repl("  - observe", "  - scaleAll: {replicas: 300, rate: 10}\n  - observe"), []string{"steps[3].scaleAll.replicas: 1200 pods do not fit on 4 nodes of at most 110 pods"}},
		{"scaleAll one namespace does not fit", repl("  - observe", "  - scaleAll: {replicas: 221, rate: 10, namespaces: [a]}\n  - observe"), []string{"steps[3].scaleAll.replicas: 442 pods do not fit on 4 nodes of at most 110 pods"}},
		{"scaleAll misspelt field", repl("  - observe", "  - scaleAll: {replicas: 2, rate: 10, replica: 3}\n  - observe"), []string{`steps[3].scaleAll.replica: unknown field (did you mean "replicas"?)`}},
		{"scaleAll rate not a number", repl("  - observe", "  - scaleAll: {replicas: 2, rate: fast}\n  - observe"), []string{`steps[3].scaleAll.rate: must be a number, got string "fast"`}},
		{"scaleAll and scale in one step", repl("  - observe", "  - scaleAll: {replicas: 2, rate: 10}\n    scale: {namespace: a, deployment: deploy-0, replicas: 2}\n  - observe"), []string{"steps[3]: must set exactly one of setup, waitConverged, observe, relabel, scale, deletePods, scaleAll (has 2)"}},
		{"setup pods not a boolean", repl("  - setup: {}", "  - setup: {pods: 'no'}"), []string{`steps[0].setup.pods: must be true or false, got string "no"`}},
		{"bad pod order", repl("  - setup: {}", "  - setup: {podOrder: random}"), []string{`steps[0].setup.podOrder: must be interleaved or byDeployment, got "random"`}},
		{"label filter regexp", repl("steps:", "agent: {labelFilter: ['k8s:app[']}\nsteps:"), []string{"agent.labelFilter[0]: label pattern"}},
		{"capacity zero cores", repl("steps:", "api: {capacity: {cores: 0, profile: "+placeholderProfile+"}}\nsteps:"), []string{"api.capacity.cores: must be a positive finite number of cores, got 0"}},
		{"capacity negative cores", repl("steps:", "api: {capacity: {cores: -2, profile: "+placeholderProfile+"}}\nsteps:"), []string{"api.capacity.cores: must be a positive finite number of cores, got -2"}},
		{"capacity NaN cores", repl("steps:", "api: {capacity: {cores: .nan, profile: "+placeholderProfile+"}}\nsteps:"), []string{`api.capacity.cores: must be a finite number, got ".nan"`}},
		{"capacity infinite cores", repl("steps:", "api: {capacity: {cores: .inf, profile: "+placeholderProfile+"}}\nsteps:"), []string{`api.capacity.cores: must be a finite number, got ".inf"`}},
		{"capacity missing profile file", repl("steps:", "api: {capacity: {cores: 4, profile: testdata/absent.yaml}}\nsteps:"), []string{"api.capacity.profile: read capacity profile: open testdata/absent.yaml"}},
		{"capacity unknown profile name", repl("steps:", "api: {capacity: {cores: 4, profile: kube-apiserver-v0}}\nsteps:"), []string{`api.capacity.profile: capacity profile "kube-apiserver-v0": no such shipped capacity profile`}},
		{"capacity stale profile", repl("steps:", "api: {capacity: {cores: 4, profile: testdata/capacity-v1.35.yaml}}\nsteps:"), []string{"api.capacity.profile: capacity profile testdata/capacity-v1.35.yaml: kubeAPIServerVersion"}},
		{"capacity on a real server", repl("steps:", "api: {backend: local, capacity: {cores: 4, profile: "+placeholderProfile+"}}\nsteps:"), []string{"api.capacity: is only used with backend fake"}},
		{"several errors at once", func(s string) string {
			return repl("nodes: 4", "nodes: 0")(repl("protocol: TCP", "protocol: SCTP")(s))
		}, []string{"cluster.nodes: must be >= 1", "policies[0].ingress[0].ports[0].protocol: must be TCP or UDP"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("case", []byte(tt.edit(base)))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !containsLine(msg, w) {
					t.Errorf("error does not name %q:\n%s", w, msg)
				}
			}
		})
	}
}

// TestDecodeErrorsAreValidationErrors checks that every error of a file
// comes back together, as a *ValidationError a caller can inspect.
// TestSetupPodsAndScaleAll: setup creates pods unless told not to, and a
// valid scaleAll keeps its fields.
func TestSetupPodsAndScaleAll(t *testing.T) {
	s, err := Parse("base", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if su := s.Steps[0].Setup; !su.CreatesPods() {
		t.Errorf("setup.pods = %v: setup creates no pods, want the default true", *su.Pods)
	}
	churn := repl("  - setup: {}", "  - setup: {pods: false}")(repl("  - observe", "  - scaleAll: {replicas: 5, rate: 100, namespaces: [b]}\n  - observe")(base))
	s, err = Parse("churn", []byte(churn))
	if err != nil {
		t.Fatal(err)
	}
	if su := s.Steps[0].Setup; su.Pods == nil || *su.Pods || su.CreatesPods() {
		t.Errorf("setup.pods = %v, want false", su.Pods)
	}
	want := &ScaleAllStep{Replicas: 5, Rate: 100, Namespaces: []string{"b"}}
	if diff := cmp.Diff(want, s.Steps[3].ScaleAll); diff != "" {
		t.Errorf("scaleAll (-want +got):\n%s", diff)
	}
	if k := s.Steps[3].Kind(); k != "scaleAll" {
		t.Errorf("Kind() = %q, want scaleAll", k)
	}
	// Scaling to zero needs no room on the nodes.
	if _, err := Parse("zero", []byte(repl("  - observe", "  - scaleAll: {replicas: 0, rate: 1}\n  - observe")(base))); err != nil {
		t.Errorf("scaleAll to 0: %v", err)
	}
}

func TestDecodeErrorsAreValidationErrors(t *testing.T) {
	_, err := Parse("f.yaml", []byte(repl("nodes: 4", "nodes: x\n  bogus: 1")(base)))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not a *ValidationError", err)
	}
	if ve.Source != "f.yaml" || len(ve.Errors) != 2 {
		t.Errorf("got source %q and %d errors, want f.yaml and 2: %v", ve.Source, len(ve.Errors), ve)
	}
}

func TestParseRejectsNonYAML(t *testing.T) {
	for _, in := range []string{"", "   \n", "[1, 2", "just a string", "- a\n- b", "name: [unclosed"} {
		if _, err := Parse("x", []byte(in)); err == nil {
			t.Errorf("Parse(%q) succeeded, want an error", in)
		}
	}
}

func TestBuiltinsGolden(t *testing.T) {
	names := BuiltinNames()
	if diff := cmp.Diff([]string{"churn-1k", "relabel", "relabel-1.17", "relabel-1k", "relabel-small"}, names); diff != "" {
		t.Fatalf("built-ins (-want +got):\n%s", diff)
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			s, err := Builtin(name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.YAML()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./scenarios -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("effective %s (-want +got):\n%s", name, diff)
			}
			// The effective YAML is itself a valid scenario that defaults to
			// the same thing.
			again, err := Parse("effective", got)
			if err != nil {
				t.Fatalf("effective YAML does not parse: %v", err)
			}
			if diff := cmp.Diff(s, again); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCapacityGolden checks how api.capacity defaults and round-trips: no
// capacity stays absent (today's behaviour), and an empty profile becomes
// the default shipped one.
func TestCapacityGolden(t *testing.T) {
	s, err := Parse("capacity", []byte(base+"api:\n  capacity: {cores: 2.5, profile: "+placeholderProfile+"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := yaml.Marshal(s.API)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "capacity.golden.yaml")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./scenarios -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("api (-want +got):\n%s", diff)
	}
	plain, err := Parse("base", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if plain.API.Capacity != nil {
		t.Errorf("a scenario without api.capacity got %+v", plain.API.Capacity)
	}
	var d Scenario
	d.API.Capacity = &Capacity{Cores: 1}
	d.Default()
	if d.API.Capacity.Profile != capacity.DefaultProfile {
		t.Errorf("default profile = %q, want %q", d.API.Capacity.Profile, capacity.DefaultProfile)
	}
}

func TestBuiltinShapes(t *testing.T) {
	for name, want := range map[string][2]int{"relabel": {200, 20000}, "relabel-1k": {1000, 20000}, "relabel-small": {20, 2000}} {
		s, err := Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		if s.Cluster.Nodes != want[0] || s.PodCount() != want[1] {
			t.Errorf("%s: %d nodes, %d pods; want %d, %d", name, s.Cluster.Nodes, s.PodCount(), want[0], want[1])
		}
		var relabeled bool
		for _, st := range s.Steps {
			if st.Relabel != nil && len(st.Relabel.Namespaces) == 0 {
				relabeled = true
			}
		}
		if !relabeled {
			t.Errorf("%s: no relabel of all namespaces", name)
		}
	}
	if _, err := Builtin("nope"); !errors.Is(err, ErrUnknownScenario) {
		t.Errorf("Builtin(nope) = %v, want ErrUnknownScenario", err)
	}
}

// TestChurn1kShape: churn-1k is CFP-44774's churn scaled down: 1,000
// nodes, no pods at setup, three cycles of scaleAll to 10 and to 0 at
// 100 pods/s in ces-slim and mesh, and after each scale-down an observe
// long enough for the identity GC to delete what the cycle left: an
// identity is annotated by a run at most heartbeatTimeout + interval
// after it was last in use, and deleted by a run at most as long after
// the annotation (which marks it alive again).
func TestChurn1kShape(t *testing.T) {
	s, err := Builtin("churn-1k")
	if err != nil {
		t.Fatal(err)
	}
	if s.Cluster.Nodes != 1000 || s.PodCount() != 10000 {
		t.Errorf("%d nodes, %d pods at the peak; want 1000, 10000", s.Cluster.Nodes, s.PodCount())
	}
	var modes []Mode
	for _, m := range s.Modes {
		modes = append(modes, m.Name)
	}
	if diff := cmp.Diff([]Mode{ModeCESSlim, ModeMesh}, modes); diff != "" {
		t.Errorf("modes (-want +got):\n%s", diff)
	}
	if su := s.Steps[0].Setup; su == nil || su.CreatesPods() {
		t.Fatalf("steps[0] = %+v, want setup without pods", s.Steps[0])
	}
	gc := s.ControlPlane.IdentityGC
	gcWait := 2 * (gc.HeartbeatTimeout.Duration + gc.Interval.Duration)
	var ups, downs int
	for i, st := range s.Steps {
		sa := st.ScaleAll
		if sa == nil {
			continue
		}
		if sa.Rate != 100 || len(sa.Namespaces) != 0 {
			t.Errorf("steps[%d].scaleAll = %+v, want every namespace at 100 pods/s", i, sa)
		}
		switch sa.Replicas {
		case s.Cluster.Workloads.Replicas:
			ups++
		case 0:
			downs++
			if i+2 >= len(s.Steps) || s.Steps[i+1].WaitConverged == nil || s.Steps[i+2].Observe == nil {
				t.Errorf("steps[%d]: a scale-down not followed by waitConverged and observe", i)
				continue
			}
			if d := s.Steps[i+2].Observe.Duration.Duration; d < gcWait {
				t.Errorf("steps[%d].observe.duration = %v, shorter than the identity GC's %v", i+2, d, gcWait)
			}
		default:
			t.Errorf("steps[%d].scaleAll.replicas = %d, want %d or 0", i, sa.Replicas, s.Cluster.Workloads.Replicas)
		}
	}
	if ups != 3 || downs != 3 {
		t.Errorf("%d scale-ups and %d scale-downs, want 3 cycles", ups, downs)
	}
}

func TestResolveFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.yaml")
	if err := os.WriteFile(p, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Resolve(p)
	if err != nil || s.Name != "t" {
		t.Fatalf("Resolve(%s) = %v, %v", p, s, err)
	}
	if _, err := Resolve(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Resolve of a missing file succeeded")
	}
}

func repl(old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			panic("test edit does not apply: " + old)
		}
		return strings.Replace(s, old, new, 1)
	}
}

func containsLine(msg, prefix string) bool {
	for _, line := range strings.Split(msg, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), prefix) {
			return true
		}
	}
	return false
}
