package controlplane

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// failingIdentities is an operatorIdentities whose CiliumIdentity creates
// fail while fail is set, on a clock the test moves.
func failingIdentities(t *testing.T, base, max time.Duration, retries int) (o *operatorIdentities, attempts *atomic.Int32, fail *atomic.Bool, clock *time.Time) {
	t.Helper()
	sc, err := scenarios.Builtin("relabel-small")
	if err != nil {
		t.Fatal(err)
	}
	sc.ControlPlane.OperatorIdentity = scenarios.OperatorIdentityKnobs{RetryBaseDelay: scenarios.D(base), RetryMaxDelay: scenarios.D(max), MaxRetries: &retries}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{gvrIdentity: "CiliumIdentityList"})
	attempts, fail = &atomic.Int32{}, &atomic.Bool{}
	fail.Store(true)
	dyn.PrependReactor("create", "ciliumidentities", func(k8stesting.Action) (bool, runtime.Object, error) {
		attempts.Add(1)
		if fail.Load() {
			return true, nil, errors.New("injected failure")
		}
		return false, nil, nil
	})
	now := time.Unix(1_000_000, 0)
	clock = &now
	o, err = newOperatorIdentities(operatorIdentitiesConfig{kube: &kube{dyn: dyn}, scenario: sc, log: slog.New(slog.DiscardHandler), reg: prometheus.NewRegistry(), now: func() time.Time { return *clock }})
	if err != nil {
		t.Fatal(err)
	}
	l := identity.NewLabels(identity.Label{Source: identity.SourceK8s, Key: "app", Value: "a"})
	o.pending[l.Key()] = l
	return o, attempts, fail, clock
}

// TestOperatorIdentityRetryBackoff: a failing creation is retried after
// 1, 2, 4... times retryBaseDelay, capped at retryMaxDelay, and dropped
// after maxRetries retries, as the operator's work queue does.
func TestOperatorIdentityRetryBackoff(t *testing.T) {
	const base, max, retries = time.Second, 3 * time.Second, 3
	o, attempts, _, clock := failingIdentities(t, base, max, retries)
	start := *clock
	var delays []time.Duration
	for i := 0; i < 10; i++ {
		next, ok := o.createPending(t.Context())
		if !ok {
			break
		}
		// Not due a moment before its time.
		*clock = next.Add(-time.Millisecond)
		before := attempts.Load()
		if _, ok := o.createPending(t.Context()); !ok || attempts.Load() != before {
			t.Fatalf("retry %d ran before its backoff ended", i)
		}
		delays = append(delays, next.Sub(start))
		start = next
		*clock = next
	}
	want := []time.Duration{base, 2 * base, max}
	if len(delays) != len(want) {
		t.Fatalf("backoff delays %v, want %v", delays, want)
	}
	for i := range want {
		if delays[i] != want[i] {
			t.Errorf("backoff delays %v, want %v", delays, want)
			break
		}
	}
	if n := attempts.Load(); n != retries+1 {
		t.Errorf("%d attempts, want %d (the first and %d retries)", n, retries+1, retries)
	}
	if len(o.pending) != 0 || len(o.failures) != 0 {
		t.Errorf("after max retries: pending %v failures %v, want the label set dropped", o.pending, o.failures)
	}
}

// TestOperatorIdentityRetrySucceeds: a creation that fails once is
// created at its retry, and its failure count is forgotten.
func TestOperatorIdentityRetrySucceeds(t *testing.T) {
	o, attempts, fail, clock := failingIdentities(t, time.Second, 100*time.Second, 15)
	next, ok := o.createPending(t.Context())
	if !ok {
		t.Fatal("a failed creation was not scheduled for retry")
	}
	fail.Store(false)
	*clock = next
	if _, ok := o.createPending(t.Context()); ok {
		t.Error("a retry is still scheduled after the creation succeeded")
	}
	if attempts.Load() != 2 || len(o.pending) != 0 || len(o.failures) != 0 || len(o.known) != 1 {
		t.Errorf("attempts %d, pending %v, failures %v, known %v; want 2 attempts and the identity known", attempts.Load(), o.pending, o.failures, o.known)
	}
}
