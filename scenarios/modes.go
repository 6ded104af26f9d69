package scenarios

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Mode is the name of a mode: a preset's name ("crd", "mesh") or a name
// the scenario gives an explicit combination of axes. It names the mode's
// directory, its processes' --mode flag and its entry in results.
type Mode string

// The presets. DESIGN.md and docs/design/modes-as-presets.md describe what
// an agent does in each.
const (
	ModeCRD      Mode = "crd"
	ModeCES      Mode = "ces"
	ModeKVStore  Mode = "kvstore"
	ModeOperator Mode = "operator"
	ModeXDS      Mode = "xds"
	ModeCESSlim  Mode = "ces-slim"
	ModeMesh     Mode = "mesh"
)

// IdentityAllocation is who allocates security identities and where.
type IdentityAllocation string

// The identity allocations.
const (
	// IdentityAgent: agents create CiliumIdentities (Cilium
	// identity-allocation-mode=crd).
	IdentityAgent IdentityAllocation = "agent"
	// IdentityKVStore: agents allocate identities in etcd
	// (identity-allocation-mode=kvstore).
	IdentityKVStore IdentityAllocation = "kvstore"
	// IdentityOperator: the operator's CiliumIdentity controller creates
	// them (identity-management-mode=operator, from 1.18).
	IdentityOperator IdentityAllocation = "operator"
	// IdentityCentral: Stampede's central xDS control plane allocates
	// them; no Cilium counterpart.
	IdentityCentral IdentityAllocation = "central"
)

// EndpointDistribution is how endpoints reach the other agents.
type EndpointDistribution string

// The endpoint distributions.
const (
	// EndpointsCEP: agents write CiliumEndpoints, agents watch them.
	EndpointsCEP EndpointDistribution = "cep"
	// EndpointsCES: agents write CiliumEndpoints, the operator batches
	// them into CiliumEndpointSlices, agents watch the slices.
	EndpointsCES EndpointDistribution = "ces"
	// EndpointsCESSlim: the operator builds slices from Pods
	// (ces-controller-mode=slim, cilium/cilium#38388) and agents write no
	// CiliumEndpoints (--disable-endpoint-crd, cilium/cilium#45698).
	EndpointsCESSlim EndpointDistribution = "ces-slim"
	// EndpointsKVStore: agents write ipcache entries to etcd.
	EndpointsKVStore EndpointDistribution = "kvstore"
	// EndpointsXDS: the central xDS control plane distributes them.
	EndpointsXDS EndpointDistribution = "xds"
)

// ReadPath is where agents read Cilium's resources (identities,
// endpoints, nodes) from.
type ReadPath string

// The read paths.
const (
	ReadAPIServer ReadPath = "apiserver"
	ReadKVStore   ReadPath = "kvstore"
	// ReadMesh: a ClusterMesh etcd mirror (clustermesh-apiserver
	// replicas), as CFP-44774 proposes.
	ReadMesh ReadPath = "mesh"
	ReadXDS  ReadPath = "xds"
)

var (
	identityAllocations   = []IdentityAllocation{IdentityAgent, IdentityKVStore, IdentityOperator, IdentityCentral}
	endpointDistributions = []EndpointDistribution{EndpointsCEP, EndpointsCES, EndpointsCESSlim, EndpointsKVStore, EndpointsXDS}
	readPaths             = []ReadPath{ReadAPIServer, ReadKVStore, ReadMesh, ReadXDS}
)

// Axes place a mode on the three axes.
type Axes struct {
	Identity  IdentityAllocation   `json:"identity"`
	Endpoints EndpointDistribution `json:"endpoints"`
	ReadPath  ReadPath             `json:"readPath"`
}

func (a Axes) String() string {
	return string(a.Identity) + "/" + string(a.Endpoints) + "/" + string(a.ReadPath)
}

func (a Axes) isZero() bool { return a == Axes{} }

// ModeSpec is one mode of a scenario: a name and its axes. In a scenario
// file it is a preset's name or an object {name, identity, endpoints,
// readPath}; it is always written as the object.
type ModeSpec struct {
	Name Mode `json:"name"`
	Axes
}

func (m ModeSpec) String() string { return fmt.Sprintf("%s (%s)", m.Name, m.Axes) }

// UnmarshalJSON accepts a preset's name or the object form, decoded
// strictly. It only decodes: an unknown preset, a preset with other axes
// or a missing axis is kept for Default and Validate to settle, so that
// every problem of a file is reported at once.
func (m *ModeSpec) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var name string
		if err := json.Unmarshal(b, &name); err != nil {
			return err
		}
		*m = ModeSpec{Name: Mode(name)}
		return nil
	}
	type plain struct {
		Name      Mode                 `json:"name"`
		Identity  IdentityAllocation   `json:"identity"`
		Endpoints EndpointDistribution `json:"endpoints"`
		ReadPath  ReadPath             `json:"readPath"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("mode: %w", err)
	}
	*m = ModeSpec{Name: p.Name, Axes: Axes{Identity: p.Identity, Endpoints: p.Endpoints, ReadPath: p.ReadPath}}
	return nil
}

// preset is one preset and the first release that has it.
type preset struct {
	spec  ModeSpec
	since string
}

// presets in run order. The first five are the modes Stampede has had
// since its start, with unchanged meaning.
var presets = []preset{
	{ModeSpec{ModeCRD, Axes{IdentityAgent, EndpointsCEP, ReadAPIServer}}, ""},
	{ModeSpec{ModeCES, Axes{IdentityAgent, EndpointsCES, ReadAPIServer}}, ""},
	{ModeSpec{ModeKVStore, Axes{IdentityKVStore, EndpointsKVStore, ReadKVStore}}, ""},
	{ModeSpec{ModeOperator, Axes{IdentityOperator, EndpointsCEP, ReadAPIServer}}, operatorIdentitySince},
	{ModeSpec{ModeXDS, Axes{IdentityCentral, EndpointsXDS, ReadXDS}}, ""},
	{ModeSpec{ModeCESSlim, Axes{IdentityOperator, EndpointsCESSlim, ReadAPIServer}}, cesSlimSince},
	{ModeSpec{ModeMesh, Axes{IdentityOperator, EndpointsCESSlim, ReadMesh}}, meshSince},
}

// operatorIdentitySince is the first release with operator-managed
// identities (the operator's CiliumIdentity controller,
// --identity-management-mode). cesSlimSince is the first release whose
// agents may run without CiliumEndpoints beside CiliumEndpointSlices
// (cilium/cilium#45698, relaxing --disable-endpoint-crd; the slim
// controller, #38388, is older). meshSince is the release CFP-44774
// targets ("Cilium Release: 1.20").
const (
	operatorIdentitySince = "1.18"
	cesSlimSince          = "1.20"
	meshSince             = "1.20"
)

// Presets lists every preset in run order.
func Presets() []ModeSpec {
	out := make([]ModeSpec, len(presets))
	for i, p := range presets {
		out[i] = p.spec
	}
	return out
}

// PresetNames lists the presets' names in run order.
func PresetNames() []Mode {
	out := make([]Mode, len(presets))
	for i, p := range presets {
		out[i] = p.spec.Name
	}
	return out
}

// Preset returns the preset named name.
func Preset(name Mode) (ModeSpec, bool) {
	for _, p := range presets {
		if p.spec.Name == name {
			return p.spec, true
		}
	}
	return ModeSpec{}, false
}

// IsPreset reports whether m names a preset.
func (m Mode) IsPreset() bool {
	_, ok := Preset(m)
	return ok
}

// PresetOrder is the index of m among the presets, len(presets) for any
// other name, so that results list presets first, in run order.
func PresetOrder(m Mode) int {
	for i, p := range presets {
		if p.spec.Name == m {
			return i
		}
	}
	return len(presets)
}

// presetsOf lists the presets release r has, in run order.
func presetsOf(r *Release) []ModeSpec {
	var out []ModeSpec
	for _, p := range presets {
		if p.since == "" || r == nil || r.AtLeast(p.since) {
			out = append(out, p.spec)
		}
	}
	return out
}

func presetList() string {
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = string(p.spec.Name)
	}
	return strings.Join(names, ", ")
}

// modeName keeps a mode's name one path element (out/<run>/<mode>).
var modeName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// ModeNames lists the names of the scenario's modes in order.
func (s *Scenario) ModeNames() []Mode {
	out := make([]Mode, len(s.Modes))
	for i, m := range s.Modes {
		out[i] = m.Name
	}
	return out
}

// HasMode reports whether the scenario lists a mode named name.
func (s *Scenario) HasMode(name Mode) bool {
	_, ok := s.ModeSpec(name)
	return ok
}

// ModeSpec returns the scenario's mode named name.
func (s *Scenario) ModeSpec(name Mode) (ModeSpec, bool) {
	for _, m := range s.Modes {
		if m.Name == name {
			return m, true
		}
	}
	return ModeSpec{}, false
}

// defaultModes fills the axes of presets given by name and, when modes is
// unset, lists every preset the release has.
func (s *Scenario) defaultModes() {
	if len(s.Modes) == 0 {
		s.Modes = presetsOf(s.Release())
		return
	}
	for i, m := range s.Modes {
		if p, ok := Preset(m.Name); ok && m.Axes.isZero() {
			s.Modes[i] = p
		}
	}
}

// validateModes checks names, axes and the combinations of axes. Each
// error names the axis that cannot be had and says why.
func (s *Scenario) validateModes(l *errs) {
	if len(s.Modes) == 0 {
		l.add("modes", "must list at least one mode")
	}
	r := s.Release()
	seen := map[Mode]bool{}
	for i, m := range s.Modes {
		p := fmt.Sprintf("modes[%d]", i)
		if seen[m.Name] {
			l.add(p, "duplicate mode %q", m.Name)
		}
		seen[m.Name] = true
		if !modeName.MatchString(string(m.Name)) {
			l.add(p+".name", "invalid mode name %q: it names a directory, so it must start with a lower-case letter and hold at most 32 lower-case letters, digits and '-'", m.Name)
			continue
		}
		preset, isPreset := Preset(m.Name)
		switch {
		case isPreset && m.Axes != preset.Axes:
			l.add(p+".name", "%q is a preset (%s); give this combination another name", m.Name, preset.Axes)
			continue
		case !isPreset && m.Axes.isZero():
			l.add(p, "unknown preset %q (presets: %s); an explicit mode gives identity, endpoints and readPath", m.Name, presetList())
			continue
		}
		if !checkAxisValues(l, p, m.Axes) {
			continue
		}
		validateAxes(l, p, m.Axes)
		s.validateModeRelease(l, p, m, r)
		if m.Endpoints == EndpointsCESSlim && s.ControlPlane.CES.SliceMode != SliceModeFCFS {
			l.add("controlPlane.ces.sliceMode", "mode %s builds slim CiliumEndpointSlices, which are packed first come first served only (operator/pkg/ciliumendpointslice newSlimManager); set %s", m.Name, SliceModeFCFS)
		}
	}
}

// checkAxisValues reports missing and unknown axis values; it returns
// false if any was.
func checkAxisValues(l *errs, p string, a Axes) bool {
	ok := true
	check := func(field, val string, known []string) {
		switch {
		case val == "":
			l.add(p+"."+field, "required (one of %s)", strings.Join(known, ", "))
			ok = false
		case !slices.Contains(known, val):
			l.add(p+"."+field, "unknown value %q (want one of %s)", val, strings.Join(known, ", "))
			ok = false
		}
	}
	check("identity", string(a.Identity), toStrings(identityAllocations))
	check("endpoints", string(a.Endpoints), toStrings(endpointDistributions))
	check("readPath", string(a.ReadPath), toStrings(readPaths))
	return ok
}

func toStrings[T ~string](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}

// validateAxes rejects the combinations Cilium (or, for xds, Stampede's
// proposal) does not have. docs/design/modes-as-presets.md section 1.3
// gives the sources.
func validateAxes(l *errs, p string, a Axes) {
	// The xDS control plane is Stampede's proposal: its agents have no
	// API client and learn identities and endpoints only from it.
	xds := []bool{a.Identity == IdentityCentral, a.Endpoints == EndpointsXDS, a.ReadPath == ReadXDS}
	if slices.Contains(xds, true) && slices.Contains(xds, false) {
		for j, field := range []string{"identity", "endpoints", "readPath"} {
			if !xds[j] {
				l.add(p+"."+field, "central identities, xds endpoints and the xds read path come together or not at all: xds agents have no API client and learn identities and endpoints only from the xDS control plane")
			}
		}
		return
	}
	if a.ReadPath == ReadXDS {
		return
	}
	// Kvstore identities are Cilium's identity-allocation-mode=kvstore,
	// whose allocator reads identities from the same etcd; they are not
	// objects any other read path could carry.
	if (a.Identity == IdentityKVStore) != (a.ReadPath == ReadKVStore) {
		if a.Identity == IdentityKVStore {
			l.add(p+".readPath", "kvstore identities are read from the kvstore (identity-allocation-mode=kvstore: the allocator watches the etcd it allocates in); they are not objects the %s read path could carry", a.ReadPath)
		} else {
			l.add(p+".identity", "the kvstore read path goes with kvstore identities (identity-allocation-mode=kvstore); %s identities are CiliumIdentity objects", a.Identity)
		}
	}
	// Since 1.17 agents with a kvstore start no CiliumEndpoint, slice or
	// CiliumNode watcher and read the ipcache from etcd
	// (pkg/k8s/watchers enableK8sWatchers, cilium/cilium#35741).
	if (a.Endpoints == EndpointsKVStore) != (a.ReadPath == ReadKVStore) {
		if a.Endpoints == EndpointsKVStore {
			l.add(p+".endpoints", "kvstore endpoints are ipcache entries in etcd, read only on the kvstore read path")
		} else {
			l.add(p+".endpoints", "agents with a kvstore watch no CiliumEndpoints or slices (since 1.17, cilium/cilium#35741): their endpoints are ipcache entries in etcd; use endpoints kvstore")
		}
	}
	if a.ReadPath == ReadMesh {
		// Agent-side CRD allocation keeps its own CiliumIdentity watch on
		// the API server (pkg/k8s/identitybackend crdBackend.ListAndWatch),
		// which the mirror exists to remove; CFP-44774 pairs the mirror
		// with operator-managed identities.
		if a.Identity != IdentityOperator && a.Identity != IdentityKVStore {
			l.add(p+".identity", "the mesh read path needs operator identities: agents that allocate CiliumIdentities watch them on the API server themselves (pkg/k8s/identitybackend crdBackend.ListAndWatch), and CFP-44774 pairs the mirror with operator-managed identities")
		}
		// clustermesh-apiserver mirrors CiliumEndpoints or, with CES
		// enabled, CiliumEndpointSlices into the ipcache prefix
		// (clustermesh-apiserver/clustermesh/converters.go).
		switch a.Endpoints {
		case EndpointsCEP, EndpointsCES, EndpointsCESSlim:
		case EndpointsKVStore:
			// Reported above: kvstore endpoints need the kvstore read path.
		default:
			l.add(p+".endpoints", "the mesh mirror carries CiliumEndpoints or CiliumEndpointSlices into its ipcache prefix (clustermesh-apiserver converters.go); want cep, ces or ces-slim")
		}
	}
	// The slim controller takes identities from CiliumIdentity objects
	// by their labels (operator/pkg/ciliumendpointslice, getPodCIDKey and
	// the identity cache of the slim reconciler).
	if a.Endpoints == EndpointsCESSlim && a.Identity != IdentityAgent && a.Identity != IdentityOperator {
		l.add(p+".endpoints", "the slim CiliumEndpointSlice controller finds identities among CiliumIdentity objects, which %s identities are not; want agent or operator identities", a.Identity)
	}
}

// validateModeRelease checks that the release has what the mode needs.
func (s *Scenario) validateModeRelease(l *errs, p string, m ModeSpec, r *Release) {
	if r == nil {
		return
	}
	if m.Identity == IdentityOperator && !r.AtLeast(operatorIdentitySince) {
		l.add(p+".identity", "mode %s needs Cilium >= %s (operator-managed identities); cilium.version is %s", m.Name, operatorIdentitySince, r.Version)
	}
	if m.Endpoints == EndpointsCESSlim && !r.SupportsCESController(CESControllerSlim) {
		l.add(p+".endpoints", "mode %s needs Cilium >= %s: agents without CiliumEndpoints beside slim CiliumEndpointSlices came with cilium/cilium#45698; cilium.version is %s", m.Name, cesSlimSince, r.Version)
	}
	if m.ReadPath == ReadMesh && !r.AtLeast(meshSince) {
		l.add(p+".readPath", "mode %s needs Cilium >= %s, the release CFP-44774 targets; cilium.version is %s", m.Name, meshSince, r.Version)
	}
	// Without the CRD, Cilium's agents write no CiliumEndpoints and, before
	// cilium/cilium#45698, watch neither endpoints nor slices
	// (pkg/k8s/synced/crd.go agentCRDResourceNames); since v1.17 they no
	// longer fall back to watching every pod (cilium/cilium#35741). With
	// cep or ces endpoints nobody would build what agents read. Slim
	// slices are built from Pods, and kvstore and xds agents learn
	// endpoints elsewhere.
	if s.Agent.DisableEndpointCRD && (m.Endpoints == EndpointsCEP || m.Endpoints == EndpointsCES) {
		l.add(p, "mode %s needs CiliumEndpoints (endpoints %s), which agent.disableEndpointCRD turns off: only ces-slim, kvstore and xds endpoints reach agents without them", m.Name, m.Endpoints)
	}
}

// AgentsHaveAPIClient tells whether agents talk to the API server at all
// (every read path but xds).
func (a Axes) AgentsHaveAPIClient() bool { return a.ReadPath != ReadXDS }

// AgentsWatchCiliumCRDs tells whether agents watch CiliumIdentities,
// CiliumNodes and CiliumEndpoints or slices on the API server: on the
// apiserver read path only (kvstore agents read etcd since 1.17,
// cilium/cilium#35741; mesh agents read the mirror, CFP-44774).
func (a Axes) AgentsWatchCiliumCRDs() bool { return a.ReadPath == ReadAPIServer }

// AgentsAllocateIdentities tells whether agents allocate identities
// themselves (CRD or kvstore); operator and central identities are only
// read.
func (a Axes) AgentsAllocateIdentities() bool {
	return a.Identity == IdentityAgent || a.Identity == IdentityKVStore
}

// AgentsCreateCiliumIdentities tells whether agents create CiliumIdentity
// objects (identity-allocation-mode=crd). Kvstore agents may create them
// too in Cilium's double-write migration; Stampede's do not, but keep
// the permission as their ClusterRole does.
func (a Axes) AgentsCreateCiliumIdentities() bool { return a.Identity == IdentityAgent }

// OperatorManagesIdentities tells whether the operator's CiliumIdentity
// controller creates identities (identity-management-mode=operator).
func (a Axes) OperatorManagesIdentities() bool { return a.Identity == IdentityOperator }

// AgentsWriteCEPs tells whether agents write CiliumEndpoints: with cep
// and ces endpoints always, with kvstore endpoints unless
// --disable-endpoint-crd is set, with slim slices never
// (pkg/endpointmanager EndpointSynchronizer.RunK8sCiliumEndpointSync is
// not run with the flag, cilium/cilium#45698), and never without an API
// client.
func (a Axes) AgentsWriteCEPs(disableEndpointCRD bool) bool {
	switch a.Endpoints {
	case EndpointsCEP, EndpointsCES:
		return true
	case EndpointsKVStore:
		return !disableEndpointCRD
	}
	return false
}

// HasKVStore tells whether agents use a kvstore (identities and ipcache
// in etcd).
func (a Axes) HasKVStore() bool { return a.ReadPath == ReadKVStore }

// HasMesh tells whether agents read from ClusterMesh etcd mirrors.
func (a Axes) HasMesh() bool { return a.ReadPath == ReadMesh }

// HasXDS tells whether the central xDS control plane serves the agents.
func (a Axes) HasXDS() bool { return a.ReadPath == ReadXDS }

// HasCES tells whether the operator builds CiliumEndpointSlices.
func (a Axes) HasCES() bool { return a.Endpoints == EndpointsCES || a.Endpoints == EndpointsCESSlim }

// CESSource is what the operator builds CiliumEndpointSlices from:
// "ceps" (the default controller), "pods" (the slim controller,
// operator/pkg/ciliumendpointslice SlimController), "" without slices.
func (a Axes) CESSource() string {
	switch a.Endpoints {
	case EndpointsCES:
		return "ceps"
	case EndpointsCESSlim:
		return "pods"
	}
	return ""
}

// AgentsWatchEndpointSlices tells whether agents watch
// CiliumEndpointSlices (rather than CiliumEndpoints) on the API server.
func (a Axes) AgentsWatchEndpointSlices() bool {
	return a.AgentsWatchCiliumCRDs() && a.HasCES()
}

// RunsIdentityGC tells whether the operator's heartbeat GC of
// CiliumIdentities runs (operator/identitygc, CRD allocation mode): for
// agent- and operator-managed identities alike, as Stampede has run it in
// mode operator (Cilium's CID controller deletes unused identities
// itself, which Stampede does not model yet: design open question 8).
func (a Axes) RunsIdentityGC() bool {
	return a.Identity == IdentityAgent || a.Identity == IdentityOperator
}

// ValidName reports whether m may name a mode: a lower-case letter, then
// at most 31 lower-case letters, digits and '-'.
func (m Mode) ValidName() bool { return modeName.MatchString(string(m)) }

// PresetModes returns the presets named, in the order given; an unknown
// name is an error.
func PresetModes(names ...Mode) ([]ModeSpec, error) {
	out := make([]ModeSpec, len(names))
	for i, n := range names {
		p, ok := Preset(n)
		if !ok {
			return nil, fmt.Errorf("unknown preset %q (presets: %s)", n, presetList())
		}
		out[i] = p
	}
	return out, nil
}

// SelectModes keeps only the named modes, in the order given: a name the
// scenario lists is kept with its axes, a preset it does not list is
// added. The result is validated again (a preset may need a newer
// release); an unknown name is an error.
func (s *Scenario) SelectModes(names []Mode) error {
	var out []ModeSpec
	for i, n := range names {
		m, ok := s.ModeSpec(n)
		if !ok {
			if m, ok = Preset(n); !ok {
				return fmt.Errorf("modes[%d]: scenario %s has no mode %q and it is no preset (its modes: %v; presets: %s)", i, s.Name, n, s.ModeNames(), presetList())
			}
		}
		out = append(out, m)
	}
	kept := s.Modes
	s.Modes = out
	if err := s.Validate(); err != nil {
		s.Modes = kept
		return err
	}
	return nil
}
