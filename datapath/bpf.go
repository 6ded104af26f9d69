package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"

	"github.com/stampede-sim/stampede/bpf"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// bpfDatapath keeps one agent's state in the maps of its own instance of
// bpf/policy.c: an LPM trie ipcache, an endpoints hash (IP -> policy set
// id) and one policy hash keyed by (set id, identity, port, protocol);
// endpoints with the same allowed set share one set.
type bpfDatapath struct {
	mu      sync.Mutex
	st      *state
	objs    bpf.PolicyObjects
	noBatch bool // the kernel refused a batch operation; go element by element
	closed  bool

	// mapBytes as of bytesAt updates, read at bytesRead: reading it costs
	// a syscall and an fdinfo read per map (about 0.1 ms), and it only
	// changes with updates. While updates go on it is read again at most
	// every mapBytesRefresh: at 1,000 agents the harness's 1 s scrapes
	// made these reads 12 % of a shard's CPU.
	bytes     uint64
	bytesAt   uint64
	bytesRead time.Time
	bytesOK   bool
}

// mapBytesRefresh is how stale Stats' MapBytes may be while the maps
// change.
const mapBytesRefresh = 10 * time.Second

// Return codes of the program (linux/pkt_cls.h).
const (
	tcActOK     = 0
	tcActShot   = 2
	tcActUnspec = ^uint32(0) // -1
)

// Indexes of the program's verdicts array.
const (
	verdictIndexAllow = iota
	verdictIndexDrop
	verdictIndexNotLocal
	verdictIndexNotIPv4
)

func openBPF(cfg Config) (*bpfDatapath, error) {
	if err := probeBPF(); err != nil {
		return nil, err
	}
	spec, err := bpf.LoadPolicy()
	if err != nil {
		return nil, fmt.Errorf("load policy program spec: %w", err)
	}
	for name, n := range map[string]int{
		"ipcache":   cfg.MaxIPCacheEntries,
		"endpoints": cfg.MaxEndpoints,
		"policy":    cfg.MaxPolicyEntries,
	} {
		m, ok := spec.Maps[name]
		if !ok {
			return nil, fmt.Errorf("policy program spec: no map %q", name)
		}
		m.MaxEntries = uint32(n)
	}
	d := &bpfDatapath{st: newState(cfg.limits())}
	if err := spec.LoadAndAssign(&d.objs, nil); err != nil {
		var verr *ebpf.VerifierError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("load policy program: %w\nverifier log:\n%s", err, strings.Join(verr.Log, "\n"))
		}
		return nil, fmt.Errorf("load policy program: %w", err)
	}
	return d, nil
}

func ipcacheKey(p netip.Prefix) bpf.PolicyIpcacheKey {
	return bpf.PolicyIpcacheKey{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}
}

func policyKey(id uint32, k policykey.Key) bpf.PolicyPolicyKey {
	return bpf.PolicyPolicyKey{Endpoint: id, Identity: uint32(k.Identity), Dport: k.Port, Proto: k.Proto}
}

// put writes keys[i] = vals[i], in one batch where the kernel allows it,
// and returns how many were written (a prefix of keys).
func put[K, V any](d *bpfDatapath, m *ebpf.Map, keys []K, vals []V) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	if len(keys) > 1 && !d.noBatch {
		n, err := m.BatchUpdate(keys, vals, nil)
		if err == nil || !errors.Is(err, ebpf.ErrNotSupported) {
			return n, err
		}
		d.noBatch = true
	}
	for i := range keys {
		if err := m.Put(&keys[i], &vals[i]); err != nil {
			return i, err
		}
	}
	return len(keys), nil
}

// del deletes keys, in one batch where the kernel allows it, and returns
// how many were deleted (a prefix of keys).
func del[K any](d *bpfDatapath, m *ebpf.Map, keys []K) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	if len(keys) > 1 && !d.noBatch {
		n, err := m.BatchDelete(keys, nil)
		if err == nil || !errors.Is(err, ebpf.ErrNotSupported) {
			return n, err
		}
		d.noBatch = true
	}
	for i := range keys {
		if err := m.Delete(&keys[i]); err != nil {
			return i, err
		}
	}
	return len(keys), nil
}

func (d *bpfDatapath) UpsertIPCache(entries []IPCacheEntry) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	plan, err := d.st.planUpsert(entries)
	if err != nil {
		return err
	}
	keys := make([]bpf.PolicyIpcacheKey, len(plan))
	vals := make([]bpf.PolicyIpcacheValue, len(plan))
	for i, e := range plan {
		keys[i] = ipcacheKey(e.Prefix)
		vals[i] = bpf.PolicyIpcacheValue{Identity: uint32(e.Identity)}
	}
	start := time.Now()
	n, err := put(d, d.objs.Ipcache, keys, vals)
	d.st.timed(start, n)
	for _, e := range plan[:n] {
		d.st.commitUpsert(e)
	}
	if err != nil {
		return fmt.Errorf("ipcache upsert %s (%d of %d written): %w", plan[n].Prefix, n, len(plan), err)
	}
	return nil
}

func (d *bpfDatapath) DeleteIPCache(prefixes []netip.Prefix) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	plan, err := d.st.planDelete(prefixes)
	if err != nil {
		return err
	}
	keys := make([]bpf.PolicyIpcacheKey, len(plan))
	for i, p := range plan {
		keys[i] = ipcacheKey(p)
	}
	start := time.Now()
	n, err := del(d, d.objs.Ipcache, keys)
	d.st.timed(start, n)
	for _, p := range plan[:n] {
		d.st.commitDelete(p)
	}
	if err != nil {
		return fmt.Errorf("ipcache delete %s (%d of %d deleted): %w", plan[n], n, len(plan), err)
	}
	return nil
}

func (d *bpfDatapath) ReplacePolicy(ep netip.Addr, allowed []policykey.Key) error {
	return d.ReplacePolicyGroup([]netip.Addr{ep}, allowed)
}

func (d *bpfDatapath) ReplacePolicyGroup(eps []netip.Addr, allowed []policykey.Key) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	p, err := d.st.planGroup(eps, allowed)
	if err != nil {
		return err
	}
	return d.st.applyGroup(bpfOps{d}, p)
}

func (d *bpfDatapath) DeleteEndpoint(ep netip.Addr) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	if err := checkEndpoint(ep); err != nil {
		return fmt.Errorf("delete endpoint: %w", err)
	}
	return d.st.deleteEndpoint(bpfOps{d}, ep)
}

// bpfOps writes policy sets and endpoints to the kernel maps.
type bpfOps struct{ d *bpfDatapath }

func (o bpfOps) putKeys(id uint32, keys []policykey.Key) (int, error) {
	ks := make([]bpf.PolicyPolicyKey, len(keys))
	for i, k := range keys {
		ks[i] = policyKey(id, k)
	}
	return put(o.d, o.d.objs.Policy, ks, make([]bpf.PolicyPolicyValue, len(keys)))
}

func (o bpfOps) delKeys(id uint32, keys []policykey.Key) (int, error) {
	ks := make([]bpf.PolicyPolicyKey, len(keys))
	for i, k := range keys {
		ks[i] = policyKey(id, k)
	}
	return del(o.d, o.d.objs.Policy, ks)
}

func (o bpfOps) putEndpoint(ep netip.Addr, id uint32, create bool) error {
	k := bpf.PolicyEndpointKey{Addr: ep.As4()}
	v := bpf.PolicyEndpointValue{Id: id}
	flag := ebpf.UpdateExist
	if create {
		flag = ebpf.UpdateNoExist
	}
	return o.d.objs.Endpoints.Update(&k, &v, flag)
}

func (o bpfOps) delEndpoint(ep netip.Addr) error {
	k := bpf.PolicyEndpointKey{Addr: ep.As4()}
	return o.d.objs.Endpoints.Delete(&k)
}

func (d *bpfDatapath) Digest() Digest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.st.digest
}

func (d *bpfDatapath) Check(p Packet) (Verdict, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, ErrClosed
	}
	if err := checkPacket(p); err != nil {
		return 0, err
	}
	ret, err := d.objs.StampedeIngress.Run(&ebpf.RunOptions{Data: craftPacket(p), Repeat: 1})
	if err != nil {
		return 0, fmt.Errorf("check %s: %w", p, err)
	}
	switch ret {
	case tcActOK:
		return VerdictAllow, nil
	case tcActShot:
		return VerdictDrop, nil
	case tcActUnspec:
		return VerdictNotLocal, nil
	}
	return 0, fmt.Errorf("check %s: unexpected program return %d", p, int32(ret))
}

func (d *bpfDatapath) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.st
	dg := st.digest
	s := Stats{
		Kind:           KindBPF,
		Updates:        st.updates,
		MapWrites:      st.writes,
		UpdateTime:     st.updateTime,
		IPCacheEntries: dg.IPCacheEntries,
		Endpoints:      dg.Endpoints,
		PolicyEntries:  dg.PolicyEntries,
		PolicySets:     len(st.sets),
		PolicyMapKeys:  st.setKeys,
	}
	if d.closed {
		return s
	}
	if !d.bytesOK || (d.bytesAt != st.writes && time.Since(d.bytesRead) >= mapBytesRefresh) {
		if n, err := d.mapBytes(); err == nil {
			d.bytes, d.bytesAt, d.bytesRead, d.bytesOK = n, st.writes, time.Now(), true
		}
	}
	s.MapBytes = d.bytes
	var per []uint64
	for i, dst := range map[uint32]*uint64{
		verdictIndexAllow:    &s.Allowed,
		verdictIndexDrop:     &s.Dropped,
		verdictIndexNotLocal: &s.NotLocal,
	} {
		if err := d.objs.Verdicts.Lookup(i, &per); err != nil {
			continue
		}
		for _, n := range per {
			*dst += n
		}
	}
	return s
}

// mapBytes sums the kernel's memlock figure of every map.
func (d *bpfDatapath) mapBytes() (uint64, error) {
	var total uint64
	for _, m := range []*ebpf.Map{d.objs.Ipcache, d.objs.Endpoints, d.objs.Policy, d.objs.Verdicts} {
		info, err := m.Info()
		if err != nil {
			return total, fmt.Errorf("map info: %w", err)
		}
		n, _ := info.Memlock()
		total += n
	}
	return total, nil
}

func (d *bpfDatapath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	if err := d.objs.Close(); err != nil {
		return fmt.Errorf("close bpf datapath: %w", err)
	}
	return nil
}

// KernelDigest computes the digest of what the kernel maps hold, read
// back element by element (not from the Go shadow that Digest uses), to
// prove that the kernel enforces what the agent believes. It costs one
// syscall per element.
func (d *bpfDatapath) KernelDigest() (Digest, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Digest{}, ErrClosed
	}
	var (
		ik bpf.PolicyIpcacheKey
		iv bpf.PolicyIpcacheValue
	)
	it := d.objs.Ipcache.Iterate()
	var entries []IPCacheEntry
	for it.Next(&ik, &iv) {
		p := netip.PrefixFrom(netip.AddrFrom4(ik.Addr), int(ik.Prefixlen))
		entries = append(entries, IPCacheEntry{Prefix: p, Identity: identity.ID(iv.Identity)})
	}
	if err := it.Err(); err != nil {
		return Digest{}, fmt.Errorf("iterate ipcache: %w", err)
	}
	setOf := map[netip.Addr]uint32{}
	var (
		ek bpf.PolicyEndpointKey
		ev bpf.PolicyEndpointValue
	)
	eit := d.objs.Endpoints.Iterate()
	for eit.Next(&ek, &ev) {
		setOf[netip.AddrFrom4(ek.Addr)] = ev.Id
	}
	if err := eit.Err(); err != nil {
		return Digest{}, fmt.Errorf("iterate endpoints: %w", err)
	}
	sets := map[uint32][]policykey.Key{}
	for _, id := range setOf {
		sets[id] = []policykey.Key{}
	}
	var (
		pk bpf.PolicyPolicyKey
		pv bpf.PolicyPolicyValue
	)
	pit := d.objs.Policy.Iterate()
	for pit.Next(&pk, &pv) {
		if _, ok := sets[pk.Endpoint]; !ok {
			return Digest{}, fmt.Errorf("policy key %+v: no endpoint uses policy set %d", pk, pk.Endpoint)
		}
		sets[pk.Endpoint] = append(sets[pk.Endpoint], policykey.Key{Identity: identity.ID(pk.Identity), Port: pk.Dport, Proto: pk.Proto})
	}
	if err := pit.Err(); err != nil {
		return Digest{}, fmt.Errorf("iterate policy: %w", err)
	}
	policies := make(map[netip.Addr][]policykey.Key, len(setOf))
	for a, id := range setOf {
		policies[a] = sets[id]
	}
	return ComputeDigest(entries, policies)
}
