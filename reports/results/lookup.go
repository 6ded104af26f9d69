package results

import (
	"math"
	"sort"
	"strings"

	"github.com/stampede-sim/stampede/scenarios"
)

// Lookups over results that the gate, the capacity model and the report
// share.

// SummaryOf is m's summary, or an empty one when m or its summary is
// missing, so that lookups need no nil checks.
func SummaryOf(m *ModeResult) *Summary {
	if m == nil || m.Summary == nil {
		return &Summary{}
	}
	return m.Summary
}

// WorstP99 is the entry of ls with the highest p99 (nil for none).
func WorstP99(ls []LatencySummary) *LatencySummary {
	var w *LatencySummary
	for i := range ls {
		if w == nil || ls[i].P99 > w.P99 {
			w = &ls[i]
		}
	}
	return w
}

// FindProcess is the summary of the process called name (nil if none).
func FindProcess(s *Summary, name string) *ProcessSummary {
	for i := range s.Processes {
		if s.Processes[i].Name == name {
			return &s.Processes[i]
		}
	}
	return nil
}

// FindLatency is the entry of ls for verb and resource (nil if none).
func FindLatency(ls []LatencySummary, verb, resource string) *LatencySummary {
	for i := range ls {
		if ls[i].Verb == verb && ls[i].Resource == resource {
			return &ls[i]
		}
	}
	return nil
}

// ProcessCPU is the CPU-seconds of the process called name (NaN if
// unknown).
func ProcessCPU(s *Summary, name string) float64 {
	if s == nil {
		return math.NaN()
	}
	for _, p := range s.Processes {
		if p.Name == name {
			return p.CPUSeconds
		}
	}
	return math.NaN()
}

// APIServerCPU is a mode's API server CPU-seconds as the run's API
// figures mean them, and what the number is: for a kube-apiserver, the
// measured CPU of kube-apiserver and etcd; for the fake with a capacity
// model, what the model charged (a kube-apiserver with its etcd as the
// profile prices the work); for the fake without one, the fake's own
// process CPU, the simulator's cost. NaN when not measured.
func APIServerCPU(a APIServer, s *Summary) (float64, string) {
	switch a.Model {
	case ModelCapacity:
		if s != nil && s.APIServerModel != nil {
			return s.APIServerModel.CPUSeconds, "modelled kube-apiserver + etcd"
		}
		return math.NaN(), "modelled kube-apiserver + etcd (not recorded)"
	case ModelNone:
		return ProcessCPU(s, "apiserver"), "the fake's own process: the simulator's cost"
	}
	v := ProcessCPU(s, "apiserver")
	if e := ProcessCPU(s, "etcd"); !math.IsNaN(e) && !math.IsNaN(v) {
		return v + e, "measured kube-apiserver + etcd"
	}
	return v, "measured kube-apiserver"
}

// RelabelConvergence is the convergence entry of the first relabel (nil
// when there is none).
func RelabelConvergence(s *Summary) *ConvergenceSummary {
	if s == nil {
		return nil
	}
	for i := range s.Convergence {
		if s.Convergence[i].Trigger == "relabel" {
			return &s.Convergence[i]
		}
	}
	return nil
}

// BaseScenario is a scenario name without the "@<nodes>" a sweep adds,
// so that runs of one sweep compare with runs of the plain scenario.
func BaseScenario(name string) string {
	if i := strings.IndexByte(name, '@'); i >= 0 {
		return name[:i]
	}
	return name
}

// ModeOrder lists the modes present in rs: the presets first, in run
// order (scenarios.PresetNames), then other names as they first appear.
func ModeOrder(rs []*Results) []scenarios.Mode {
	seen := map[scenarios.Mode]bool{}
	var out []scenarios.Mode
	for _, r := range rs {
		for _, mr := range r.Modes {
			if !seen[mr.Mode] {
				seen[mr.Mode] = true
				out = append(out, mr.Mode)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		return scenarios.PresetOrder(out[i]) < scenarios.PresetOrder(out[j])
	})
	return out
}

// ModesOf collects mode m of every run in rs.
func ModesOf(rs []*Results, m scenarios.Mode) []*ModeResult {
	var out []*ModeResult
	for _, r := range rs {
		for i := range r.Modes {
			if r.Modes[i].Mode == m {
				out = append(out, &r.Modes[i])
			}
		}
	}
	return out
}
