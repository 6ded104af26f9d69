package mesh

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stampede-sim/stampede/fakeapi"
	"github.com/stampede-sim/stampede/internal/agentcontract"
	"github.com/stampede-sim/stampede/internal/ready"
)

// TestRunAnnouncesAndMirrors runs the `stampede mesh` process body: it
// announces itself and fills the etcd it is given.
func TestRunAnnouncesAndMirrors(t *testing.T) {
	api, err := fakeapi.New(fakeapi.Config{})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	if err := api.Start(actx); err != nil {
		acancel()
		t.Fatal(err)
	}
	defer func() { acancel(); api.Close() }()
	cli := startEtcd(t)
	rf := filepath.Join(t.TempDir(), "ready.json")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		done <- Run(ctx, RunConfig{Replica: 1, Source: SourceCES, REST: api.RESTConfig(), Etcd: cli.Endpoints(), ReadyFile: rf})
		close(exited)
	}()
	a, err := ready.Wait(ctx, rf, exited)
	if err != nil {
		cancel()
		t.Fatalf("ready: %v (%v)", err, <-done)
	}
	if a.Component != "mesh" || a.Extra["replica"] != "1" || a.Extra["source"] != "ces" || !strings.HasPrefix(a.Endpoints["metrics"], "http://127.0.0.1:") {
		t.Errorf("announcement = %+v", a)
	}
	waitFor(t, 30*time.Second, "canaries in etcd", func() bool {
		resp, err := cli.Get(t.Context(), agentcontract.KVSyncedPrefix+"default/", clientv3.WithPrefix())
		return err == nil && len(resp.Kvs) == 3
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// At exit the keys stay, on a lease left to expire.
	resp, err := cli.Get(t.Context(), agentcontract.KVHeartbeatKey)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Errorf("after exit: heartbeat %v, %v; want it kept, on a lease", resp, err)
	}
}
