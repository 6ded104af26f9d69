package datapath

import (
	"context"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/stampede-sim/stampede/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// kinds are the implementations every behavioural test runs against.
var kinds = []Kind{KindMem, KindBPF}

// open opens a datapath of the given kind for a test and closes it at the
// end. For bpf it needs root and a kernel that lets it create maps; without
// them it skips, or fails under STAMPEDE_STRICT_SKIPS=1.
func open(tb testing.TB, kind Kind, cfg Config) Datapath {
	tb.Helper()
	if kind == KindBPF {
		requireBPF(tb)
	}
	cfg.Kind = kind
	d, got, err := Open(context.Background(), cfg, nil)
	if err != nil {
		tb.Fatalf("open %s datapath: %v", kind, err)
	}
	if got != kind {
		tb.Fatalf("open %s datapath: got kind %s", kind, got)
	}
	tb.Cleanup(func() {
		if err := d.Close(); err != nil {
			tb.Errorf("close %s datapath: %v", kind, err)
		}
	})
	return d
}

func requireBPF(tb testing.TB) {
	tb.Helper()
	testenv.RequireRoot(tb)
	if err := probeBPF(); err != nil {
		testenv.Skip(tb, "bpf datapath: %v", err)
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(tb testing.TB) int {
	tb.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatalf("count fds: %v", err)
	}
	return len(ents)
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
