package calibrate

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/internal/capacity"
)

// testWriter sends progress lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestCalibrateShort runs the short workload against a real kube-apiserver
// and etcd and checks what every phase measured and that the fitted
// profile is a valid one.
func TestCalibrateShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real kube-apiserver; -short")
	}
	bin := requireKubeAPIServer(t)
	exe := stampedeBinary(t)
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	w := ShortWorkload()
	res, err := Run(ctx, Config{KubeAPIServer: bin, Executable: exe, Workload: w, Idle: 2 * time.Second, Progress: testWriter{t}})
	if res != nil && res.Model != nil {
		var sb strings.Builder
		_ = WriteTable(&sb, res.Model)
		t.Logf("coefficients:\n%s", sb.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	lists := map[int64]bool{}
	var watchCPU = map[int]float64{}
	replays := 0
	for _, p := range res.Phases {
		// A replay phase sends only watch requests, without bodies.
		if p.Requests == 0 || (p.Bytes == 0 && !p.Replay) || p.Wall <= 0 {
			t.Errorf("%s: requests %d, bytes %d, wall %v: want all positive", p, p.Requests, p.Bytes, p.Wall)
		}
		switch p.Verb {
		case "list":
			if p.Resource != "namespaces" {
				lists[p.Objects/int64(p.Requests)] = true
			}
		case "watch":
			if p.Replay {
				// Every other replay phase replays half the events.
				replays++
				if p.Events != w.WatchEvents && p.Events != w.WatchEvents/2 {
					t.Errorf("%s: %d events replayed, want %d or %d", p, p.Events, w.WatchEvents, w.WatchEvents/2)
				}
				if p.EventKiB() < 0.3 {
					t.Errorf("%s: %.2f KiB per replayed event, want a whole object", p, p.EventKiB())
				}
				continue
			}
			if p.Events != w.WatchEvents {
				t.Errorf("%s: %d events, want %d", p, p.Events, w.WatchEvents)
			}
			if p.Watchers > 0 && p.EventKiB() < 0.3 {
				t.Errorf("%s: %.2f KiB per event, want a whole object", p, p.EventKiB())
			}
			if p.Size == "large" {
				watchCPU[p.Watchers] = p.GrossCPU
			}
		}
	}
	for _, n := range w.ListSizes {
		if !lists[int64(n)] {
			t.Errorf("no list phase returned %d objects (got %v)", n, lists)
		}
	}
	if want := 2 * len(w.Watchers); replays != want {
		t.Errorf("%d replay phases, want %d (one per watcher count and size)", replays, want)
	}
	// Delivering every event to the most watchers costs more than to none.
	if most := w.Watchers[len(w.Watchers)-1]; watchCPU[most] <= watchCPU[0] {
		t.Errorf("watch CPU with %d watchers %.2f s <= without %.2f s", most, watchCPU[most], watchCPU[0])
	}
	p := res.Profile
	if p.KubeAPIServerVersion != capacity.KubeAPIServerVersion || p.EtcdVersion == "" || p.Machine.Cores < 1 || p.Machine.CPUModel == "" {
		t.Errorf("profile facts: %+v", p)
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := capacity.Parse(buf.Bytes()); err != nil {
		t.Errorf("the written profile does not parse back: %v\n%s", err, buf.String())
	}
}
