package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stampede-sim/stampede/controlplane/xds"
	"github.com/stampede-sim/stampede/scenarios"
)

// TestXDSFlushInterval: a stream of API events over a second is published
// in about one batch per controlPlane.xds.flushInterval.
func TestXDSFlushInterval(t *testing.T) {
	flushes := func(t *testing.T, every time.Duration) float64 {
		sc, err := scenarios.Builtin("relabel-small")
		if err != nil {
			t.Fatal(err)
		}
		sc.ControlPlane.XDS.FlushInterval = scenarios.D(every)
		reg := prometheus.NewRegistry()
		srv, err := xds.New(xds.Config{Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		events := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "events"}, []string{"resource"})
		s, err := newXDSSource(xdsSourceConfig{events: events, server: srv, scenario: sc, log: slog.New(slog.DiscardHandler), reg: reg})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); s.flushLoop(ctx) }()
		end := time.Now().Add(time.Second)
		for i := 0; time.Now().Before(end); i++ {
			s.update("namespaces", func(m *xds.Model) error {
				m.SetNamespace("ns-0", map[string]string{"round": fmt.Sprint(i)})
				return nil
			})
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		wg.Wait()
		return testutil.ToFloat64(s.flushes)
	}
	slow, fast := flushes(t, 250*time.Millisecond), flushes(t, 50*time.Millisecond)
	// At most one flush per interval, plus the one at the start.
	if slow < 1 || slow > 1+time.Second.Seconds()/0.25+1 {
		t.Errorf("flushInterval 250ms: %g flushes in 1s, want about 5", slow)
	}
	if fast <= slow {
		t.Errorf("flushInterval 50ms: %g flushes, not more than the %g of 250ms", fast, slow)
	}
}
