package scenarios

import (
	"encoding/json"
	"fmt"
	"time"
)

// BackendType selects which API server a run talks to.
type BackendType string

// The API server backends.
const (
	BackendFake       BackendType = "fake"
	BackendLocal      BackendType = "local"
	BackendKind       BackendType = "kind"
	BackendKubeconfig BackendType = "kubeconfig"
)

// Scenario is one benchmark: a cluster shape, the policies on it, the knobs
// of the agents and the control plane, the modes and backend to run, and a
// timeline of steps. It is loaded from YAML with Load and completed with
// Default; Validate reports every problem with its field path.
type Scenario struct {
	// Name identifies the scenario in results and reports.
	Name string `json:"name"`
	// Description is free text shown in reports.
	Description string `json:"description,omitempty"`
	// Seed makes object generation (names, placement, IPs) reproducible.
	Seed int64 `json:"seed"`

	Cluster      Cluster      `json:"cluster"`
	Policies     []Policy     `json:"policies,omitempty"`
	Cilium       Cilium       `json:"cilium"`
	Agent        AgentKnobs   `json:"agent"`
	ControlPlane ControlPlane `json:"controlPlane"`
	Modes        []ModeSpec   `json:"modes"`
	API          API          `json:"api"`
	Steps        []Step       `json:"steps"`
	Measure      Measure      `json:"measure"`
	SLO          SLO          `json:"slo"`
}

// Cluster is the shape of the simulated cluster.
type Cluster struct {
	// Name is the Cilium cluster name (label io.cilium.k8s.policy.cluster).
	Name string `json:"name"`
	// Nodes is the number of nodes, and so of simulated agents.
	Nodes int `json:"nodes"`
	// PodCIDR is the range pod IPs come from; each node gets a /24 of it.
	PodCIDR string `json:"podCIDR"`
	// Namespaces lists the namespaces with their labels.
	Namespaces []Namespace `json:"namespaces"`
	// Workloads describes the deployments in every namespace.
	Workloads Workloads `json:"workloads"`
	// Placement decides which node each pod runs on.
	Placement Placement `json:"placement"`
}

// Namespace is one namespace and the labels it starts with.
type Namespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Workloads describes the deployments created in every namespace.
type Workloads struct {
	// DeploymentsPerNamespace is the number of deployments in each namespace.
	DeploymentsPerNamespace int `json:"deploymentsPerNamespace"`
	// Replicas is the number of pods of each deployment.
	Replicas int `json:"replicas"`
	// PodLabels are added to every pod. Every pod also carries
	// app=<deployment> and pod-template-hash=<hash>.
	PodLabels map[string]string `json:"podLabels,omitempty"`
	// ServiceAccounts is the number of service accounts per namespace;
	// deployment i uses sa-<i mod ServiceAccounts>.
	ServiceAccounts int `json:"serviceAccounts"`
}

// Placement strategies.
const (
	PlacementSpread = "spread" // round robin over nodes
	PlacementRandom = "random" // uniform random from the seed, respecting MaxPodsPerNode
)

// Placement decides which node runs each pod.
type Placement struct {
	// Strategy is "spread" or "random".
	Strategy string `json:"strategy"`
	// MaxPodsPerNode is the kubelet's max-pods (110 by default).
	MaxPodsPerNode int `json:"maxPodsPerNode"`
}

// Policy is a CiliumNetworkPolicy template. One CiliumNetworkPolicy named
// Name is created in each of Namespaces (every namespace when empty).
type Policy struct {
	Name string `json:"name"`
	// Namespaces the policy is created in; empty means all.
	Namespaces []string `json:"namespaces,omitempty"`
	// EndpointSelector selects the protected pods by pod labels; empty
	// selects every pod of the namespace.
	EndpointSelector map[string]string `json:"endpointSelector,omitempty"`
	// Ingress lists the allowed peers.
	Ingress []IngressRule `json:"ingress"`
}

// IngressRule allows traffic from peers that match every given label to the
// listed ports.
type IngressRule struct {
	// FromNamespaceLabels matches peers whose namespace carries these labels
	// (io.cilium.k8s.namespace.labels.<key> in Cilium's identity labels), in
	// any namespace.
	FromNamespaceLabels map[string]string `json:"fromNamespaceLabels,omitempty"`
	// FromPodLabels matches peers by their own pod labels.
	FromPodLabels map[string]string `json:"fromPodLabels,omitempty"`
	// Ports the rule allows; at least one.
	Ports []PortProtocol `json:"ports"`
}

// PortProtocol is an L4 port and protocol ("TCP" or "UDP").
type PortProtocol struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
}

// AgentKnobs are the settings of every simulated agent. Defaults are
// Cilium's.
type AgentKnobs struct {
	// ClientQPS and ClientBurst are the agent's Kubernetes client rate
	// limits (Cilium --k8s-client-qps / --k8s-client-burst).
	ClientQPS   float64 `json:"clientQPS"`
	ClientBurst int     `json:"clientBurst"`
	// IdentityChangeGracePeriod delays applying a pod's new identity
	// (Cilium --identity-change-grace-period).
	IdentityChangeGracePeriod Duration `json:"identityChangeGracePeriod"`
	// LabelFilter lists identity-relevant label patterns in Cilium's
	// --labels syntax; empty means Cilium's default filter.
	LabelFilter []string `json:"labelFilter,omitempty"`
	// LeaseTTL is the kvstore lease TTL (Cilium --kvstore-lease-ttl).
	LeaseTTL Duration `json:"leaseTTL"`
	// AllocationAttempts bounds identity allocation retries on conflict.
	AllocationAttempts int `json:"allocationAttempts"`
	// AllocationBackoff is the first retry delay; it doubles each attempt.
	AllocationBackoff Duration `json:"allocationBackoff"`
	// Datapath is "auto", "bpf" or "mem".
	Datapath string `json:"datapath"`
	// PolicyMapMax is the most policy keys one endpoint's policy may have
	// (Cilium --bpf-policy-map-max). A larger allowed set is refused, as
	// Cilium's regeneration fails, and the endpoint keeps its old policy.
	PolicyMapMax int `json:"policyMapMax"`
	// IdentityMaxJitter bounds the random delay with which a label change
	// of an existing endpoint (its pod's or its namespace's labels)
	// reaches the endpoint's identity resolution (Cilium
	// --identity-max-jitter, since 1.18). 0 resolves at once; unset takes
	// the release's default.
	IdentityMaxJitter *Duration `json:"identityMaxJitter,omitempty"`
	// AllocationJitter makes the CRD allocator wait a random time before a
	// label set's first allocation and jitters its retry backoff (Cilium
	// 1.19, PR #42282). Unset takes the release's default.
	AllocationJitter *bool `json:"allocationJitter,omitempty"`
	// KVStoreLockLeaseTTL is the TTL of the separate kvstore session whose
	// lease holds the allocator's locks (Cilium pkg/defaults LockLeaseTTL).
	KVStoreLockLeaseTTL Duration `json:"kvstoreLockLeaseTTL"`
	// KVStorePeriodicSync is how often each agent's allocator re-creates
	// the missing master keys of the identities it uses and its own value
	// keys (Cilium --kvstore-periodic-sync, an agent flag); it races the
	// kvstore identity GC, which deletes master keys without value keys.
	KVStorePeriodicSync Duration `json:"kvstorePeriodicSync"`
	// KVStoreQPS limits each agent's etcd operations to this many a
	// second and this many in flight (Cilium --kvstore-opt etcd.qps;
	// etcd.maxInflight defaults to it); >= 1.
	KVStoreQPS int `json:"kvstoreQPS"`
	// PolicyTriggerInterval is the least time between two policy
	// recomputations of the agent's endpoints (Cilium
	// --policy-trigger-interval): identity and policy events arriving
	// meanwhile are handled together.
	PolicyTriggerInterval Duration `json:"policyTriggerInterval"`
	// EndpointWorkers is how many of the agent's endpoints the simulator
	// synchronises at once (identity and CiliumEndpoint).
	EndpointWorkers int `json:"endpointWorkers"`
	// DisableEndpointCRD stops the agents writing CiliumEndpoints and
	// watching CiliumEndpoints or CiliumEndpointSlices (Cilium
	// --disable-endpoint-crd). Only kvstore agents, which learn remote
	// endpoints from the kvstore, can run without them.
	DisableEndpointCRD bool `json:"disableEndpointCRD,omitempty"`
	// EndpointSyncInterval is how often each endpoint's CiliumEndpoint
	// synchroniser runs besides on identity change (the run interval of
	// Cilium's sync-to-k8s-ciliumendpoint controller); > 0.
	EndpointSyncInterval Duration `json:"endpointSyncInterval"`
}

// ControlPlane holds the knobs of the operator and the xDS server.
type ControlPlane struct {
	CES        CESKnobs        `json:"ces"`
	IdentityGC IdentityGCKnobs `json:"identityGC"`
	XDS        XDSKnobs        `json:"xds"`
	// ClientQPS and ClientBurst are the operator's client rate limits.
	ClientQPS   float64 `json:"clientQPS"`
	ClientBurst int     `json:"clientBurst"`
	// OperatorIdentity configures the work queue of operator-managed
	// identities (mode operator).
	OperatorIdentity OperatorIdentityKnobs `json:"operatorIdentity"`
	// Mesh configures the ClusterMesh etcd mirrors of the mesh read path.
	Mesh MeshKnobs `json:"mesh"`
}

// MeshKnobs configure the clustermesh-apiserver replicas that modes with
// the mesh read path run (CFP-44774).
type MeshKnobs struct {
	// Replicas is the number of replicas, each a mirror with its own etcd.
	Replicas int `json:"replicas"`
	// StorageMedium is where each replica's etcd keeps its data: "disk"
	// (a fresh temporary directory) or "memory" (under /dev/shm), as Helm
	// clustermesh.apiserver.etcd.storageMedium chooses the emptyDir's
	// medium. Either way the store does not outlive its process.
	StorageMedium string `json:"storageMedium"`
	// APIServerFallback makes agents read Cilium's resources from the API
	// server while no replica is reachable (CFP-44774, bootstrap option 1).
	APIServerFallback *bool `json:"apiServerFallback,omitempty"`
}

// Storage media of the mirrors' etcd (controlPlane.mesh.storageMedium).
const (
	StorageDisk   = "disk"
	StorageMemory = "memory"
)

// CESKnobs configure the CiliumEndpointSlice controller.
type CESKnobs struct {
	MaxEndpointsPerSlice int      `json:"maxEndpointsPerSlice"`
	WriteQPS             float64  `json:"writeQPS"`
	WriteBurst           int      `json:"writeBurst"`
	BatchInterval        Duration `json:"batchInterval"`
	// SliceMode is how CiliumEndpoints are grouped into slices (Cilium
	// --ces-slice-mode): SliceModeIdentity puts only endpoints of one
	// identity in a slice, and moves an endpoint whose identity changes;
	// SliceModeFCFS fills the fullest slice of the namespace and keeps an
	// endpoint where it is. Which modes exist depends on the release.
	SliceMode string `json:"sliceMode"`
}

// CiliumEndpointSlice slice modes (controlPlane.ces.sliceMode).
const (
	SliceModeIdentity = "identity"
	SliceModeFCFS     = "fcfs"
)

// IdentityGCKnobs configure identity garbage collection.
type IdentityGCKnobs struct {
	Interval         Duration `json:"interval"`
	HeartbeatTimeout Duration `json:"heartbeatTimeout"`
	// RateInterval and RateLimit bound deletions: at most RateLimit
	// identities are deleted in each RateInterval window (Cilium
	// --identity-gc-rate-interval / --identity-gc-rate-limit).
	RateInterval Duration `json:"rateInterval"`
	RateLimit    int      `json:"rateLimit"`
}

// OperatorIdentityKnobs configure the operator's identity work queue
// (Cilium operator/pkg/ciliumidentity): a label set whose CiliumIdentity
// could not be created is retried after a per-item exponential backoff
// from RetryBaseDelay up to RetryMaxDelay, and dropped after MaxRetries
// retries until a pod or namespace event asks for it again.
type OperatorIdentityKnobs struct {
	RetryBaseDelay Duration `json:"retryBaseDelay"`
	RetryMaxDelay  Duration `json:"retryMaxDelay"`
	// MaxRetries may be 0 (never retried), hence a pointer.
	MaxRetries *int `json:"maxRetries,omitempty"`
}

// XDSKnobs configure the central xDS control plane.
type XDSKnobs struct {
	// Delta selects incremental (delta) xDS; false is state of the world.
	Delta *bool `json:"delta,omitempty"`
	// PersistIdentities makes the control plane also write CiliumIdentities.
	PersistIdentities bool `json:"persistIdentities,omitempty"`
	// FlushInterval is how often the control plane turns the API events
	// it received into one batch of xDS changes (Stampede's design; Cilium
	// has no central xDS server for this).
	FlushInterval Duration `json:"flushInterval"`
}

// API selects the API server backend.
type API struct {
	// Backend is fake, local, kind or kubeconfig.
	Backend BackendType `json:"backend"`
	// Kubeconfig is the path for the kubeconfig backend.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Kind configures the kind backend.
	Kind *KindKnobs `json:"kind,omitempty"`
	// Capacity gives the fake API server the capacity of a kube-apiserver
	// (with its etcd) of a chosen size; absent, the fake has no capacity
	// model and answers as fast as its machine lets it.
	Capacity *Capacity `json:"capacity,omitempty"`
}

// Capacity sizes the fake API server's capacity model (package fakeapi).
type Capacity struct {
	// Cores is the virtual CPU budget, in cores of the machine the profile
	// was measured on; > 0 and finite.
	Cores float64 `json:"cores"`
	// Profile is the calibration profile: a shipped name or a file path
	// (default: the shipped profile of the kube-apiserver this project
	// builds, capacity.DefaultProfile).
	Profile string `json:"profile,omitempty"`
}

// KindKnobs configure the kind backend.
type KindKnobs struct {
	NodeImage string `json:"nodeImage,omitempty"`
	Nodes     int    `json:"nodes,omitempty"`
}

// Step is one entry of the timeline. Exactly one field is set.
type Step struct {
	Setup         *SetupStep         `json:"setup,omitempty"`
	WaitConverged *WaitConvergedStep `json:"waitConverged,omitempty"`
	Observe       *ObserveStep       `json:"observe,omitempty"`
	Relabel       *RelabelStep       `json:"relabel,omitempty"`
	Scale         *ScaleStep         `json:"scale,omitempty"`
	DeletePods    *DeletePodsStep    `json:"deletePods,omitempty"`
	ScaleAll      *ScaleAllStep      `json:"scaleAll,omitempty"`
}

// Kind names the step's type, as written in YAML.
func (s Step) Kind() string {
	switch {
	case s.Setup != nil:
		return "setup"
	case s.WaitConverged != nil:
		return "waitConverged"
	case s.Observe != nil:
		return "observe"
	case s.Relabel != nil:
		return "relabel"
	case s.Scale != nil:
		return "scale"
	case s.DeletePods != nil:
		return "deletePods"
	case s.ScaleAll != nil:
		return "scaleAll"
	}
	return ""
}

// SetupStep creates nodes, namespaces, service accounts, policies and,
// unless Pods is false, pods.
type SetupStep struct {
	// Pods creates the deployments' pods (unset: true; it is left unset
	// by Default so that the effective form of existing scenarios, which
	// results files embed, stays as it was). With false, setup
	// creates everything else and the deployments exist only as names
	// (and cluster.workloads.replicas as the most pods a step will ask
	// for, which sizes the agents' maps): a later scaleAll creates the
	// pods, at a rate the scenario chooses.
	Pods *bool `json:"pods,omitempty"`
	// CreateQPS bounds the harness's object creation rate (0: unlimited).
	CreateQPS float64 `json:"createQPS,omitempty"`
	// PodOrder is the order pods are created in: PodOrderInterleaved (the
	// default) takes one pod of each deployment in turn, so a deployment's
	// replicas appear spread over the whole setup, as in a cluster that
	// was built over time; PodOrderByDeployment creates all replicas of a
	// deployment before the next, so every node holding one of them
	// allocates its identity at once (the cold-start storm).
	PodOrder string `json:"podOrder,omitempty"`
}

// CreatesPods reports whether setup creates the deployments' pods.
func (s *SetupStep) CreatesPods() bool { return s.Pods == nil || *s.Pods }

// Pod creation orders of the setup step.
const (
	PodOrderInterleaved  = "interleaved"
	PodOrderByDeployment = "byDeployment"
)

// WaitConvergedStep waits until every agent agrees with the ground truth.
type WaitConvergedStep struct {
	Timeout Duration `json:"timeout"`
}

// ObserveStep keeps measuring without changing anything.
type ObserveStep struct {
	Duration Duration `json:"duration"`
}

// RelabelStep changes the labels of namespaces.
type RelabelStep struct {
	// Namespaces to relabel; empty means all.
	Namespaces []string `json:"namespaces,omitempty"`
	// Set adds or overwrites labels.
	Set map[string]string `json:"set,omitempty"`
	// Remove deletes labels.
	Remove []string `json:"remove,omitempty"`
}

// ScaleStep changes the replica count of one deployment.
type ScaleStep struct {
	Namespace  string `json:"namespace"`
	Deployment string `json:"deployment"`
	Replicas   int    `json:"replicas"`
}

// DeletePodsStep deletes a fraction of the pods (they are recreated with new
// names and IPs, as a ReplicaSet would).
type DeletePodsStep struct {
	// Namespaces to delete from; empty means all.
	Namespaces []string `json:"namespaces,omitempty"`
	// Fraction of the pods to delete, in (0, 1].
	Fraction float64 `json:"fraction"`
	// Rate in pods per second (0: as fast as possible).
	Rate float64 `json:"rate,omitempty"`
}

// ScaleAllStep sets every deployment of the listed namespaces to the same
// replica count, creating or deleting pods at a bounded overall rate: the
// pod churn of a load generator (ClusterLoader2's deployments created and
// deleted at a fixed pod throughput, as CFP-44774 ran it).
type ScaleAllStep struct {
	// Replicas is every deployment's replica count after the step.
	Replicas int `json:"replicas"`
	// Rate is the pods created or deleted per second over all
	// deployments (> 0); the deployments take turns, one pod each, as
	// setup's interleaved order does.
	Rate float64 `json:"rate"`
	// Namespaces to scale; empty means all.
	Namespaces []string `json:"namespaces,omitempty"`
}

// Measure configures the harness's measurements.
type Measure struct {
	// ProbeRate is the API probe's request rate per second.
	ProbeRate float64 `json:"probeRate"`
	// SampleInterval is the interval of /proc and /metrics sampling.
	SampleInterval Duration `json:"sampleInterval"`
	// MeshProbeRate is the rate per second of the mirror-lag probe (modes
	// with the mesh read path): a CiliumIdentity created on the API server
	// and timed to its key in every replica.
	MeshProbeRate float64 `json:"meshProbeRate"`
}

// SLO holds the thresholds results are judged against. Defaults are the
// Kubernetes scalability SLOs.
type SLO struct {
	// MutatingP99 bounds the p99 latency of mutating API calls.
	MutatingP99 Duration `json:"mutatingP99"`
	// ReadP99 bounds the p99 latency of single-object reads.
	ReadP99 Duration `json:"readP99"`
	// ListP99 bounds the p99 latency of list calls.
	ListP99 Duration `json:"listP99"`
}

// Duration is a time.Duration written as a Go duration string ("5s").
type Duration struct{ time.Duration }

// D makes a Duration.
func D(d time.Duration) Duration { return Duration{d} }

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string such as "500ms" or "5m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"5s\", got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	d.Duration = v
	return nil
}

// PodCount is the number of pods setup creates.
func (s *Scenario) PodCount() int {
	w := s.Cluster.Workloads
	return len(s.Cluster.Namespaces) * w.DeploymentsPerNamespace * w.Replicas
}

// Summary is the first line of the description.
func (s *Scenario) Summary() string {
	d := s.Description
	for i, r := range d {
		if r == '\n' {
			return d[:i]
		}
	}
	return d
}
