package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/stampede-sim/stampede/internal/xdsapi"
)

// Config configures a Server. The zero value of every field but Registerer
// has a default.
type Config struct {
	// Registerer receives the Server's metrics (required; use a fresh
	// prometheus.NewRegistry() per process or test).
	Registerer prometheus.Registerer
	// Logger logs stream events at debug level; default discards.
	Logger *slog.Logger
	// Now is the clock for push latency; default time.Now.
	Now func() time.Time
	// VersionPrefix starts every version string, so that versions of a
	// restarted server never match those of the previous one (delta
	// resumption works on resource hashes, not on these). Default: the
	// start time in base 36 and "-".
	VersionPrefix string
}

// Server is the xDS control plane. See the package documentation.
type Server struct {
	cfg     Config
	log     *slog.Logger
	router  *router
	tracker *tracker
	m       *metrics

	applyMu sync.Mutex
}

// New validates cfg, fills in defaults and builds a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Registerer == nil {
		return nil, errors.New("xds: Config.Registerer is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.VersionPrefix == "" {
		cfg.VersionPrefix = strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("xds: register metrics: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		tracker: newTracker(cfg.Now, cfg.VersionPrefix, m),
		m:       m,
	}
	s.router = newRouter(cfg.VersionPrefix, s.unknownType)
	return s, nil
}

// maxUnknownTypes bounds the distinct type labels of
// stampede_xds_unknown_type_requests_total; later ones count as "other",
// so a client cannot grow the metric without bound.
const maxUnknownTypes = 16

// unknownType counts a subscription to a type this server does not serve,
// and logs the first one of each type.
func (s *Server) unknownType(typeURL string, ordinal int, first bool) {
	label := typeURL
	if ordinal >= maxUnknownTypes {
		label = "other"
	}
	s.m.unknown.WithLabelValues(label).Inc()
	if first {
		s.log.Warn("xds subscription to a type this server does not serve: left unanswered, the stream's served types go on", "type", typeURL)
	}
}

// Changes is a batch of resource updates for Apply. The zero value is an
// empty batch.
type Changes struct {
	set map[cacheKey]map[string]proto.Message
	del map[cacheKey][]string
}

// Set adds or replaces a resource. node must be the node name for
// xdsapi.TypeEndpoint and empty for every other type.
func (c *Changes) Set(typeURL, node, name string, m proto.Message) {
	if c.set == nil {
		c.set = map[cacheKey]map[string]proto.Message{}
	}
	k := cacheKey{typeURL: typeURL, node: node}
	if c.set[k] == nil {
		c.set[k] = map[string]proto.Message{}
	}
	c.set[k][name] = m
}

// Delete removes a resource; absent ones are ignored.
func (c *Changes) Delete(typeURL, node, name string) {
	if c.del == nil {
		c.del = map[cacheKey][]string{}
	}
	k := cacheKey{typeURL: typeURL, node: node}
	c.del[k] = append(c.del[k], name)
}

// Len is the number of set and delete operations in the batch.
func (c *Changes) Len() int {
	n := 0
	for _, s := range c.set {
		n += len(s)
	}
	for _, d := range c.del {
		n += len(d)
	}
	return n
}

// ErrBadChange is wrapped by Apply's errors about the batch itself.
var ErrBadChange = errors.New("bad change")

// Apply publishes a batch to the agents. Resources that are identical to
// what the server holds are skipped; if anything changed, the batch is one
// change for push latency. It returns the number of resources changed.
func (s *Server) Apply(c *Changes) (int, error) {
	keys := map[cacheKey]bool{}
	for k := range c.set {
		keys[k] = true
	}
	for k := range c.del {
		keys[k] = true
	}
	for k := range keys {
		if (k.typeURL == xdsapi.TypeEndpoint) != (k.node != "") {
			return 0, fmt.Errorf("%w: type %s with node %q: endpoints need a node, other types none", ErrBadChange, k.typeURL, k.node)
		}
		if _, err := s.router.lookup(k); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrBadChange, err)
		}
	}
	// One Apply at a time so that a change's versions are all in place
	// before the next change is recorded.
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	at := s.cfg.Now()
	need := map[cacheKey]uint64{}
	total := 0
	// Identities first, then hosts, policies and endpoints, so that an
	// agent rarely sees a reference before what it refers to.
	ordered := slices.SortedFunc(maps.Keys(keys), func(a, b cacheKey) int {
		if c := cmp.Compare(slices.Index(xdsapi.Types, a.typeURL), slices.Index(xdsapi.Types, b.typeURL)); c != 0 {
			return c
		}
		return cmp.Compare(a.node, b.node)
	})
	for _, k := range ordered {
		tc, _ := s.router.lookup(k)
		v, n, err := tc.apply(c.set[k], c.del[k])
		if err != nil {
			return total, err
		}
		if n > 0 {
			need[k] = v
			total += n
		}
	}
	if total == 0 {
		return 0, nil
	}
	s.m.changes.Inc()
	for t, n := range s.router.counts() {
		s.m.resources.WithLabelValues(shortType(t)).Set(float64(n))
	}
	s.tracker.changed(at, need)
	return total, nil
}

// PushLatency returns the push latency summary so far.
func (s *Server) PushLatency() PushLatency { return s.tracker.summary() }

// Resources returns how many resources of each type the server holds
// (endpoints summed over nodes).
func (s *Server) Resources() map[string]int { return s.router.counts() }

// Serve serves ADS (delta and state-of-the-world) on lis until ctx ends,
// then stops gracefully. It closes lis.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	xs := serverv3.NewServer(ctx, s.router, s.callbacks())
	gs := grpc.NewServer(
		grpc.MaxConcurrentStreams(1<<20),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, xs)
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve xds: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
		<-stopped
	}
	<-errc
	return nil
}

func (s *Server) callbacks() serverv3.Callbacks {
	t := s.tracker
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			t.open(id)
			return nil
		},
		StreamClosedFunc: func(id int64, node *core.Node) {
			s.log.Debug("xds stream closed", "stream", id, "node", node.GetId())
			t.closed(id)
		},
		DeltaStreamOpenFunc: func(_ context.Context, id int64, _ string) error {
			t.open(id)
			return nil
		},
		DeltaStreamClosedFunc: func(id int64, node *core.Node) {
			s.log.Debug("xds delta stream closed", "stream", id, "node", node.GetId())
			t.closed(id)
		},
		StreamRequestFunc: func(id int64, req *discovery.DiscoveryRequest) error {
			t.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail() != nil)
			if d := req.GetErrorDetail(); d != nil {
				s.log.Warn("xds NACK", "stream", id, "node", req.GetNode().GetId(), "type", req.GetTypeUrl(), "error", d.GetMessage())
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
			t.response(id, resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce(), proto.Size(resp))
		},
		StreamDeltaRequestFunc: func(id int64, req *discovery.DeltaDiscoveryRequest) error {
			t.request(id, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail() != nil)
			if d := req.GetErrorDetail(); d != nil {
				s.log.Warn("xds NACK", "stream", id, "node", req.GetNode().GetId(), "type", req.GetTypeUrl(), "error", d.GetMessage())
			}
			return nil
		},
		StreamDeltaResponseFunc: func(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
			t.response(id, resp.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce(), proto.Size(resp))
		},
	}
}

// Identities returns the identities the batch sets and the names of those
// it deletes (for a caller that also persists them).
func (c *Changes) Identities() (set []*xdsapi.Identity, deleted []string) {
	k := cacheKey{typeURL: xdsapi.TypeIdentity}
	for _, m := range c.set[k] {
		if id, ok := m.(*xdsapi.Identity); ok {
			set = append(set, id)
		}
	}
	return set, append(deleted, c.del[k]...)
}
