package results

import (
	"time"

	"github.com/stampede-sim/stampede/scenarios"
)

// SchemaVersion identifies the layout of results.json. A change that old
// readers cannot ignore gets a new version; adding an optional field does
// not.
const SchemaVersion = "stampede.results/v2"

// SchemaVersionV1 is the previous layout: modes were one of five names,
// without axes. Decode still reads it (see upgradeV1).
const SchemaVersionV1 = "stampede.results/v1"

// Results is the content of results.json: what one `stampede run` measured,
// for every mode it ran. SCHEMA.md documents every field; schema.json is the
// same as a JSON Schema. Units: durations and latencies in seconds, memory in
// bytes, CPU in CPU-seconds (totals) or cores (rates, 1.0 = one core busy).
//
// Results are written incrementally, so every field past SchemaVersion and
// Run may be missing: a run that was interrupted still yields a valid file
// with Run.Complete false and the modes it reached.
type Results struct {
	// SchemaVersion is always SchemaVersion.
	SchemaVersion string `json:"schemaVersion"`
	// UpgradedFrom is the version of the file Decode read, when it was
	// older than SchemaVersion; it is not written.
	UpgradedFrom string `json:"-"`
	// Run describes the run as a whole.
	Run Run `json:"run"`
	// Modes holds one entry per mode of the run, in the order they ran
	// (a mode not yet started may be listed with status "pending").
	Modes []ModeResult `json:"modes"`
}

// Run is the run's metadata.
type Run struct {
	// Scenario is the scenario's name.
	Scenario string `json:"scenario"`
	// EffectiveScenario is the scenario with every default filled in, as
	// the run used it.
	EffectiveScenario *scenarios.Scenario `json:"effectiveScenario,omitempty"`
	// Seed is the seed objects were generated from.
	Seed int64 `json:"seed"`
	// Nodes and Pods are the cluster's size at setup (for capacity fits).
	Nodes int `json:"nodes"`
	Pods  int `json:"pods"`
	// StampedeVersion is the version of the stampede binary (module
	// version or VCS revision).
	StampedeVersion string `json:"stampedeVersion"`
	// GoVersion is runtime.Version() of the binary.
	GoVersion string `json:"goVersion"`
	// Command is the command line of the run, for the record.
	Command []string `json:"command,omitempty"`
	// Started is when the run began; Finished when it ended (absent while
	// it runs or when it was killed before it could say).
	Started  time.Time  `json:"started"`
	Finished *time.Time `json:"finished,omitempty"`
	// Complete is true only when every mode ran its whole timeline (or was
	// skipped for a stated reason). IncompleteReason says why not.
	Complete         bool   `json:"complete"`
	IncompleteReason string `json:"incompleteReason,omitempty"`
	// Backend is the API server backend.
	Backend Backend `json:"backend"`
	// APIServer says which API server the API figures stand for: a
	// kube-apiserver, or the fake with or without a capacity model. The
	// harness writes it when a mode starts; results written before it
	// existed lack it (APIServerOf then derives it from Backend).
	APIServer *APIServer `json:"apiServer,omitempty"`
	// Cilium is the Cilium release the agents and the control plane
	// followed, with every knob and where its value came from; absent in
	// files written before release profiles existed (those agents behaved
	// as Cilium 1.17).
	Cilium *Cilium `json:"cilium,omitempty"`
	// Machine is the host the run ran on.
	Machine Machine `json:"machine"`
	// Datapath is the datapath the agents used.
	Datapath Datapath `json:"datapath"`
}

// APIServerModelSummary is the capacity model's account of a mode.
type APIServerModelSummary struct {
	// CPUSeconds is the modelled CPU of kube-apiserver and etcd.
	CPUSeconds float64 `json:"cpuSeconds"`
	// ByKind splits it: "request" (requests, priced by verb, resource,
	// objects and bytes), "watch" (watch events, priced per watcher and
	// byte), "background" (the idle rate of kube-apiserver and etcd) and
	// "metrics" (scrapes of /metrics).
	ByKind map[string]float64 `json:"byKind,omitempty"`
}

// Cilium records the release profile of a run (scenarios.Release).
type Cilium struct {
	// Version is the minor release, "1.18".
	Version string `json:"version"`
	// Read is the tag whose sources and Helm chart the defaults came from.
	Read string `json:"read"`
	// Knobs are the effective agent and control-plane settings.
	Knobs []scenarios.Knob `json:"knobs,omitempty"`
}

// CiliumOf records s's release profile; nil if its version is unknown.
func CiliumOf(s *scenarios.Scenario) *Cilium {
	r := s.Release()
	if r == nil {
		return nil
	}
	return &Cilium{Version: r.Version, Read: r.Read, Knobs: s.Knobs()}
}

// Backend describes the API server backend of a run.
type Backend struct {
	// Name is fake, local, kind or kubeconfig.
	Name string `json:"name"`
	// Flags are the flags the API server (and its etcd) ran with, if known.
	Flags []string `json:"flags,omitempty"`
	// Facts are what matters when comparing runs, by key: for example
	// "etcd.fsync": "true", "apf": "enabled", "kubernetes.version":
	// "v1.36.3".
	Facts map[string]string `json:"facts,omitempty"`
}

// Machine describes the host.
type Machine struct {
	// Cores is the number of CPUs the run could use.
	Cores int `json:"cores"`
	// MemoryBytes is the host's total memory.
	MemoryBytes int64 `json:"memoryBytes"`
	// Kernel is the kernel release (uname -r).
	Kernel string `json:"kernel"`
	// OS and Arch are GOOS and GOARCH.
	OS   string `json:"os,omitempty"`
	Arch string `json:"arch,omitempty"`
	// Hostname is informational only.
	Hostname string `json:"hostname,omitempty"`
}

// Datapath records which datapath the agents used and why.
type Datapath struct {
	// Requested is the scenario's choice: auto, bpf or mem.
	Requested string `json:"requested"`
	// Effective is what ran: bpf or mem.
	Effective string `json:"effective"`
	// Reason explains a fallback (for example "no CAP_BPF").
	Reason string `json:"reason,omitempty"`
}

// Status is a mode's outcome.
type Status string

// Mode statuses.
const (
	// StatusPending: the run has not reached this mode yet.
	StatusPending Status = "pending"
	// StatusRunning: the mode is running now.
	StatusRunning Status = "running"
	// StatusOK: the whole timeline ran and converged.
	StatusOK Status = "ok"
	// StatusSkipped: the mode could not run here; Reason says why.
	StatusSkipped Status = "skipped"
	// StatusFailed: a component or step failed; Reason holds the error.
	StatusFailed Status = "failed"
	// StatusIncomplete: the run was interrupted during this mode; what was
	// measured until then is kept.
	StatusIncomplete Status = "incomplete"
)

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusRunning, StatusOK, StatusSkipped, StatusFailed, StatusIncomplete:
		return true
	}
	return false
}

// ModeResult is what one mode measured.
type ModeResult struct {
	// Mode is the mode's name: a preset's or one the scenario gave.
	Mode scenarios.Mode `json:"mode"`
	// Axes place the mode on the three axes (identity allocation,
	// endpoint distribution, read path).
	Axes scenarios.Axes `json:"axes"`
	// Status is the mode's outcome; Reason explains skipped, failed and
	// incomplete.
	Status Status `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Started and Finished bound the mode (Finished absent while running).
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	// Shards is the number of agent processes; Agents the number of
	// simulated agents across them.
	Shards int `json:"shards,omitempty"`
	Agents int `json:"agents,omitempty"`
	// AgentNice is the nice value the shards ran with (absent: 0).
	AgentNice int `json:"agentNice,omitempty"`
	// Steps is the timeline as executed.
	Steps []StepResult `json:"steps,omitempty"`
	// Series are the time series at the sampling resolution (1 s).
	Series *Series `json:"series,omitempty"`
	// Summary condenses the mode's measurements.
	Summary *Summary `json:"summary,omitempty"`
}

// StepResult is one executed step of the timeline.
type StepResult struct {
	// Index is the step's position in the scenario's steps.
	Index int `json:"index"`
	// Kind is the step's type as written in the scenario (setup,
	// waitConverged, observe, relabel, scale, deletePods, scaleAll).
	Kind string `json:"kind"`
	// Start and End bound the step; End is absent while it runs.
	Start time.Time  `json:"start"`
	End   *time.Time `json:"end,omitempty"`
	// Outcome is ok, timeout, failed, interrupted or running.
	Outcome string `json:"outcome"`
	// Detail is free text (an error, "converged 200/200").
	Detail string `json:"detail,omitempty"`
}

// Step outcomes.
const (
	OutcomeOK          = "ok"
	OutcomeTimeout     = "timeout"
	OutcomeFailed      = "failed"
	OutcomeInterrupted = "interrupted"
	OutcomeRunning     = "running"
)

// Summary condenses a mode's measurements. Every field is optional: nil (or
// empty) means not measured in this mode or on this backend, which a report
// shows as "-", never as zero.
type Summary struct {
	// APILatency is the latency the harness's constant-rate probe saw, by
	// verb and resource, plus one entry with Verb and Resource "*" for all
	// probe requests together.
	APILatency []LatencySummary `json:"apiLatency,omitempty"`
	// ServerLatency is the API server's own apiserver_request_duration_seconds
	// over the mode, by verb and resource (where the backend exposes it).
	ServerLatency []LatencySummary `json:"serverLatency,omitempty"`
	// KVStoreLatency is the kvstore's latency by operation (get, put, ...)
	// as the agents saw it (kvstore mode).
	KVStoreLatency []LatencySummary `json:"kvstoreLatency,omitempty"`
	// XDSPushLatency is the time from a change in the control plane to the
	// agents' ACK (xds mode). Verb is "push", Resource the type URL's short
	// name or "*".
	XDSPushLatency []LatencySummary `json:"xdsPushLatency,omitempty"`
	// Processes are CPU and memory per measured process: apiserver, etcd
	// (the backend's), kvstore, controlplane, agents-<i>, harness.
	Processes []ProcessSummary `json:"processes,omitempty"`
	// Agents is the cost per simulated agent across the shards: the
	// simulator's cost, not a cilium-agent's.
	Agents *AgentSummary `json:"agents,omitempty"`
	// AgentWork is what the simulated agents received, held and did, per
	// agent, read from their reports at the end of the mode: what a
	// cilium-agent would receive and hold for the same cluster and
	// traffic.
	AgentWork *AgentWorkSummary `json:"agentWork,omitempty"`
	// Watch is what watches delivered to agents and the control plane.
	Watch *WatchSummary `json:"watch,omitempty"`
	// Writes counts API writes by type, keyed "<verb> <resource>" (for
	// example "create ciliumidentities", "patch ciliumendpoints"), whatever
	// their answer.
	Writes map[string]int64 `json:"writes,omitempty"`
	// WritesRejected counts the Writes that were not answered with a 2xx:
	// 409 Conflict (an identity number another agent took first), 429 Too Many
	// Requests, 422 and the like, or no answer at all. Same keys as Writes.
	WritesRejected map[string]int64 `json:"writesRejected,omitempty"`
	// Throttling counts server rejections and client-side rate limiting.
	Throttling *ThrottlingSummary `json:"throttling,omitempty"`
	// APIServerModel is what the fake API server's capacity model
	// charged: the CPU a kube-apiserver with its etcd would have spent on
	// the mode's requests and watch events, as the calibration profile
	// prices them (apiServer.model "capacity" only). The fake's own
	// process CPU (processes, name "apiserver") is the simulator's cost.
	APIServerModel *APIServerModelSummary `json:"apiServerModel,omitempty"`
	// Identities counts security identities.
	Identities *IdentitySummary `json:"identities,omitempty"`
	// Datapath counts datapath map updates across all agents.
	Datapath *DatapathSummary `json:"datapath,omitempty"`
	// Convergence has one entry per step that waited for convergence.
	Convergence []ConvergenceSummary `json:"convergence,omitempty"`
	// Memory is the peak memory of the mode: of the measured processes
	// together and of the whole machine.
	Memory *MemorySummary `json:"memory,omitempty"`
	// Harness is the harness's own cost.
	Harness *HarnessSummary `json:"harness,omitempty"`
	// Probe says whether the API probe held its rate.
	Probe *ProbeSummary `json:"probe,omitempty"`
	// Mesh is what the ClusterMesh mirror replicas did for the agents
	// (modes with the mesh read path only).
	Mesh *MeshSummary `json:"mesh,omitempty"`
	// Scrapes says how each component's /metrics answered the harness:
	// one whose answers are far apart leaves gaps in its series (its
	// totals, from the first and last answers, are exact).
	Scrapes []ScrapeSummary `json:"scrapes,omitempty"`
	// SLO are the verdicts against the scenario's SLOs.
	SLO []SLOVerdict `json:"slo,omitempty"`
}

// LatencySummary is a latency distribution in seconds.
type LatencySummary struct {
	// Verb is the request verb (GET, LIST, PATCH, ... or get/put for the
	// kvstore); "*" aggregates all.
	Verb string `json:"verb"`
	// Resource is the resource (pods, ciliumendpoints, ...); "*"
	// aggregates all; empty where it does not apply.
	Resource string `json:"resource,omitempty"`
	// Quantiles and maximum, seconds.
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	// Count is the number of requests, Errors how many of them failed
	// (non-2xx, timeouts).
	Count  int64 `json:"count"`
	Errors int64 `json:"errors"`
}

// ProcessSummary is one process's CPU and memory over the mode.
type ProcessSummary struct {
	// Name is apiserver, etcd, kvstore, controlplane, agents-<i> or harness.
	Name string `json:"name"`
	// CPUSeconds is user+system CPU time used during the mode.
	CPUSeconds float64 `json:"cpuSeconds"`
	// PeakCPU is the highest one-second CPU rate, in cores.
	PeakCPU float64 `json:"peakCPU"`
	// PeakRSS and MeanRSS are resident memory, bytes.
	PeakRSS int64 `json:"peakRSSBytes"`
	MeanRSS int64 `json:"meanRSSBytes"`
}

// Spread is a value's mean, minimum and maximum across shards.
type Spread struct {
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
}

// AgentSummary is the cost per simulated agent: a shard's figure divided by
// the agents it hosts, then spread across shards.
type AgentSummary struct {
	// Count is the number of agents, Shards the number of processes.
	Count  int `json:"count"`
	Shards int `json:"shards"`
	// CPUSeconds per agent over the mode.
	CPUSeconds Spread `json:"cpuSeconds"`
	// MeanCPU and PeakCPU per agent, cores (0.5 = 50 % of a core).
	MeanCPU Spread `json:"meanCPU"`
	PeakCPU Spread `json:"peakCPU"`
	// PeakRSS and MeanRSS per agent, bytes.
	PeakRSS Spread `json:"peakRSSBytes"`
	MeanRSS Spread `json:"meanRSSBytes"`
	// SharedFrames is the fraction of the watch frames of unfiltered
	// watches (everything but pods) that an agent found already decoded by
	// another agent of its shard: the agents then share the decoded object
	// instead of each decoding the same bytes. Per-agent CPU is with that
	// sharing; a real cilium-agent decodes every frame itself.
	SharedFrames float64 `json:"sharedFrames,omitempty"`
}

// PerAgent is one figure of every agent: the sum over agents, and the
// median, 99th percentile (nearest rank) and maximum of one agent's.
type PerAgent struct {
	Sum float64 `json:"sum"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// AgentWorkSummary is what the agents received, held and did, from each
// agent's own report (internal/agentcontract.Work), counted from the
// agent's start to the end of the mode (held figures: at the end). These
// are the figures that carry over to a cilium-agent: its control-plane
// traffic, the objects its caches hold, its identities, its policy work
// and its BPF map writes, measured on the simulated agents' real traffic.
// They are not CPU or memory: a cilium-agent's heap holds the cached
// objects decoded, a multiple of their bytes as received that depends on
// Cilium's types.
type AgentWorkSummary struct {
	// Agents is the number of agents whose report was read.
	Agents int `json:"agents"`
	// Datapath is the datapath the agents used: bpf or mem.
	Datapath string `json:"datapath,omitempty"`
	// Received is by resource (pods, ciliumendpoints, ..., kvstore-ipcache,
	// xds-Identity, ...; "*" for all together): the watch events and the
	// bytes of lists and watches an agent received.
	Received map[string]TrafficPerAgent `json:"received,omitempty"`
	// Cached is by resource ("*" for all together): the objects an agent
	// holds and their bytes as received.
	Cached map[string]HoldingPerAgent `json:"cached,omitempty"`
	// Identities are the security identities an agent knows.
	Identities PerAgent `json:"identities"`
	// PolicyRecomputations are the passes that recomputed the policy of
	// an agent's endpoints; EndpointPolicyChanges the endpoint policies
	// they changed.
	PolicyRecomputations  PerAgent `json:"policyRecomputations"`
	EndpointPolicyChanges PerAgent `json:"endpointPolicyChanges"`
	// PolicyMapKeys are the policy keys over an agent's endpoints, as
	// Cilium's per-endpoint policy maps hold them.
	PolicyMapKeys PerAgent `json:"policyMapKeys"`
	// DatapathUpdates are the BPF map element writes and deletes Cilium's
	// layout (a policy map per endpoint) needs for an agent's changes;
	// MapWrites those the simulator's datapath did (endpoints with equal
	// policies share keys there).
	DatapathUpdates PerAgent `json:"datapathUpdates"`
	MapWrites       PerAgent `json:"mapWrites"`
	// KernelMapBytes is the kernel's memory of an agent's BPF maps (their
	// fdinfo memlock) at the end: only with the bpf datapath; absent with
	// mem, which has no kernel maps. The maps are the simulator's layout
	// (an ipcache LPM trie, shared policy sets), not Cilium's
	// preallocated per-endpoint maps.
	KernelMapBytes *PerAgent `json:"kernelMapBytes,omitempty"`
}

// TrafficPerAgent is what arrived of one resource.
type TrafficPerAgent struct {
	Events PerAgent `json:"events"`
	Bytes  PerAgent `json:"bytes"`
}

// HoldingPerAgent is what is held of one resource.
type HoldingPerAgent struct {
	Objects PerAgent `json:"objects"`
	Bytes   PerAgent `json:"bytes"`
}

// WatchSummary is what watches delivered.
type WatchSummary struct {
	// Events and Bytes delivered over the mode, all watchers together.
	Events int64 `json:"events"`
	Bytes  int64 `json:"bytes"`
	// PeakEventsPerSecond and PeakBytesPerSecond are the highest one-second
	// rates.
	PeakEventsPerSecond float64 `json:"peakEventsPerSecond"`
	PeakBytesPerSecond  float64 `json:"peakBytesPerSecond"`
	// EventsByResource splits Events by resource (pods, ciliumendpoints,
	// ciliumendpointslices, ciliumidentities, kvstore, xds, ...).
	EventsByResource map[string]int64 `json:"eventsByResource,omitempty"`
	// TerminatedWatchers counts, by resource, the watchers the API server
	// closed because they fell behind (apiserver_terminated_watchers_total,
	// which kube-apiserver and the fake both export); each one's client
	// re-watches, and the events it missed are replayed to it.
	TerminatedWatchers map[string]int64 `json:"terminatedWatchers,omitempty"`
	// Connections are the API server's open watches
	// (apiserver_longrunning_requests{verb="WATCH"}, summed over
	// resources) as the
	// harness's scrapes sampled them, in every mode: the figure
	// CFP-44774 compares between read paths.
	Connections *WatchConnectionsSummary `json:"connections,omitempty"`
	// APIServerEvents is the watch events the API server says it sent
	// over the mode to every watcher (apiserver_watch_events_total, as
	// CFP-44774 counts them); omitted where the backend does not export it.
	APIServerEvents int64 `json:"apiServerEvents,omitempty"`
}

// MeshSummary is a mode's ClusterMesh mirror replicas, as the harness's
// mirror-lag probe and the agents saw them.
type MeshSummary struct {
	// Replicas is controlPlane.mesh.replicas: mirror and etcd pairs.
	Replicas int `json:"replicas"`
	// MirrorLag is the time from the API server's answer to the harness's
	// create of a probe CiliumIdentity to its key's arrival in the
	// replicas' etcd, as a watch of the harness on each saw it.
	MirrorLag MirrorLagSummary `json:"mirrorLag"`
	// Served is what the agents received from the replicas: watch events
	// and bytes of the resources mesh-identities, mesh-ipcache and
	// mesh-nodes, summed over agents.
	Served TrafficSummary `json:"served"`
	// ProbeEventsPerAgent is the probe's share of Served.Events for one
	// agent: each probe identity's put and delete, as the replica that
	// saw the most of them delivered them. Served.Events less Agents x
	// ProbeEventsPerAgent is the mode's own traffic.
	ProbeEventsPerAgent int64 `json:"probeEventsPerAgent"`
	// Failovers counts agents' moves to another replica
	// (stampede_agent_mesh_failovers_total over the mode); 0 when the
	// agents do not export it.
	Failovers int64 `json:"failovers"`
	// FallbackAgentSeconds is the time agents spent reading from the API
	// server because no replica answered, summed over agents
	// (stampede_agent_mesh_fallback_seconds_total); 0 when not exported.
	FallbackAgentSeconds float64 `json:"fallbackAgentSeconds"`
	// AgentMetrics is false when the agents exported neither failover
	// nor fallback counter, so Failovers and FallbackAgentSeconds are 0
	// for want of a measurement.
	AgentMetrics bool `json:"agentMetrics"`
}

// MirrorLagSummary is the mirror lag over every replica (a probe's lag
// is its last replica's) and per replica.
type MirrorLagSummary struct {
	LagStats
	PerReplica []ReplicaLag `json:"perReplica,omitempty"`
}

// ReplicaLag is one replica's mirror lag.
type ReplicaLag struct {
	Replica int `json:"replica"`
	LagStats
}

// LagStats are nearest-rank quantiles and the maximum of lags in
// seconds, how many were measured, and how many probes had none: the
// create failed, or the key did not arrive within the probe's timeout
// (for "all replicas": in at least one replica).
type LagStats struct {
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
	Count  int64   `json:"count"`
	Errors int64   `json:"errors"`
}

// TrafficSummary is events and bytes.
type TrafficSummary struct {
	Events int64 `json:"events"`
	Bytes  int64 `json:"bytes"`
}

// WatchConnectionsSummary is the API server's registered watchers over a
// mode's scrapes of it.
type WatchConnectionsSummary struct {
	// Peak and Mean are of the sum over kinds, per scrape.
	Peak int64   `json:"peak"`
	Mean float64 `json:"mean"`
	// Samples is the number of scrapes of the API server that had the
	// family.
	Samples int `json:"samples"`
	// ByResource is each kind's own peak (kube-apiserver and the fake
	// label the gauge by kind: CiliumIdentity, Pod, ...). The peaks of
	// different kinds may fall in different scrapes, so they can add up
	// to more than Peak.
	ByResource map[string]int64 `json:"byResource,omitempty"`
}

// ThrottlingSummary counts rate limiting.
type ThrottlingSummary struct {
	// HTTP429 is the number of 429 Too Many Requests responses clients got.
	HTTP429 int64 `json:"http429"`
	// ClientThrottledRequests is how many requests waited in a client-side
	// rate limiter; ClientThrottledSeconds the total time they waited.
	ClientThrottledRequests int64   `json:"clientThrottledRequests"`
	ClientThrottledSeconds  float64 `json:"clientThrottledSeconds"`
}

// WriteTotals sums Writes and WritesRejected over their types.
func (s *Summary) WriteTotals() (all, rejected int64) {
	for _, v := range s.Writes {
		all += v
	}
	for _, v := range s.WritesRejected {
		rejected += v
	}
	return all, rejected
}

// IdentitySummary counts security identities.
type IdentitySummary struct {
	// Created is the number of identities created during the mode.
	Created int64 `json:"created"`
	// Duplicates is the number of identities created for a label set that
	// already had one (agents racing in crd/ces mode).
	Duplicates int64 `json:"duplicates"`
	// Final is the number of identities that exist at the end.
	Final int64 `json:"final"`
}

// DatapathSummary counts datapath updates across all agents.
type DatapathSummary struct {
	// Updates is the total of map writes and deletes.
	Updates int64 `json:"updates"`
	// ByMap splits Updates by map (ipcache, identity, policy).
	ByMap map[string]int64 `json:"byMap,omitempty"`
}

// ConvergenceSummary is how long agents took to agree with the ground truth
// after one step (setup or a relabel).
type ConvergenceSummary struct {
	// Step is the index of the step that changed the cluster; Trigger its
	// kind (setup, relabel, scale, deletePods, scaleAll).
	Step    int    `json:"step"`
	Trigger string `json:"trigger"`
	// Agents is the number of agents, Converged how many converged before
	// the timeout.
	Agents    int `json:"agents"`
	Converged int `json:"converged"`
	// P50, P99 and Max of the agents' time to converge, seconds from the
	// start of the triggering step (over converged agents).
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	// PolicyOverflow counts the agents not converged at the end of the wait
	// that refused an endpoint policy larger than their policy map
	// (agent.policyMapMax), as Cilium refuses it: they keep the old policy
	// until the allowed set shrinks.
	PolicyOverflow int `json:"policyOverflow,omitempty"`
}

// HarnessSummary is the harness's own cost.
type HarnessSummary struct {
	// CPUSeconds the harness process used during the mode.
	CPUSeconds float64 `json:"cpuSeconds"`
	// FractionOfTotal is CPUSeconds over the CPU-seconds of every measured
	// process together (target: under 0.10).
	FractionOfTotal float64 `json:"fractionOfTotal"`
	// AgentDigestSeconds is the CPU the agents spent inside their shards
	// summing their state into the status digests the harness polls: the
	// harness's cost that its own process does not show (bounded to a
	// tenth of a core per shard).
	AgentDigestSeconds float64 `json:"agentDigestSeconds,omitempty"`
}

// ScrapeSummary is how one component answered the harness's scrapes of
// its /metrics during a mode.
type ScrapeSummary struct {
	// Component is the process scraped: apiserver, controlplane, agents-<i>.
	Component string `json:"component"`
	// Answered and Failed count the scrapes that got an answer and those
	// that failed or timed out.
	Answered int `json:"answered"`
	Failed   int `json:"failed"`
	// MaxGapSeconds is the longest time between two answers (from the
	// mode's first scrape): the widest hole in the component's series.
	MaxGapSeconds float64 `json:"maxGapSeconds"`
}

// MemorySummary is a mode's peak memory, bytes.
type MemorySummary struct {
	// PeakProcessesRSS is the highest sum, over one sample, of the
	// resident memory of every measured process (harness included).
	PeakProcessesRSS int64 `json:"peakProcessesRSSBytes"`
	// PeakMachineUsed is the machine's highest MemTotal - MemAvailable:
	// it also counts kernel memory (BPF maps, socket buffers) and
	// anything else running on the machine.
	PeakMachineUsed int64 `json:"peakMachineUsedBytes"`
	// MachineUsedAtStart is MemTotal - MemAvailable at the mode's first
	// sample, for reference.
	MachineUsedAtStart int64 `json:"machineUsedAtStartBytes"`
	// MachineTotal is MemTotal.
	MachineTotal int64 `json:"machineTotalBytes"`
}

// ProbeSummary says whether the API probe held its rate.
type ProbeSummary struct {
	// TargetRate and AchievedRate are requests per second.
	TargetRate   float64 `json:"targetRate"`
	AchievedRate float64 `json:"achievedRate"`
	// HeldRate is false when the probe fell behind (its latency figures
	// then understate the server's).
	HeldRate bool   `json:"heldRate"`
	Detail   string `json:"detail,omitempty"`
}

// SLOVerdict is one SLO judged.
type SLOVerdict struct {
	// Name is the SLO ("mutating p99", "read p99", "list p99", ...).
	Name string `json:"name"`
	// Limit and Value are in Unit (seconds for latency SLOs).
	Limit float64 `json:"limit"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Pass is Value <= Limit.
	Pass   bool   `json:"pass"`
	Detail string `json:"detail,omitempty"`
}
