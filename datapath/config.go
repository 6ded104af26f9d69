package datapath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
)

// Kind names a datapath implementation.
type Kind string

// Kinds.
const (
	// KindAuto picks KindBPF when this process may create BPF maps and
	// load the program, and KindMem otherwise.
	KindAuto Kind = "auto"
	// KindBPF keeps the state in real BPF maps enforced by bpf/policy.c.
	KindBPF Kind = "bpf"
	// KindMem keeps it in Go maps with the same semantics.
	KindMem Kind = "mem"
)

// Default map sizes, used for zero Config fields.
const (
	DefaultMaxIPCacheEntries = 65536
	DefaultMaxEndpoints      = 1024
	DefaultMaxPolicyEntries  = 65536
	// DefaultMaxEndpointPolicy is Cilium's default --bpf-policy-map-max.
	DefaultMaxEndpointPolicy = 16384
)

// Config sizes one agent's datapath. Callers derive it from the scenario
// (see SizeFor); zero fields get the defaults above.
type Config struct {
	// Kind is auto (the default), bpf or mem.
	Kind Kind
	// MaxIPCacheEntries bounds the ipcache (one entry per pod IP).
	MaxIPCacheEntries int
	// MaxEndpoints bounds the local endpoints (pods on this node).
	MaxEndpoints int
	// MaxPolicyEntries bounds the keys of the policy map: of all distinct
	// allowed sets together (endpoints with the same set share its keys).
	MaxPolicyEntries int
	// MaxEndpointPolicy bounds one endpoint's allowed set, like the size
	// of a Cilium endpoint's policy map (--bpf-policy-map-max): a larger
	// set is refused with ErrPolicyOverflow.
	MaxEndpointPolicy int
}

// SizeFor returns a Config for an agent in a cluster of pods pods, with
// localEndpoints pods on its node and endpoint policies of at most
// keysPerEndpoint keys (Cilium's policy map size). The ipcache and
// endpoints get a quarter as headroom; the policy map has room for four
// distinct full-size sets at once (endpoints with the same policy share
// one set; a change that is not common to all of a set's endpoints
// writes a new set before the old one goes), or for more, smaller ones.
//
// What the size costs: the ipcache (LPM trie) and the policy hash grow
// with their entries, but the policy hash's bucket array (16 bytes per
// bucket, MaxPolicyEntries rounded up to a power of two) is allocated when
// the datapath is opened: 2 MiB per agent at 4 x 16,384 keys.
func SizeFor(kind Kind, pods, localEndpoints, keysPerEndpoint int) Config {
	return Config{
		Kind:              kind,
		MaxIPCacheEntries: pods + pods/4 + 256,
		MaxEndpoints:      localEndpoints + localEndpoints/4 + 16,
		MaxPolicyEntries:  min(localEndpoints+1, 4)*keysPerEndpoint + 1024,
		MaxEndpointPolicy: keysPerEndpoint,
	}
}

func (c *Config) setDefaults() {
	if c.Kind == "" {
		c.Kind = KindAuto
	}
	if c.MaxIPCacheEntries == 0 {
		c.MaxIPCacheEntries = DefaultMaxIPCacheEntries
	}
	if c.MaxEndpoints == 0 {
		c.MaxEndpoints = DefaultMaxEndpoints
	}
	if c.MaxPolicyEntries == 0 {
		c.MaxPolicyEntries = DefaultMaxPolicyEntries
	}
	if c.MaxEndpointPolicy == 0 {
		c.MaxEndpointPolicy = DefaultMaxEndpointPolicy
	}
}

// maxMapEntries is a sanity bound on any one map's size.
const maxMapEntries = 1 << 26

func (c *Config) validate() error {
	switch c.Kind {
	case KindAuto, KindBPF, KindMem:
	default:
		return fmt.Errorf("datapath config: kind: unknown %q (want auto, bpf or mem)", c.Kind)
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxIPCacheEntries", c.MaxIPCacheEntries},
		{"MaxEndpoints", c.MaxEndpoints},
		{"MaxPolicyEntries", c.MaxPolicyEntries},
		{"MaxEndpointPolicy", c.MaxEndpointPolicy},
	} {
		if f.v < 0 || f.v > maxMapEntries {
			return fmt.Errorf("datapath config: %s: %d out of range [0, %d]", f.name, f.v, maxMapEntries)
		}
	}
	return nil
}

func (c Config) limits() limits {
	return limits{ipcache: c.MaxIPCacheEntries, endpoints: c.MaxEndpoints, policy: c.MaxPolicyEntries, endpointPolicy: c.MaxEndpointPolicy}
}

// Open creates an agent's datapath. For KindAuto it decides once per
// process whether BPF is usable (by creating a tiny map, then loading the
// program with tiny maps) and logs one line saying which kind it chose and
// why; later calls reuse the decision, so all of a process's agents get
// the same kind, and once bpf is chosen a failure to open is an error. The
// returned Kind is the one in use (never KindAuto). The caller closes the
// Datapath.
func Open(ctx context.Context, cfg Config, log *slog.Logger) (Datapath, Kind, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, "", err
	}
	switch cfg.Kind {
	case KindMem:
		return newMem(cfg), KindMem, nil
	case KindBPF:
		d, err := openBPF(cfg)
		if err != nil {
			return nil, "", err
		}
		return d, KindBPF, nil
	}

	auto.Do(func() {
		auto.kind, auto.reason = decideAuto()
		log.Info("datapath: auto chose "+string(auto.kind), "kind", auto.kind, "reason", auto.reason)
	})
	if auto.kind == KindMem {
		return newMem(cfg), KindMem, nil
	}
	// BPF worked for this process once: a failure now (say, out of
	// memory) is an error, not a reason to mix kinds within one run.
	d, err := openBPF(cfg)
	if err != nil {
		return nil, "", err
	}
	return d, KindBPF, nil
}

// auto is the process's one decision for KindAuto.
var auto struct {
	sync.Once
	kind   Kind
	reason string
}

// decideAuto probes whether this process may create a BPF map and load
// the policy program (with tiny maps).
func decideAuto() (Kind, string) {
	if err := autoProbe(); err != nil {
		return KindMem, err.Error()
	}
	d, err := openBPF(Config{MaxIPCacheEntries: 1, MaxEndpoints: 1, MaxPolicyEntries: 1})
	if err != nil {
		return KindMem, fmt.Errorf("%w: %w", ErrNoBPF, err).Error()
	}
	if err := d.Close(); err != nil {
		return KindMem, err.Error()
	}
	return KindBPF, "this process can create BPF maps and load the policy program"
}

var (
	// autoProbe is probeBPF; tests replace it to exercise the fallback.
	autoProbe = probeBPF
	probeOnce sync.Once
	probeErr  error
)

// ErrNoBPF is wrapped by the error saying why BPF is not usable.
var ErrNoBPF = errors.New("bpf not usable")

// probeBPF reports whether this process may create BPF maps, by creating
// and closing a one-element array. It runs once per process.
func probeBPF() error {
	probeOnce.Do(func() {
		if err := rlimit.RemoveMemlock(); err != nil {
			probeErr = fmt.Errorf("%w: raise RLIMIT_MEMLOCK: %w", ErrNoBPF, err)
			return
		}
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
		if err != nil {
			probeErr = fmt.Errorf("%w: create probe map: %w", ErrNoBPF, err)
			return
		}
		probeErr = m.Close()
	})
	return probeErr
}
