package datapath

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/internal/policykey"
)

// The relabel scenario's sizes: 20,000 pods on 200 nodes (100 local
// endpoints per agent), 250 identities. Every endpoint is selected by both
// policies: 250 identities on 8080 before the relabel, and while it runs
// the 250 new identities on 9090 as well, so 500 keys per endpoint at peak.
const (
	benchPods            = 20000
	benchLocalEndpoints  = 100
	benchKeysPerEndpoint = 500
	benchAgents          = 200
)

func podAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func podEntries(n int, base identity.ID) []IPCacheEntry {
	es := make([]IPCacheEntry, n)
	for i := range es {
		es[i] = IPCacheEntry{host(podAddr(i)), base + identity.ID(i%250)}
	}
	return es
}

func endpointKeys(n int) []policykey.Key {
	ks := make([]policykey.Key, n)
	for i := range ks {
		port := uint16(8080)
		if i >= n/2 {
			port = 9090
		}
		ks[i] = policykey.Key{Identity: identity.ID(1000 + i), Port: port, Proto: policykey.ProtoTCP}
	}
	return ks
}

func benchConfig(kind Kind) Config {
	return SizeFor(kind, benchPods, benchLocalEndpoints, benchKeysPerEndpoint)
}

// BenchmarkIPCacheUpsert measures ipcache upserts at 20,000 entries: every
// iteration rewrites all 20,000 entries with a new identity, one call per
// entry (single) or one call for all (batched: one BPF_MAP_UPDATE_BATCH).
func BenchmarkIPCacheUpsert(b *testing.B) {
	for _, kind := range kinds {
		for _, mode := range []string{"single", "batched"} {
			b.Run(fmt.Sprintf("%s/%s", kind, mode), func(b *testing.B) {
				d := open(b, kind, benchConfig(kind))
				sets := [2][]IPCacheEntry{podEntries(benchPods, 1000), podEntries(benchPods, 2000)}
				must(b, d.UpsertIPCache(sets[1]))
				before := d.Stats()
				i := 0
				for b.Loop() {
					es := sets[i%2]
					i++
					if mode == "batched" {
						must(b, d.UpsertIPCache(es))
						continue
					}
					for j := range es {
						must(b, d.UpsertIPCache(es[j:j+1]))
					}
				}
				s := d.Stats()
				n := float64(s.Updates - before.Updates)
				if n != float64(i*benchPods) {
					b.Fatalf("counted %v updates, want %d", n, i*benchPods)
				}
				b.ReportMetric(n/b.Elapsed().Seconds(), "upserts/s")
				b.ReportMetric(float64((s.UpdateTime-before.UpdateTime).Nanoseconds())/n, "map-ns/upsert")
				b.ReportMetric(0, "ns/op")
			})
		}
	}
}

// fillAgent gives d one agent's relabel-peak state.
func fillAgent(tb testing.TB, d Datapath) {
	tb.Helper()
	must(tb, d.UpsertIPCache(podEntries(benchPods, 1000)))
	keys := endpointKeys(benchKeysPerEndpoint)
	for e := range benchLocalEndpoints {
		must(tb, d.ReplacePolicy(podAddr(100000+e), keys))
	}
}

// BenchmarkAgentMaps measures the memory of one agent's maps at the
// relabel peak: 20,000 ipcache entries, 100 endpoints x 500 policy keys.
func BenchmarkAgentMaps(b *testing.B) {
	for _, kind := range kinds {
		b.Run(string(kind), func(b *testing.B) {
			var s Stats
			var fill time.Duration
			var heap float64
			for b.Loop() {
				d := open(b, kind, benchConfig(kind))
				var m0, m1 runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&m0)
				start := time.Now()
				fillAgent(b, d)
				fill += time.Since(start)
				runtime.GC()
				runtime.ReadMemStats(&m1)
				heap = float64(m1.HeapAlloc) - float64(m0.HeapAlloc)
				s = d.Stats()
				must(b, d.Close())
			}
			b.ReportMetric(float64(s.MapBytes), "map-bytes")
			// The Go heap the state holds: all of mem, bpf's shadow.
			b.ReportMetric(heap, "go-heap-bytes")
			b.ReportMetric(float64(s.Updates), "updates")
			b.ReportMetric(fill.Seconds()/float64(b.N), "fill-s")
			b.ReportMetric(0, "ns/op")
			if kind == KindBPF {
				// Per map, from the kernel.
				d := open(b, kind, benchConfig(kind))
				fillAgent(b, d)
				bd := d.(*bpfDatapath)
				for name, m := range map[string]*ebpf.Map{"ipcache": bd.objs.Ipcache, "policy": bd.objs.Policy, "endpoints": bd.objs.Endpoints} {
					info, err := m.Info()
					must(b, err)
					n, _ := info.Memlock()
					b.ReportMetric(float64(n), name+"-bytes")
				}
			}
		})
	}
}

// BenchmarkFleetMaps creates 200 agents' maps for real, each filled as in
// BenchmarkAgentMaps, and reports the kernel's total, the file descriptors
// and the Go memory of the shadow state. Run with -benchtime=1x.
func BenchmarkFleetMaps(b *testing.B) {
	requireBPF(b)
	for b.Loop() {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		k0 := kernelMemory(b)
		fds0 := openFDs(b)
		ds := make([]Datapath, 0, benchAgents)
		start := time.Now()
		for range benchAgents {
			d, _, err := Open(context.Background(), benchConfig(KindBPF), nil)
			must(b, err)
			ds = append(ds, d)
		}
		kOpen := kernelMemory(b)
		entries := podEntries(benchPods, 1000)
		for _, d := range ds {
			must(b, d.UpsertIPCache(entries))
		}
		kIPCache := kernelMemory(b)
		keys := endpointKeys(benchKeysPerEndpoint)
		for _, d := range ds {
			for e := range benchLocalEndpoints {
				must(b, d.ReplacePolicy(podAddr(100000+e), keys))
			}
		}
		fill := time.Since(start)
		k1 := kernelMemory(b)
		b.ReportMetric(float64(kOpen-k0), "meminfo-open-bytes")
		b.ReportMetric(float64(kIPCache-kOpen), "meminfo-ipcache-bytes")
		b.ReportMetric(float64(k1-kIPCache), "meminfo-policy-bytes")
		runtime.GC()
		runtime.ReadMemStats(&m1)
		var total uint64
		for _, d := range ds {
			total += d.Stats().MapBytes
		}
		b.ReportMetric(float64(total), "kernel-map-bytes")
		b.ReportMetric(float64(total)/benchAgents, "kernel-map-bytes/agent")
		// What the kernel allocated meanwhile (slab, percpu, vmalloc from
		// /proc/meminfo; machine-wide, so other processes add noise):
		// memlock leaves out LPM intermediate nodes and allocator rounding.
		b.ReportMetric(float64(k1-k0), "meminfo-kernel-delta-bytes")
		b.ReportMetric(float64(m1.HeapAlloc)-float64(m0.HeapAlloc), "go-shadow-bytes")
		b.ReportMetric(float64(openFDs(b)-fds0), "fds")
		b.ReportMetric(fill.Seconds(), "fill-s")
		b.ReportMetric(0, "ns/op")
		for _, d := range ds {
			must(b, d.Close())
		}
	}
}

// kernelMemory sums Slab, Percpu and VmallocUsed of /proc/meminfo.
func kernelMemory(tb testing.TB) int64 {
	tb.Helper()
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		tb.Fatalf("read meminfo: %v", err)
	}
	var total int64
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Slab:", "Percpu:", "VmallocUsed:":
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				tb.Fatalf("meminfo %q: %v", line, err)
			}
			total += kb * 1024
		}
	}
	return total
}

// BenchmarkPolicyLayout compares, for one agent's 100 endpoints x 500
// keys, the layout used (one hash per agent keyed by endpoint id) with one
// hash per endpoint held in a hash-of-maps, and with one preallocated
// 16,384-entry hash per endpoint (the size of Cilium's default per-endpoint
// policy map). Memory is the kernel's memlock figure; fds are what the
// agent holds.
func BenchmarkPolicyLayout(b *testing.B) {
	requireBPF(b)
	keys := func(ep int) ([][12]byte, [][8]byte) {
		k12 := make([][12]byte, benchKeysPerEndpoint)
		k8 := make([][8]byte, benchKeysPerEndpoint)
		for i, k := range endpointKeys(benchKeysPerEndpoint) {
			var a [12]byte
			a[0], a[1] = byte(ep), byte(ep>>8)
			a[4], a[5] = byte(k.Identity), byte(k.Identity>>8)
			a[8], a[9], a[10] = byte(k.Port), byte(k.Port>>8), k.Proto
			k12[i] = a
			copy(k8[i][:], a[4:])
		}
		return k12, k8
	}
	vals := make([]uint32, benchKeysPerEndpoint)
	memlock := func(ms ...*ebpf.Map) uint64 {
		var t uint64
		for _, m := range ms {
			info, err := m.Info()
			must(b, err)
			n, _ := info.Memlock()
			t += n
		}
		return t
	}
	perEndpointMax := uint32(2 * benchKeysPerEndpoint)
	agentMax := uint32(benchConfig(KindBPF).MaxPolicyEntries)

	b.ReportMetric(0, "ns/op")
	b.Run("agent-hash", func(b *testing.B) {
		var bytes uint64
		var fill time.Duration
		for b.Loop() {
			start := time.Now()
			m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 12, ValueSize: 4, MaxEntries: agentMax, Flags: 1 /* BPF_F_NO_PREALLOC */})
			must(b, err)
			for ep := range benchLocalEndpoints {
				k, _ := keys(ep)
				_, err := m.BatchUpdate(k, vals, nil)
				must(b, err)
			}
			fill += time.Since(start)
			bytes = memlock(m)
			must(b, m.Close())
		}
		b.ReportMetric(float64(bytes), "bytes")
		b.ReportMetric(1, "fds")
		b.ReportMetric(float64(fill.Milliseconds())/float64(b.N), "fill-ms")
	})
	b.Run("hash-of-maps", func(b *testing.B) {
		var bytes uint64
		var fill, swap time.Duration
		for b.Loop() {
			start := time.Now()
			outer, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.HashOfMaps, KeySize: 4, ValueSize: 4, MaxEntries: uint32(benchConfig(KindBPF).MaxEndpoints),
				InnerMap: &ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: perEndpointMax, Flags: 1}})
			must(b, err)
			inner := []*ebpf.Map{outer}
			for ep := range benchLocalEndpoints {
				m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: perEndpointMax, Flags: 1})
				must(b, err)
				_, k := keys(ep)
				_, err = m.BatchUpdate(k, vals, nil)
				must(b, err)
				t := time.Now()
				must(b, outer.Put(uint32(ep), m))
				swap += time.Since(t)
				inner = append(inner, m)
			}
			fill += time.Since(start)
			bytes = memlock(inner...)
			for _, m := range inner {
				must(b, m.Close())
			}
		}
		b.ReportMetric(float64(bytes), "bytes")
		b.ReportMetric(1+benchLocalEndpoints, "fds")
		b.ReportMetric(float64(fill.Milliseconds())/float64(b.N), "fill-ms")
		// Every map-in-map update from user space waits for an RCU grace
		// period (so programs see the new inner map).
		b.ReportMetric(float64(swap.Microseconds())/float64(b.N*benchLocalEndpoints), "outer-put-us")
	})
	b.Run("endpoint-hash-prealloc-16384", func(b *testing.B) {
		var bytes uint64
		var fill time.Duration
		for b.Loop() {
			start := time.Now()
			var ms []*ebpf.Map
			for ep := range benchLocalEndpoints {
				m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 8, ValueSize: 4, MaxEntries: 16384})
				must(b, err)
				_, k := keys(ep)
				_, err = m.BatchUpdate(k, vals, nil)
				must(b, err)
				ms = append(ms, m)
			}
			fill += time.Since(start)
			bytes = memlock(ms...)
			for _, m := range ms {
				must(b, m.Close())
			}
		}
		b.ReportMetric(float64(bytes), "bytes")
		b.ReportMetric(benchLocalEndpoints, "fds")
		b.ReportMetric(float64(fill.Milliseconds())/float64(b.N), "fill-ms")
	})
}

// BenchmarkStatsWhileWriting measures what a metrics scrape costs an agent
// whose maps keep changing: one ipcache write, then Stats, as a 1 s scrape
// of a shard does for each of its agents during a storm.
func BenchmarkStatsWhileWriting(b *testing.B) {
	requireBPF(b)
	d := open(b, KindBPF, benchConfig(KindBPF))
	es := podEntries(benchPods, 1000)
	i := 0
	var bytes uint64
	for b.Loop() {
		must(b, d.UpsertIPCache(es[i%len(es):i%len(es)+1]))
		i++
		bytes = d.Stats().MapBytes
	}
	if bytes == 0 {
		b.Fatal("Stats reported no map memory")
	}
}
