package harness

import (
	"context"
	"testing"

	"github.com/stampede-sim/stampede/controlplane/etcd"
	"github.com/stampede-sim/stampede/internal/agentcontract"
)

func TestKVProbeAgainstRealEtcd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := etcd.Start(ctx, etcd.Config{Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	k, err := NewKVProbe(srv.ClientURL(), 200)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	// Stop once both operations have been measured a few times.
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { k.Run(runCtx); close(done) }()
	for {
		k.mu.Lock()
		n := len(k.all["put"]) + len(k.all["get"])
		k.mu.Unlock()
		if n >= 20 {
			break
		}
		select {
		case <-done:
			t.Fatal("probe stopped early")
		default:
		}
		runtimeYield()
	}
	stop()
	<-done
	row := k.TakeInterval()
	for _, key := range []string{"kvstore.probe.latency.p99{op=put}", "kvstore.probe.latency.p50{op=get}"} {
		if v, ok := row[key]; !ok || v <= 0 {
			t.Errorf("%s = %v, %v", key, v, ok)
		}
	}
	s := k.Summary()
	if len(s) != 2 || s[0].Verb != "get" || s[1].Verb != "put" || s[0].Resource != "probe" || s[0].Errors != 0 {
		t.Errorf("summary = %+v", s)
	}

	// The identity census counts master keys and label sets with more
	// than one; value and lock keys are not identities.
	for key, val := range map[string]string{
		agentcontract.KVIDPrefix + "256":                  "k8s:app=a;",
		agentcontract.KVIDPrefix + "257":                  "k8s:app=b;",
		agentcontract.KVIDPrefix + "258":                  "k8s:app=a;",
		agentcontract.KVValuePrefix + "k8s:app=a;/node-0": "256",
		agentcontract.KVLockPrefix + "k8s:app=b;":         "",
	} {
		if _, err := k.cli.Put(ctx, key, val); err != nil {
			t.Fatal(err)
		}
	}
	ic, err := k.IdentityCensus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ic.Final != 3 || ic.Duplicates != 1 {
		t.Errorf("census = %+v, want 3 identities, 1 duplicate", ic)
	}
}
