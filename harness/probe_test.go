package harness

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingTarget answers instantly and ends the probe after n requests.
type countingTarget struct {
	n      int
	cancel context.CancelFunc
	block  chan struct{} // if not nil, every request waits for it

	mu    sync.Mutex
	calls int
}

func (c *countingTarget) Prepare(context.Context) error { return nil }

func (c *countingTarget) Ops() []probeOp {
	do := func(fail bool) func(ctx context.Context, _ int) error {
		return func(ctx context.Context, _ int) error {
			if c.block != nil {
				select {
				case <-c.block:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			c.mu.Lock()
			c.calls++
			if c.calls == c.n {
				c.cancel()
			}
			c.mu.Unlock()
			if fail {
				return errors.New("boom")
			}
			return nil
		}
	}
	return []probeOp{{Verb: "GET", Resource: "pods", Do: do(false)}, {Verb: "PATCH", Resource: "ciliumnodes", Do: do(true)}}
}

func TestProbeRecordsByVerbAndResource(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tgt := &countingTarget{n: 20, cancel: cancel}
	p, err := NewProbe(ProbeConfig{Target: tgt, Rate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	p.Run(ctx)
	row := p.TakeInterval(time.Second)
	for _, k := range []string{"apiserver.latency.p99", "apiserver.latency.p50{verb=GET,resource=pods}", "apiserver.latency.max{verb=PATCH,resource=ciliumnodes}", "probe.rate"} {
		if _, ok := row[k]; !ok {
			t.Errorf("interval row lacks %s: %v", k, row)
		}
	}
	if len(p.TakeInterval(time.Second)) != 1 {
		t.Error("a second TakeInterval should be empty but for probe.rate")
	}
	lat, ps := p.Summary()
	var all, patch int64
	for _, l := range lat {
		switch {
		case l.Verb == "*":
			all = l.Count
		case l.Verb == "PATCH":
			patch = l.Errors
		}
	}
	if all < 19 || patch == 0 {
		t.Errorf("summary %+v: want ~20 requests and the PATCH errors counted", lat)
	}
	if ps.TargetRate != 1000 || !strings.Contains(ps.Detail, "errors") {
		t.Errorf("probe summary = %+v", ps)
	}
}

func TestProbeReportsMissedRate(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	block := make(chan struct{})
	tgt := &countingTarget{n: 1 << 30, cancel: cancel, block: block}
	p, err := NewProbe(ProbeConfig{Target: tgt, Rate: 1000, MaxInFlight: 1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	// Wait until ticks are being missed, then release and stop.
	for {
		p.mu.Lock()
		missed := p.missed
		p.mu.Unlock()
		if missed >= 10 {
			break
		}
		runtimeYield()
	}
	cancel()
	close(block)
	<-done
	_, ps := p.Summary()
	if ps.HeldRate || !strings.Contains(ps.Detail, "fell behind") {
		t.Errorf("probe summary = %+v, want heldRate false", ps)
	}
}

func TestNewProbeErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  ProbeConfig
		want string
	}{
		{"no target", ProbeConfig{Rate: 1}, "Target is nil"},
		{"zero rate", ProbeConfig{Target: &countingTarget{}, Rate: 0}, "rate must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewProbe(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// runtimeYield lets other goroutines run while a test polls a condition.
func runtimeYield() { time.Sleep(time.Millisecond) }
