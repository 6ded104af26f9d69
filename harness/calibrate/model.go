package calibrate

import (
	"fmt"
	"math"
	"sort"

	"github.com/stampede-sim/stampede/internal/capacity"
)

// Noise model of a phase's CPU-seconds, for the fit's weights: an absolute
// part (two /proc ticks of 10 ms and the idle baseline's wobble) and a part
// proportional to the phase (other processes' cache and frequency effects on
// a shared machine). A phase then weighs 1/variance.
const (
	noiseAbs = 0.02
	noiseRel = 0.05
)

func weight(y float64) float64 {
	return 1 / (noiseAbs*noiseAbs + noiseRel*noiseRel*y*y)
}

// CoefRow is one line of the coefficient table.
type CoefRow struct {
	Group, Name string
	Coefficient capacity.Coefficient
	R2          float64
	Samples     int
	// Note says how the coefficient was derived when not fitted directly.
	Note string
	// Unit is UnitCPUSeconds (the default), UnitFactor or UnitCores.
	Unit string
}

// Units of a CoefRow.
const (
	UnitCPUSeconds = ""
	UnitFactor     = "factor"
	UnitCores      = "cores"
)

// Model is the fitted cost model.
type Model struct {
	Requests      map[string]capacity.RequestCost
	Resources     map[string]map[string]capacity.Coefficient
	MetricsScrape capacity.Coefficient
	Watch         capacity.WatchCost
	Fit           capacity.Fit
	Table         []CoefRow
}

// FitModel fits the capacity model's coefficients to the measured phases.
//
// LIST phases fit Base + PerObject*objects + PerKiB*KiB. The other verbs
// always return one object, so their per-object and per-request costs are
// one number: they fit an intercept and PerKiB, and PerObject is taken
// from LIST (the cost of handling one object, as in a list) and Base is
// the intercept less it, so that a request costs what was measured.
//
// Watch phases: see fitWatch.
func FitModel(phases []Phase) (*Model, error) {
	m := &Model{Requests: map[string]capacity.RequestCost{}, Fit: capacity.Fit{R2: map[string]float64{}}}
	list, err := m.fitGroup(phases, "list", func(p Phase) []float64 {
		return []float64{float64(p.Requests), float64(p.Objects), p.KiB()}
	})
	if err != nil {
		return nil, err
	}
	perObject := capacity.Coefficient{Value: list.Coef[1], StdErr: list.StdErr[1]}
	m.Requests["list"] = capacity.RequestCost{
		Base:      capacity.Coefficient{Value: list.Coef[0], StdErr: list.StdErr[0]},
		PerObject: perObject,
		PerKiB:    capacity.Coefficient{Value: list.Coef[2], StdErr: list.StdErr[2]},
	}
	m.table("list", []string{"base", "perObject", "perKiB"}, list)
	for _, verb := range []string{"get", "create", "update", "patch", "delete"} {
		f, err := m.fitGroup(phases, verb, func(p Phase) []float64 {
			return []float64{float64(p.Requests), p.KiB()}
		})
		if err != nil {
			return nil, err
		}
		base := capacity.Coefficient{Value: f.Coef[0] - perObject.Value, StdErr: math.Hypot(f.StdErr[0], perObject.StdErr)}
		if base.Value <= 0 {
			return nil, fmt.Errorf("fit %s: intercept %.1f µs is not above list's perObject %.1f µs", verb, 1e6*f.Coef[0], 1e6*perObject.Value)
		}
		m.Requests[verb] = capacity.RequestCost{Base: base, PerObject: perObject,
			PerKiB: capacity.Coefficient{Value: f.Coef[1], StdErr: f.StdErr[1]}}
		for _, row := range []CoefRow{
			{Name: "base", Coefficient: base, Note: fmt.Sprintf("intercept %.1f µs less list's perObject", 1e6*f.Coef[0])},
			{Name: "perObject", Coefficient: perObject, Note: "from list"},
			{Name: "perKiB", Coefficient: m.Requests[verb].PerKiB, Note: f.Held[1]},
		} {
			row.Group, row.R2, row.Samples = verb, f.R2, f.Samples
			m.Table = append(m.Table, row)
		}
	}
	m.fitResources(phases)
	m.fitScrape(phases)
	if err := m.fitWatch(phases); err != nil {
		return nil, err
	}
	return m, nil
}

// fitResources sets, for every resource and verb calibration measured in
// at least two phases, the factor by which its phases cost more (or less)
// than the pooled verb model prices them: the CPU they spent over the
// modelled CPU, summed over the phases, with the standard error of the
// per-phase ratios' mean. The pooled fit mixes built-in kinds (stored as
// protobuf, served by generated code) with custom resources (stored as
// JSON, decoded, schema-coerced and encoded as unstructured maps: in a
// CPU profile of kube-apiserver under the relabel, apiextensions'
// unstructuredSchemaCoercer and encoding/json's map encoder alone were
// a fifth of its CPU), and a run's mix of resources is not calibration's.
func (m *Model) fitResources(phases []Phase) {
	type acc struct {
		cpu, model float64
		ratios     []float64
	}
	by := map[[2]string]*acc{}
	for _, p := range phases {
		rc, ok := m.Requests[p.Verb]
		if !ok || p.Resource == "" || p.Requests == 0 || p.Replay || p.Verb == "watch" {
			continue
		}
		per := float64(p.Objects) / float64(p.Requests)
		if p.Verb != "list" {
			per = 1
		}
		mod := float64(p.Requests)*(rc.Base.Value+rc.PerObject.Value*per) + rc.PerKiB.Value*p.KiB()
		if mod <= 0 || p.CPU <= 0 {
			continue
		}
		k := [2]string{p.Resource, p.Verb}
		a := by[k]
		if a == nil {
			a = &acc{}
			by[k] = a
		}
		a.cpu += p.CPU
		a.model += mod
		a.ratios = append(a.ratios, p.CPU/mod)
	}
	keys := make([][2]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i][0] != keys[j][0] {
			return keys[i][0] < keys[j][0]
		}
		return keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		a := by[k]
		n := len(a.ratios)
		if n < 2 {
			continue
		}
		var mean, ss float64
		for _, r := range a.ratios {
			mean += r
		}
		mean /= float64(n)
		for _, r := range a.ratios {
			ss += (r - mean) * (r - mean)
		}
		c := capacity.Coefficient{Value: a.cpu / a.model, StdErr: math.Sqrt(ss/float64(n-1)) / math.Sqrt(float64(n))}
		if m.Resources == nil {
			m.Resources = map[string]map[string]capacity.Coefficient{}
		}
		if m.Resources[k[0]] == nil {
			m.Resources[k[0]] = map[string]capacity.Coefficient{}
		}
		m.Resources[k[0]][k[1]] = c
		m.Table = append(m.Table, CoefRow{Group: "resource " + k[0], Name: k[1], Coefficient: c, Samples: n, Unit: UnitFactor,
			Note: "its phases' CPU over what the verb's coefficients price them at"})
	}
}

// fitScrape sets the cost of one scrape of kube-apiserver's and etcd's
// /metrics: the scrape phases' CPU over their scrapes, with the spread of
// the phases.
func (m *Model) fitScrape(phases []Phase) {
	var cpu float64
	var n int
	var per []float64
	for _, p := range phases {
		if p.Verb == "scrape" && p.Requests > 0 {
			cpu += p.CPU
			n += p.Requests
			per = append(per, p.CPU/float64(p.Requests))
		}
	}
	if n == 0 || cpu <= 0 {
		return
	}
	mean := cpu / float64(n)
	var se float64
	if len(per) > 1 {
		var ss float64
		for _, x := range per {
			ss += (x - mean) * (x - mean)
		}
		se = math.Sqrt(ss/float64(len(per)-1)) / math.Sqrt(float64(len(per)))
	}
	m.MetricsScrape = capacity.Coefficient{Value: mean, StdErr: se}
	m.Table = append(m.Table, CoefRow{Group: "metrics", Name: "scrape", Coefficient: m.MetricsScrape, Samples: len(per),
		Note: "one scrape of kube-apiserver's and etcd's /metrics"})
}

func (m *Model) fitGroup(phases []Phase, verb string, x func(Phase) []float64) (PositiveFit, error) {
	var rows []Row
	for _, p := range phases {
		if p.Verb == verb && p.Requests > 0 {
			rows = append(rows, Row{X: x(p), Y: p.CPU, Weight: weight(p.CPU)})
		}
	}
	f, err := FitPositive(rows)
	if err != nil {
		return f, fmt.Errorf("fit %s: %w", verb, err)
	}
	m.record(verb, f.FitResult)
	return f, nil
}

// Floor is the value a coefficient gets when its fit is not positive: the
// data do not tell it from zero, and a profile's costs must be positive.
const Floor = 1e-9

// PositiveFit is a least-squares fit whose coefficients are all positive:
// a coefficient that fits to zero or below is held at Floor and the others
// are refitted without it.
type PositiveFit struct {
	FitResult
	// Held[j] is the unconstrained fit of coefficient j when it was held
	// at Floor ("" otherwise).
	Held []string
}

// FitPositive fits rows, holding coefficients that come out non-positive
// at Floor (their StdErr is that of the unconstrained fit) and refitting
// the rest, until all are positive.
func FitPositive(rows []Row) (PositiveFit, error) {
	full, err := LeastSquares(rows)
	if err != nil {
		return PositiveFit{}, err
	}
	p := len(full.Coef)
	pf := PositiveFit{FitResult: full, Held: make([]string, p)}
	free := make([]bool, p)
	for j := range free {
		free[j] = true
	}
	for {
		worst := -1
		for j := range p {
			if free[j] && pf.Coef[j] <= 0 && (worst < 0 || pf.Coef[j]/pf.StdErr[j] < pf.Coef[worst]/pf.StdErr[worst]) {
				worst = j
			}
		}
		if worst < 0 {
			return pf, nil
		}
		free[worst] = false
		pf.Held[worst] = fmt.Sprintf("fitted %.1f ± %.1f µs: not distinguishable from 0, held at %g s", 1e6*pf.Coef[worst], 1e6*pf.StdErr[worst], Floor)
		var idx []int
		for j := range p {
			if free[j] {
				idx = append(idx, j)
			}
		}
		if len(idx) == 0 {
			return pf, fmt.Errorf("%w: no coefficient fits positive", ErrUnderdetermined)
		}
		sub := make([]Row, len(rows))
		for i, r := range rows {
			y := r.Y
			x := make([]float64, 0, len(idx))
			for j := range p {
				if free[j] {
					x = append(x, r.X[j])
				} else {
					y -= Floor * r.X[j]
				}
			}
			sub[i] = Row{X: x, Y: y, Weight: r.Weight}
		}
		f, err := LeastSquares(sub)
		if err != nil {
			return pf, err
		}
		se := pf.StdErr
		pf.FitResult = f
		pf.Coef, pf.StdErr = make([]float64, p), make([]float64, p)
		k := 0
		for j := range p {
			if free[j] {
				pf.Coef[j], pf.StdErr[j] = f.Coef[k], f.StdErr[k]
				k++
			} else {
				pf.Coef[j], pf.StdErr[j] = Floor, se[j]
			}
		}
	}
}

func (m *Model) record(group string, f FitResult) {
	m.Fit.R2[group] = f.R2
	m.Fit.Samples += f.Samples
	m.Fit.MaxRelResidual = math.Max(m.Fit.MaxRelResidual, f.MaxRelResidual)
}

func (m *Model) table(group string, names []string, f PositiveFit) {
	for j, n := range names {
		m.Table = append(m.Table, CoefRow{Group: group, Name: n, Coefficient: capacity.Coefficient{Value: f.Coef[j], StdErr: f.StdErr[j]},
			R2: f.R2, Samples: f.Samples, Note: f.Held[j]})
	}
}

// fitWatch fits the watch costs. The live phases (watchers connected
// while CiliumIdentities of one size are updated, those without watchers
// included) give the per-watcher delivery as the slope in the number of
// watchers; the per-event cost of making the event (the update, and
// encoding it once when anybody watches) is a nuisance term per size.
// The replay phases (watchers that start from before the updates and read
// them from the watch cache's history) cost delivery plus an encoding per
// watcher; less the live delivery, that is the encoding. A workload
// without replay phases (profiles measured before they existed) leaves
// the encoding held at Floor and says so.
func (m *Model) fitWatch(phases []Phase) error {
	evKiB := map[string]float64{}
	n := map[string]int{}
	for _, p := range phases {
		if p.Verb == "watch" && p.Watchers > 0 {
			evKiB[p.Size] += p.EventKiB()
			n[p.Size]++
		}
	}
	kibOf := func(p Phase) (float64, error) {
		if n[p.Size] == 0 {
			return 0, fmt.Errorf("fit watch: no phase with watchers for size %s", p.Size)
		}
		return evKiB[p.Size] / float64(n[p.Size]), nil
	}
	var rows, replay []Row
	for _, p := range phases {
		if p.Verb != "watch" {
			continue
		}
		kib, err := kibOf(p)
		if err != nil {
			return err
		}
		w := float64(p.Watchers)
		if p.Replay {
			e := float64(p.Events)
			replay = append(replay, Row{X: []float64{w, e * w, e * w * kib}, Y: p.CPU, Weight: weight(p.CPU)})
			continue
		}
		e := float64(p.Requests)
		rows = append(rows, Row{X: []float64{e, e * kib, e * w, e * w * kib}, Y: p.CPU, Weight: weight(p.CPU)})
	}
	f, err := FitPositive(rows)
	if err != nil {
		return fmt.Errorf("fit watch: %w", err)
	}
	m.record("watch", f.FitResult)
	c := func(j int) capacity.Coefficient { return capacity.Coefficient{Value: f.Coef[j], StdErr: f.StdErr[j]} }
	m.Watch = capacity.WatchCost{
		Encode: capacity.Coefficient{Value: Floor}, EncodePerKiB: capacity.Coefficient{Value: Floor},
		Deliver: c(2), DeliverPerKiB: c(3),
	}
	m.table("watch", []string{"(update per event)", "(update per event-KiB)", "deliver", "deliverPerKiB"}, f)
	if len(replay) == 0 {
		const note = "no replay phases in this workload: held at 1e-09 s"
		m.Table = append(m.Table,
			CoefRow{Group: "watch", Name: "encode", Coefficient: m.Watch.Encode, R2: f.R2, Samples: f.Samples, Note: note},
			CoefRow{Group: "watch", Name: "encodePerKiB", Coefficient: m.Watch.EncodePerKiB, R2: f.R2, Samples: f.Samples, Note: note})
		return nil
	}
	rf, err := FitPositive(replay)
	if err != nil {
		return fmt.Errorf("fit watch replay: %w", err)
	}
	m.record("watch replay", rf.FitResult)
	// The replayed event-watcher costs deliver + encode: the encoding is
	// the difference, its error the two errors combined.
	diff := func(j, k int, name string) capacity.Coefficient {
		v := rf.Coef[j] - f.Coef[k]
		se := math.Hypot(rf.StdErr[j], f.StdErr[k])
		note := fmt.Sprintf("replayed %.2f µs less live deliver %.2f µs", rf.Coef[j]*1e6, f.Coef[k]*1e6)
		if v <= 0 {
			note = fmt.Sprintf("replayed %.2f µs not above live deliver %.2f µs: held at 1e-09 s", rf.Coef[j]*1e6, f.Coef[k]*1e6)
			v = Floor
		}
		m.Table = append(m.Table, CoefRow{Group: "watch", Name: name, Coefficient: capacity.Coefficient{Value: v, StdErr: se}, R2: rf.R2, Samples: rf.Samples, Note: note})
		return capacity.Coefficient{Value: v, StdErr: se}
	}
	m.Watch.Encode = diff(1, 2, "encode")
	m.Watch.EncodePerKiB = diff(2, 3, "encodePerKiB")
	m.table("watch replay", []string{"(per watch request)", "replayed per event", "replayed per event-KiB"}, rf)
	return nil
}
