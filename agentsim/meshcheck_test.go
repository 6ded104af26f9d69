package agentsim

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestCheckPolicyForFollowsCilium compares the check schedule with the
// table of pkg/backoff ClusterSizeDependantInterval's comment (base 1m;
// the status checks' bases are 30s and 5s: a half and a twelfth of it)
// and Cilium's other constants.
func TestCheckPolicyForFollowsCilium(t *testing.T) {
	for _, tc := range []struct {
		nodes     int
		perMinute string // the table's interval for a base of 1m
	}{{1, "41.588830833s"}, {8, "2m11.833474640s"}, {128, "4m51.588744261s"}, {2048, "7m37.506428894s"}} {
		base, err := time.ParseDuration(tc.perMinute)
		if err != nil {
			t.Fatal(err)
		}
		p := checkPolicyFor(tc.nodes)
		if d := p.ProbeInterval - base/2; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("%d nodes: interval %v, want %v", tc.nodes, p.ProbeInterval, base/2)
		}
		if d := p.ProbeIntervalFailing - base/12; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("%d nodes: failing interval %v, want %v", tc.nodes, p.ProbeIntervalFailing, base/12)
		}
	}
	if p := checkPolicyFor(0); p.ProbeInterval != 30*time.Second {
		t.Errorf("0 nodes: interval %v, want the base 30s", p.ProbeInterval)
	}
	if p := checkPolicyFor(200); p.ProbeTimeout != 10*time.Second || p.MaxConsecutiveErrors != 2 {
		t.Errorf("timeout %v, tolerated failures %d; want Cilium's statusCheckTimeout 10s and KVstoreMaxConsecutiveQuorumErrors 2", p.ProbeTimeout, p.MaxConsecutiveErrors)
	}
}

// TestReplicaCheckToleratesFailures: a replica is lost only after more
// than MaxConsecutiveErrors failed checks in a row; a passing check
// resets the count; after a failure the checks come at the failing
// interval; a response from another etcd ends the session at once.
func TestReplicaCheckToleratesFailures(t *testing.T) {
	cfg := meshConfig{ProbeInterval: 30 * time.Second, ProbeIntervalFailing: 5 * time.Second, MaxConsecutiveErrors: 2}
	errDown := errors.New("deadline exceeded")
	run := func(outcomes []error) (err error, checks int, waits []time.Duration) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		now := make(chan time.Time, 1)
		after := func(d time.Duration) <-chan time.Time {
			waits = append(waits, d)
			now <- time.Time{}
			return now
		}
		err = replicaCheck(ctx, cfg, func(context.Context) error {
			if checks >= len(outcomes) {
				cancel()
				return nil
			}
			checks++
			return outcomes[checks-1]
		}, after)
		return err, checks, waits
	}

	// Two failures, a pass, two failures: never three in a row.
	err, checks, waits := run([]error{errDown, errDown, nil, errDown, errDown, nil})
	if err != nil || checks != 6 {
		t.Errorf("two failures at a time: lost (%v) after %d checks, want kept through all 6", err, checks)
	}
	want := []time.Duration{30 * time.Second, 5 * time.Second, 5 * time.Second, 30 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		if i >= len(waits) || waits[i] != w {
			t.Fatalf("waits before the checks = %v, want %v (the failing interval after a failure)", waits, want)
		}
	}
	// Three in a row: lost at the third.
	err, checks, _ = run([]error{nil, errDown, errDown, errDown, nil})
	if err == nil || checks != 4 || !errors.Is(err, errDown) {
		t.Errorf("three failures in a row: err %v after %d checks, want lost at check 4", err, checks)
	}
	// Another etcd: lost at once.
	err, checks, _ = run([]error{errFatalCheck{errClusterIDChanged}, nil})
	if !errors.Is(err, errClusterIDChanged) || checks != 1 {
		t.Errorf("cluster ID changed: err %v after %d checks, want lost at the first", err, checks)
	}
}
