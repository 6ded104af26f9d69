package datapath

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

var (
	clientIP = netip.MustParseAddr("10.0.1.5")  // pod in namespace "shop"
	serverIP = netip.MustParseAddr("10.0.2.7")  // local endpoint
	otherIP  = netip.MustParseAddr("10.0.3.9")  // pod of an unrelated namespace
	remoteIP = netip.MustParseAddr("10.0.9.10") // not a local endpoint
)

func host(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }

// TestRelabel models a namespace relabel: namespace "shop" goes from
// team=a to team=b, so its pods get a new identity. Policy "from-a" allows
// namespaces with team=a to reach the server on 8080/TCP, policy "from-b"
// those with team=b. The agent resolves the policies into keys; here the
// keys are written directly.
func TestRelabel(t *testing.T) {
	const (
		shopTeamA identity.ID = 1000 // identity of shop's pods before the relabel
		shopTeamB identity.ID = 1001 // after
		other     identity.ID = 1002
	)
	pkt := Packet{Src: clientIP, Dst: serverIP, DstPort: 8080, Proto: policykey.ProtoTCP}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			for _, tc := range []struct {
				policy        string
				before, after Verdict
				// allowed resolves the policy against the identities
				// that exist before and after the relabel.
				allowedBefore, allowedAfter []policykey.Key
			}{
				{
					policy:        "from-a",
					allowedBefore: []policykey.Key{{Identity: shopTeamA, Port: 8080, Proto: policykey.ProtoTCP}},
					allowedAfter:  []policykey.Key{},
					before:        VerdictAllow,
					after:         VerdictDrop,
				},
				{
					policy:        "from-b",
					allowedBefore: []policykey.Key{},
					allowedAfter:  []policykey.Key{{Identity: shopTeamB, Port: 8080, Proto: policykey.ProtoTCP}},
					before:        VerdictDrop,
					after:         VerdictAllow,
				},
			} {
				t.Run(tc.policy, func(t *testing.T) {
					d := open(t, kind, Config{})
					must(t, d.UpsertIPCache([]IPCacheEntry{{host(clientIP), shopTeamA}, {host(otherIP), other}}))
					must(t, d.ReplacePolicy(serverIP, tc.allowedBefore))
					check(t, d, pkt, tc.before)
					check(t, d, Packet{Src: otherIP, Dst: serverIP, DstPort: 8080, Proto: policykey.ProtoTCP}, VerdictDrop)

					// The relabel: new identity in the ipcache, policy
					// recomputed for the new identities.
					must(t, d.UpsertIPCache([]IPCacheEntry{{host(clientIP), shopTeamB}}))
					must(t, d.ReplacePolicy(serverIP, tc.allowedAfter))
					check(t, d, pkt, tc.after)
					check(t, d, Packet{Src: otherIP, Dst: serverIP, DstPort: 8080, Proto: policykey.ProtoTCP}, VerdictDrop)
				})
			}
		})
	}
}

func check(t *testing.T, d Datapath, p Packet, want Verdict) {
	t.Helper()
	got, err := d.Check(p)
	if err != nil {
		t.Fatalf("check %s: %v", p, err)
	}
	if got != want {
		t.Errorf("check %s: got %s, want %s", p, got, want)
	}
}

// TestVerdicts runs one table of packets through both implementations.
func TestVerdicts(t *testing.T) {
	ipcache := []IPCacheEntry{
		{host(clientIP), 1000},
		{host(otherIP), 1002},
		{netip.MustParsePrefix("10.0.4.0/24"), 1003},
		{netip.MustParsePrefix("10.0.4.128/25"), 1004},
		{netip.MustParsePrefix("10.0.5.0/24"), 1005},
	}
	wildIP := netip.MustParseAddr("10.0.2.8")
	emptyIP := netip.MustParseAddr("10.0.2.9")
	policies := map[netip.Addr][]policykey.Key{
		serverIP: {
			{Identity: 1000, Port: 8080, Proto: policykey.ProtoTCP},
			{Identity: 1000, Port: 53, Proto: policykey.ProtoUDP},
			{Identity: 1003, Port: 0, Proto: policykey.ProtoTCP}, // any TCP port
			{Identity: 1004, Port: 443, Proto: 0},                // port 443, any protocol
			{Identity: identity.World, Port: 80, Proto: policykey.ProtoTCP},
			{Identity: 1005, Port: 0, Proto: 0}, // anything from 1005
		},
		wildIP:  {{Identity: policykey.AnyIdentity, Port: 9090, Proto: policykey.ProtoTCP}, {Identity: 1002, Port: 0, Proto: 0}},
		emptyIP: {},
	}
	src := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	cases := []struct {
		name string
		p    Packet
		want Verdict
	}{
		{"exact tcp", Packet{clientIP, serverIP, 8080, policykey.ProtoTCP}, VerdictAllow},
		{"wrong port", Packet{clientIP, serverIP, 8081, policykey.ProtoTCP}, VerdictDrop},
		{"wrong proto", Packet{clientIP, serverIP, 8080, policykey.ProtoUDP}, VerdictDrop},
		{"exact udp", Packet{clientIP, serverIP, 53, policykey.ProtoUDP}, VerdictAllow},
		{"other identity", Packet{otherIP, serverIP, 8080, policykey.ProtoTCP}, VerdictDrop},
		{"lpm /24 any tcp port", Packet{src("10.0.4.3"), serverIP, 12345, policykey.ProtoTCP}, VerdictAllow},
		{"lpm /24 udp", Packet{src("10.0.4.3"), serverIP, 12345, policykey.ProtoUDP}, VerdictDrop},
		{"lpm /25 longer wins", Packet{src("10.0.4.200"), serverIP, 12345, policykey.ProtoTCP}, VerdictDrop},
		{"lpm /25 443 tcp", Packet{src("10.0.4.200"), serverIP, 443, policykey.ProtoTCP}, VerdictAllow},
		{"lpm /25 443 udp", Packet{src("10.0.4.200"), serverIP, 443, policykey.ProtoUDP}, VerdictAllow},
		{"world allowed port", Packet{src("192.0.2.1"), serverIP, 80, policykey.ProtoTCP}, VerdictAllow},
		{"world other port", Packet{src("192.0.2.1"), serverIP, 81, policykey.ProtoTCP}, VerdictDrop},
		{"any from 1005 icmp", Packet{src("10.0.5.5"), serverIP, 0, 1}, VerdictAllow},
		{"any from 1005 udp", Packet{src("10.0.5.5"), serverIP, 7, policykey.ProtoUDP}, VerdictAllow},
		{"icmp not allowed", Packet{clientIP, serverIP, 0, 1}, VerdictDrop},
		{"icmp port ignored", Packet{clientIP, serverIP, 8080, 1}, VerdictDrop},
		{"identity wildcard", Packet{src("192.0.2.1"), wildIP, 9090, policykey.ProtoTCP}, VerdictAllow},
		{"identity wildcard udp", Packet{clientIP, wildIP, 9090, policykey.ProtoUDP}, VerdictDrop},
		{"all from 1002", Packet{otherIP, wildIP, 1, policykey.ProtoUDP}, VerdictAllow},
		{"empty policy drops", Packet{clientIP, emptyIP, 8080, policykey.ProtoTCP}, VerdictDrop},
		{"not local", Packet{clientIP, remoteIP, 8080, policykey.ProtoTCP}, VerdictNotLocal},
	}
	got := map[Kind][]Verdict{}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			d := open(t, kind, Config{})
			must(t, d.UpsertIPCache(ipcache))
			for ep, keys := range policies {
				must(t, d.ReplacePolicy(ep, keys))
			}
			for _, tc := range cases {
				v, err := d.Check(tc.p)
				if err != nil {
					t.Fatalf("%s: check %s: %v", tc.name, tc.p, err)
				}
				if v != tc.want {
					t.Errorf("%s: check %s: got %s, want %s", tc.name, tc.p, v, tc.want)
				}
				got[kind] = append(got[kind], v)
			}
			s := d.Stats()
			var allow, drop, notLocal uint64
			for _, tc := range cases {
				switch tc.want {
				case VerdictAllow:
					allow++
				case VerdictDrop:
					drop++
				case VerdictNotLocal:
					notLocal++
				}
			}
			if s.Allowed != allow || s.Dropped != drop || s.NotLocal != notLocal {
				t.Errorf("verdict counters: got allowed=%d dropped=%d not-local=%d, want %d %d %d",
					s.Allowed, s.Dropped, s.NotLocal, allow, drop, notLocal)
			}
		})
	}
	if len(got) == len(kinds) {
		if diff := cmp.Diff(got[KindMem], got[KindBPF]); diff != "" {
			t.Errorf("mem and bpf verdicts differ (-mem +bpf):\n%s", diff)
		}
	}
}

// op is one random datapath call for TestSameState.
type op struct {
	upsert   []IPCacheEntry
	del      []netip.Prefix
	endpoint netip.Addr
	policy   []policykey.Key
	deleteEP bool
	group    []netip.Addr
}

func randomOps(r *rand.Rand, n int) []op {
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}) }
	// A few shared policies, changed a little now and then, so that
	// groups of endpoints share sets and update them in place.
	pool := make([][]policykey.Key, 3)
	randomKeys := func() []policykey.Key {
		var ks []policykey.Key
		for range r.IntN(60) {
			ks = append(ks, policykey.Key{Identity: identity.ID(r.IntN(20)), Port: uint16(r.IntN(3) * 80), Proto: []uint8{0, policykey.ProtoTCP, policykey.ProtoUDP}[r.IntN(3)]})
		}
		return ks
	}
	for i := range pool {
		pool[i] = randomKeys()
	}
	var ops []op
	for range n {
		switch r.IntN(6) {
		case 0, 1:
			var es []IPCacheEntry
			for range 1 + r.IntN(300) {
				es = append(es, IPCacheEntry{host(addr(r.IntN(1000))), identity.ID(1 + r.IntN(20))})
			}
			ops = append(ops, op{upsert: es})
		case 2:
			var ps []netip.Prefix
			for range 1 + r.IntN(100) {
				ps = append(ps, host(addr(r.IntN(1000))))
			}
			ops = append(ops, op{del: ps})
		case 3:
			var ks []policykey.Key
			for range r.IntN(60) {
				ks = append(ks, policykey.Key{Identity: identity.ID(r.IntN(20)), Port: uint16(r.IntN(3) * 80), Proto: []uint8{0, policykey.ProtoTCP, policykey.ProtoUDP}[r.IntN(3)]})
			}
			ops = append(ops, op{endpoint: addr(2000 + r.IntN(12)), policy: ks})
		case 4:
			ops = append(ops, op{endpoint: addr(2000 + r.IntN(12)), deleteEP: true})
		case 5:
			i := r.IntN(len(pool))
			if r.IntN(2) == 0 {
				pool[i] = append(slices.Clone(pool[i]), policykey.Key{Identity: identity.ID(r.IntN(20)), Port: 443, Proto: policykey.ProtoTCP})
				if len(pool[i]) > 2 && r.IntN(2) == 0 {
					pool[i] = pool[i][1:]
				}
			}
			var group []netip.Addr
			for range 1 + r.IntN(6) {
				group = append(group, addr(2000+r.IntN(12)))
			}
			ops = append(ops, op{group: group, policy: pool[i]})
		}
	}
	return ops
}

func apply(t *testing.T, d Datapath, o op) {
	t.Helper()
	switch {
	case o.upsert != nil:
		must(t, d.UpsertIPCache(o.upsert))
	case o.del != nil:
		must(t, d.DeleteIPCache(o.del))
	case o.deleteEP:
		must(t, d.DeleteEndpoint(o.endpoint))
	case o.group != nil:
		must(t, d.ReplacePolicyGroup(o.group, o.policy))
	default:
		must(t, d.ReplacePolicy(o.endpoint, o.policy))
	}
}

// TestSameState applies one random sequence of calls to both
// implementations: the digests, update counts and the kernel's own map
// contents (read back) must agree at every step.
func TestSameState(t *testing.T) {
	requireBPF(t)
	r := rand.New(rand.NewPCG(1, 2))
	ops := randomOps(r, 300)
	mem := open(t, KindMem, Config{})
	bpfd := open(t, KindBPF, Config{})
	// A second bpf datapath goes element by element, as on a kernel
	// without batch operations.
	single := open(t, KindBPF, Config{})
	single.(*bpfDatapath).noBatch = true
	for i, o := range ops {
		apply(t, mem, o)
		apply(t, bpfd, o)
		apply(t, single, o)
		if mem.Digest() != bpfd.Digest() || mem.Digest() != single.Digest() {
			t.Fatalf("op %d: digests differ: mem %s, bpf %s, bpf without batches %s", i, mem.Digest(), bpfd.Digest(), single.Digest())
		}
		if i%25 == 0 || i == len(ops)-1 {
			for _, d := range []Datapath{bpfd, single} {
				kd, err := d.(*bpfDatapath).KernelDigest()
				if err != nil {
					t.Fatal(err)
				}
				if kd != d.Digest() {
					t.Fatalf("op %d: kernel maps %s, shadow %s", i, kd, d.Digest())
				}
			}
		}
	}
	if u1, u2 := bpfd.Stats().Updates, single.Stats().Updates; u1 != u2 {
		t.Errorf("updates: batched %d, element by element %d", u1, u2)
	}
	ms, bs := mem.Stats(), bpfd.Stats()
	if ms.Updates != bs.Updates || ms.Updates == 0 {
		t.Errorf("updates: mem %d, bpf %d", ms.Updates, bs.Updates)
	}
	if bs.MapBytes == 0 || bs.UpdateTime <= 0 {
		t.Errorf("bpf stats: %+v", bs)
	}

	// The digest of the final state computed from scratch agrees too.
	md := mem.(*memDatapath).st
	var es []IPCacheEntry
	for k, id := range md.ipcache {
		es = append(es, IPCacheEntry{k.prefix(), id})
	}
	pol := map[netip.Addr][]policykey.Key{}
	for a, ep := range md.endpoints {
		pol[a] = append([]policykey.Key{}, ep.keys...)
	}
	want, err := ComputeDigest(es, pol)
	if err != nil {
		t.Fatal(err)
	}
	if want != mem.Digest() {
		t.Errorf("ComputeDigest %s, datapath %s", want, mem.Digest())
	}
}

// TestUpdateCounting pins what one call counts, for both kinds.
func TestUpdateCounting(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	steps := []struct {
		name string
		do   func(Datapath) error
		want uint64 // updates counted by this step
	}{
		{"two new entries", func(d Datapath) error {
			return d.UpsertIPCache([]IPCacheEntry{{host(a), 10}, {host(b), 11}})
		}, 2},
		{"unchanged entry skipped", func(d Datapath) error { return d.UpsertIPCache([]IPCacheEntry{{host(a), 10}}) }, 0},
		{"repeat in batch: last wins", func(d Datapath) error {
			return d.UpsertIPCache([]IPCacheEntry{{host(a), 12}, {host(a), 10}})
		}, 0},
		{"new endpoint with 3 keys", func(d Datapath) error {
			return d.ReplacePolicy(serverIP, []policykey.Key{{Identity: 10, Port: 80, Proto: policykey.ProtoTCP}, {Identity: 11, Port: 80, Proto: policykey.ProtoTCP}, {Identity: 11, Port: 80, Proto: policykey.ProtoTCP}, {Identity: 12, Port: 0, Proto: 0}})
		}, 4},
		{"replace: one removed, one added", func(d Datapath) error {
			return d.ReplacePolicy(serverIP, []policykey.Key{{Identity: 10, Port: 80, Proto: policykey.ProtoTCP}, {Identity: 11, Port: 80, Proto: policykey.ProtoTCP}, {Identity: 13, Port: 0, Proto: 0}})
		}, 2},
		{"delete absent and present", func(d Datapath) error {
			return d.DeleteIPCache([]netip.Prefix{host(remoteIP), host(a), host(a)})
		}, 1},
		{"delete endpoint", func(d Datapath) error { return d.DeleteEndpoint(serverIP) }, 4},
		{"delete absent endpoint", func(d Datapath) error { return d.DeleteEndpoint(serverIP) }, 0},
	}
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			d := open(t, kind, Config{})
			for _, s := range steps {
				before := d.Stats().Updates
				if err := s.do(d); err != nil {
					t.Fatalf("%s: %v", s.name, err)
				}
				if got := d.Stats().Updates - before; got != s.want {
					t.Errorf("%s: counted %d updates, want %d", s.name, got, s.want)
				}
			}
			if s := d.Stats(); s.IPCacheEntries != 1 || s.Endpoints != 0 || s.PolicyEntries != 0 {
				t.Errorf("final sizes: %+v", s)
			}
		})
	}
}

// TestBadInput checks that bad input is an error naming what is wrong and
// changes nothing.
func TestBadInput(t *testing.T) {
	v6 := netip.MustParsePrefix("fd00::1/128")
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			d := open(t, kind, Config{MaxIPCacheEntries: 2, MaxEndpoints: 1, MaxPolicyEntries: 2, MaxEndpointPolicy: 3})
			for _, tc := range []struct {
				name string
				err  error
				want string
				full bool
			}{
				{"ipv6 prefix", d.UpsertIPCache([]IPCacheEntry{{host(clientIP), 5}, {v6, 5}}), "entries[1]: prefix fd00::1/128: only IPv4", false},
				{"zero prefix", d.UpsertIPCache([]IPCacheEntry{{netip.Prefix{}, 5}}), "entries[0]: invalid prefix", false},
				{"identity 0", d.UpsertIPCache([]IPCacheEntry{{host(clientIP), 0}}), "identity 0 is reserved", false},
				{"ipcache full", d.UpsertIPCache([]IPCacheEntry{{host(clientIP), 5}, {host(otherIP), 5}, {host(remoteIP), 5}}), "ipcache: 0 entries + 3 new > 2", true},
				{"delete ipv6", d.DeleteIPCache([]netip.Prefix{v6}), "prefixes[0]", false},
				{"endpoint zero", d.ReplacePolicy(netip.Addr{}, nil), "invalid endpoint address", false},
				{"endpoint ipv6", d.ReplacePolicy(v6.Addr(), nil), "only IPv4", false},
				{"policy full", d.ReplacePolicy(serverIP, []policykey.Key{{Identity: 1, Port: 1, Proto: 6}, {Identity: 2, Port: 2, Proto: 6}, {Identity: 3, Port: 3, Proto: 6}}), "0 keys in the policy map + 3 would exceed 2", true},
				{"endpoint policy overflow", d.ReplacePolicy(serverIP, []policykey.Key{{Identity: 1, Port: 1, Proto: 6}, {Identity: 2, Port: 2, Proto: 6}, {Identity: 3, Port: 3, Proto: 6}, {Identity: 4, Port: 4, Proto: 6}}), "4 keys > 3: endpoint policy exceeds", false},
				{"check ipv6", checkErr(d, Packet{v6.Addr(), serverIP, 1, 6}), "must be IPv4", false},
			} {
				if tc.err == nil {
					t.Errorf("%s: no error", tc.name)
					continue
				}
				if !strings.Contains(tc.err.Error(), tc.want) {
					t.Errorf("%s: error %q does not contain %q", tc.name, tc.err, tc.want)
				}
				if errors.Is(tc.err, ErrFull) != tc.full {
					t.Errorf("%s: errors.Is(ErrFull) = %v", tc.name, !tc.full)
				}
			}
			if dg := d.Digest(); dg != (Digest{}) {
				t.Errorf("bad input changed the state: %s", dg)
			}
			must(t, d.ReplacePolicy(serverIP, nil))
			if err := d.ReplacePolicy(clientIP, nil); !errors.Is(err, ErrFull) {
				t.Errorf("second endpoint beyond MaxEndpoints=1: got %v, want ErrFull", err)
			}
			must(t, d.Close())
			if err := d.UpsertIPCache(nil); !errors.Is(err, ErrClosed) {
				t.Errorf("after close: got %v, want ErrClosed", err)
			}
		})
	}
}

func checkErr(d Datapath, p Packet) error {
	_, err := d.Check(p)
	return err
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Kind: "ebpf"}, `kind: unknown "ebpf"`},
		{Config{Kind: KindMem, MaxIPCacheEntries: -1}, "MaxIPCacheEntries: -1 out of range"},
		{Config{Kind: KindMem, MaxPolicyEntries: 1 << 30}, "MaxPolicyEntries"},
	} {
		_, _, err := Open(context.Background(), tc.cfg, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v): got %v, want error containing %q", tc.cfg, err, tc.want)
		}
	}
	c := SizeFor(KindBPF, 20000, 100, 500)
	if c.MaxIPCacheEntries < 20000 || c.MaxEndpoints < 100 || c.MaxEndpointPolicy != 500 || c.MaxPolicyEntries < 2*500 {
		t.Errorf("SizeFor(20000, 100, 500) = %+v: too small", c)
	}
}

// TestAuto checks that auto picks bpf here (root, BPF available) and says
// so in exactly one log line per process.
func TestAuto(t *testing.T) {
	requireBPF(t)
	resetAuto()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	for range 3 {
		d, kind, err := Open(context.Background(), Config{}, log)
		if err != nil {
			t.Fatal(err)
		}
		if kind != KindBPF {
			t.Errorf("auto chose %s, want bpf", kind)
		}
		if _, ok := d.(*bpfDatapath); !ok {
			t.Errorf("auto returned %T", d)
		}
		must(t, d.Close())
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "kind=bpf") || !strings.Contains(lines[0], "reason=") {
		t.Errorf("log: got %q, want one line with kind=bpf and a reason", buf.String())
	}
}

func resetAuto() {
	auto.Once = sync.Once{}
	auto.kind, auto.reason = "", ""
}

// TestAutoFallback checks that auto falls back to mem, saying why, when
// the probe fails (as it does for an unprivileged process).
func TestAutoFallback(t *testing.T) {
	defer func(p func() error) { autoProbe = p }(autoProbe)
	autoProbe = func() error { return fmt.Errorf("%w: create probe map: operation not permitted", ErrNoBPF) }
	resetAuto()
	defer resetAuto()
	var buf bytes.Buffer
	d, kind, err := Open(context.Background(), Config{Kind: KindAuto}, slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { must(t, d.Close()) }()
	if kind != KindMem {
		t.Errorf("auto chose %s, want mem", kind)
	}
	if _, ok := d.(*memDatapath); !ok {
		t.Errorf("auto returned %T", d)
	}
	if !strings.Contains(buf.String(), "kind=mem") || !strings.Contains(buf.String(), "operation not permitted") {
		t.Errorf("log %q: want kind=mem and the probe's error", buf.String())
	}
}

// TestNoLeakedFDs opens and closes several bpf datapaths and checks that
// every map and program file descriptor is released.
func TestNoLeakedFDs(t *testing.T) {
	requireBPF(t)
	before := openFDs(t)
	var ds []Datapath
	for i := range 5 {
		d, _, err := Open(context.Background(), Config{Kind: KindBPF}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
		must(t, d.UpsertIPCache([]IPCacheEntry{{host(clientIP), identity.ID(100 + i)}}))
		must(t, d.ReplacePolicy(serverIP, []policykey.Key{{Identity: identity.ID(100 + i), Port: 80, Proto: policykey.ProtoTCP}}))
		check(t, d, Packet{clientIP, serverIP, 80, policykey.ProtoTCP}, VerdictAllow)
		_ = d.Stats()
	}
	if during := openFDs(t); during < before+5*5 {
		t.Errorf("with 5 datapaths open: %d fds, before %d: expected at least 5 maps+programs each", during, before)
	}
	for _, d := range ds {
		must(t, d.Close())
		must(t, d.Close()) // idempotent
	}
	if after := openFDs(t); after != before {
		t.Errorf("fds: %d before, %d after closing every datapath", before, after)
	}
}

func ExampleComputeDigest() {
	ep := netip.MustParseAddr("10.0.2.7")
	d, _ := ComputeDigest(
		[]IPCacheEntry{{netip.MustParsePrefix("10.0.1.5/32"), 1000}},
		map[netip.Addr][]policykey.Key{ep: {{Identity: 1000, Port: 8080, Proto: policykey.ProtoTCP}}},
	)
	fmt.Println(d.IPCacheEntries, d.Endpoints, d.PolicyEntries)
	// Output: 1 1 1
}

// TestConcurrentStats reads Stats and Digest while another goroutine
// updates (run with -race).
func TestConcurrentStats(t *testing.T) {
	for _, kind := range kinds {
		t.Run(string(kind), func(t *testing.T) {
			d := open(t, kind, Config{})
			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-done:
						return
					default:
						_ = d.Stats()
						_ = d.Digest()
					}
				}
			}()
			for i := range 50 {
				must(t, d.UpsertIPCache(podEntries(200, identity.ID(1000+i))))
				must(t, d.ReplacePolicy(serverIP, []policykey.Key{{Identity: identity.ID(1000 + i), Port: 80, Proto: policykey.ProtoTCP}}))
			}
			close(done)
			wg.Wait()
			if s := d.Stats(); s.IPCacheEntries != 200 || s.PolicyEntries != 1 {
				t.Errorf("final stats %+v", s)
			}
		})
	}
}
