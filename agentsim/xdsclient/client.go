package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stampede-sim/stampede/internal/policy"
	"github.com/stampede-sim/stampede/internal/xdsapi"
)

// Endpoint is one pod of the agent's own node.
type Endpoint struct {
	Namespace string
	Name      string
	IP        netip.Addr
	Identity  uint32
}

// Sink receives the control plane's state. Methods are called from one
// goroutine, never concurrently. Deletes of absent items must be ignored.
// An error returned by a method makes the client NACK the response (what
// was applied before the error stays applied).
type Sink interface {
	// UpsertIdentity sets the identity labels of identity id; labels are
	// sorted "source:key=value" strings.
	UpsertIdentity(id uint32, labels []string) error
	// DeleteIdentity forgets identity id.
	DeleteIdentity(id uint32) error
	// SetIdentityHosts replaces the full address set of identity id (the
	// agent's ipcache entries for that identity); addrs are sorted.
	SetIdentityHosts(id uint32, addrs []netip.Addr) error
	// DeleteIdentityHosts removes every address of identity id.
	DeleteIdentityHosts(id uint32) error
	// UpsertPolicy adds or replaces the policy namespace/name with its
	// compiled rules (owned by the sink from then on).
	UpsertPolicy(namespace, name string, rules []policy.Rule) error
	// DeletePolicy removes a policy.
	DeletePolicy(namespace, name string) error
	// SetEndpoint adds or replaces a local endpoint.
	SetEndpoint(ep Endpoint) error
	// DeleteEndpoint removes a local endpoint.
	DeleteEndpoint(namespace, name string) error
	// Applied says that every resource of a response of typeURL at version
	// has been applied; the ACK follows.
	Applied(typeURL, version string)
}

// Config configures a Client.
type Config struct {
	// Server is the control plane's gRPC address (host:port). Required.
	Server string
	// Node is the agent's node name, sent as xDS node id. Required.
	Node string
	// Sink receives the state. Required.
	Sink Sink
	// StateOfTheWorld selects state-of-the-world ADS instead of delta.
	StateOfTheWorld bool
	// Logger; default discards.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 100ms
	// and 5s); the delay doubles per failed attempt, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// DialOptions are added to the gRPC dial (tests use them).
	DialOptions []grpc.DialOption
}

// Stats counts what a Client did.
type Stats struct {
	// Responses received, and of those Applied (ACKed) and NACKed.
	Responses, Applied, NACKs uint64
	// Resources upserted and deleted in the Sink.
	Upserts, Deletes uint64
	// Bytes of resource payload received.
	Bytes uint64
	// Streams opened; Reconnects is Streams-1 at most (failed dials count).
	Streams, Reconnects uint64
	// LastError is the last NACK or stream error message.
	LastError string
}

// Client is one agent's ADS client.
type Client struct {
	cfg Config
	log *slog.Logger

	// known[type][name] is the version (delta) or payload (sotw) of every
	// resource applied; it survives reconnects. Touched by Run only.
	known map[string]map[string]string
	// sotwVersion[type] is the last ACKed state-of-the-world version.
	sotwVersion map[string]string

	responses, applied, nacks, upserts, deletes, bytes, streams, reconnects atomic.Uint64
	lastErr                                                                 atomic.Pointer[string]

	// work counts by type what arrived and what the client holds (the
	// map is built by New and only read after); sizes[type][name] is the
	// payload size of every resource applied (touched by Run only).
	work  map[string]*typeWork
	sizes map[string]map[string]int
}

// typeWork is what arrived and is held of one type.
type typeWork struct {
	events, bytes  atomic.Uint64
	objects, held  atomic.Int64
	heldBytesLocal int64 // Run only
}

// TypeWork is what arrived and is held of one resource type.
type TypeWork struct {
	// Events counts the resources received (upserts and removals; in
	// state of the world, every resource of every response, as the
	// protocol resends them, and those found gone). Bytes is their
	// serialized size (the Any's value; gRPC framing left out).
	Events, Bytes uint64
	// Objects is the number of resources held, HeldBytes their
	// serialized size.
	Objects, HeldBytes int64
}

// Work returns, by short type name (Identity, IdentityHosts, Policy,
// Endpoint), what arrived and what the client holds.
func (c *Client) Work() map[string]TypeWork {
	out := make(map[string]TypeWork, len(c.work))
	for t, w := range c.work {
		out[shortType(t)] = TypeWork{Events: w.events.Load(), Bytes: w.bytes.Load(), Objects: w.objects.Load(), HeldBytes: w.held.Load()}
	}
	return out
}

// New validates cfg and returns a Client; it does not connect.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.Server == "":
		return nil, errors.New("xdsclient: Config.Server is empty")
	case cfg.Node == "":
		return nil, errors.New("xdsclient: Config.Node is empty")
	case cfg.Sink == nil:
		return nil, errors.New("xdsclient: Config.Sink is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(5*time.Second, cfg.MinBackoff)
	}
	c := &Client{cfg: cfg, log: cfg.Logger.With("node", cfg.Node), known: map[string]map[string]string{}, sotwVersion: map[string]string{},
		work: map[string]*typeWork{}, sizes: map[string]map[string]int{}}
	for _, t := range xdsapi.Types {
		c.known[t] = map[string]string{}
		c.work[t] = &typeWork{}
		c.sizes[t] = map[string]int{}
	}
	return c, nil
}

// Stats returns the counters so far.
func (c *Client) Stats() Stats {
	s := Stats{
		Responses: c.responses.Load(), Applied: c.applied.Load(), NACKs: c.nacks.Load(),
		Upserts: c.upserts.Load(), Deletes: c.deletes.Load(), Bytes: c.bytes.Load(),
		Streams: c.streams.Load(), Reconnects: c.reconnects.Load(),
	}
	if p := c.lastErr.Load(); p != nil {
		s.LastError = *p
	}
	return s
}

func (c *Client) setErr(err error) {
	s := err.Error()
	c.lastErr.Store(&s)
}

// Run connects, streams and reconnects until ctx ends. It returns nil when
// ctx ends and an error only if the connection cannot be set up at all.
func (c *Client) Run(ctx context.Context) error {
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, c.cfg.DialOptions...)
	conn, err := grpc.NewClient(c.cfg.Server, opts...)
	if err != nil {
		return fmt.Errorf("xdsclient %s: dial %s: %w", c.cfg.Node, c.cfg.Server, err)
	}
	defer conn.Close()
	ads := discovery.NewAggregatedDiscoveryServiceClient(conn)
	delay := c.cfg.MinBackoff
	for first := true; ; first = false {
		if !first {
			c.reconnects.Add(1)
		}
		var progressed bool
		if c.cfg.StateOfTheWorld {
			progressed, err = c.runSotW(ctx, ads)
		} else {
			progressed, err = c.runDelta(ctx, ads)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			c.setErr(err)
			c.log.Debug("xds stream ended", "error", err)
		}
		if progressed {
			delay = c.cfg.MinBackoff
		}
		// Full jitter over [delay/2, delay).
		d := delay/2 + rand.N(delay/2+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(delay*2, c.cfg.MaxBackoff)
	}
}

func (c *Client) node() *core.Node { return &core.Node{Id: c.cfg.Node} }

// runDelta runs one delta stream until it breaks. progressed says whether
// at least one response was handled.
func (c *Client) runDelta(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return false, fmt.Errorf("open delta stream: %w", err)
	}
	c.streams.Add(1)
	for _, t := range xdsapi.Types {
		req := &discovery.DeltaDiscoveryRequest{Node: c.node(), TypeUrl: t}
		if len(c.known[t]) > 0 {
			req.InitialResourceVersions = make(map[string]string, len(c.known[t]))
			for n, v := range c.known[t] {
				req.InitialResourceVersions[n] = v
			}
		}
		if err := st.Send(req); err != nil {
			return false, fmt.Errorf("subscribe %s: %w", t, err)
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("stream closed by server")
			}
			return progressed, fmt.Errorf("receive: %w", err)
		}
		progressed = true
		c.responses.Add(1)
		ack := &discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}
		if err := c.applyDelta(resp); err != nil {
			c.nacks.Add(1)
			c.setErr(err)
			c.log.Warn("xds NACK", "type", resp.GetTypeUrl(), "version", resp.GetSystemVersionInfo(), "error", err)
			ack.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		} else {
			c.applied.Add(1)
		}
		if err := st.Send(ack); err != nil {
			return progressed, fmt.Errorf("ack %s: %w", resp.GetTypeUrl(), err)
		}
	}
}

func (c *Client) applyDelta(resp *discovery.DeltaDiscoveryResponse) error {
	t := resp.GetTypeUrl()
	known, ok := c.known[t]
	if !ok {
		return fmt.Errorf("unknown type %q", t)
	}
	w := c.work[t]
	w.events.Add(uint64(len(resp.GetResources()) + len(resp.GetRemovedResources())))
	items := make([]decoded, 0, len(resp.GetResources()))
	for _, r := range resp.GetResources() {
		c.bytes.Add(uint64(len(r.GetResource().GetValue())))
		w.bytes.Add(uint64(len(r.GetResource().GetValue())))
		d, err := decode(t, r.GetName(), r.GetResource())
		if err != nil {
			return err
		}
		d.version = r.GetVersion()
		d.size = len(r.GetResource().GetValue())
		items = append(items, d)
	}
	removed := make([]decoded, 0, len(resp.GetRemovedResources()))
	for _, name := range resp.GetRemovedResources() {
		d, err := decodeName(t, name)
		if err != nil {
			return err
		}
		removed = append(removed, d)
	}
	return c.apply(t, known, items, removed, resp.GetSystemVersionInfo())
}

// runSotW runs one state-of-the-world stream until it breaks.
func (c *Client) runSotW(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient) (progressed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return false, fmt.Errorf("open stream: %w", err)
	}
	c.streams.Add(1)
	for _, t := range xdsapi.Types {
		if err := st.Send(&discovery.DiscoveryRequest{Node: c.node(), TypeUrl: t, VersionInfo: c.sotwVersion[t]}); err != nil {
			return false, fmt.Errorf("subscribe %s: %w", t, err)
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("stream closed by server")
			}
			return progressed, fmt.Errorf("receive: %w", err)
		}
		progressed = true
		c.responses.Add(1)
		t := resp.GetTypeUrl()
		ack := &discovery.DiscoveryRequest{Node: c.node(), TypeUrl: t, ResponseNonce: resp.GetNonce()}
		if err := c.applySotW(resp); err != nil {
			c.nacks.Add(1)
			c.setErr(err)
			c.log.Warn("xds NACK", "type", t, "version", resp.GetVersionInfo(), "error", err)
			ack.VersionInfo = c.sotwVersion[t]
			ack.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
		} else {
			c.applied.Add(1)
			c.sotwVersion[t] = resp.GetVersionInfo()
			ack.VersionInfo = resp.GetVersionInfo()
		}
		if err := st.Send(ack); err != nil {
			return progressed, fmt.Errorf("ack %s: %w", t, err)
		}
	}
}

// applySotW applies a full state: what changed is upserted, what is
// missing is deleted.
func (c *Client) applySotW(resp *discovery.DiscoveryResponse) error {
	t := resp.GetTypeUrl()
	known, ok := c.known[t]
	if !ok {
		return fmt.Errorf("unknown type %q", t)
	}
	var changed []decoded
	seen := make(map[string]bool, len(resp.GetResources()))
	w := c.work[t]
	w.events.Add(uint64(len(resp.GetResources())))
	for _, a := range resp.GetResources() {
		c.bytes.Add(uint64(len(a.GetValue())))
		w.bytes.Add(uint64(len(a.GetValue())))
		d, err := decode(t, "", a)
		if err != nil {
			return err
		}
		if seen[d.name] {
			return fmt.Errorf("%s %q: sent twice", shortType(t), d.name)
		}
		seen[d.name] = true
		d.version = string(a.GetValue())
		d.size = len(a.GetValue())
		if known[d.name] != d.version {
			changed = append(changed, d)
		}
	}
	var gone []decoded
	for name := range known {
		if !seen[name] {
			d, err := decodeName(t, name)
			if err != nil {
				return err
			}
			gone = append(gone, d)
		}
	}
	w.events.Add(uint64(len(gone)))
	return c.apply(t, known, changed, gone, resp.GetVersionInfo())
}

// apply hands a validated response to the sink: upserts, then removals,
// keeping known (name -> version) in step, then reports the version applied.
func (c *Client) apply(t string, known map[string]string, upserts, removes []decoded, version string) error {
	w, sizes := c.work[t], c.sizes[t]
	defer func() {
		w.objects.Store(int64(len(sizes)))
		w.held.Store(w.heldBytesLocal)
	}()
	for _, d := range upserts {
		if err := c.upsert(d); err != nil {
			return err
		}
		known[d.name] = d.version
		w.heldBytesLocal += int64(d.size - sizes[d.name])
		sizes[d.name] = d.size
	}
	for _, d := range removes {
		if err := c.remove(d); err != nil {
			return err
		}
		delete(known, d.name)
		w.heldBytesLocal -= int64(sizes[d.name])
		delete(sizes, d.name)
	}
	c.cfg.Sink.Applied(t, version)
	return nil
}
