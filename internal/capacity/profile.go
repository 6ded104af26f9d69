package capacity

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// SchemaVersion is the version of the profile file format this package
// reads and writes.
const SchemaVersion = 1

// KubeAPIServerVersion is the kube-apiserver this project builds (the
// Makefile's KUBE_VERSION); only profiles measured against it are accepted.
const KubeAPIServerVersion = "v1.36.3"

// ModelledCPUMetric is the counter of CPU-seconds a capacity-modelled
// API server charged, by kind ("request", "watch"): what kube-apiserver
// plus etcd would have spent as the profile prices the work. The fake
// exports it; the harness and calibrate's validation read it.
const ModelledCPUMetric = "stampede_fakeapi_modelled_cpu_seconds_total"

// MeterHeader marks a request for /metrics that reads the model's own
// account (calibrate --validate does, every second): the fake charges
// every other scrape as Profile.MetricsScrape, since the harness's scrape
// of kube-apiserver is work kube-apiserver does, but not this one, which
// the local side of a validation has no counterpart of.
const MeterHeader = "X-Stampede-Model-Meter"

// DefaultProfile is the shipped profile Resolve("") returns.
const DefaultProfile = "kube-apiserver-" + KubeAPIServerVersion

// RequestVerbs are the keys Profile.Requests must have, one per verb the
// fake charges (a WATCH is charged as its initial "list").
var RequestVerbs = []string{"get", "list", "create", "update", "patch", "delete"}

// Coefficient is one fitted cost in CPU-seconds, with its standard error.
type Coefficient struct {
	Value  float64 `json:"value"`
	StdErr float64 `json:"stdErr"`
}

// RequestCost is the CPU-seconds (kube-apiserver and etcd together) one
// request costs: Base + PerObject*objects + PerKiB*KiB, where objects is the
// number of items a LIST returns (1 otherwise) and KiB the size of the
// request and response bodies as JSON.
type RequestCost struct {
	Base      Coefficient `json:"base"`
	PerObject Coefficient `json:"perObject"`
	PerKiB    Coefficient `json:"perKiB"`
}

// Seconds is the cost of one request returning objects items in kib KiB.
func (c RequestCost) Seconds(objects int, kib float64) float64 {
	return c.Base.Value + c.PerObject.Value*float64(objects) + c.PerKiB.Value*kib
}

// WatchCost is the cost of one watch event: encoded once for all watchers
// (kube-apiserver's cachingObject serializes an event once per encoding),
// Encode + EncodePerKiB*KiB, then written to each watcher, Deliver +
// DeliverPerKiB*KiB per watcher.
type WatchCost struct {
	Encode        Coefficient `json:"encode"`
	EncodePerKiB  Coefficient `json:"encodePerKiB"`
	Deliver       Coefficient `json:"deliver"`
	DeliverPerKiB Coefficient `json:"deliverPerKiB"`
}

// EncodeSeconds is the once-per-event cost of an event of kib KiB.
func (c WatchCost) EncodeSeconds(kib float64) float64 {
	return c.Encode.Value + c.EncodePerKiB.Value*kib
}

// DeliverSeconds is the per-watcher cost of an event of kib KiB.
func (c WatchCost) DeliverSeconds(kib float64) float64 {
	return c.Deliver.Value + c.DeliverPerKiB.Value*kib
}

// Machine describes the machine a profile was measured on; a core of
// capacity is a core of this machine.
type Machine struct {
	CPUModel  string `json:"cpuModel"`
	Cores     int    `json:"cores"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"goVersion"`
}

// Fit is the quality of the fit the coefficients come from.
type Fit struct {
	Samples int `json:"samples"`
	// R2 per group: "get", "list", "create", "update", "patch", "delete",
	// "watch".
	R2             map[string]float64 `json:"r2"`
	MaxRelResidual float64            `json:"maxRelResidual"`
}

// Profile is one calibration of kube-apiserver plus etcd on one machine.
type Profile struct {
	SchemaVersion        int       `json:"schemaVersion"`
	Name                 string    `json:"name"`
	KubeAPIServerVersion string    `json:"kubeAPIServerVersion"`
	EtcdVersion          string    `json:"etcdVersion"`
	MeasuredAt           time.Time `json:"measuredAt"`
	Commit               string    `json:"commit,omitempty"`
	Machine              Machine   `json:"machine"`
	// Requests has one entry per RequestVerbs key.
	Requests map[string]RequestCost `json:"requests"`
	// Resources scales Requests for the resources calibration measured:
	// resource (plural, "pods") -> verb -> factor, the CPU its phases
	// spent over what Requests prices them at. A built-in kind stored as
	// protobuf and a custom resource stored as JSON through the
	// unstructured path differ by more than their sizes explain. Absent
	// resources and verbs are priced by Requests alone (factor 1).
	Resources map[string]map[string]Coefficient `json:"resources,omitempty"`
	// Background is the CPU rate (cores) kube-apiserver and etcd spend
	// with nothing asked of them (watch-cache bookmarks, lease renewals,
	// etcd's own housekeeping), measured before and after the workload.
	// Zero: not measured.
	Background Coefficient `json:"background,omitzero"`
	// MetricsScrape is the CPU-seconds one scrape of kube-apiserver's and
	// etcd's /metrics costs both. Zero: not measured.
	MetricsScrape Coefficient `json:"metricsScrape,omitzero"`
	Watch         WatchCost   `json:"watch"`
	Fit           Fit         `json:"fit"`
}

// RequestSeconds is the cost of a request of verb on resource returning
// objects items in kib KiB: Requests[verb] scaled by the resource's
// factor where calibration measured one.
func (p *Profile) RequestSeconds(verb, resource string, objects int, kib float64) float64 {
	s := p.Requests[verb].Seconds(objects, kib)
	if f, ok := p.Resources[resource][verb]; ok {
		s *= f.Value
	}
	return s
}

// ErrSchemaVersion and ErrKubeVersion tell a caller that a profile is well
// formed but describes another file format or another kube-apiserver.
var (
	ErrSchemaVersion = errors.New("unsupported schemaVersion")
	ErrKubeVersion   = errors.New("measured against another kube-apiserver")
)

// Validate checks p and names the field that is wrong.
func (p *Profile) Validate() error {
	if p.SchemaVersion != SchemaVersion {
		return fmt.Errorf("schemaVersion: %d, want %d: %w", p.SchemaVersion, SchemaVersion, ErrSchemaVersion)
	}
	if p.KubeAPIServerVersion != KubeAPIServerVersion {
		return fmt.Errorf("kubeAPIServerVersion: %q, this build models %s (recalibrate with stampede calibrate): %w",
			p.KubeAPIServerVersion, KubeAPIServerVersion, ErrKubeVersion)
	}
	if strings.TrimSpace(p.Name) == "" {
		return errors.New("name: must not be empty")
	}
	if p.MeasuredAt.IsZero() {
		return errors.New("measuredAt: must be set")
	}
	if p.Machine.Cores < 1 {
		return fmt.Errorf("machine.cores: %d, must be at least 1", p.Machine.Cores)
	}
	if err := p.validateRequests(); err != nil {
		return err
	}
	if err := p.validateResources(); err != nil {
		return err
	}
	for _, c := range []struct {
		field string
		c     Coefficient
	}{{"background", p.Background}, {"metricsScrape", p.MetricsScrape}} {
		if c.c == (Coefficient{}) {
			continue // not measured
		}
		if err := c.c.validate(c.field); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		field string
		c     Coefficient
	}{
		{"watch.encode", p.Watch.Encode},
		{"watch.encodePerKiB", p.Watch.EncodePerKiB},
		{"watch.deliver", p.Watch.Deliver},
		{"watch.deliverPerKiB", p.Watch.DeliverPerKiB},
	} {
		if err := c.c.validate(c.field); err != nil {
			return err
		}
	}
	return p.Fit.validate()
}

func (p *Profile) validateRequests() error {
	for _, verb := range RequestVerbs {
		if _, ok := p.Requests[verb]; !ok {
			return fmt.Errorf("requests.%s: missing (want %s)", verb, strings.Join(RequestVerbs, ", "))
		}
	}
	verbs := make([]string, 0, len(p.Requests))
	for verb := range p.Requests {
		verbs = append(verbs, verb)
	}
	sort.Strings(verbs)
	for _, verb := range verbs {
		if !isRequestVerb(verb) {
			return fmt.Errorf("requests.%s: unknown verb (want %s)", verb, strings.Join(RequestVerbs, ", "))
		}
		c := p.Requests[verb]
		for _, f := range []struct {
			field string
			c     Coefficient
		}{{"base", c.Base}, {"perObject", c.PerObject}, {"perKiB", c.PerKiB}} {
			if err := f.c.validate("requests." + verb + "." + f.field); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *Profile) validateResources() error {
	resources := make([]string, 0, len(p.Resources))
	for r := range p.Resources {
		resources = append(resources, r)
	}
	sort.Strings(resources)
	for _, r := range resources {
		if strings.TrimSpace(r) == "" {
			return errors.New("resources: a resource name is empty")
		}
		verbs := make([]string, 0, len(p.Resources[r]))
		for v := range p.Resources[r] {
			verbs = append(verbs, v)
		}
		sort.Strings(verbs)
		for _, v := range verbs {
			if !isRequestVerb(v) {
				return fmt.Errorf("resources.%s.%s: unknown verb (want %s)", r, v, strings.Join(RequestVerbs, ", "))
			}
			if err := p.Resources[r][v].validate("resources." + r + "." + v); err != nil {
				return err
			}
		}
	}
	return nil
}

func isRequestVerb(verb string) bool {
	for _, v := range RequestVerbs {
		if v == verb {
			return true
		}
	}
	return false
}

// validate refuses a cost that is not a positive finite number: a zero or
// negative cost would let the model serve work for free (or gain budget).
func (c Coefficient) validate(field string) error {
	if math.IsNaN(c.Value) || math.IsInf(c.Value, 0) || c.Value <= 0 {
		return fmt.Errorf("%s.value: %v, must be a positive finite number", field, c.Value)
	}
	if math.IsNaN(c.StdErr) || math.IsInf(c.StdErr, 0) || c.StdErr < 0 {
		return fmt.Errorf("%s.stdErr: %v, must be a finite number >= 0", field, c.StdErr)
	}
	return nil
}

func (f Fit) validate() error {
	if f.Samples < 0 {
		return fmt.Errorf("fit.samples: %d, must be >= 0", f.Samples)
	}
	groups := make([]string, 0, len(f.R2))
	for g := range f.R2 {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	for _, g := range groups {
		if r := f.R2[g]; math.IsNaN(r) || math.IsInf(r, 0) || r > 1 {
			return fmt.Errorf("fit.r2.%s: %v, must be a finite number <= 1", g, r)
		}
	}
	if r := f.MaxRelResidual; math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
		return fmt.Errorf("fit.maxRelResidual: %v, must be a finite number >= 0", r)
	}
	return nil
}

// Parse reads a profile from YAML (or JSON) strictly and validates it;
// errors name the field but not the source (Load and Builtin add it).
func Parse(data []byte) (*Profile, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty profile")
	}
	var p Profile
	if err := yaml.UnmarshalStrict(data, &p); err != nil {
		return nil, fmt.Errorf("malformed profile: %w", err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Load reads and validates the profile at path; errors name the file.
func Load(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read capacity profile: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("capacity profile %s: %w", path, err)
	}
	return p, nil
}

//go:embed profiles
var shipped embed.FS

// Builtins lists the names of the shipped profiles, sorted.
func Builtins() []string {
	entries, err := fs.ReadDir(shipped, "profiles")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok && !e.IsDir() {
			names = append(names, n)
		}
	}
	return names
}

func shippedList() string {
	if b := Builtins(); len(b) > 0 {
		return strings.Join(b, ", ")
	}
	return "none"
}

// ErrNoProfile is returned by Builtin for a name that is not shipped.
var ErrNoProfile = errors.New("no such shipped capacity profile")

// Builtin returns the shipped profile called name.
func Builtin(name string) (*Profile, error) {
	data, err := shipped.ReadFile(path.Join("profiles", name+".yaml"))
	if err != nil || strings.ContainsAny(name, "/\\") {
		return nil, fmt.Errorf("capacity profile %q: %w (shipped: %s; measure one with stampede calibrate)",
			name, ErrNoProfile, shippedList())
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("shipped capacity profile %s.yaml: %w", name, err)
	}
	return p, nil
}

// Resolve returns the profile nameOrPath names: "" is DefaultProfile, a
// shipped name is that profile, anything else is a file path.
func Resolve(nameOrPath string) (*Profile, error) {
	if nameOrPath == "" {
		return Builtin(DefaultProfile)
	}
	for _, n := range Builtins() {
		if n == nameOrPath {
			return Builtin(n)
		}
	}
	if !strings.ContainsAny(nameOrPath, "/\\.") {
		if _, err := os.Stat(nameOrPath); err != nil {
			return nil, fmt.Errorf("capacity profile %q: %w (shipped: %s; or give a file path)",
				nameOrPath, ErrNoProfile, shippedList())
		}
	}
	return Load(nameOrPath)
}

// Write writes p as YAML.
func (p *Profile) Write(w io.Writer) error {
	data, err := yaml.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode capacity profile: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("write capacity profile: %w", err)
	}
	return nil
}
