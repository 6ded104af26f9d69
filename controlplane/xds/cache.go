package xds

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cache "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/stampede-sim/stampede/internal/xdsapi"
)

// cacheKey names one resource collection: a global type (node == "") or
// the endpoints of one node.
type cacheKey struct {
	typeURL string
	node    string
}

func (k cacheKey) String() string {
	if k.node == "" {
		return k.typeURL
	}
	return k.typeURL + "@" + k.node
}

// typeCache is one collection: a LinearCache for delta watches and a full
// state view for state-of-the-world watches, updated together under mu so
// that both carry the same version numbers.
type typeCache struct {
	key    cacheKey
	prefix string

	mu      sync.Mutex
	version uint64
	res     map[string]proto.Message
	anys    map[string]*anypb.Any
	linear  *cache.LinearCache
	sotw    map[uint64]sotwWatch
	nextID  uint64
}

type sotwWatch struct {
	req *discovery.DiscoveryRequest
	out chan cache.Response
}

func newTypeCache(key cacheKey, prefix string) *typeCache {
	return &typeCache{
		key:    key,
		prefix: prefix,
		res:    map[string]proto.Message{},
		anys:   map[string]*anypb.Any{},
		linear: cache.NewLinearCache(key.typeURL, cache.WithVersionPrefix(prefix), cache.WithLogger(quietLogger{})),
		sotw:   map[uint64]sotwWatch{},
	}
}

func (c *typeCache) versionString() string { return c.prefix + strconv.FormatUint(c.version, 10) }

// apply sets and deletes resources, skipping those that do not change
// anything. It returns the new version, or 0 if nothing changed.
func (c *typeCache) apply(set map[string]proto.Message, del []string) (uint64, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	upd := map[string]types.Resource{}
	newAnys := map[string]*anypb.Any{}
	for name, m := range set {
		if old, ok := c.res[name]; ok && proto.Equal(old, m) {
			continue
		}
		a, err := anypb.New(m)
		if err != nil {
			return 0, 0, fmt.Errorf("encode %s %q: %w", c.key, name, err)
		}
		upd[name] = m
		newAnys[name] = a
	}
	var gone []string
	for _, name := range del {
		if _, ok := c.res[name]; ok {
			if _, alsoSet := upd[name]; !alsoSet {
				gone = append(gone, name)
			}
		}
	}
	if len(upd) == 0 && len(gone) == 0 {
		return 0, 0, nil
	}
	c.version++
	if err := c.linear.UpdateResources(upd, gone); err != nil {
		return 0, 0, fmt.Errorf("update %s: %w", c.key, err)
	}
	for name, m := range upd {
		c.res[name] = m.(proto.Message)
		c.anys[name] = newAnys[name]
	}
	for _, name := range gone {
		delete(c.res, name)
		delete(c.anys, name)
	}
	if len(c.sotw) > 0 {
		resp := c.fullStateLocked()
		for id, w := range c.sotw {
			w.out <- c.respondLocked(w.req, resp)
			delete(c.sotw, id)
		}
	}
	return c.version, len(upd) + len(gone), nil
}

func (c *typeCache) fullStateLocked() *discovery.DiscoveryResponse {
	names := make([]string, 0, len(c.anys))
	for n := range c.anys {
		names = append(names, n)
	}
	// Deterministic order makes responses comparable.
	slices.Sort(names)
	resp := &discovery.DiscoveryResponse{VersionInfo: c.versionString(), TypeUrl: c.key.typeURL}
	resp.Resources = make([]*anypb.Any, 0, len(names))
	for _, n := range names {
		resp.Resources = append(resp.Resources, c.anys[n])
	}
	return resp
}

func (c *typeCache) respondLocked(req *discovery.DiscoveryRequest, full *discovery.DiscoveryResponse) cache.Response {
	return &cache.PassthroughResponse{Request: req, DiscoveryResponse: proto.CloneOf(full)}
}

// createWatch is the state-of-the-world watch: answer now with the full
// state if the client's version is not the current one (and the request is
// not a NACK), else when the next change happens.
func (c *typeCache) createWatch(req *discovery.DiscoveryRequest, out chan cache.Response) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A NACK names the last good version; answering it with the full state
	// again would resend what was just rejected, so wait for a change.
	if req.GetErrorDetail() == nil && req.GetVersionInfo() != c.versionString() {
		out <- c.respondLocked(req, c.fullStateLocked())
		return func() {}
	}
	c.nextID++
	id := c.nextID
	c.sotw[id] = sotwWatch{req: req, out: out}
	return func() {
		c.mu.Lock()
		delete(c.sotw, id)
		c.mu.Unlock()
	}
}

func (c *typeCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.res)
}

// router is the cache.Cache the go-control-plane server talks to: it sends
// each watch to the collection of its type (and node, for endpoints).
type router struct {
	prefix string
	// onUnknown is told of every subscription to a type the server does
	// not serve, with the order in which that type was first asked for
	// (0 for the first unserved type) and whether this is that first time.
	onUnknown func(typeURL string, ordinal int, first bool)

	mu      sync.Mutex
	global  map[string]*typeCache
	nodes   map[string]*typeCache
	unknown map[string]int // type URLs asked for and not served, by first-seen order
}

func newRouter(prefix string, onUnknown func(typeURL string, ordinal int, first bool)) *router {
	r := &router{prefix: prefix, onUnknown: onUnknown, global: map[string]*typeCache{}, nodes: map[string]*typeCache{}, unknown: map[string]int{}}
	for _, t := range xdsapi.Types {
		if t != xdsapi.TypeEndpoint {
			r.global[t] = newTypeCache(cacheKey{typeURL: t}, prefix)
		}
	}
	return r
}

// errUnknownType is returned for a watch on a type this server does not serve.
var errUnknownType = errors.New("unknown resource type")

func (r *router) lookup(key cacheKey) (*typeCache, error) {
	if key.typeURL != xdsapi.TypeEndpoint {
		c, ok := r.global[key.typeURL]
		if !ok {
			return nil, fmt.Errorf("%w %q", errUnknownType, key.typeURL)
		}
		return c, nil
	}
	if key.node == "" {
		return nil, fmt.Errorf("endpoints need a node id in the request")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.nodes[key.node]
	if !ok {
		c = newTypeCache(key, r.prefix)
		r.nodes[key.node] = c
	}
	return c, nil
}

func keyOf(typeURL, node string) cacheKey {
	if typeURL == xdsapi.TypeEndpoint {
		return cacheKey{typeURL: typeURL, node: node}
	}
	return cacheKey{typeURL: typeURL}
}

// unserved reports whether err is a watch on a type this server does not
// serve; if so it tells onUnknown. Such a watch stays open and is never
// answered, which is what go-control-plane's snapshot cache does for a
// type its snapshot lacks (pkg/cache/v3/simple.go
// snapshotCache.CreateWatch, v0.14.0): an error from CreateWatch would end
// the whole ADS stream (pkg/server/sotw/v3/ads.go processADS and
// pkg/server/delta/v3/server.go where it calls CreateDeltaWatch), served types included, so a client that
// asks for one type too many would lose everything.
func (r *router) unserved(typeURL string, err error) bool {
	if !errors.Is(err, errUnknownType) {
		return false
	}
	r.mu.Lock()
	ord, seen := r.unknown[typeURL]
	if !seen {
		ord = len(r.unknown)
		r.unknown[typeURL] = ord
	}
	r.mu.Unlock()
	if r.onUnknown != nil {
		r.onUnknown(typeURL, ord, !seen)
	}
	return true
}

func (r *router) CreateWatch(req *cache.Request, _ cache.Subscription, out chan cache.Response) (func(), error) {
	c, err := r.lookup(keyOf(req.GetTypeUrl(), req.GetNode().GetId()))
	if r.unserved(req.GetTypeUrl(), err) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	return c.createWatch(req, out), nil
}

func (r *router) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	c, err := r.lookup(keyOf(req.GetTypeUrl(), req.GetNode().GetId()))
	if r.unserved(req.GetTypeUrl(), err) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	return c.linear.CreateDeltaWatch(req, sub, out)
}

func (r *router) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("fetch (REST xDS) is not served")
}

// counts returns the number of resources of each type.
func (r *router) counts() map[string]int {
	out := map[string]int{}
	for t, c := range r.global {
		out[t] = c.size()
	}
	r.mu.Lock()
	nodes := maps.Clone(r.nodes)
	r.mu.Unlock()
	for _, c := range nodes {
		out[xdsapi.TypeEndpoint] += c.size()
	}
	return out
}

// parseVersion returns the number of a version string made by a typeCache
// with this prefix, or false if it is not one.
func parseVersion(prefix, v string) (uint64, bool) {
	s, ok := strings.CutPrefix(v, prefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// quietLogger drops go-control-plane's own logging.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any) {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Warnf(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
