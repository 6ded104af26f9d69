package harness

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stampede-sim/stampede/reports/results"
)

func loadMetrics(t *testing.T, name string) Metrics {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := ParseMetrics(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMetricsSum(t *testing.T) {
	m := loadMetrics(t, "apiserver.prom")
	tests := []struct {
		name   string
		family string
		match  map[string]string
		want   float64
		ok     bool
	}{
		{"all requests", "apiserver_request_total", nil, 149, true},
		{"429s", "apiserver_request_total", map[string]string{"code": "429"}, 2, true},
		{"patches", "apiserver_request_total", map[string]string{"verb": "PATCH"}, 42, true},
		{"histogram counts observations", "apiserver_request_duration_seconds", map[string]string{"verb": "CREATE"}, 100, true},
		{"absent family", "nope_total", nil, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := m.Sum(tt.family, tt.match)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Sum = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	by := m.SumBy("apiserver_request_total", nil, "verb", "resource")
	want := map[string]float64{"CREATE pods": 100, "PATCH pods": 42, "LIST pods": 7}
	if diff := cmp.Diff(want, by); diff != "" {
		t.Errorf("SumBy (-want +got):\n%s", diff)
	}
}

func TestHistogramQuantileAndSub(t *testing.T) {
	m := loadMetrics(t, "apiserver.prom")
	hs := m.Histograms("apiserver_request_duration_seconds", nil, "verb", "resource")
	h := hs["CREATE pods"]
	if h == nil || h.Count != 100 || h.Sum != 12 {
		t.Fatalf("CREATE pods histogram = %+v", h)
	}
	tests := []struct {
		q, want float64
	}{
		{0.25, 0.05}, // half of the first bucket
		{0.5, 0.1},   // top of the first bucket
		{0.7, 0.15},  // halfway through the second
		{0.95, 0.6},  // halfway through the third
		{1.0, 1.0},   // last bound
	}
	for _, tt := range tests {
		if got := h.Quantile(tt.q); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if w := hs["WATCH pods"]; w.Quantile(0.99) != 1 {
		t.Errorf("observations above the last bound: quantile = %v, want the last bound 1", w.Quantile(0.99))
	}
	earlier := &Histogram{Bounds: h.Bounds, Counts: []float64{40, 80, 90}, Count: 90, Sum: 10}
	d := h.Sub(earlier)
	if d.Count != 10 || d.Sum != 2 || !cmp.Equal(d.Counts, []float64{10, 10, 10}) {
		t.Errorf("Sub = %+v", d)
	}
	if got := h.Sub(&Histogram{Bounds: h.Bounds, Counts: []float64{1000, 1000, 1000}, Count: 1000}); got != h {
		t.Error("a counter reset should give the current histogram")
	}
	if !math.IsNaN((&Histogram{}).Quantile(0.5)) {
		t.Error("empty histogram quantile should be NaN")
	}
}

func TestParseMetricsError(t *testing.T) {
	_, err := ParseMetrics(strings.NewReader("# TYPE x counter\nx{ 1\n"))
	if err == nil || !strings.Contains(err.Error(), "parse metrics") {
		t.Errorf("err = %v, want a parse error", err)
	}
}

func TestHistSummary(t *testing.T) {
	h := &Histogram{Bounds: []float64{0.1, 0.2, 1}, Counts: []float64{50, 90, 90}, Count: 90, Sum: 5}
	s := histSummary("GET", "pods", h)
	if s.Max != 0.2 || s.Count != 90 || s.P50 <= 0 || s.P99 > 0.2 {
		t.Errorf("histSummary = %+v, want max 0.2 (highest non-empty bucket)", s)
	}
}

// TestSummaryModelledCPU: a capacity-modelled fake's account of the CPU a
// kube-apiserver would have spent reaches the summary as the difference
// between the mode's first and last scrapes, by kind.
func TestSummaryModelledCPU(t *testing.T) {
	parse := func(req, watch float64) Metrics {
		m, err := ParseMetrics(strings.NewReader(fmt.Sprintf("# TYPE %s counter\n%s{kind=\"request\"} %g\n%s{kind=\"watch\"} %g\n# TYPE apiserver_request_total counter\napiserver_request_total{verb=\"GET\",resource=\"pods\",code=\"200\"} 1\n",
			mModelledCPU, mModelledCPU, req, mModelledCPU, watch)))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	s := &results.Summary{}
	summarizeAPIServer(s, map[string]Metrics{"apiserver": parse(1, 0.5)}, map[string]Metrics{"apiserver": parse(4, 2.5)})
	if s.APIServerModel == nil {
		t.Fatal("no apiServerModel in the summary of a capacity-modelled fake")
	}
	if got := s.APIServerModel.CPUSeconds; math.Abs(got-5) > 1e-9 {
		t.Errorf("cpuSeconds = %g, want 5 (3 of requests + 2 of watch)", got)
	}
	if got := s.APIServerModel.ByKind["watch"]; math.Abs(got-2) > 1e-9 {
		t.Errorf("byKind[watch] = %g, want 2", got)
	}
	none := &results.Summary{}
	plain, _ := ParseMetrics(strings.NewReader("# TYPE apiserver_request_total counter\napiserver_request_total{verb=\"GET\",resource=\"pods\",code=\"200\"} 1\n"))
	summarizeAPIServer(none, map[string]Metrics{"apiserver": plain}, map[string]Metrics{"apiserver": plain})
	if none.APIServerModel != nil {
		t.Errorf("an API server without the model's counter got apiServerModel %+v", none.APIServerModel)
	}
}

// TestSummaryTerminatedWatchers: the watchers the API server closed for
// falling behind reach the summary by resource.
func TestSummaryTerminatedWatchers(t *testing.T) {
	parse := func(n float64) Metrics {
		m, err := ParseMetrics(strings.NewReader(fmt.Sprintf("# TYPE %s counter\n%s{group=\"cilium.io\",resource=\"ciliumidentities\"} %g\n# TYPE stampede_agent_watch_events_total counter\nstampede_agent_watch_events_total{resource=\"pods\"} 5\n", mAPITerminated, mAPITerminated, n)))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := &Measurer{}
	s := &results.Summary{}
	m.summarizeWatch(s, map[string]Metrics{"apiserver": parse(2), "agents-0": parse(0)}, map[string]Metrics{"apiserver": parse(9), "agents-0": parse(0)})
	if s.Watch == nil || s.Watch.TerminatedWatchers["ciliumidentities"] != 7 {
		t.Fatalf("watch summary %+v, want 7 terminated ciliumidentities watchers", s.Watch)
	}
}
