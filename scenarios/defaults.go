package scenarios

import (
	"time"

	"github.com/stampede-sim/stampede/internal/capacity"
)

// Cilium's defaults, as found in its sources (pkg/defaults, operator/option,
// pkg/allocator). Scenarios may override each.
const (
	DefaultClusterName               = "default"
	DefaultPodCIDR                   = "10.0.0.0/8"
	DefaultMaxPodsPerNode            = 110
	DefaultClientQPS                 = 10.0
	DefaultClientBurst               = 20
	DefaultIdentityChangeGracePeriod = 5 * time.Second
	DefaultLeaseTTL                  = 15 * time.Minute
	DefaultAllocationAttempts        = 16
	DefaultAllocationBackoff         = 20 * time.Millisecond
	DefaultDatapath                  = "auto"
	DefaultPolicyMapMax              = 16384 // pkg/defaults PolicyMapEntries
	DefaultIdentityMaxJitter         = 30 * time.Second
	DefaultKVStoreLockLeaseTTL       = 25 * time.Second
	DefaultPolicyTriggerInterval     = time.Second
	DefaultEndpointWorkers           = 8
	DefaultOperatorClientQPS         = 100.0
	DefaultOperatorClientBurst       = 200
	DefaultCESMaxEndpointsPerSlice   = 100
	DefaultCESBatchInterval          = 500 * time.Millisecond
	DefaultIdentityGCInterval        = 15 * time.Minute
	DefaultIdentityHeartbeatTimeout  = 30 * time.Minute
	// operator/identitygc Config defaults.
	DefaultIdentityGCRateInterval = time.Minute
	DefaultIdentityGCRateLimit    = 2500
	// operator/pkg/ciliumidentity controller.go: the work queue's
	// per-item exponential backoff and retry bound.
	DefaultOperatorIdentityRetryBase  = time.Second
	DefaultOperatorIdentityRetryMax   = 100 * time.Second
	DefaultOperatorIdentityMaxRetries = 15
	// pkg/defaults KVstorePeriodicSync.
	DefaultKVStorePeriodicSync = 5 * time.Minute
	// DefaultKVStoreQPS is Cilium's pkg/defaults KVstoreQPS, the default
	// of --kvstore-opt etcd.qps.
	DefaultKVStoreQPS = 20
	// Stampede's own xDS server batches API events this long.
	DefaultXDSFlushInterval = 100 * time.Millisecond
	DefaultProbeRate        = 10.0
	// DefaultMeshProbeRate is one mirror-lag probe a second: two identity
	// events per agent per second on the mesh read path, small beside a
	// relabel's (design open question 11).
	DefaultMeshProbeRate = 1.0
	// DefaultMeshReplicas is the smallest count that spreads agents and
	// lets one replica fail; CFP-44774 gives none, Helm's default is 1
	// (clustermesh.apiserver.replicas) and CFP-39876 calls several the
	// production recommendation (design open question 1).
	DefaultMeshReplicas   = 2
	DefaultSampleInterval = time.Second
	DefaultWaitTimeout    = 10 * time.Minute
	DefaultMutatingP99    = time.Second
	DefaultReadP99        = time.Second
	DefaultListP99        = 30 * time.Second
)

// Default fills every unset field with its default. It is idempotent and
// leaves set fields alone.
func (s *Scenario) Default() {
	c := &s.Cluster
	setStr(&c.Name, DefaultClusterName)
	setStr(&c.PodCIDR, DefaultPodCIDR)
	setStr(&c.Placement.Strategy, PlacementSpread)
	setInt(&c.Placement.MaxPodsPerNode, DefaultMaxPodsPerNode)
	setInt(&c.Workloads.ServiceAccounts, 1)

	s.applyRelease()

	s.defaultModes()
	if s.API.Backend == "" {
		s.API.Backend = BackendFake
	}
	if s.API.Backend == BackendKind {
		if s.API.Kind == nil {
			s.API.Kind = &KindKnobs{}
		}
		setInt(&s.API.Kind.Nodes, 1)
	}
	if c := s.API.Capacity; c != nil {
		setStr(&c.Profile, capacity.DefaultProfile)
	}

	for i := range s.Steps {
		if w := s.Steps[i].WaitConverged; w != nil {
			setDur(&w.Timeout, DefaultWaitTimeout)
		}
		if su := s.Steps[i].Setup; su != nil {
			setStr(&su.PodOrder, PodOrderInterleaved)
		}
	}

	setFloat(&s.Measure.ProbeRate, DefaultProbeRate)
	setFloat(&s.Measure.MeshProbeRate, DefaultMeshProbeRate)
	setDur(&s.Measure.SampleInterval, DefaultSampleInterval)
	setDur(&s.SLO.MutatingP99, DefaultMutatingP99)
	setDur(&s.SLO.ReadP99, DefaultReadP99)
	setDur(&s.SLO.ListP99, DefaultListP99)
}

func setStr(p *string, v string) {
	if *p == "" {
		*p = v
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setFloat(p *float64, v float64) {
	if *p == 0 {
		*p = v
	}
}

func setDur(p *Duration, v time.Duration) {
	if p.Duration == 0 {
		p.Duration = v
	}
}
