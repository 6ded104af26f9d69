package fakeapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/stampede-sim/stampede/internal/capacity"
	"github.com/stampede-sim/stampede/internal/ready"
)

// The fan-out benchmark runs the server in a child process (this test
// binary re-executed with benchServerEnv set) so that the server's CPU is
// read from /proc apart from the watchers' decoding.
const (
	benchServerEnv      = "STAMPEDE_FAKEAPI_BENCH_SERVER"
	benchServerPlainEnv = "STAMPEDE_FAKEAPI_BENCH_PLAIN"
)

// runBenchServer is the child side: serve until SIGTERM.
func runBenchServer(readyFile string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg := Config{
		PlainHTTP:                   os.Getenv(benchServerPlainEnv) == "1",
		WatchHistory:                50000,
		WatchBuffer:                 50000,
		MaxRequestsInflight:         -1,
		MaxMutatingRequestsInflight: -1,
		WatchBatchWindow:            time.Duration(benchEnv("WINDOW_MS", 0)) * time.Millisecond,
		Capacity:                    benchCapacity(),
	}
	if err := Run(ctx, cfg, RunOptions{ReadyFile: readyFile}); err != nil {
		fmt.Fprintln(os.Stderr, "bench server:", err)
		return 1
	}
	return 0
}

type childServer struct {
	cmd  *exec.Cmd
	cfg  *rest.Config
	done chan struct{}
}

func startChildServer(b *testing.B, plain bool) *childServer {
	b.Helper()
	readyFile := filepath.Join(b.TempDir(), "ready.json")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchServerEnv+"="+readyFile)
	if plain {
		cmd.Env = append(cmd.Env, benchServerPlainEnv+"=1")
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	c := &childServer{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-c.done
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := ready.Wait(ctx, readyFile, c.done)
	if err != nil {
		b.Fatal(err)
	}
	c.cfg = &rest.Config{
		Host:            a.Endpoints["api"],
		BearerToken:     a.Extra["token"],
		TLSClientConfig: rest.TLSClientConfig{CAFile: a.Extra["ca"]},
		ContentConfig:   rest.ContentConfig{ContentType: "application/json", AcceptContentTypes: "application/json"},
		QPS:             -1,
	}
	return c
}

// cpu returns the child's user+system CPU time so far.
func (c *childServer) cpu(b *testing.B) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in ")".
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// ownConnection makes client-go give this config its own transport (and
// so its own TCP connection), as separate agents have.
func ownConnection(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Dial = (&net.Dialer{}).DialContext
	if benchEnv("HTTP1", 0) == 1 {
		c.NextProtos = []string{"http/1.1"}
	}
	return c
}

// benchCEP is a CiliumEndpoint of about 1 KiB of JSON, shaped as Cilium
// writes them.
func benchCEP(i, gen int) *unstructured.Unstructured {
	ns := fmt.Sprintf("ns-%d", i%5)
	name := fmt.Sprintf("deploy-%d-7d9f8c6b5-%05d", i%50, i)
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
		"metadata": map[string]any{
			"name": name, "namespace": ns,
			"labels":          map[string]any{"app": fmt.Sprintf("deploy-%d", i%50), "pod-template-hash": "7d9f8c6b5"},
			"ownerReferences": []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": fmt.Sprintf("3f1c2a9e-0000-4000-8000-%012d", i)}},
		},
		"status": map[string]any{
			"id": int64(1000 + i), "state": "ready",
			"identity": map[string]any{"id": int64(70000 + gen), "labels": []any{
				"k8s:app=" + fmt.Sprintf("deploy-%d", i%50), "k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=" + ns,
				fmt.Sprintf("k8s:io.cilium.k8s.namespace.labels.relabel=gen-%d", gen), "k8s:io.cilium.k8s.policy.cluster=default",
				"k8s:io.cilium.k8s.policy.serviceaccount=default", "k8s:io.kubernetes.pod.namespace=" + ns,
			}},
			"networking":           map[string]any{"addressing": []any{map[string]any{"ipv4": fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}}, "node": fmt.Sprintf("172.18.%d.%d", i%200/250, i%200+2)},
			"encryption":           map[string]any{},
			"named-ports":          []any{map[string]any{"name": "http", "port": int64(8080), "protocol": "TCP"}, map[string]any{"name": "metrics", "port": int64(9090), "protocol": "TCP"}},
			"policy":               map[string]any{"ingress": map[string]any{"enforcing": true, "state": "<status disabled>"}, "egress": map[string]any{"enforcing": false, "state": "<status disabled>"}},
			"external-identifiers": map[string]any{"container-id": fmt.Sprintf("%064x", i), "k8s-namespace": ns, "k8s-pod-name": name, "pod-name": ns + "/" + name},
		},
	}}
}

// BenchmarkWatchFanout: 200 watchers, each on its own connection, receive
// every one of 20,000 CiliumEndpoint updates (about 1 KiB each) from a
// server in a child process. "decode" watchers use client-go's dynamic
// client and decode every event; "read" watchers only read the stream.
// Run with -benchtime=1x: one iteration is the whole workload.
// STAMPEDE_FAKEAPI_BENCH_{WATCHERS,CEPS,UPDATES,WRITERS,RATE,WINDOW_MS,
// HTTP1,PLAIN} change it; for the trickle a 1,000-node cluster sees:
// WATCHERS=1000 UPDATES=3000 RATE=200 WINDOW_MS=5 (or 50).
func BenchmarkWatchFanout(b *testing.B) {
	for _, mode := range []string{"read", "decode"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				benchFanout(b, mode == "decode", benchEnv("WATCHERS", 200), benchEnv("CEPS", 2000), benchEnv("UPDATES", 20000))
			}
		})
	}
}

func benchFanout(b *testing.B, decode bool, watchers, objects, updates int) {
	b.StopTimer()
	srv := startChildServer(b, benchEnv("PLAIN", 0) == 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin, err := dynamic.NewForConfig(srv.cfg)
	if err != nil {
		b.Fatal(err)
	}
	for n := range 5 {
		ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": fmt.Sprintf("ns-%d", n)}}}
		if _, err := admin.Resource(nsGVR).Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	objs := make([]*unstructured.Unstructured, objects)
	for i := range objects {
		o, err := admin.Resource(cepGVR).Namespace(benchCEP(i, 0).GetNamespace()).Create(ctx, benchCEP(i, 0), metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		objs[i] = o
	}
	list, err := admin.Resource(cepGVR).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	rv := list.GetResourceVersion()

	var delivered atomic.Int64
	var wg sync.WaitGroup
	started := make(chan struct{}, watchers)
	errs := make(chan error, watchers)
	for range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if decode {
				err = decodingWatcher(ctx, srv.cfg, rv, updates, &delivered, started)
			} else {
				err = readingWatcher(ctx, srv.cfg, rv, updates, &delivered, started)
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	for range watchers {
		<-started
	}
	// Let every watch request reach the server before the clock starts.
	time.Sleep(200 * time.Millisecond)
	b.StartTimer()
	cpu0, t0 := srv.cpu(b), time.Now()
	if path := os.Getenv("STAMPEDE_FAKEAPI_BENCH_PROFILE"); path != "" {
		// A CPU profile of the server while it fans out.
		go func() {
			tr, _ := rest.TransportFor(srv.cfg)
			resp, err := (&http.Client{Transport: tr}).Get(srv.cfg.Host + "/debug/pprof/profile?seconds=5")
			if err != nil {
				return
			}
			defer func() { _ = resp.Body.Close() }()
			data, _ := io.ReadAll(resp.Body)
			_ = os.WriteFile(path, data, 0o644)
		}()
	}
	writers := benchEnv("WRITERS", 16)
	// RATE (updates per second, 0: as fast as the writers go) gives the
	// trickle of a large cluster's churn, where each woken watcher finds
	// few events: the regime in which per-wakeup costs dominate.
	var pace <-chan time.Time
	if rate := benchEnv("RATE", 0); rate > 0 {
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		pace = t.C
	}
	var wwg sync.WaitGroup
	for w := range writers {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for u := w; u < updates; u += writers {
				if pace != nil {
					<-pace
				}
				i := u % objects
				o := benchCEP(i, u/objects+1)
				if _, err := admin.Resource(cepGVR).Namespace(o.GetNamespace()).Update(ctx, o, metav1.UpdateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wwg.Wait()
	writeDone := time.Since(t0)
	wg.Wait()
	elapsed := time.Since(t0)
	cpu := srv.cpu(b) - cpu0
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	n := delivered.Load()
	if n != int64(watchers*updates) {
		b.Fatalf("delivered %d events, want %d", n, watchers*updates)
	}
	sizeSum, sizeCount := scrapeSizes(b, srv.cfg)
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "server-cpu-us/event")
	b.ReportMetric(sizeSum/sizeCount, "bytes/event")
	b.ReportMetric(writeDone.Seconds(), "write-s")
	b.ReportMetric(elapsed.Seconds(), "wall-s")
	b.ReportMetric(cpu.Seconds(), "server-cpu-s")
}

var nsGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

func decodingWatcher(ctx context.Context, cfg *rest.Config, rv string, want int, delivered *atomic.Int64, started chan<- struct{}) error {
	dc, err := dynamic.NewForConfig(ownConnection(cfg))
	if err != nil {
		return err
	}
	w, err := dc.Resource(cepGVR).Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	started <- struct{}{}
	if err != nil {
		return err
	}
	defer w.Stop()
	got := 0
	for ev := range w.ResultChan() {
		if _, ok := ev.Object.(*unstructured.Unstructured); !ok {
			return fmt.Errorf("watch event %s: %T", ev.Type, ev.Object)
		}
		got++
		delivered.Add(1)
		if got == want {
			return nil
		}
	}
	return fmt.Errorf("watch ended after %d events", got)
}

func readingWatcher(ctx context.Context, cfg *rest.Config, rv string, want int, delivered *atomic.Int64, started chan<- struct{}) error {
	tr, err := rest.TransportFor(ownConnection(cfg))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "GET", cfg.Host+"/apis/cilium.io/v2/ciliumendpoints?watch=true&resourceVersion="+rv, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	started <- struct{}{}
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	got := 0
	for sc.Scan() {
		got++
		delivered.Add(1)
		if got == want {
			return nil
		}
	}
	return fmt.Errorf("watch ended after %d events: %w", got, sc.Err())
}

func scrapeSizes(b *testing.B, cfg *rest.Config) (sum, count float64) {
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Get(cfg.Host + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `resource="ciliumendpoints"`) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		switch {
		case strings.HasPrefix(line, "apiserver_watch_events_sizes_sum"):
			sum += v
		case strings.HasPrefix(line, "apiserver_watch_events_sizes_count"):
			count += v
		}
	}
	return sum, count
}

// BenchmarkCreate measures CiliumEndpoint creates per second through
// client-go against an in-process server (client and server share the
// process, so ns/op includes the client's encoding).
func BenchmarkCreate(b *testing.B) {
	benchCreate(b, Config{MaxMutatingRequestsInflight: -1, Capacity: benchCapacity()})
}

// BenchmarkCreateStateDir is BenchmarkCreate with a state directory: what
// the write-ahead log (one write(2) per committed write) adds to a create.
func BenchmarkCreateStateDir(b *testing.B) {
	benchCreate(b, Config{MaxMutatingRequestsInflight: -1, Capacity: benchCapacity(), StateDir: b.TempDir()})
}

func benchCreate(b *testing.B, cfg Config) {
	s := start(b, cfg)
	ns := benchCEP(0, 0).GetNamespace()
	cs, dc := clients(b, s)
	_ = cs
	if _, err := dc.Resource(nsGVR).Create(b.Context(), &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetParallelism(4)
	cpu0 := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1)) * 5 // all in namespace ns-0
			if _, err := dc.Resource(cepGVR).Namespace(ns).Create(b.Context(), benchCEP(i, 0), metav1.CreateOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "client+server-cpu-us/create")
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStoreMemory measures the server's heap per stored
// CiliumEndpoint at 100,000 objects, and what it costs beyond the JSON.
func BenchmarkStoreMemory(b *testing.B) {
	n := benchObjects
	for b.Loop() {
		s, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		nsStore := s.storeFor("", "v1", "namespaces")
		for k := range 5 {
			d, _ := decodeDocument(fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"ns-%d"}}`, k))
			_ = nsStore.prepareMeta(d, "", "")
			if _, err := nsStore.create(d); err != nil {
				b.Fatal(err)
			}
		}
		st := s.storeFor("cilium.io", "v2", "ciliumendpoints")
		bodies := make([][]byte, 0, 1000)
		for i := range 1000 {
			j, _ := benchCEP(i, 0).MarshalJSON()
			bodies = append(bodies, j)
		}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		jsonBytes := 0
		for i := range n {
			d, err := decodeDocument(bodies[i%len(bodies)])
			if err != nil {
				b.Fatal(err)
			}
			d.meta.Name = fmt.Sprintf("cep-%06d", i)
			if err := st.prepareMeta(d, fmt.Sprintf("ns-%d", i%5), ""); err != nil {
				b.Fatal(err)
			}
			o, err := st.create(d)
			if err != nil {
				b.Fatal(err)
			}
			jsonBytes += len(o.raw)
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		heap := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(heap/float64(n), "heap-bytes/object")
		b.ReportMetric(float64(jsonBytes)/float64(n), "json-bytes/object")
		b.ReportMetric((heap-float64(jsonBytes))/float64(n), "overhead-bytes/object")
		runtime.KeepAlive(s)
	}
}

var benchObjects = benchEnv("OBJECTS", 100000)

// benchEnv reads STAMPEDE_FAKEAPI_BENCH_<name> to scale a benchmark down
// (or up); def is the size the issue asks for.
func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv("STAMPEDE_FAKEAPI_BENCH_" + name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkConcurrentPatch has 256 writers JSON-patch the status of 1,000
// CiliumEndpoints in one store at once, as agents patch their endpoints'
// identities after a relabel (the HTTP layer left out). Metrics:
// patches/s and the writers' mean wait per patch.
func BenchmarkConcurrentPatch(b *testing.B) {
	const objects, writers = 1000, 256
	s := start(b, Config{})
	st := s.storeFor("cilium.io", "v2", "ciliumendpoints")
	for i := range objects {
		raw, err := benchCEP(i, 0).MarshalJSON()
		if err != nil {
			b.Fatal(err)
		}
		d, err := decodeDocument(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.create(d); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var waited atomic.Int64
	b.SetParallelism(writers / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := int(next.Add(1))
			o := benchCEP(n%objects, 0)
			body := fmt.Appendf(nil, `[{"op":"replace","path":"/status/identity/id","value":%d}]`, 70000+n)
			p, err := newPatcher(st.res, jsonPatchType, body)
			if err != nil {
				b.Error(err)
				return
			}
			start := time.Now()
			if _, err := st.update(o.GetNamespace(), o.GetName(), "status", "bench", st.patchMutation(p, o.GetNamespace(), o.GetName()), nil); err != nil {
				b.Error(err)
				return
			}
			waited.Add(int64(time.Since(start)))
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "patches/s")
	b.ReportMetric(float64(waited.Load())/float64(b.N)/1e3, "us-per-patch")
}

// benchCapacity is the capacity model STAMPEDE_FAKEAPI_BENCH_CAPACITY_CORES
// asks for (0: none), with the capacity package's placeholder profile
// (tests only; its costs are of the order of a real profile's). Enough
// cores that the budget never throttles measure what the model's own
// bookkeeping costs the fake.
func benchCapacity() *Capacity {
	cores := benchEnv("CAPACITY_CORES", 0)
	if cores <= 0 {
		return nil
	}
	p, err := capacity.Load("../internal/capacity/testdata/placeholder.yaml")
	if err != nil {
		panic(err)
	}
	return &Capacity{Cores: float64(cores), Profile: p}
}
