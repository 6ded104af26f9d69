package scenarios

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Cilium selects the Cilium release whose defaults the simulated agents
// and control plane follow. Every knob under agent and controlPlane that
// the scenario leaves unset takes the release's default; a knob the
// scenario sets keeps its value, if the release supports it.
type Cilium struct {
	// Version is a minor release ("1.17", "1.18", "1.19") or "latest"
	// (the newest one Stampede has a profile of); empty means latest.
	// Default replaces "latest" with the release it stands for.
	Version string `json:"version"`
}

// VersionLatest stands for the newest release with a profile.
const VersionLatest = "latest"

// Release is one Cilium minor release's defaults for the knobs Stampede
// models, and where each default was read.
type Release struct {
	// Version is the minor release, "1.18".
	Version string
	// Read names the tag whose sources and Helm chart the defaults were
	// read from, "v1.18.6".
	Read string
	// Agent and ControlPlane hold the release's defaults; zero fields
	// have no release-specific default.
	Agent        AgentKnobs
	ControlPlane ControlPlane
	// Sources maps a knob's field path ("agent.clientQPS") to where its
	// default comes from: a Cilium file and symbol, a Helm value, or
	// "stampede" for the simulator's own choices.
	Sources map[string]string
	// CESSliceModes lists the controlPlane.ces.sliceMode values the
	// release's operator has.
	CESSliceModes []string
	// CESControllerModes lists the operator's CES controllers
	// (--ces-controller-mode): "default" builds slices from
	// CiliumEndpoints, "slim" from Pods (cilium/cilium#38388).
	CESControllerModes []string
	// CESWriteRate are the steps of the CiliumEndpointSlice controller's
	// write rate by node count, as the release's Helm chart sets them
	// (ciliumEndpointSlice.rateLimits); they give controlPlane.ces.writeQPS
	// and writeBurst when the scenario leaves them unset.
	CESWriteRate []CESRateStep
	// CESWriteMax, if set, is the highest CES write rate the release's
	// operator applies: it lowers a higher configured QPS or burst to it
	// without a word (operator/pkg/ciliumendpointslice CESWriteQPSLimitMax
	// and CESWriteQPSBurstMax until cilium/cilium#43154 removed them).
	CESWriteMax *CESRateStep
}

// CESRateStep is one step of Cilium's CES write rate ladder: from Nodes
// nodes on, the controller writes at QPS with Burst.
type CESRateStep struct {
	Nodes int
	QPS   float64
	Burst int
}

// CESWriteRateFor is the step that applies to a cluster of nodes nodes:
// the last one whose Nodes is at most nodes, the first one if none is
// (Cilium operator/pkg/ciliumendpointslice rate_limit.go,
// updateRateLimitWithNodes, v1.17-v1.19). ok is false if the release has
// no steps.
func (r *Release) CESWriteRateFor(nodes int) (step CESRateStep, ok bool) {
	if len(r.CESWriteRate) == 0 {
		return CESRateStep{}, false
	}
	step = r.CESWriteRate[0]
	for _, st := range r.CESWriteRate[1:] {
		if st.Nodes > nodes {
			break
		}
		step = st
	}
	return step, true
}

// SupportsSliceMode tells whether the release's operator has CES slice
// mode m.
func (r *Release) SupportsSliceMode(m string) bool {
	for _, x := range r.CESSliceModes {
		if x == m {
			return true
		}
	}
	return false
}

// releases are the profiles, oldest first. A profile's defaults are
// Cilium's as a user gets them: Helm's where the chart sets the flag,
// the binary's flag default otherwise.
var releases = []*Release{release117(), release118(), release119(), release120()}

// latestVersion is the release "latest" (and an unset cilium.version)
// stands for: the newest profile, now that the components of its presets
// (ces-slim's slim CES controller, mesh's mirrors) run in the harness.
const latestVersion = "1.20"

// Releases lists the known minor releases, oldest first.
func Releases() []string {
	out := make([]string, len(releases))
	for i, r := range releases {
		out[i] = r.Version
	}
	return out
}

// LookupRelease finds a release profile by minor version or "latest".
func LookupRelease(version string) (*Release, error) {
	if version == "" || version == VersionLatest {
		version = latestVersion
	}
	for _, r := range releases {
		if r.Version == version {
			return r, nil
		}
	}
	return nil, fmt.Errorf("unknown Cilium release %q; known: %s and %q", version, strings.Join(Releases(), ", "), VersionLatest)
}

// Release is the profile the scenario's cilium.version names, nil if the
// version is unknown (Validate reports it).
func (s *Scenario) Release() *Release {
	r, err := LookupRelease(s.Cilium.Version)
	if err != nil {
		return nil
	}
	return r
}

// AtLeast tells whether release r is version v ("1.18") or newer.
func (r *Release) AtLeast(v string) bool { return compareVersions(r.Version, v) >= 0 }

// compareVersions orders "major.minor" strings numerically.
func compareVersions(a, b string) int {
	pa, pb := strings.SplitN(a, ".", 2), strings.SplitN(b, ".", 2)
	for i := 0; i < 2; i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

// applyRelease resolves cilium.version and fills every unset agent and
// control-plane knob with the release's default. An unknown version is
// kept for Validate to report.
func (s *Scenario) applyRelease() {
	r, err := LookupRelease(s.Cilium.Version)
	if err != nil {
		// Fill from the latest profile so that Validate reports the
		// version alone, not every knob it left unset.
		r, _ = LookupRelease(VersionLatest)
	} else {
		s.Cilium.Version = r.Version
	}
	fillZero(reflect.ValueOf(&s.Agent).Elem(), reflect.ValueOf(r.Agent))
	fillZero(reflect.ValueOf(&s.ControlPlane).Elem(), reflect.ValueOf(r.ControlPlane))
	// The CES write rate is the Helm step for the cluster's size.
	if st, ok := r.CESWriteRateFor(s.Cluster.Nodes); ok {
		if s.ControlPlane.CES.WriteQPS == 0 {
			s.ControlPlane.CES.WriteQPS = st.QPS
		}
		if s.ControlPlane.CES.WriteBurst == 0 {
			s.ControlPlane.CES.WriteBurst = st.Burst
		}
	}
}

// fillZero sets every zero field of dst (a struct) to src's value,
// recursing into structs and copying what pointers and slices point to,
// so that a scenario never shares memory with a release profile.
func fillZero(dst, src reflect.Value) {
	for i := 0; i < dst.NumField(); i++ {
		d, v := dst.Field(i), src.Field(i)
		if !d.CanSet() {
			continue
		}
		switch {
		case d.Kind() == reflect.Struct && d.Type() != reflect.TypeOf(Duration{}):
			fillZero(d, v)
		case !d.IsZero() || v.IsZero():
		case d.Kind() == reflect.Pointer:
			p := reflect.New(v.Type().Elem())
			p.Elem().Set(v.Elem())
			d.Set(p)
		case d.Kind() == reflect.Slice:
			d.Set(reflect.AppendSlice(reflect.MakeSlice(v.Type(), 0, v.Len()), v))
		default:
			d.Set(v)
		}
	}
}

// Knob is one resolved agent or control-plane setting.
type Knob struct {
	// Path is the field path, "agent.clientQPS".
	Path string `json:"path"`
	// Value is the effective value as YAML would write it.
	Value string `json:"value"`
	// Source says where the value comes from: the release's default with
	// its source, or the scenario.
	Source string `json:"source"`
}

// Knobs lists the effective agent and control-plane knobs of a defaulted
// scenario, each with where its value comes from.
func (s *Scenario) Knobs() []Knob {
	r := s.Release()
	var out []Knob
	walk := func(prefix string, eff, def reflect.Value) {
		walkKnobs(prefix, eff, def, func(path string, e, d reflect.Value) {
			k := Knob{Path: path, Value: knobString(e), Source: "scenario"}
			if r != nil && reflect.DeepEqual(e.Interface(), d.Interface()) {
				src := r.Sources[path]
				if st, ok := r.CESWriteRateFor(s.Cluster.Nodes); ok && (path == "controlPlane.ces.writeQPS" || path == "controlPlane.ces.writeBurst") {
					src += fmt.Sprintf(", the step from %d nodes (cluster.nodes %d)", st.Nodes, s.Cluster.Nodes)
				}
				switch {
				case src == "":
					k.Source = "stampede's default"
				case strings.HasPrefix(src, "stampede"):
					k.Source = src
				default:
					k.Source = fmt.Sprintf("Cilium %s: %s", r.Version, src)
				}
			}
			out = append(out, k)
		})
	}
	var ra AgentKnobs
	var rc ControlPlane
	if r != nil {
		ra, rc = r.Agent, r.ControlPlane
		if st, ok := r.CESWriteRateFor(s.Cluster.Nodes); ok {
			rc.CES.WriteQPS, rc.CES.WriteBurst = st.QPS, st.Burst
		}
	}
	walk("agent", reflect.ValueOf(s.Agent), reflect.ValueOf(ra))
	walk("controlPlane", reflect.ValueOf(s.ControlPlane), reflect.ValueOf(rc))
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func walkKnobs(prefix string, eff, def reflect.Value, f func(path string, e, d reflect.Value)) {
	t := eff.Type()
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		path := prefix + "." + name
		e, d := eff.Field(i), def.Field(i)
		if e.Kind() == reflect.Struct && e.Type() != reflect.TypeOf(Duration{}) {
			walkKnobs(path, e, d, f)
			continue
		}
		f(path, e, d)
	}
}

func knobString(v reflect.Value) string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return "unset"
		}
		v = v.Elem()
	}
	switch x := v.Interface().(type) {
	case Duration:
		return x.String()
	case time.Duration:
		return x.String()
	case []string:
		return "[" + strings.Join(x, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// baseAgent and baseControlPlane are the defaults no release profile has
// changed so far; each release starts from them.
func baseAgent() AgentKnobs {
	return AgentKnobs{
		ClientQPS:                 DefaultClientQPS,
		ClientBurst:               DefaultClientBurst,
		IdentityChangeGracePeriod: D(DefaultIdentityChangeGracePeriod),
		LeaseTTL:                  D(DefaultLeaseTTL),
		AllocationAttempts:        DefaultAllocationAttempts,
		AllocationBackoff:         D(DefaultAllocationBackoff),
		Datapath:                  DefaultDatapath,
		PolicyMapMax:              DefaultPolicyMapMax,
		IdentityMaxJitter:         ptr(D(0)),
		AllocationJitter:          ptr(false),
		KVStoreLockLeaseTTL:       D(DefaultKVStoreLockLeaseTTL),
		PolicyTriggerInterval:     D(DefaultPolicyTriggerInterval),
		EndpointWorkers:           DefaultEndpointWorkers,
		KVStorePeriodicSync:       D(DefaultKVStorePeriodicSync),
		KVStoreQPS:                DefaultKVStoreQPS,
		EndpointSyncInterval:      D(endpointSyncInterval),
	}
}

func ptr[T any](v T) *T { return &v }

// endpointSyncInterval is the RunInterval of the controller that
// RunK8sCiliumEndpointSync starts per endpoint
// (pkg/endpointmanager/endpointsynchronizer.go, 10 s in v1.17 to v1.19).
const endpointSyncInterval = 10 * time.Second

func baseControlPlane() ControlPlane {
	delta := true
	retries := DefaultOperatorIdentityMaxRetries
	return ControlPlane{
		ClientQPS:   DefaultOperatorClientQPS,
		ClientBurst: DefaultOperatorClientBurst,
		CES: CESKnobs{
			MaxEndpointsPerSlice: DefaultCESMaxEndpointsPerSlice,
			BatchInterval:        D(DefaultCESBatchInterval),
			SliceMode:            SliceModeFCFS,
		},
		IdentityGC: IdentityGCKnobs{
			Interval:         D(DefaultIdentityGCInterval),
			HeartbeatTimeout: D(DefaultIdentityHeartbeatTimeout),
			RateInterval:     D(DefaultIdentityGCRateInterval),
			RateLimit:        DefaultIdentityGCRateLimit,
		},
		XDS: XDSKnobs{Delta: &delta, FlushInterval: D(DefaultXDSFlushInterval)},
		OperatorIdentity: OperatorIdentityKnobs{
			RetryBaseDelay: D(DefaultOperatorIdentityRetryBase),
			RetryMaxDelay:  D(DefaultOperatorIdentityRetryMax),
			MaxRetries:     &retries,
		},
		Mesh: MeshKnobs{
			Replicas:          DefaultMeshReplicas,
			StorageMedium:     StorageDisk,
			APIServerFallback: ptr(true),
		},
	}
}

// helmCESRateLimits is the chart's ciliumEndpointSlice.rateLimits since
// cilium/cilium#33946 (v1.17 on): 10 qps / burst 20 below 100 nodes,
// 50 / 100 from 100 nodes. The operator's own flag default
// (--ces-rate-limits) is the first step alone.
func helmCESRateLimits() []CESRateStep {
	return []CESRateStep{{Nodes: 0, QPS: 10, Burst: 20}, {Nodes: 100, QPS: 50, Burst: 100}}
}

// baseSources are the sources of the base defaults.
func baseSources() map[string]string {
	return map[string]string{
		"agent.clientQPS":                              "pkg/k8s/client option defaults, --k8s-client-qps",
		"agent.clientBurst":                            "pkg/k8s/client option defaults, --k8s-client-burst",
		"agent.identityChangeGracePeriod":              "pkg/defaults IdentityChangeGracePeriod",
		"agent.leaseTTL":                               "pkg/defaults KVstoreLeaseTTL",
		"agent.allocationAttempts":                     "stampede: bound on allocation retries",
		"agent.allocationBackoff":                      "stampede: first retry delay",
		"agent.datapath":                               "stampede: bpf when the machine can load BPF maps",
		"agent.policyMapMax":                           "pkg/defaults PolicyMapEntries",
		"agent.identityMaxJitter":                      "absent: --identity-max-jitter came with 1.18 (PR #38031), label changes resolve at once",
		"agent.allocationJitter":                       "absent: the CRD allocator's jitter came with 1.19 (PR #42282)",
		"agent.kvstoreLockLeaseTTL":                    "pkg/defaults LockLeaseTTL, the lease of the kvstore's lock session",
		"agent.policyTriggerInterval":                  "pkg/defaults PolicyTriggerInterval, --policy-trigger-interval (pkg/policy Updater's trigger)",
		"agent.endpointWorkers":                        "stampede: endpoints synchronised at once; Cilium resolves each endpoint's identity in its own controller and bounds endpoint builds by max(NumCPU, 2)",
		"controlPlane.clientQPS":                       "operator/option defaults, --operator-k8s-client-qps",
		"controlPlane.clientBurst":                     "operator/option defaults, --operator-k8s-client-burst",
		"controlPlane.ces.maxEndpointsPerSlice":        "operator/option CESMaxCEPsInCES",
		"controlPlane.ces.writeQPS":                    "Helm ciliumEndpointSlice.rateLimits (operator --ces-rate-limits, stepped by node count in operator/pkg/ciliumendpointslice rate_limit.go updateRateLimitWithNodes; cilium/cilium#33946)",
		"controlPlane.ces.writeBurst":                  "Helm ciliumEndpointSlice.rateLimits (operator --ces-rate-limits, stepped by node count in operator/pkg/ciliumendpointslice rate_limit.go updateRateLimitWithNodes; cilium/cilium#33946)",
		"controlPlane.ces.batchInterval":               "stampede: batching of slice writes",
		"controlPlane.identityGC.interval":             "operator/option IdentityGCInterval",
		"controlPlane.identityGC.heartbeatTimeout":     "operator/option IdentityHeartbeatTimeout",
		"controlPlane.xds.delta":                       "stampede: incremental xDS",
		"controlPlane.xds.flushInterval":               "stampede: batching of API events into xDS changes",
		"controlPlane.ces.sliceMode":                   "operator/pkg/ciliumendpointslice: FCFS only since cilium/cilium#37211 removed identity slicing (--ces-slice-mode deprecated, ignored)",
		"controlPlane.identityGC.rateInterval":         "operator/identitygc Config.RateInterval, --identity-gc-rate-interval",
		"controlPlane.identityGC.rateLimit":            "operator/identitygc Config.RateLimit, --identity-gc-rate-limit",
		"controlPlane.operatorIdentity.retryBaseDelay": "operator/pkg/ciliumidentity controller.go defaultSyncBackOff",
		"controlPlane.operatorIdentity.retryMaxDelay":  "operator/pkg/ciliumidentity controller.go maxSyncBackOff",
		"controlPlane.operatorIdentity.maxRetries":     "operator/pkg/ciliumidentity controller.go maxProcessRetries",
		"agent.kvstorePeriodicSync":                    "pkg/defaults KVstorePeriodicSync, --kvstore-periodic-sync",
		"agent.kvstoreQPS":                             "pkg/defaults KVstoreQPS, --kvstore-opt etcd.qps (etcd.maxInflight defaults to it: pkg/kvstore/etcd.go newClient)",
		"agent.disableEndpointCRD":                     "pkg/option DisableCiliumEndpointCRD, --disable-endpoint-crd (default false)",
		"agent.endpointSyncInterval":                   "pkg/endpointmanager/endpointsynchronizer.go RunK8sCiliumEndpointSync, controller RunInterval",
		"controlPlane.mesh.replicas":                   "stampede: 2, the fewest that spread agents and let one replica fail (CFP-44774 gives no count; Helm clustermesh.apiserver.replicas is 1; CFP-39876 recommends several in production)",
		"controlPlane.mesh.storageMedium":              "Helm clustermesh.apiserver.etcd.storageMedium (Disk; the etcd sidecar's emptyDir)",
		"controlPlane.mesh.apiServerFallback":          "stampede: CFP-44774 bootstrap option 1, agents read from the API server while no replica answers (the CFP recommends it; a maintainer argued against it in design-cfps#88)",
	}
}

func newRelease(version, read string) *Release {
	return &Release{
		Version:            version,
		Read:               read,
		Agent:              baseAgent(),
		ControlPlane:       baseControlPlane(),
		Sources:            baseSources(),
		CESSliceModes:      []string{SliceModeFCFS},
		CESControllerModes: []string{CESControllerDefault},
		CESWriteRate:       helmCESRateLimits(),
	}
}

// release117 is the seed's era: the relabel storm of cilium/cilium#38030
// was reported against it.
func release117() *Release {
	r := newRelease("1.17", "v1.17")
	// Identity slicing is the operator's default until cilium/cilium#37211
	// (v1.18) removed it; FCFS is selectable (operator/pkg/ciliumendpointslice
	// cell.go, Config.CESSlicingMode).
	r.CESSliceModes = []string{SliceModeIdentity, SliceModeFCFS}
	r.ControlPlane.CES.SliceMode = SliceModeIdentity
	r.Sources["controlPlane.ces.sliceMode"] = "operator/pkg/ciliumendpointslice cell.go Config.CESSlicingMode, --ces-slice-mode identity (fcfs selectable)"
	r.CESWriteMax = &CESRateStep{QPS: 50, Burst: 100}
	// Operator-managed identities start in 1.18 (mode operator is refused
	// for 1.17): the queue knobs carry 1.18's values, unused.
	for _, k := range []string{"retryBaseDelay", "retryMaxDelay", "maxRetries"} {
		p := "controlPlane.operatorIdentity." + k
		r.Sources[p] = "stampede: unused before 1.18; 1.18's " + r.Sources[p]
	}
	return r
}

// release118 introduced operator-managed identities.
func release118() *Release {
	r := newRelease("1.18", "v1.18")
	r.CESWriteMax = &CESRateStep{QPS: 50, Burst: 100}
	withIdentityMaxJitter(r)
	return r
}

// withIdentityMaxJitter is PR #38031 (the fix for cilium/cilium#38030),
// first released in 1.18.0: a label change of an existing endpoint, from
// its namespace or its pod, reaches its identity resolution after a random
// delay up to --identity-max-jitter. The chart has no value for it.
func withIdentityMaxJitter(r *Release) {
	r.Agent.IdentityMaxJitter = ptr(D(DefaultIdentityMaxJitter))
	r.Sources["agent.identityMaxJitter"] = "pkg/defaults CiliumIdentityMaxJitter, --identity-max-jitter (PR #38031)"
}

// release119 is the newest release whose sources Stampede's profiles
// were checked against.
func release119() *Release {
	r := newRelease("1.19", "v1.19")
	withIdentityMaxJitter(r)
	// PR #42282 (merged November 2025, after 1.18): the CRD allocator
	// waits a jittered backoff before a label set's first allocation and
	// jitters its retries, to make duplicate CiliumIdentities rarer.
	r.Agent.AllocationJitter = ptr(true)
	r.Sources["agent.allocationJitter"] = "pkg/allocator Allocator.Allocate, jittered backoff of the CRD backend (PR #42282)"
	return r
}

// The operator's CES controllers (Release.CESControllerModes).
const (
	CESControllerDefault = "default"
	CESControllerSlim    = "slim"
)

// SupportsCESController tells whether the release's operator has the CES
// controller mode m.
func (r *Release) SupportsCESController(m string) bool {
	for _, x := range r.CESControllerModes {
		if x == m {
			return true
		}
	}
	return false
}

// release120 adds the slim CES controller with agents that write no
// CiliumEndpoints (presets ces-slim and mesh). Its other defaults are
// 1.19's: they were not read again against the v1.20.0 tag (the code
// index holds untagged versions of the files), see
// docs/design/modes-as-presets.md open question 2.
func release120() *Release {
	r := newRelease("1.20", "v1.20.0")
	withIdentityMaxJitter(r)
	r.Agent.AllocationJitter = ptr(true)
	r.Sources["agent.allocationJitter"] = "pkg/allocator Allocator.Allocate, jittered backoff of the CRD backend (PR #42282)"
	// operator/pkg/ciliumendpointslice endpointslice.go: constants
	// defaultMode and slimMode of the hidden --ces-controller-mode
	// (cilium/cilium#38388, merged after 2025-12-18); agents may pair it
	// with --disable-endpoint-crd since cilium/cilium#45698 (opened
	// 2026-04-30), whose EndpointSynchronizer.RunK8sCiliumEndpointSync is
	// not started with the flag. Both are taken to be in v1.20.0, the
	// first release after both merged; the tag was not read.
	r.CESControllerModes = []string{CESControllerDefault, CESControllerSlim}
	r.Sources["agent.disableEndpointCRD"] = "pkg/option DisableCiliumEndpointCRD, --disable-endpoint-crd (default false); since PR #45698 allowed with CES in slim mode (implied by endpoints ces-slim)"
	return r
}
