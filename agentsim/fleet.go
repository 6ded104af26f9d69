package agentsim

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/datapath"
	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// Config configures a Fleet: the agents of one shard.
type Config struct {
	// Scenario is the defaulted, valid scenario; it gives the nodes and
	// the agents' knobs.
	Scenario *scenarios.Scenario
	// Mode is the mode to run; the scenario must list it.
	Mode scenarios.Mode
	// Shard and Shards select the nodes: index % Shards == Shard.
	// Shards 0 means 1.
	Shard, Shards int
	// REST is the API server (crd, ces, kvstore, operator).
	REST *rest.Config
	// Tokens maps a node name to its agent's bearer token; nodes without
	// one use REST's credentials.
	Tokens map[string]string
	// KVStore lists the etcd endpoints (kvstore mode).
	KVStore []string
	// XDS is the control plane's gRPC address (xds mode).
	XDS string
	// Mesh lists the etcd client URLs of the ClusterMesh mirror replicas,
	// in replica order (modes with the mesh read path): the agent of the
	// node with global index k starts on replica k mod len(Mesh).
	Mesh []string
	// MeshProbeInterval tunes every agent's mesh client (see AgentConfig).
	MeshProbeInterval time.Duration
	// MeshAPIServerFallback, if set, replaces the scenario's
	// controlPlane.mesh.apiServerFallback for every agent.
	MeshAPIServerFallback *bool
	// NewDatapath opens one agent's datapath. Default: datapath.Open with
	// the scenario's agent.datapath kind, sized for the scenario.
	NewDatapath func(ctx context.Context, node string) (datapath.Datapath, error)
	// Registerer receives the shard's metrics (default: a new registry).
	Registerer prometheus.Registerer
	// Log is the logger (default: discard).
	Log *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// RegenInterval and Workers tune every agent (see AgentConfig).
	RegenInterval time.Duration
	Workers       int
	// NoCEPWrites makes every agent write no CiliumEndpoints (see
	// AgentConfig).
	NoCEPWrites bool
}

// Fleet runs the agents of one shard in one process.
type Fleet struct {
	cfg    Config
	m      *Metrics
	agents []runner
	byNode map[string]runner
	mu     sync.Mutex
}

// runner is an agent of any mode.
type runner interface {
	Node() string
	Run(ctx context.Context) error
	Status() Status
	LastChange() time.Time
	datapathStats() (datapath.Stats, bool)
}

// New validates cfg and builds the shard's agents (each with its own
// client); nothing connects before Run.
func New(ctx context.Context, cfg Config) (*Fleet, error) {
	s := cfg.Scenario
	if s == nil {
		return nil, errors.New("agentsim: Scenario must be set")
	}
	spec, ok := s.ModeSpec(cfg.Mode)
	if !ok {
		return nil, fmt.Errorf("agentsim: scenario %s does not run mode %s (its modes: %v)", s.Name, cfg.Mode, s.ModeNames())
	}
	if cfg.Shards == 0 {
		cfg.Shards = 1
	}
	if cfg.Shards < 0 || cfg.Shard < 0 || cfg.Shard >= cfg.Shards {
		return nil, fmt.Errorf("agentsim: shard %d/%d: want 0 <= shard < shards", cfg.Shard, cfg.Shards)
	}
	switch {
	case spec.HasXDS():
		if cfg.XDS == "" {
			return nil, fmt.Errorf("agentsim: mode %s reads from the xDS control plane and needs its address (--xds)", cfg.Mode)
		}
	case spec.HasKVStore() && len(cfg.KVStore) == 0:
		return nil, fmt.Errorf("agentsim: mode %s reads the kvstore and needs the etcd endpoint (--kvstore)", cfg.Mode)
	case spec.HasMesh() && len(cfg.Mesh) == 0:
		return nil, fmt.Errorf("agentsim: mode %s reads the mesh mirrors and needs their etcd URLs (--mesh)", cfg.Mode)
	default:
		if cfg.REST == nil {
			return nil, fmt.Errorf("agentsim: mode %s needs the API server (--api-url)", cfg.Mode)
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	filter, err := identity.NewFilter(s.Agent.LabelFilter)
	if err != nil {
		return nil, fmt.Errorf("agentsim: scenario %s: agent.labelFilter: %w", s.Name, err)
	}
	topo, err := s.Generate()
	if err != nil {
		return nil, fmt.Errorf("agentsim: scenario %s: %w", s.Name, err)
	}
	if cfg.NewDatapath == nil {
		local := 0
		for i := range topo.Nodes {
			local = max(local, len(topo.PodsOnNode(i)))
		}
		// Endpoints with the same policy share its keys in the policy
		// map, so each agent's map is sized for a few distinct sets of
		// up to agent.policyMapMax keys (see datapath.SizeFor).
		keys := s.Agent.PolicyMapMax
		dcfg := datapath.SizeFor(datapath.Kind(s.Agent.Datapath), s.PodCount(), local, keys)
		log := cfg.Log
		cfg.NewDatapath = func(ctx context.Context, node string) (datapath.Datapath, error) {
			d, _, err := datapath.Open(ctx, dcfg, log)
			return d, err
		}
	}
	meshFallback := s.ControlPlane.Mesh.APIServerFallback != nil && *s.ControlPlane.Mesh.APIServerFallback
	if cfg.MeshAPIServerFallback != nil {
		meshFallback = *cfg.MeshAPIServerFallback
	}
	f := &Fleet{cfg: cfg, byNode: map[string]runner{}}
	f.m = newMetrics(cfg.Registerer, f)
	interner := &identity.Interner{}
	digests := newDigestBudget(StatusDigestShare)
	frames := newFrameCache(defaultFrameCacheBytes, f.m)
	for _, n := range topo.Nodes {
		if n.Index%cfg.Shards != cfg.Shard {
			continue
		}
		dp, err := cfg.NewDatapath(ctx, n.Name)
		if err != nil {
			f.closeAll()
			return nil, fmt.Errorf("agentsim: datapath of %s: %w", n.Name, err)
		}
		ac := AgentConfig{
			Node: n.Name, NodeIP: n.IP, PodCIDR: n.PodCIDR, Mode: cfg.Mode, Axes: spec.Axes, Cluster: s.Cluster.Name,
			Knobs: s.Agent, Release: s.Release(), Filter: filter, REST: cfg.REST, Token: cfg.Tokens[n.Name],
			KVStore: cfg.KVStore, Mesh: cfg.Mesh, Index: n.Index, MeshProbeInterval: cfg.MeshProbeInterval, ClusterNodes: len(topo.Nodes),
			MeshAPIServerFallback: meshFallback, Datapath: dp, Interner: interner, Frames: frames, DigestBudget: digests, Metrics: f.m,
			Log: cfg.Log, Now: cfg.Now, RegenInterval: cfg.RegenInterval, Workers: cfg.Workers, NoCEPWrites: cfg.NoCEPWrites,
			XDSStateOfTheWorld: s.ControlPlane.XDS.Delta != nil && !*s.ControlPlane.XDS.Delta,
		}
		var r runner
		if spec.HasXDS() {
			r, err = NewXDSAgent(ac, cfg.XDS)
		} else {
			r, err = NewAgent(ac)
		}
		if err != nil {
			dp.Close()
			f.closeAll()
			return nil, err
		}
		f.agents = append(f.agents, r)
		f.byNode[n.Name] = r
	}
	if len(f.agents) == 0 {
		return nil, fmt.Errorf("agentsim: shard %d/%d of %d nodes has no nodes", cfg.Shard, cfg.Shards, len(topo.Nodes))
	}
	return f, nil
}

// closeAll closes the datapaths of agents built so far (New failed).
func (f *Fleet) closeAll() {
	for _, r := range f.agents {
		if a, ok := r.(*Agent); ok {
			a.cfg.Datapath.Close()
			if a.kc != nil {
				a.kc.close()
			}
		}
		if x, ok := r.(*XDSAgent); ok {
			x.a.cfg.Datapath.Close()
		}
	}
}

// Metrics returns the shard's metrics.
func (f *Fleet) Metrics() *Metrics { return f.m }

func (f *Fleet) now() time.Time { return f.cfg.Now() }

// Len is the number of agents in the shard.
func (f *Fleet) Len() int { return len(f.agents) }

// Agent returns the agent of node, if this shard runs it.
func (f *Fleet) Agent(node string) (*Agent, bool) {
	r, ok := f.byNode[node]
	if !ok {
		return nil, false
	}
	switch a := r.(type) {
	case *Agent:
		return a, true
	case *XDSAgent:
		return a.a, true
	}
	return nil, false
}

// Run runs every agent until ctx ends and waits for all of them. An agent
// that fails is logged; the others keep running.
func (f *Fleet) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, r := range f.agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(ctx); err != nil && ctx.Err() == nil {
				f.cfg.Log.Error("agent stopped", "node", r.Node(), "err", err)
			}
		}()
	}
	wg.Wait()
	return nil
}

// Statuses reports every agent, sorted by node.
func (f *Fleet) Statuses() []Status {
	out := make([]Status, 0, len(f.agents))
	for _, r := range f.agents {
		out = append(out, r.Status())
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// Handler serves GET /agents: the JSON list of agent statuses.
func (f *Fleet) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+agentcontract.StatusPath, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		if err := enc.Encode(f.Statuses()); err != nil {
			f.cfg.Log.Debug("write /agents", "err", err)
		}
	})
	return mux
}

// LoadAgentTokens reads a kube-apiserver static token file (CSV rows
// token,user,uid,"group1,group2") and returns node name -> token for the
// rows whose user is "node:<name>". A missing file means no tokens (the
// agents then use the API configuration's own credentials).
func LoadAgentTokens(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent tokens: %w", err)
	}
	defer f.Close()
	return parseAgentTokens(f, path)
}

func parseAgentTokens(r io.Reader, name string) (map[string]string, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.Comment = '#'
	out := map[string]string{}
	for line := 1; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("agent tokens %s: %w", name, err)
		}
		if len(rec) < 3 {
			row, _ := cr.FieldPos(0)
			return nil, fmt.Errorf("agent tokens %s line %d: want token,user,uid[,groups], got %d fields", name, row, len(rec))
		}
		token, user := strings.TrimSpace(rec[0]), strings.TrimSpace(rec[1])
		if token == "" {
			row, _ := cr.FieldPos(0)
			return nil, fmt.Errorf("agent tokens %s line %d: empty token", name, row)
		}
		if node, ok := strings.CutPrefix(user, "node:"); ok && node != "" {
			out[node] = token
		}
	}
}
