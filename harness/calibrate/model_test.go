package calibrate

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/internal/capacity"
)

// syntheticPhases generates the phases DefaultWorkload would measure if
// kube-apiserver cost exactly truth, with relative noise; watch is encode,
// encodePerKiB, deliver, deliverPerKiB; replay adds the replay phases
// (each watch request costing watchStart).
func syntheticPhases(truth map[string][]float64, watch []float64, noise float64, seed uint64, replay bool) []Phase {
	const watchStart = 500e-6
	r := rand.New(rand.NewPCG(seed, 1))
	jitter := func(y float64) float64 { return y * (1 + noise*r.NormFloat64()) }
	var phases []Phase
	w := DefaultWorkload()
	for _, size := range []float64{0.7, 6.9} {
		sz := "small"
		if size > 1 {
			sz = "large"
		}
		for range kinds {
			add := func(verb string, n int, objects int) {
				t := truth[verb]
				kib := size * float64(n*objects)
				y := t[0]*float64(n) + t[1]*float64(n*objects) + t[2]*kib
				phases = append(phases, Phase{Verb: verb, Size: sz, Requests: n, Objects: int64(n * objects), Bytes: int64(kib * 1024), CPU: jitter(y)})
			}
			prev := 0
			for _, n := range w.ListSizes {
				add("create", n-prev, 1)
				add("list", max(3, w.ListObjects/n), n)
				prev = n
			}
			for _, v := range []string{"get", "update", "patch"} {
				add(v, w.Requests, 1)
			}
			add("delete", 100, 1)
			add("delete", 900, 1)
		}
		// Watch phases: updates plus encode and delivery.
		upd := truth["update"]
		e := float64(w.WatchEvents)
		for _, n := range append([]int{0}, w.Watchers...) {
			y := e * (upd[0] + upd[1] + upd[2]*size)
			if n > 0 {
				y += e*(watch[0]+watch[1]*size) + e*float64(n)*(watch[2]+watch[3]*size)
			}
			phases = append(phases, Phase{Verb: "watch", Size: sz, Requests: w.WatchEvents, Objects: int64(w.WatchEvents), Bytes: int64(e * size * 1024),
				Watchers: n, Events: w.WatchEvents, EventBytes: int64(e * size * 1024), CPU: jitter(y)})
		}
		for i, n := range w.Watchers {
			if !replay {
				break
			}
			// A replayed event is encoded for each watcher; every other
			// replay phase replays half the events.
			ev := w.WatchEvents
			if i%2 == 1 {
				ev /= 2
			}
			y := float64(n)*watchStart + float64(ev*n)*(watch[0]+watch[1]*size+watch[2]+watch[3]*size)
			phases = append(phases, Phase{Verb: "watch", Size: sz, Requests: n, Watchers: n, Events: ev, EventBytes: int64(float64(ev) * size * 1024), Replay: true, CPU: jitter(y)})
		}
	}
	return phases
}

func TestFitModelRecoversSyntheticProfile(t *testing.T) {
	truth := map[string][]float64{
		"get":    {250e-6, 20e-6, 15e-6},
		"list":   {300e-6, 20e-6, 10e-6},
		"create": {1200e-6, 20e-6, 60e-6},
		"update": {1000e-6, 20e-6, 50e-6},
		"patch":  {1100e-6, 20e-6, 45e-6},
		"delete": {900e-6, 20e-6, 30e-6},
	}
	watch := []float64{80e-6, 8e-6, 25e-6, 3e-6}
	m, err := FitModel(syntheticPhases(truth, watch, 0.02, 7, true))
	if err != nil {
		t.Fatal(err)
	}
	within := func(name string, c capacity.Coefficient, want float64) {
		t.Helper()
		if c.StdErr <= 0 {
			t.Errorf("%s: stderr %g, want > 0", name, c.StdErr)
		}
		if math.Abs(c.Value-want) > 4*c.StdErr+1e-9 {
			t.Errorf("%s = %.3g ± %.2g, want %.3g", name, c.Value, c.StdErr, want)
		}
	}
	for verb, tr := range truth {
		rc := m.Requests[verb]
		if verb == "list" {
			within(verb+".base", rc.Base, tr[0])
		} else {
			// Only base+perObject is identifiable for one-object requests.
			within(verb+".base+perObject", capacity.Coefficient{Value: rc.Base.Value + rc.PerObject.Value, StdErr: rc.Base.StdErr}, tr[0]+tr[1])
		}
		within(verb+".perObject", rc.PerObject, tr[1])
		within(verb+".perKiB", rc.PerKiB, tr[2])
	}
	// The encoding comes from the replay phases.
	within("watch.encode", m.Watch.Encode, watch[0])
	within("watch.encodePerKiB", m.Watch.EncodePerKiB, watch[1])
	within("watch.deliver", m.Watch.Deliver, watch[2])
	within("watch.deliverPerKiB", m.Watch.DeliverPerKiB, watch[3])
	for g, r2 := range m.Fit.R2 {
		if r2 < 0.95 {
			t.Errorf("R2[%s] = %v, want >= 0.95 on 2%% noise", g, r2)
		}
	}
	var sb strings.Builder
	if err := WriteTable(&sb, m); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"list", "perObject", "deliverPerKiB", "from list"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, sb.String())
		}
	}
	p := &capacity.Profile{SchemaVersion: capacity.SchemaVersion, Name: "synthetic", KubeAPIServerVersion: capacity.KubeAPIServerVersion,
		MeasuredAt: time.Now(), Machine: machineFacts(), Requests: m.Requests, Watch: m.Watch, Fit: m.Fit}
	path := filepath.Join(t.TempDir(), "p.yaml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Write(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := capacity.Load(path); err != nil {
		t.Errorf("the fitted profile does not load: %v", err)
	}
}

// TestFitModelWithoutReplayHoldsEncode: phases measured before the replay
// phases existed cannot separate the encoding from the update that makes
// the event; it is held at Floor and the table says why.
func TestFitModelWithoutReplayHoldsEncode(t *testing.T) {
	truth := map[string][]float64{"get": {250e-6, 20e-6, 15e-6}, "list": {300e-6, 20e-6, 10e-6}, "create": {1200e-6, 20e-6, 60e-6},
		"update": {1000e-6, 20e-6, 50e-6}, "patch": {1100e-6, 20e-6, 45e-6}, "delete": {900e-6, 20e-6, 30e-6}}
	m, err := FitModel(syntheticPhases(truth, []float64{80e-6, 8e-6, 25e-6, 3e-6}, 0.02, 7, false))
	if err != nil {
		t.Fatal(err)
	}
	if m.Watch.Encode.Value != Floor || m.Watch.EncodePerKiB.Value != Floor {
		t.Errorf("watch.encode = %+v, encodePerKiB %+v: want held at %g", m.Watch.Encode, m.Watch.EncodePerKiB, Floor)
	}
	var sb strings.Builder
	if err := WriteTable(&sb, m); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sb.String(), "no replay phases") {
		t.Errorf("table does not say why the encoding is held:\n%s", sb.String())
	}
}

func TestFitModelNeedsWatchers(t *testing.T) {
	truth := map[string][]float64{"get": {1, 1, 1}, "list": {1, 1, 1}, "create": {1, 1, 1}, "update": {1, 1, 1}, "patch": {1, 1, 1}, "delete": {1, 1, 1}}
	var phases []Phase
	for _, p := range syntheticPhases(truth, []float64{1, 1, 1, 1}, 0.01, 1, true) {
		if !(p.Verb == "watch" && p.Watchers > 0) {
			phases = append(phases, p)
		}
	}
	if _, err := FitModel(phases); err == nil || !strings.Contains(err.Error(), "no phase with watchers") {
		t.Fatalf("err = %v, want it to say there is no phase with watchers", err)
	}
}

func TestWorkloadValidate(t *testing.T) {
	for _, w := range []Workload{DefaultWorkload(), ShortWorkload()} {
		if err := w.Validate(); err != nil {
			t.Errorf("%+v: %v", w, err)
		}
	}
	tests := []struct {
		name string
		edit func(w *Workload)
		want string
	}{
		{"one size", func(w *Workload) { w.Sizes = w.Sizes[:1] }, "workload.sizes"},
		{"decreasing lists", func(w *Workload) { w.ListSizes = []int{100, 10} }, "workload.listSizes"},
		{"too many requests", func(w *Workload) { w.Requests = 5000 }, "workload.requests"},
		{"bad watchers", func(w *Workload) { w.Watchers = []int{1, 0} }, "workload.watchers[1]"},
		{"no concurrency", func(w *Workload) { w.Concurrency = 0 }, "workload.concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := DefaultWorkload()
			tt.edit(&w)
			if err := w.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to name %s", err, tt.want)
			}
		})
	}
}

func TestKubeAPIServerMissingSaysHowToBuild(t *testing.T) {
	_, err := KubeAPIServer(filepath.Join(t.TempDir(), "kube-apiserver"))
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("err = %v, want it to say `make tools`", err)
	}
	if _, err := Run(t.Context(), Config{KubeAPIServer: filepath.Join(t.TempDir(), "nope")}); err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Fatalf("Run err = %v, want it to say `make tools`", err)
	}
}

// TestFitResourcesAndScrape: a resource whose phases cost twice what the
// pooled verb model prices gets a factor of 2, one that costs what it
// prices gets 1, a resource measured in one phase only gets none; the
// scrape phases give the cost of one scrape.
func TestFitResourcesAndScrape(t *testing.T) {
	m := &Model{Requests: map[string]capacity.RequestCost{
		"create": {Base: capacity.Coefficient{Value: 1e-3}, PerObject: capacity.Coefficient{Value: 1e-9}, PerKiB: capacity.Coefficient{Value: 1e-5}},
	}}
	r := rand.New(rand.NewPCG(7, 1))
	var phases []Phase
	for _, res := range []struct {
		name   string
		factor float64
		phases int
	}{{"pods", 1, 4}, {"ciliumendpoints", 2, 4}, {"leases", 5, 1}} {
		for i := range res.phases {
			n := 100 * (i + 1)
			kib := 2.0 * float64(n)
			y := res.factor * (float64(n)*(1e-3+1e-9) + 1e-5*kib) * (1 + 0.02*r.NormFloat64())
			phases = append(phases, Phase{Verb: "create", Resource: res.name, Requests: n, Objects: int64(n), Bytes: int64(kib * 1024), CPU: y})
		}
	}
	for _, per := range []float64{0.030, 0.032, 0.028} {
		phases = append(phases, Phase{Verb: "scrape", Resource: "metrics", Requests: 20, CPU: 20 * per})
	}
	m.fitResources(phases)
	m.fitScrape(phases)
	for res, want := range map[string]float64{"pods": 1, "ciliumendpoints": 2} {
		got, ok := m.Resources[res]["create"]
		if !ok || math.Abs(got.Value-want) > 0.05*want || got.StdErr <= 0 || got.StdErr > 0.05 {
			t.Errorf("factor of %s create = %+v (present %v), want %v with a small positive stdErr", res, got, ok, want)
		}
	}
	if _, ok := m.Resources["leases"]; ok {
		t.Errorf("leases were measured in one phase and got a factor: %+v", m.Resources["leases"])
	}
	if got := m.MetricsScrape; math.Abs(got.Value-0.030) > 1e-9 || got.StdErr <= 0 {
		t.Errorf("metrics scrape = %+v, want 0.030 s with a positive stdErr", got)
	}
}
