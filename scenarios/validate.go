package scenarios

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/stampede-sim/stampede/internal/capacity"
)

// MaxPods bounds the pods of a scenario.
const MaxPods = 2_000_000

// FieldError is one problem in a scenario, located by its field path
// (for example "steps[3].relabel.namespaces[0]").
type FieldError struct {
	Path string
	Msg  string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Msg }

// ValidationError holds every problem Validate found.
type ValidationError struct {
	// Source names the file or built-in the scenario came from, if known.
	Source string
	Errors []FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		fmt.Fprintf(&b, "%s: ", e.Source)
	}
	fmt.Fprintf(&b, "%d invalid field(s):", len(e.Errors))
	for _, fe := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(fe.Error())
	}
	return b.String()
}

type errs []FieldError

func (l *errs) add(path, format string, args ...any) {
	*l = append(*l, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	// dns1123Label is Kubernetes' rule for namespace and object names.
	dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// labelName is the name part of a Kubernetes label key.
	labelName = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	// labelValue is a Kubernetes label value (may be empty).
	labelValue = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
	// scenarioName keeps a scenario's name a single path element
	// (out/<name>-<time>); "@" is how a capacity sweep names its sizes.
	scenarioName = regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9_.@]{0,99}$`)
)

// Validate checks a defaulted scenario and returns a *ValidationError that
// lists every problem, or nil.
func (s *Scenario) Validate() error {
	var l errs
	if s.Name == "" {
		l.add("name", "must be set")
	} else if !scenarioName.MatchString(s.Name) {
		l.add("name", "invalid name %q: it names the output directory, so it must start with a letter or digit and hold at most 100 letters, digits, '.', '_', '-' and '@'", s.Name)
	}
	s.validateCluster(&l)
	s.validateCilium(&l)
	nsSet := map[string]bool{}
	for _, ns := range s.Cluster.Namespaces {
		nsSet[ns.Name] = true
	}
	for i, p := range s.Policies {
		validatePolicy(&l, fmt.Sprintf("policies[%d]", i), p, nsSet)
	}
	seenPolicy := map[string]bool{}
	for i, p := range s.Policies {
		if seenPolicy[p.Name] {
			l.add(fmt.Sprintf("policies[%d].name", i), "duplicate policy name %q", p.Name)
		}
		seenPolicy[p.Name] = true
	}
	s.validateAgent(&l)
	s.validateControlPlane(&l)
	s.validateModes(&l)
	s.validateAPI(&l)
	s.validateSteps(&l, nsSet)
	if s.Measure.ProbeRate <= 0 || s.Measure.ProbeRate > 1000 {
		l.add("measure.probeRate", "must be in (0, 1000] requests per second, got %g", s.Measure.ProbeRate)
	}
	if r := s.Measure.MeshProbeRate; r <= 0 || r > 100 {
		l.add("measure.meshProbeRate", "must be in (0, 100] probes per second, got %g (each probe is two identity events for every agent)", r)
	}
	if s.Measure.SampleInterval.Duration < 100e6 {
		l.add("measure.sampleInterval", "must be >= 100ms, got %s", s.Measure.SampleInterval)
	}
	positive(&l, "slo.mutatingP99", s.SLO.MutatingP99)
	positive(&l, "slo.readP99", s.SLO.ReadP99)
	positive(&l, "slo.listP99", s.SLO.ListP99)
	if len(l) == 0 {
		return nil
	}
	return &ValidationError{Errors: l}
}

func positive(l *errs, path string, d Duration) {
	if d.Duration <= 0 {
		l.add(path, "must be > 0, got %s", d)
	}
}

func (s *Scenario) validateCluster(l *errs) {
	c := s.Cluster
	if c.Nodes < 1 {
		l.add("cluster.nodes", "must be >= 1, got %d", c.Nodes)
	} else if c.Nodes > 65536 {
		l.add("cluster.nodes", "must be <= 65536, got %d", c.Nodes)
	}
	if !dns1123Label.MatchString(c.Name) {
		l.add("cluster.name", "must be a DNS-1123 label, got %q", c.Name)
	}
	prefix, err := netip.ParsePrefix(c.PodCIDR)
	switch {
	case err != nil:
		l.add("cluster.podCIDR", "must be an IPv4 CIDR such as 10.0.0.0/8: %v", err)
	case !prefix.Addr().Is4():
		l.add("cluster.podCIDR", "must be IPv4, got %q", c.PodCIDR)
	case prefix.Bits() > 24:
		l.add("cluster.podCIDR", "must be /24 or larger (each node gets a /24), got %q", c.PodCIDR)
	case c.Nodes > 0 && c.Nodes > 1<<(24-prefix.Bits()):
		l.add("cluster.podCIDR", "%q holds %d node /24s, fewer than cluster.nodes (%d)", c.PodCIDR, 1<<(24-prefix.Bits()), c.Nodes)
	}
	if len(c.Namespaces) == 0 {
		l.add("cluster.namespaces", "must list at least one namespace")
	}
	seen := map[string]bool{}
	for i, ns := range c.Namespaces {
		p := fmt.Sprintf("cluster.namespaces[%d]", i)
		if !dns1123Label.MatchString(ns.Name) || len(ns.Name) > 63 {
			l.add(p+".name", "must be a DNS-1123 label of at most 63 characters, got %q", ns.Name)
		}
		if seen[ns.Name] {
			l.add(p+".name", "duplicate namespace %q", ns.Name)
		}
		seen[ns.Name] = true
		validateLabels(l, p+".labels", ns.Labels)
	}
	w := c.Workloads
	if w.DeploymentsPerNamespace < 1 || w.DeploymentsPerNamespace > 10000 {
		l.add("cluster.workloads.deploymentsPerNamespace", "must be in [1, 10000], got %d", w.DeploymentsPerNamespace)
	}
	if w.Replicas < 0 || w.Replicas > 10000 {
		l.add("cluster.workloads.replicas", "must be in [0, 10000], got %d", w.Replicas)
	}
	if w.ServiceAccounts < 1 || w.ServiceAccounts > 1000 {
		l.add("cluster.workloads.serviceAccounts", "must be in [1, 1000], got %d", w.ServiceAccounts)
	}
	if len(c.Namespaces) > 10000 {
		l.add("cluster.namespaces", "must list at most 10000 namespaces, got %d", len(c.Namespaces))
	}
	validateLabels(l, "cluster.workloads.podLabels", w.PodLabels)
	for _, k := range []string{"app", "pod-template-hash"} {
		if _, ok := w.PodLabels[k]; ok {
			l.add("cluster.workloads.podLabels["+k+"]", "is set by the generator and may not be given")
		}
	}
	switch c.Placement.Strategy {
	case PlacementSpread, PlacementRandom:
	default:
		l.add("cluster.placement.strategy", "must be %q or %q, got %q", PlacementSpread, PlacementRandom, c.Placement.Strategy)
	}
	if c.Placement.MaxPodsPerNode < 1 || c.Placement.MaxPodsPerNode > 254 {
		l.add("cluster.placement.maxPodsPerNode", "must be in [1, 254] (a node's /24), got %d", c.Placement.MaxPodsPerNode)
	}
	// int64: the product of three user-given numbers must not overflow.
	pods := int64(len(c.Namespaces)) * int64(w.DeploymentsPerNamespace) * int64(w.Replicas)
	if pods > MaxPods {
		l.add("cluster", "%d pods is more than the %d Stampede simulates", pods, MaxPods)
	} else if c.Nodes > 0 && c.Placement.MaxPodsPerNode > 0 && pods > int64(c.Nodes)*int64(c.Placement.MaxPodsPerNode) {
		l.add("cluster", "%d pods do not fit on %d nodes of at most %d pods", pods, c.Nodes, c.Placement.MaxPodsPerNode)
	}
}

func validateLabels(l *errs, path string, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		if !validLabelKey(k) {
			l.add(path+"["+k+"]", "invalid label key")
		}
		if v := labels[k]; len(v) > 63 || !labelValue.MatchString(v) {
			l.add(path+"["+k+"]", "invalid label value %q", v)
		}
	}
}

func validLabelKey(k string) bool {
	name := k
	if i := strings.LastIndexByte(k, '/'); i >= 0 {
		prefix := k[:i]
		name = k[i+1:]
		if prefix == "" || len(prefix) > 253 {
			return false
		}
		for _, part := range strings.Split(prefix, ".") {
			if !dns1123Label.MatchString(part) {
				return false
			}
		}
	}
	return len(name) <= 63 && labelName.MatchString(name)
}

func validatePolicy(l *errs, p string, pol Policy, ns map[string]bool) {
	if !dns1123Label.MatchString(pol.Name) {
		l.add(p+".name", "must be a DNS-1123 label, got %q", pol.Name)
	}
	for j, n := range pol.Namespaces {
		if !ns[n] {
			l.add(fmt.Sprintf("%s.namespaces[%d]", p, j), "no namespace %q", n)
		}
	}
	validateLabels(l, p+".endpointSelector", pol.EndpointSelector)
	if len(pol.Ingress) == 0 {
		l.add(p+".ingress", "must have at least one rule")
	}
	for j, r := range pol.Ingress {
		rp := fmt.Sprintf("%s.ingress[%d]", p, j)
		validateLabels(l, rp+".fromNamespaceLabels", r.FromNamespaceLabels)
		validateLabels(l, rp+".fromPodLabels", r.FromPodLabels)
		if len(r.FromNamespaceLabels)+len(r.FromPodLabels) == 0 {
			l.add(rp, "must set fromNamespaceLabels or fromPodLabels")
		}
		if len(r.Ports) == 0 {
			l.add(rp+".ports", "must list at least one port")
		}
		for k, pp := range r.Ports {
			pp2 := fmt.Sprintf("%s.ports[%d]", rp, k)
			if pp.Port < 1 || pp.Port > 65535 {
				l.add(pp2+".port", "must be in [1, 65535], got %d", pp.Port)
			}
			if pp.Protocol != "TCP" && pp.Protocol != "UDP" {
				l.add(pp2+".protocol", "must be TCP or UDP, got %q", pp.Protocol)
			}
		}
	}
}

func (s *Scenario) validateAgent(l *errs) {
	s.validateAgentK8s(l)
	a := s.Agent
	if a.ClientQPS <= 0 {
		l.add("agent.clientQPS", "must be > 0, got %g", a.ClientQPS)
	}
	if a.ClientBurst < 1 {
		l.add("agent.clientBurst", "must be >= 1, got %d", a.ClientBurst)
	}
	if a.IdentityChangeGracePeriod.Duration < 0 {
		l.add("agent.identityChangeGracePeriod", "must be >= 0, got %s", a.IdentityChangeGracePeriod)
	}
	if a.LeaseTTL.Duration < 5e9 {
		l.add("agent.leaseTTL", "must be >= 5s (etcd's minimum lease), got %s", a.LeaseTTL)
	}
	if a.AllocationAttempts < 1 {
		l.add("agent.allocationAttempts", "must be >= 1, got %d", a.AllocationAttempts)
	}
	positive(l, "agent.allocationBackoff", a.AllocationBackoff)
	if a.PolicyMapMax < 1 || a.PolicyMapMax > 1<<24 {
		l.add("agent.policyMapMax", "must be in [1, 16777216], got %d", a.PolicyMapMax)
	}
	switch a.Datapath {
	case "auto", "bpf", "mem":
	default:
		l.add("agent.datapath", "must be auto, bpf or mem, got %q", a.Datapath)
	}
	for i, f := range a.LabelFilter {
		if err := checkLabelFilterEntry(f); err != nil {
			l.add(fmt.Sprintf("agent.labelFilter[%d]", i), "%v", err)
		}
	}
	s.validateIdentityKnobs(l)
}

// checkLabelFilterEntry checks one entry in Cilium's --labels syntax: an
// optional "!" (exclude), an optional "source:" prefix, and a regular
// expression for the key.
func checkLabelFilterEntry(f string) error {
	expr := strings.TrimPrefix(f, "!")
	if i := strings.IndexByte(expr, ':'); i >= 0 {
		expr = expr[i+1:]
	}
	if expr == "" {
		return fmt.Errorf("empty label pattern %q", f)
	}
	if _, err := regexp.Compile(expr); err != nil {
		return fmt.Errorf("label pattern %q: %w", f, err)
	}
	return nil
}

func (s *Scenario) validateControlPlane(l *errs) {
	cp := s.ControlPlane
	if cp.ClientQPS <= 0 {
		l.add("controlPlane.clientQPS", "must be > 0, got %g", cp.ClientQPS)
	}
	if cp.ClientBurst < 1 {
		l.add("controlPlane.clientBurst", "must be >= 1, got %d", cp.ClientBurst)
	}
	if n := cp.CES.MaxEndpointsPerSlice; n < 1 || n > 5000 {
		l.add("controlPlane.ces.maxEndpointsPerSlice", "must be in [1, 5000], got %d", n)
	}
	if cp.CES.WriteQPS <= 0 {
		l.add("controlPlane.ces.writeQPS", "must be > 0, got %g", cp.CES.WriteQPS)
	}
	if cp.CES.WriteBurst < 1 {
		l.add("controlPlane.ces.writeBurst", "must be >= 1, got %d", cp.CES.WriteBurst)
	}
	positive(l, "controlPlane.ces.batchInterval", cp.CES.BatchInterval)
	positive(l, "controlPlane.identityGC.interval", cp.IdentityGC.Interval)
	positive(l, "controlPlane.identityGC.heartbeatTimeout", cp.IdentityGC.HeartbeatTimeout)
	s.validateControlPlaneKnobs(l)
}

func (s *Scenario) validateCilium(l *errs) {
	if _, err := LookupRelease(s.Cilium.Version); err != nil {
		l.add("cilium.version", "%v", err)
	}
}

func (s *Scenario) validateAPI(l *errs) {
	switch s.API.Backend {
	case BackendFake, BackendLocal, BackendKind:
		if s.API.Kubeconfig != "" {
			l.add("api.kubeconfig", "is only used with backend kubeconfig")
		}
	case BackendKubeconfig:
		if s.API.Kubeconfig == "" {
			l.add("api.kubeconfig", "must name a kubeconfig file with backend kubeconfig")
		}
	default:
		l.add("api.backend", "must be fake, local, kind or kubeconfig, got %q", s.API.Backend)
	}
	if k := s.API.Kind; k != nil {
		if s.API.Backend != BackendKind {
			l.add("api.kind", "is only used with backend kind")
		}
		if k.Nodes < 0 {
			l.add("api.kind.nodes", "must be >= 0, got %d", k.Nodes)
		}
	}
	s.validateCapacity(l)
}

// validateCapacity checks api.capacity and resolves its profile, so that a
// missing or stale calibration is found when the scenario is loaded, not
// when the fake API server starts.
func (s *Scenario) validateCapacity(l *errs) {
	c := s.API.Capacity
	if c == nil {
		return
	}
	if s.API.Backend != BackendFake {
		l.add("api.capacity", "is only used with backend fake (a real API server has its own), got backend %s", s.API.Backend)
	}
	if math.IsNaN(c.Cores) || math.IsInf(c.Cores, 0) || c.Cores <= 0 {
		l.add("api.capacity.cores", "must be a positive finite number of cores, got %v", c.Cores)
	}
	if _, err := capacity.Resolve(c.Profile); err != nil {
		l.add("api.capacity.profile", "%v", err)
	}
}

func (s *Scenario) validateSteps(l *errs, ns map[string]bool) {
	if len(s.Steps) == 0 {
		l.add("steps", "must list at least one step")
		return
	}
	deployments := s.Cluster.Workloads.DeploymentsPerNamespace
	setupAt := -1
	for i, st := range s.Steps {
		p := fmt.Sprintf("steps[%d]", i)
		n := 0
		for _, set := range []bool{st.Setup != nil, st.WaitConverged != nil, st.Observe != nil, st.Relabel != nil, st.Scale != nil, st.DeletePods != nil, st.ScaleAll != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			l.add(p, "must set exactly one of setup, waitConverged, observe, relabel, scale, deletePods, scaleAll (has %d)", n)
			continue
		}
		if st.Setup == nil && setupAt < 0 {
			l.add(p, "%s before setup: the first step must be setup", st.Kind())
		}
		switch {
		case st.Setup != nil:
			if setupAt >= 0 {
				l.add(p+".setup", "setup already ran at steps[%d]", setupAt)
			}
			setupAt = i
			if st.Setup.CreateQPS < 0 {
				l.add(p+".setup.createQPS", "must be >= 0, got %g", st.Setup.CreateQPS)
			}
			switch st.Setup.PodOrder {
			case "", PodOrderInterleaved, PodOrderByDeployment:
			default:
				l.add(p+".setup.podOrder", "must be %s or %s, got %q", PodOrderInterleaved, PodOrderByDeployment, st.Setup.PodOrder)
			}
		case st.WaitConverged != nil:
			positive(l, p+".waitConverged.timeout", st.WaitConverged.Timeout)
		case st.Observe != nil:
			positive(l, p+".observe.duration", st.Observe.Duration)
		case st.Relabel != nil:
			r := st.Relabel
			for j, n := range r.Namespaces {
				if !ns[n] {
					l.add(fmt.Sprintf("%s.relabel.namespaces[%d]", p, j), "no namespace %q", n)
				}
			}
			if len(r.Set)+len(r.Remove) == 0 {
				l.add(p+".relabel", "must set or remove at least one label")
			}
			validateLabels(l, p+".relabel.set", r.Set)
			for j, k := range r.Remove {
				if !validLabelKey(k) {
					l.add(fmt.Sprintf("%s.relabel.remove[%d]", p, j), "invalid label key %q", k)
				}
				if _, ok := r.Set[k]; ok {
					l.add(fmt.Sprintf("%s.relabel.remove[%d]", p, j), "label %q is both set and removed", k)
				}
			}
		case st.Scale != nil:
			sc := st.Scale
			if !ns[sc.Namespace] {
				l.add(p+".scale.namespace", "no namespace %q", sc.Namespace)
			}
			if idx, ok := DeploymentIndex(sc.Deployment); !ok || idx >= deployments {
				l.add(p+".scale.deployment", "no deployment %q (deployments are %s..%s)", sc.Deployment, DeploymentName(0), DeploymentName(max(deployments-1, 0)))
			}
			if sc.Replicas < 0 || sc.Replicas > 10000 {
				l.add(p+".scale.replicas", "must be in [0, 10000], got %d", sc.Replicas)
			}
		case st.DeletePods != nil:
			d := st.DeletePods
			for j, n := range d.Namespaces {
				if !ns[n] {
					l.add(fmt.Sprintf("%s.deletePods.namespaces[%d]", p, j), "no namespace %q", n)
				}
			}
			if !(d.Fraction > 0 && d.Fraction <= 1) {
				l.add(p+".deletePods.fraction", "must be in (0, 1], got %g", d.Fraction)
			}
			if d.Rate < 0 {
				l.add(p+".deletePods.rate", "must be >= 0, got %g", d.Rate)
			}
		case st.ScaleAll != nil:
			s.validateScaleAll(l, p+".scaleAll", st.ScaleAll, ns)
		}
	}
}

// validateScaleAll checks a scaleAll step. The pods it asks for in its
// namespaces must fit on the nodes (pods of other namespaces may make
// the step fail when it runs; that is found then, with the same message).
func (s *Scenario) validateScaleAll(l *errs, p string, sa *ScaleAllStep, ns map[string]bool) {
	seen := map[string]bool{}
	for j, n := range sa.Namespaces {
		switch {
		case !ns[n]:
			l.add(fmt.Sprintf("%s.namespaces[%d]", p, j), "no namespace %q", n)
		case seen[n]:
			l.add(fmt.Sprintf("%s.namespaces[%d]", p, j), "duplicate namespace %q", n)
		}
		seen[n] = true
	}
	if sa.Replicas < 0 || sa.Replicas > 10000 {
		l.add(p+".replicas", "must be in [0, 10000], got %d", sa.Replicas)
	}
	// JSON has no NaN or infinity, but a scenario built in Go may.
	if !(sa.Rate > 0) || math.IsInf(sa.Rate, 0) {
		l.add(p+".rate", "must be > 0 pods per second, got %g", sa.Rate)
	}
	if sa.Replicas <= 0 || sa.Replicas > 10000 {
		return
	}
	nss := len(sa.Namespaces)
	if nss == 0 {
		nss = len(s.Cluster.Namespaces)
	}
	c := s.Cluster
	pods := int64(nss) * int64(c.Workloads.DeploymentsPerNamespace) * int64(sa.Replicas)
	if pods > MaxPods {
		l.add(p+".replicas", "%d pods is more than the %d Stampede simulates", pods, MaxPods)
	} else if c.Nodes > 0 && c.Placement.MaxPodsPerNode > 0 && pods > int64(c.Nodes)*int64(c.Placement.MaxPodsPerNode) {
		l.add(p+".replicas", "%d pods do not fit on %d nodes of at most %d pods", pods, c.Nodes, c.Placement.MaxPodsPerNode)
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
