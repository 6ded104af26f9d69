package results_test

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/stampede-sim/stampede/reports/internal/fixture"
	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func mustEncode(t *testing.T, r *results.Results) []byte {
	t.Helper()
	data, err := results.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestExampleResults keeps testdata/results-*.json (the examples the
// harness and reports tests use) in step with the fixture and checks that
// they validate.
func TestExampleResults(t *testing.T) {
	for name, r := range map[string]*results.Results{
		"results-full.json":    fixture.Full(t),
		"results-partial.json": fixture.Partial(t),
	} {
		t.Run(name, func(t *testing.T) {
			data := mustEncode(t, r)
			if err := results.Validate(data); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			fixture.Golden(t, name, data)
			back, err := results.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(mustEncode(t, r), mustEncode(t, back)); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(m map[string]any)
		want   string
		isVers bool
	}{
		{name: "wrong version", edit: func(m map[string]any) { m["schemaVersion"] = "stampede.results/v0" }, isVers: true},
		{name: "missing run", edit: func(m map[string]any) { delete(m, "run") }, want: "run"},
		{name: "unknown field", edit: func(m map[string]any) { m["extra"] = 1 }, want: "extra"},
		{name: "bad status", edit: func(m map[string]any) { mode(m, 0)["status"] = "great" }, want: "/modes/0/status"},
		{name: "skipped without reason", edit: func(m map[string]any) {
			mode(m, 0)["status"] = "skipped"
			delete(mode(m, 0), "reason")
		}, want: "/modes/0"},
		{name: "bad time", edit: func(m map[string]any) { m["run"].(map[string]any)["started"] = "yesterday" }, want: "/run/started"},
		{name: "short column", edit: func(m map[string]any) {
			vals := mode(m, 1)["series"].(map[string]any)["values"].(map[string]any)
			c := vals["probe.rate"].([]any)
			vals["probe.rate"] = c[:len(c)-1]
		}, want: "/modes/1/series/values/probe.rate: 179 values for 180 timestamps"},
		{name: "bad series name", edit: func(m map[string]any) {
			vals := mode(m, 1)["series"].(map[string]any)["values"].(map[string]any)
			vals["cpu{process}"] = vals["probe.rate"]
		}, want: "cpu{process}"},
		{name: "negative latency", edit: func(m map[string]any) {
			mode(m, 0)["summary"].(map[string]any)["apiLatency"].([]any)[0].(map[string]any)["p99"] = -1
		}, want: "/modes/0/summary/apiLatency/0/p99"},
		{name: "converged above agents", edit: func(m map[string]any) {
			mode(m, 0)["summary"].(map[string]any)["convergence"].([]any)[0].(map[string]any)["converged"] = 1e6
		}, want: "/modes/0/summary/convergence/0: converged"},
		{name: "negative policy overflow", edit: func(m map[string]any) {
			mode(m, 0)["summary"].(map[string]any)["convergence"].([]any)[0].(map[string]any)["policyOverflow"] = -1
		}, want: "/modes/0/summary/convergence/0/policyOverflow"},
		{name: "converged agents overflowing", edit: func(m map[string]any) {
			mode(m, 0)["summary"].(map[string]any)["convergence"].([]any)[0].(map[string]any)["policyOverflow"] = 1
		}, want: "/modes/0/summary/convergence/0: policyOverflow 1 > agents not converged 0"},
		{name: "more writes rejected than made", edit: func(m map[string]any) {
			mode(m, 0)["summary"].(map[string]any)["writesRejected"] = map[string]any{"create ciliumidentities": 1e6}
		}, want: "/modes/0/summary/writesRejected/create ciliumidentities: 1000000 rejected > "},
		{name: "negative rejected writes", edit: func(m map[string]any) {
			mode(m, 0)["summary"].(map[string]any)["writesRejected"] = map[string]any{"patch ciliumendpoints": -1}
		}, want: "/modes/0/summary/writesRejected/patch ciliumendpoints"},
		{name: "capacity of zero cores", edit: func(m map[string]any) { apiCapacity(m)["cores"] = 0 }, want: "/run/apiServer/capacity/cores"},
		{name: "capacity without profile", edit: func(m map[string]any) { delete(apiCapacity(m), "profile") }, want: "/run/apiServer/capacity"},
		{name: "unknown API server model", edit: func(m map[string]any) { apiServer(m)["model"] = "fast" }, want: "/run/apiServer/model"},
		{name: "model capacity without capacity", edit: func(m map[string]any) { delete(apiServer(m), "capacity") }, want: "/run/apiServer/capacity: missing for model capacity"},
		{name: "model none with capacity", edit: func(m map[string]any) { apiServer(m)["model"] = "none" }, want: "/run/apiServer/capacity: present for model none"},
		{name: "fake as kube-apiserver", edit: func(m map[string]any) {
			apiServer(m)["model"] = "kube-apiserver"
			delete(apiServer(m), "capacity")
		}, want: "/run/apiServer/model: kube-apiserver, but the backend is the fake"},
		{name: "API server of another backend", edit: func(m map[string]any) {
			apiServer(m)["backend"] = "local"
		}, want: `/run/apiServer/backend: "local", but run/backend/name is "fake"`},
		{name: "local backend with a capacity model", edit: func(m map[string]any) {
			apiServer(m)["backend"] = "local"
			m["run"].(map[string]any)["backend"].(map[string]any)["name"] = "local"
		}, want: "/run/apiServer/model: capacity, but backend local is a kube-apiserver"},
	}
	base := mustEncode(t, fixture.Full(t))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(base, &m); err != nil {
				t.Fatal(err)
			}
			tt.edit(m)
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			err = results.Validate(data)
			if err == nil {
				t.Fatal("Validate accepted invalid results")
			}
			if tt.isVers {
				if !errors.Is(err, results.ErrUnsupportedVersion) {
					t.Fatalf("got %v, want ErrUnsupportedVersion", err)
				}
				return
			}
			var ie *results.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("got %T %v, want *InvalidError", err, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
	if err := results.Validate([]byte("not json")); err == nil {
		t.Error("Validate accepted garbage")
	}
}

func apiServer(m map[string]any) map[string]any {
	return m["run"].(map[string]any)["apiServer"].(map[string]any)
}

func apiCapacity(m map[string]any) map[string]any {
	return apiServer(m)["capacity"].(map[string]any)
}

func mode(m map[string]any, i int) map[string]any {
	return m["modes"].([]any)[i].(map[string]any)
}

func TestMinimalResultsValid(t *testing.T) {
	// The first thing a harness writes: run metadata, no modes yet.
	r := &results.Results{Run: results.Run{Scenario: "relabel", Started: fixture.Start, Backend: results.Backend{Name: "fake"},
		Machine: results.Machine{Cores: 2, MemoryBytes: 1 << 30, Kernel: "6"}, Datapath: results.Datapath{Requested: "auto", Effective: "mem"}}}
	dir := t.TempDir()
	w, err := results.NewWriter(results.WriterConfig{Path: filepath.Join(dir, "results.json")}, r)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	if err := results.Validate(data); err != nil {
		t.Fatalf("minimal results invalid: %v\n%s", err, data)
	}
}

func TestWriterIncremental(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out", "results.json")
	full := fixture.Full(t)
	start := results.Results{Run: full.Run}
	w, err := results.NewWriter(results.WriterConfig{Path: path}, &start)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, m := range full.Modes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Ten samples per update keep the test quick.
			for lo := 0; lo < len(m.Series.T); lo += 10 {
				err := w.Update(func(r *results.Results) {
					mr := r.Mode(m.Mode)
					mr.Status = results.StatusRunning
					mr.Started = m.Started
					for i := lo; i < lo+10 && i < len(m.Series.T); i++ {
						row := map[string]float64{}
						for n, c := range m.Series.Values {
							if !math.IsNaN(c[i]) {
								row[n] = c[i]
							}
						}
						mr.AppendSample(m.Series.Start.Add(time.Duration(m.Series.T[i]*float64(time.Second))), row)
					}
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
		// Readers see a valid file at every moment.
		data, err := os.ReadFile(path)
		if err != nil {
			t.Error(err)
		} else if err := results.Validate(data); err != nil {
			t.Errorf("intermediate file invalid: %v", err)
		}
	}
	wg.Wait()
	got, err := results.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Modes) != len(full.Modes) {
		t.Fatalf("got %d modes, want %d", len(got.Modes), len(full.Modes))
	}
	for _, m := range full.Modes {
		g := got.Mode(m.Mode)
		if diff := cmp.Diff(m.Series.Names(), g.Series.Names()); diff != "" {
			t.Errorf("%s series names (-want +got):\n%s", m.Mode, diff)
		}
		if g.Series.Len() != m.Series.Len() {
			t.Errorf("%s: %d samples, want %d", m.Mode, g.Series.Len(), m.Series.Len())
		}
	}
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("writer left temporary files: %v", ents)
	}
	snap, err := w.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap.Mode(scenarios.ModeCRD).Series.Len() != 180 {
		t.Errorf("snapshot lost samples")
	}
}

func TestSeriesAppendBackfills(t *testing.T) {
	s := results.NewSeries(fixture.Start, time.Second)
	s.Append(fixture.Start, map[string]float64{"a": 1})
	s.Append(fixture.Start.Add(time.Second), map[string]float64{"b": 2})
	s.Append(fixture.Start.Add(2*time.Second), map[string]float64{"a": 3, "b": 4})
	data, err := json.Marshal(s.Values)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), `{"a":[1,null,3],"b":[null,2,4]}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	if diff := cmp.Diff([]float64{0, 1, 2}, s.T); diff != "" {
		t.Errorf("t (-want +got):\n%s", diff)
	}
	var back map[string]results.Column
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(back["a"][1]) || back["b"][2] != 4 {
		t.Errorf("round trip: %v", back)
	}
}

func TestParseSeriesName(t *testing.T) {
	tests := []struct {
		in      string
		base    string
		labels  []results.Label
		wantErr bool
	}{
		{in: "cpu", base: "cpu"},
		{in: "cpu{process=apiserver}", base: "cpu", labels: []results.Label{{"process", "apiserver"}}},
		{in: "apiserver.latency.p99{verb=PATCH,resource=ciliumendpoints}", base: "apiserver.latency.p99", labels: []results.Label{{"verb", "PATCH"}, {"resource", "ciliumendpoints"}}},
		{in: "api.writes.rate{type=create pods}", base: "api.writes.rate", labels: []results.Label{{"type", "create pods"}}},
		{in: "cpu{process", wantErr: true},
		{in: "{a=b}", wantErr: true},
		{in: "cpu{process}", wantErr: true},
		{in: "a=b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			base, labels, err := results.ParseSeriesName(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if base != tt.base {
				t.Errorf("base %q, want %q", base, tt.base)
			}
			if diff := cmp.Diff(tt.labels, labels); diff != "" {
				t.Errorf("labels (-want +got):\n%s", diff)
			}
			if len(labels) > 0 {
				var pairs []string
				for _, l := range labels {
					pairs = append(pairs, l.Name, l.Value)
				}
				if got := results.SeriesName(base, pairs...); got != tt.in {
					t.Errorf("SeriesName round trip: %q", got)
				}
			}
		})
	}
}

func TestWriterMinInterval(t *testing.T) {
	now := fixture.Start
	path := filepath.Join(t.TempDir(), "results.json")
	w, err := results.NewWriter(results.WriterConfig{Path: path, MinInterval: time.Second, Now: func() time.Time { return now }}, fixture.Full(t))
	if err != nil {
		t.Fatal(err)
	}
	reason := func() string {
		t.Helper()
		r, err := results.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return r.Run.IncompleteReason
	}
	set := func(s string) {
		t.Helper()
		if err := w.Update(func(r *results.Results) { r.Run.IncompleteReason = s }); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(500 * time.Millisecond)
	set("a")
	if got := reason(); got != "" {
		t.Errorf("written within MinInterval: %q", got)
	}
	now = now.Add(600 * time.Millisecond)
	set("b")
	if got := reason(); got != "b" {
		t.Errorf("after MinInterval: got %q, want b", got)
	}
	set("c")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := reason(); got != "c" {
		t.Errorf("after Flush: got %q, want c", got)
	}
	if _, err := results.NewWriter(results.WriterConfig{}, nil); err == nil {
		t.Error("NewWriter accepted an empty path")
	}
}
