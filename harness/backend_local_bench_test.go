package harness

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/stampede-sim/stampede/internal/proc"
	"github.com/stampede-sim/stampede/scenarios"
)

// fanoutSize is the watch fan-out workload: watchers, each on its own
// connection, watch every CiliumEndpoint; objects CEPs are patched updates
// times in all (a new identity each time), so every watcher receives
// updates events of about 1 KiB.
type fanoutSize struct{ watchers, objects, updates int }

func fanoutSizeFromEnv() fanoutSize {
	s := fanoutSize{watchers: 100, objects: 500, updates: 5000}
	for env, p := range map[string]*int{
		"STAMPEDE_FANOUT_WATCHERS": &s.watchers, "STAMPEDE_FANOUT_OBJECTS": &s.objects, "STAMPEDE_FANOUT_UPDATES": &s.updates,
	} {
		if v, err := strconv.Atoi(os.Getenv(env)); err == nil && v > 0 {
			*p = v
		}
	}
	return s
}

// BenchmarkWatchFanoutLocalVsFake runs the same watch fan-out workload
// against the local backend (kube-apiserver + etcd) and the fake backend
// (stampede fakeapi), one after the other in one run, and reports the
// server CPU per delivered event of each (for local, kube-apiserver and
// etcd apart and together). Run with -benchtime=1x; the size comes from
// STAMPEDE_FANOUT_WATCHERS/OBJECTS/UPDATES (default 100/500/5000).
func BenchmarkWatchFanoutLocalVsFake(b *testing.B) {
	size := fanoutSizeFromEnv()
	backends := []struct {
		name string
		new  func() Backend
	}{
		{"fake", func() Backend {
			return &FakeBackend{ExtraArgs: []string{"--watch-history", "100000", "--watch-buffer", "100000",
				"--max-requests-inflight", "-1", "--max-mutating-requests-inflight", "-1"}}
		}},
		{"local", func() Backend {
			return NewLocalBackend(LocalConfig{KubeAPIServer: requireKubeAPIServer(b), Progress: io.Discard})
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			for range b.N {
				benchFanoutOn(b, be.new(), size)
			}
		})
	}
}

func benchFanoutOn(b *testing.B, backend Backend, size fanoutSize) {
	exe := buildStampede(b)
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	admin := User{Name: "stampede-admin", Role: RoleAdmin, Token: randomToken()}
	api, err := backend.Start(ctx, BackendEnv{Dir: b.TempDir(), Mode: scenarios.ModeCRD, Users: []User{admin}, Executable: exe})
	if err != nil {
		b.Fatalf("start %s: %v", backend.Name(), err)
	}
	defer func() {
		if err := backend.Stop(context.WithoutCancel(ctx)); err != nil {
			b.Errorf("stop %s: %v", backend.Name(), err)
		}
	}()
	token := admin.Token
	if t, ok := api.Tokens[admin.Name]; ok {
		token = t
	}
	cfg := restConfig(api, token)
	cfg.QPS = -1
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	nsGVR := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	cepGVR := gvrOf("ciliumendpoints")
	if _, err := dyn.Resource(nsGVR).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "fanout"}}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	for i := range size.objects {
		if _, err := dyn.Resource(cepGVR).Namespace("fanout").Create(ctx, cepObject(b, "fanout", fmt.Sprintf("pod-%05d", i), 70000), metav1.CreateOptions{}); err != nil {
			b.Fatalf("create CEP %d: %v", i, err)
		}
	}
	list, err := dyn.Resource(cepGVR).Namespace("fanout").List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		b.Fatal(err)
	}
	rv := list.GetResourceVersion()

	client, err := fanoutHTTPClient(api.CAFile)
	if err != nil {
		b.Fatal(err)
	}
	watchURL := api.URL + "/apis/cilium.io/v2/ciliumendpoints?watch=true&resourceVersion=" + rv
	var delivered atomic.Int64
	var wg sync.WaitGroup
	started := make(chan struct{}, size.watchers)
	errs := make(chan error, size.watchers+4)
	for range size.watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := countingWatcher(ctx, client(), watchURL, token, size.updates, &delivered, started); err != nil {
				errs <- err
			}
		}()
	}
	for range size.watchers {
		select {
		case <-started:
		case err := <-errs:
			b.Fatal(err)
		}
	}

	pids := api.Processes
	cpu0 := cpuOf(b, pids)
	t0 := time.Now()
	b.ResetTimer()
	const writers = 4
	var wwg sync.WaitGroup
	for w := range writers {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for u := w; u < size.updates; u += writers {
				name := fmt.Sprintf("pod-%05d", u%size.objects)
				patch := []byte(`{"status":{"identity":{"id":` + strconv.Itoa(70001+u) + `}}}`)
				if _, err := dyn.Resource(cepGVR).Namespace("fanout").Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
					errs <- fmt.Errorf("patch %s: %w", name, err)
					return
				}
			}
		}()
	}
	wwg.Wait()
	writeDone := time.Since(t0)
	waitDone := make(chan struct{})
	go func() { wg.Wait(); close(waitDone) }()
	select {
	case <-waitDone:
	case err := <-errs:
		cancel()
		<-waitDone
		b.Fatal(err)
	case <-time.After(5 * time.Minute):
		cancel()
		<-waitDone
		b.Fatalf("watchers received %d of %d events in 5 minutes", delivered.Load(), size.watchers*size.updates)
	}
	elapsed := time.Since(t0)
	cpu1 := cpuOf(b, pids)
	b.StopTimer()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	n := delivered.Load()
	if n != int64(size.watchers*size.updates) {
		b.Fatalf("delivered %d events, want %d", n, size.watchers*size.updates)
	}
	var total time.Duration
	for name := range pids {
		d := cpu1[name] - cpu0[name]
		total += d
		b.ReportMetric(float64(d.Microseconds())/float64(n), name+"-cpu-us/event")
	}
	b.ReportMetric(float64(total.Microseconds())/float64(n), "server-cpu-us/event")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(writeDone.Seconds(), "write-s")
	b.ReportMetric(elapsed.Seconds(), "wall-s")
}

func cpuOf(b *testing.B, pids map[string]int) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pid := range pids {
		st, err := proc.ReadStat(pid)
		if err != nil {
			b.Fatalf("read CPU of %s: %v", name, err)
		}
		out[name] = st.CPU
	}
	return out
}

// fanoutHTTPClient returns a maker of clients with their own transport
// (so their own TCP connection), as separate agents have.
func fanoutHTTPClient(caFile string) (func() *http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tc.RootCAs = pool
	}
	return func() *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc.Clone(), ForceAttemptHTTP2: false}}
	}, nil
}

// countingWatcher reads a JSON watch stream and counts MODIFIED events
// until it has want of them.
func countingWatcher(ctx context.Context, client *http.Client, url, token string, want int, delivered *atomic.Int64, started chan<- struct{}) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("watch: %w", err)
	}
	defer resp.Body.Close()
	defer client.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("watch: %d %s", resp.StatusCode, body)
	}
	started <- struct{}{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	got := 0
	for got < want && sc.Scan() {
		if bytes.HasPrefix(sc.Bytes(), []byte(`{"type":"MODIFIED"`)) {
			got++
			delivered.Add(1)
		}
	}
	if got < want {
		return fmt.Errorf("watch ended after %d of %d events: %v", got, want, sc.Err())
	}
	return nil
}

// buildStampede builds ./cmd/stampede into a temporary directory of tb.
func buildStampede(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "stampede")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/stampede-sim/stampede/cmd/stampede").CombinedOutput()
	if err != nil {
		tb.Fatalf("go build stampede: %v\n%s", err, out)
	}
	return bin
}
