package harness

import (
	"context"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stampede-sim/stampede/controlplane/etcd"
	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/reports/results"
)

// mirrorWriter stands in for the API server and a mirror: a created
// identity's key appears in etcd after delay (never, if mirror is false),
// and a deleted one's goes.
type mirrorWriter struct {
	cli    *clientv3.Client
	delay  time.Duration
	mirror bool

	mu      sync.Mutex
	created map[string]bool
	puts    map[string]chan struct{} // closed when the key is written
	wg      sync.WaitGroup
}

func (w *mirrorWriter) CreateIdentity(ctx context.Context, cid identity.CiliumIdentity) error {
	w.mu.Lock()
	w.created[cid.Metadata.Name] = true
	w.mu.Unlock()
	if !w.mirror {
		return nil
	}
	l, err := identity.FromSecurityLabels(cid.SecurityLabels)
	if err != nil {
		return err
	}
	put := make(chan struct{})
	w.mu.Lock()
	w.puts[cid.Metadata.Name] = put
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(put)
		time.Sleep(w.delay)
		_, _ = w.cli.Put(context.WithoutCancel(ctx), agentcontract.KVIDPrefix+cid.Metadata.Name, l.Key())
	}()
	return nil
}

func (w *mirrorWriter) DeleteIdentity(ctx context.Context, name string) error {
	// A mirror applies a delete after the create it follows.
	w.mu.Lock()
	delete(w.created, name)
	put := w.puts[name]
	delete(w.puts, name)
	w.mu.Unlock()
	if put != nil {
		<-put
	}
	_, err := w.cli.Delete(ctx, agentcontract.KVIDPrefix+name)
	return err
}

// TestMeshProbe probes a real etcd standing in for two replicas (one etcd
// per process: controlplane/etcd) through a writer that mirrors each
// identity after a delay: every probe is timed in each replica, no lag is
// below the delay, and the identities are deleted again. Without the
// mirror, every probe is an error and none is timed.
func TestMeshProbe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := etcd.Start(ctx, etcd.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.ClientURL()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// An agent's identity in the same prefix is not a probe's.
	if _, err := cli.Put(ctx, agentcontract.KVIDPrefix+"300", "k8s:app=a;"); err != nil {
		t.Fatal(err)
	}

	const delay = 30 * time.Millisecond
	for _, tc := range []struct {
		name    string
		mirror  bool
		timeout time.Duration // long enough for a loaded -race run when mirrored
	}{{"mirrored", true, 10 * time.Second}, {"not mirrored", false, 300 * time.Millisecond}} {
		t.Run(tc.name, func(t *testing.T) {
			w := &mirrorWriter{cli: cli, delay: delay, mirror: tc.mirror, created: map[string]bool{}, puts: map[string]chan struct{}{}}
			p, err := NewMeshProbe(MeshProbeConfig{API: w, Replicas: []string{srv.ClientURL(), srv.ClientURL()}, Rate: 50, Timeout: tc.timeout})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { p.Run(runCtx); close(done) }()
			for deadline := time.Now().Add(20 * time.Second); ; {
				lag, _ := p.Summary()
				if lag.Count+lag.Errors >= 5 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no 5 probes in 20 s: %+v", lag)
				}
				time.Sleep(10 * time.Millisecond)
			}
			stop()
			<-done
			w.wg.Wait()
			lag, events := p.Summary()
			if len(lag.PerReplica) != 2 {
				t.Fatalf("per replica = %+v, want 2", lag.PerReplica)
			}
			if !tc.mirror {
				if lag.Count != 0 || lag.Errors < 5 || lag.PerReplica[0].Errors < 5 || events != 0 {
					t.Errorf("without a mirror: lag %+v, probe events %d; want no lag, >= 5 errors in all and per replica, no events", lag, events)
				}
				return
			}
			if lag.Count < 5 || lag.Errors != 0 {
				t.Errorf("all replicas: %+v, want >= 5 probes, no errors", lag)
			}
			if lag.P50 < delay.Seconds() || lag.Max < lag.P99 || lag.P99 < lag.P50 {
				t.Errorf("all replicas: %+v, want p50 >= the mirror's %v and ordered quantiles", lag, delay)
			}
			for _, r := range lag.PerReplica {
				if r.Count < 5 || r.Errors != 0 || r.P50 < delay.Seconds() || r.Max > lag.Max {
					t.Errorf("replica %d: %+v, want >= 5 lags of at least %v, none above all replicas' max %v", r.Replica, r.LagStats, delay, lag.Max)
				}
			}
			// Each timed probe's put, and deletes (those of the last probes
			// may come after the watch stopped).
			if events <= lag.Count {
				t.Errorf("probe events %d, want more than the %d puts of the timed probes", events, lag.Count)
			}
			w.mu.Lock()
			left := len(w.created)
			w.mu.Unlock()
			if left != 0 {
				t.Errorf("%d probe identities left", left)
			}
			resp, err := cli.Get(ctx, agentcontract.KVIDPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil || resp.Count != 1 {
				t.Errorf("identity keys left: %v, %v; want only the agent's", resp.Count, err)
			}
		})
	}
}

func TestMeshProbeRange(t *testing.T) {
	// Disjoint from what agents and the operator allocate.
	if meshProbeFirst <= identity.MaxID || meshProbeLast < meshProbeFirst || meshProbeLast >= 1<<24 {
		t.Errorf("probe range %d..%d overlaps cluster 0's %d..%d or the local scope", meshProbeFirst, meshProbeLast, identity.MinID, identity.MaxID)
	}
	if _, err := NewMeshProbe(MeshProbeConfig{API: &mirrorWriter{}, Replicas: []string{"http://127.0.0.1:1"}, Rate: 0}); err == nil {
		t.Error("rate 0 accepted")
	}
}

// TestMeshServed sums what the agents received from the replicas and
// nothing they received from the API server.
func TestMeshServed(t *testing.T) {
	tr := func(ev, by float64) results.TrafficPerAgent {
		return results.TrafficPerAgent{Events: results.PerAgent{Sum: ev}, Bytes: results.PerAgent{Sum: by}}
	}
	w := &results.AgentWorkSummary{Received: map[string]results.TrafficPerAgent{
		"mesh-identities": tr(10, 1000), "mesh-ipcache": tr(20, 2000), "mesh-nodes": tr(4, 400), "pods": tr(100, 9000), "*": tr(134, 12400),
	}}
	if got, want := meshServed(w), (results.TrafficSummary{Events: 34, Bytes: 3400}); got != want {
		t.Errorf("served = %+v, want %+v", got, want)
	}
	if got := meshServed(nil); got != (results.TrafficSummary{}) {
		t.Errorf("served without reports = %+v", got)
	}
}
