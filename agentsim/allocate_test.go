package agentsim

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stampede-sim/stampede/internal/identity"
	"github.com/stampede-sim/stampede/scenarios"
)

// TestRetryAllocation checks the allocator's retry loop (Cilium's
// Allocator.Allocate): conflicts are retried after a doubling backoff and
// counted as retries, the loop gives up after AllocationAttempts attempts
// with errAllocation wrapping the last error, and a permanent error ends
// it at once.
func TestRetryAllocation(t *testing.T) {
	conflict := &apiError{Code: http.StatusConflict, Reason: "AlreadyExists"}
	tests := []struct {
		name        string
		failures    int // attempts that fail before one succeeds
		permanent   bool
		wantID      identity.ID
		wantErr     error
		wantCalls   int
		wantRetries uint64
	}{
		{name: "first attempt", failures: 0, wantID: 300, wantCalls: 1},
		{name: "conflicts then success", failures: 3, wantID: 300, wantCalls: 4, wantRetries: 3},
		{name: "every attempt conflicts", failures: 5, wantErr: errAllocation, wantCalls: 5, wantRetries: 4},
		{name: "permanent error", failures: 5, permanent: true, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := AgentConfig{Node: "n1", Mode: scenarios.ModeCRD, Metrics: newMetrics(prometheus.NewRegistry(), nil)}
			cfg.Knobs.AllocationAttempts = 5
			cfg.Knobs.AllocationBackoff.Duration = time.Millisecond
			cfg.setDefaults()
			a := newAgentState(cfg)
			calls := 0
			start := time.Now()
			id, err := a.retryAllocation(t.Context(), "k8s:app=a;", false, func(context.Context) (identity.ID, error) {
				calls++
				if calls <= tt.failures {
					if tt.permanent {
						return 0, &permanentError{errors.New("cannot encode")}
					}
					return 0, conflict
				}
				return 300, nil
			})
			elapsed := time.Since(start)
			if calls != tt.wantCalls {
				t.Errorf("attempts = %d, want %d", calls, tt.wantCalls)
			}
			if got := a.ids.retries.Load(); got != tt.wantRetries {
				t.Errorf("retries = %d, want %d", got, tt.wantRetries)
			}
			switch {
			case tt.permanent:
				var perm *permanentError
				if err == nil || errors.As(err, &perm) {
					t.Errorf("err = %v, want the permanent error unwrapped", err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) || httpCode(err) != http.StatusConflict {
					t.Errorf("err = %v, want %v wrapping the last conflict", err, tt.wantErr)
				}
			case err != nil || id != tt.wantID:
				t.Errorf("got %d, %v; want %d", id, err, tt.wantID)
			}
			// Waits of 1, 2, 4, ... ms between attempts.
			if minWait := time.Duration(1<<tt.wantRetries-1) * time.Millisecond; elapsed < minWait {
				t.Errorf("took %v, want at least the doubling backoff's %v", elapsed, minWait)
			}
		})
	}
}

// TestRetryAllocationStopsWithContext checks that an allocation whose
// context ends returns the context's error, not errAllocation.
func TestRetryAllocationStopsWithContext(t *testing.T) {
	cfg := AgentConfig{Node: "n1", Mode: scenarios.ModeCRD, Metrics: newMetrics(prometheus.NewRegistry(), nil)}
	cfg.setDefaults()
	a := newAgentState(cfg)
	ctx, cancel := context.WithCancel(t.Context())
	_, err := a.retryAllocation(ctx, "k8s:app=a;", false, func(context.Context) (identity.ID, error) {
		cancel()
		return 0, errors.New("connection reset")
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
