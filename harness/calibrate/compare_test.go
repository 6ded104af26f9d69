package calibrate

import (
	"math"
	"strings"
	"testing"

	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

func TestParseCounter(t *testing.T) {
	body := []byte(`# HELP stampede_fakeapi_modelled_cpu_seconds_total CPU charged.
# TYPE stampede_fakeapi_modelled_cpu_seconds_total counter
stampede_fakeapi_modelled_cpu_seconds_total{kind="request"} 12.5
stampede_fakeapi_modelled_cpu_seconds_total{kind="watch",x="a b"} 2.5
stampede_fakeapi_modelled_cpu_seconds_total_other 100
apiserver_request_total{code="200"} 7
`)
	got, err := parseCounter(body, ModelledCPUMetric)
	if err != nil || got != 15 {
		t.Fatalf("parseCounter = %v, %v, want 15", got, err)
	}
	if _, err := parseCounter([]byte("apiserver_request_total 1\n"), ModelledCPUMetric); err == nil || !strings.Contains(err.Error(), ModelledCPUMetric) {
		t.Fatalf("missing metric: err = %v, want it to name the metric", err)
	}
	if v, err := parseCounter([]byte(ModelledCPUMetric+" 3\n"), ModelledCPUMetric); err != nil || v != 3 {
		t.Fatalf("unlabelled: %v, %v", v, err)
	}
}

func TestCheckTolerance(t *testing.T) {
	tests := []struct {
		c    Check
		pass bool
	}{
		{Check{Local: 10, Fake: 14, Tolerance: 1.5}, true},
		{Check{Local: 10, Fake: 16, Tolerance: 1.5}, false},
		{Check{Local: 10, Fake: 6, Tolerance: 1.5}, false},
		{Check{Local: 10, Fake: 7, Tolerance: 1.5}, true},
		{Check{Local: math.NaN(), Fake: 7, Tolerance: 2}, false},
		{Check{Local: 0, Fake: 0, Tolerance: 2}, true},
		{Check{Local: 0, Fake: 3, Tolerance: 2}, false},
		{Check{Local: 1, Fake: 300}, true}, // shown only
	}
	for _, tt := range tests {
		if got := tt.c.Pass(); got != tt.pass {
			t.Errorf("%+v: Pass = %v, want %v", tt.c, got, tt.pass)
		}
	}
}

func TestCompareModeFromResults(t *testing.T) {
	res := func(p99, conv float64, ids int64) *results.Results {
		return &results.Results{Modes: []results.ModeResult{{Mode: scenarios.ModeCRD, Status: results.StatusOK, Summary: &results.Summary{
			APILatency:    []results.LatencySummary{{Verb: "GET", Resource: "pods", P50: p99 / 4, P99: p99}, {Verb: "*", Resource: "*", P99: p99}},
			ServerLatency: []results.LatencySummary{{Verb: "*", Resource: "*", P99: p99 / 2}},
			Watch:         &results.WatchSummary{Events: 1000},
			Throttling:    &results.ThrottlingSummary{HTTP429: 3},
			Convergence:   []results.ConvergenceSummary{{Trigger: "setup", P99: 100}, {Trigger: "relabel", P99: conv}},
			Identities:    &results.IdentitySummary{Created: ids},
		}}}}
	}
	local := side("local", res(0.4, 20, 100), scenarios.ModeCRD, apiCPU{Seconds: 30, Source: "measured"})
	fake := side("fake", res(0.3, 50, 150), scenarios.ModeCRD, apiCPU{Seconds: 25, Source: "modelled"})
	mv := compareMode(scenarios.ModeCRD, local, fake)
	v := &Validation{Cores: 2, Scenario: "relabel-small", Modes: []ModeValidation{mv}}
	if v.Checks() != 4 {
		t.Errorf("Checks = %d, want 4 (CPU, probe p99, converge p99, identities)", v.Checks())
	}
	// Only the relabel's convergence (20 s vs 50 s) is outside 2x.
	if v.Failed() != 1 || v.Passed() {
		t.Errorf("Failed = %d, want 1", v.Failed())
	}
	var sb strings.Builder
	if err := v.WriteTable(&sb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"within 2x: FAIL", "API server CPU-s", "probe p99 GET pods", "FAIL (1 of 4 checks)"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, sb.String())
		}
	}
	// An incomplete run fails every check of its mode.
	inc := compareMode(scenarios.ModeCRD, local, fake)
	inc.Fake.Status = "incomplete: interrupted"
	if vi := (&Validation{Modes: []ModeValidation{inc}}); vi.Failed() != 4 {
		t.Errorf("incomplete mode: Failed = %d, want all 4", vi.Failed())
	}
	// A side whose backend never started fails its CPU check.
	missing := side("fake", nil, scenarios.ModeCRD, apiCPU{})
	if c := compareMode(scenarios.ModeCRD, local, missing).Checks[0]; c.Pass() || c.Err == "" {
		t.Errorf("CPU check without a fake run: %+v, want a failure with a reason", c)
	}
}
