package calibrate

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/stampede-sim/stampede/reports/results"
	"github.com/stampede-sim/stampede/scenarios"
)

// Validation is the side-by-side comparison of the two runs.
type Validation struct {
	Cores    float64
	Scenario string
	// Cilium is the release the agents followed.
	Cilium      string
	Profile     string
	Confinement string
	Modes       []ModeValidation
}

// Side is what one run measured in one mode.
type Side struct {
	Backend string
	Status  string
	// CPU is API server CPU-seconds: measured for kube-apiserver and etcd,
	// modelled for the fake.
	CPU apiCPU
	// Probe is the probe's latency by "VERB resource" and "*" for all.
	Probe map[string]results.LatencySummary
	// ServerP99 is apiserver_request_duration_seconds' p99 over all verbs
	// but WATCH.
	ServerP99   float64
	WatchEvents int64
	// TerminatedWatchers is how many watchers the server closed for
	// falling behind (kube-apiserver's cacheWatcher; the fake's model).
	TerminatedWatchers int64
	HTTP429            int64
	// ConvergeP99 is the p99 of the agents' convergence after the last
	// relabel (or the last step that waited for convergence).
	ConvergeP99 float64
	Identities  int64
	Duplicates  int64
}

// Check is one compared figure.
type Check struct {
	Name        string
	Local, Fake float64
	// Tolerance is the allowed factor either way; 0 means shown only.
	Tolerance float64
	Err       string
}

// Ratio is Fake/Local (NaN when either is missing or Local is 0).
func (c Check) Ratio() float64 {
	if c.Local == 0 || math.IsNaN(c.Local) || math.IsNaN(c.Fake) {
		return math.NaN()
	}
	return c.Fake / c.Local
}

// Pass is whether a checked figure is within its tolerance.
func (c Check) Pass() bool {
	if c.Tolerance == 0 {
		return true
	}
	if c.Local == 0 && c.Fake == 0 {
		return true
	}
	r := c.Ratio()
	return !math.IsNaN(r) && r <= c.Tolerance && r >= 1/c.Tolerance
}

// ModeValidation compares one mode.
type ModeValidation struct {
	Mode        scenarios.Mode
	Local, Fake Side
	Checks      []Check
}

// Complete reports whether both runs of the mode finished (status ok):
// figures of an incomplete run are not comparable, and every check of the
// mode then fails.
func (m ModeValidation) Complete() bool {
	return m.Local.Status == string(results.StatusOK) && m.Fake.Status == string(results.StatusOK)
}

func side(backend string, res *results.Results, mode scenarios.Mode, cpu apiCPU) Side {
	s := Side{Backend: backend, CPU: cpu, Probe: map[string]results.LatencySummary{}, ServerP99: math.NaN(), ConvergeP99: math.NaN()}
	if cpu.Source == "" {
		s.CPU = apiCPU{Seconds: math.NaN(), Err: fmt.Errorf("the %s backend never started in %s mode", backend, mode)}
	} else if cpu.Err != nil {
		s.CPU.Seconds = math.NaN()
	}
	if res == nil {
		s.Status = "no results"
		return s
	}
	var m *results.ModeResult
	for i := range res.Modes {
		if res.Modes[i].Mode == mode {
			m = &res.Modes[i]
		}
	}
	if m == nil {
		s.Status = "not run"
		return s
	}
	s.Status = string(m.Status)
	if m.Reason != "" {
		s.Status += ": " + firstLine(m.Reason)
	}
	sum := m.Summary
	if sum == nil {
		return s
	}
	for _, l := range sum.APILatency {
		k := l.Verb + " " + l.Resource
		if l.Verb == "*" {
			k = "*"
		}
		s.Probe[k] = l
	}
	for _, l := range sum.ServerLatency {
		if l.Verb == "*" {
			s.ServerP99 = l.P99
		}
	}
	if sum.Watch != nil {
		s.WatchEvents = sum.Watch.Events
		for _, n := range sum.Watch.TerminatedWatchers {
			s.TerminatedWatchers += n
		}
	}
	if sum.Throttling != nil {
		s.HTTP429 = sum.Throttling.HTTP429
	}
	for _, c := range sum.Convergence {
		if c.Trigger == "relabel" || math.IsNaN(s.ConvergeP99) {
			s.ConvergeP99 = c.P99
		}
	}
	if sum.Identities != nil {
		s.Identities = sum.Identities.Created
		s.Duplicates = sum.Identities.Duplicates
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func compareMode(mode scenarios.Mode, local, fake Side) ModeValidation {
	mv := ModeValidation{Mode: mode, Local: local, Fake: fake}
	add := func(name string, l, f, tol float64) {
		mv.Checks = append(mv.Checks, Check{Name: name, Local: l, Fake: f, Tolerance: tol})
	}
	cpu := Check{Name: "API server CPU-s", Local: local.CPU.Seconds, Fake: fake.CPU.Seconds, Tolerance: CPUTolerance}
	var errs []string
	for _, e := range []error{local.CPU.Err, fake.CPU.Err} {
		if e != nil {
			errs = append(errs, e.Error())
		}
	}
	cpu.Err = strings.Join(errs, "; ")
	mv.Checks = append(mv.Checks, cpu)
	keys := map[string]bool{}
	for k := range local.Probe {
		keys[k] = true
	}
	for k := range fake.Probe {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		if k != "*" {
			sorted = append(sorted, k)
		}
	}
	sort.Strings(sorted)
	probe := func(s Side, k string, p99 bool) float64 {
		l, ok := s.Probe[k]
		switch {
		case !ok:
			return math.NaN()
		case p99:
			return l.P99
		default:
			return l.P50
		}
	}
	for _, k := range sorted {
		add("probe p50 "+k+" (s)", probe(local, k, false), probe(fake, k, false), 0)
		add("probe p99 "+k+" (s)", probe(local, k, true), probe(fake, k, true), 0)
	}
	add("probe p99 all (s)", probe(local, "*", true), probe(fake, "*", true), LatencyTolerance)
	add("apiserver_request_duration p99 (s)", local.ServerP99, fake.ServerP99, 0)
	add("watch events delivered", float64(local.WatchEvents), float64(fake.WatchEvents), 0)
	add("watchers closed as too slow", float64(local.TerminatedWatchers), float64(fake.TerminatedWatchers), 0)
	add("HTTP 429", float64(local.HTTP429), float64(fake.HTTP429), 0)
	add("converge p99 (s)", local.ConvergeP99, fake.ConvergeP99, ConvergenceTolerance)
	add("identities created", float64(local.Identities), float64(fake.Identities), IdentitiesTolerance)
	add("identity duplicates", float64(local.Duplicates), float64(fake.Duplicates), 0)
	return mv
}

// Checks counts the checked figures; Failed those outside tolerance.
func (v *Validation) Checks() int {
	n := 0
	for _, m := range v.Modes {
		for _, c := range m.Checks {
			if c.Tolerance > 0 {
				n++
			}
		}
	}
	return n
}

// Failed counts the checks outside their tolerance.
func (v *Validation) Failed() int {
	n := 0
	for _, m := range v.Modes {
		for _, c := range m.Checks {
			if c.Tolerance > 0 && (!c.Pass() || !m.Complete()) {
				n++
			}
		}
	}
	return n
}

// Passed reports whether every check passed.
func (v *Validation) Passed() bool { return v.Failed() == 0 }

// WriteTable prints the comparison, one block per mode.
func (v *Validation) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "validation of %s (agents as Cilium %s): kube-apiserver+etcd confined by %s vs. fake with capacity %v cores (profile %s)\n",
		v.Scenario, v.Cilium, v.Confinement, v.Cores, v.Profile)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, m := range v.Modes {
		fmt.Fprintf(tw, "\n%s mode\tlocal (%s)\tfake (%s)\tfake/local\tcheck\n", m.Mode, short(m.Local.Status), short(m.Fake.Status))
		for _, c := range m.Checks {
			verdict := ""
			if c.Tolerance > 0 {
				verdict = fmt.Sprintf("within %gx: ", c.Tolerance)
				if c.Pass() && m.Complete() {
					verdict += "pass"
				} else {
					verdict += "FAIL"
				}
			}
			if c.Err != "" {
				verdict += " (" + c.Err + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, num(c.Local), num(c.Fake), num(c.Ratio()), verdict)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write validation table: %w", err)
	}
	for _, m := range v.Modes {
		if !m.Complete() {
			fmt.Fprintf(w, "%s mode: not comparable, a run did not complete: local %s; fake %s\n", m.Mode, m.Local.Status, m.Fake.Status)
		}
	}
	verdict := "PASS"
	if !v.Passed() {
		verdict = fmt.Sprintf("FAIL (%d of %d checks)", v.Failed(), v.Checks())
	}
	_, err := fmt.Fprintf(w, "\nvalidation: %s\n", verdict)
	return err
}

func num(f float64) string {
	switch {
	case math.IsNaN(f):
		return "-"
	case f == math.Trunc(f) && math.Abs(f) < 1e9:
		return fmt.Sprintf("%.0f", f)
	case math.Abs(f) >= 100:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.3g", f)
	}
}

func short(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}
