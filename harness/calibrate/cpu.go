package calibrate

import (
	"context"
	"fmt"
	"time"

	"github.com/stampede-sim/stampede/internal/proc"
)

// cpuMeter reads the CPU time (utime+stime from /proc/PID/stat, in USER_HZ
// ticks of 10 ms) of the measured processes, kube-apiserver and etcd, each
// its own process, together.
type cpuMeter struct {
	pids []int
	// baseline is the processes' idle CPU rate (cores), subtracted from
	// every phase for its wall time.
	baseline float64
}

func (m *cpuMeter) read() (time.Duration, error) {
	var total time.Duration
	for _, pid := range m.pids {
		st, err := proc.ReadStat(pid)
		if err != nil {
			return 0, fmt.Errorf("read CPU of %d: %w", pid, err)
		}
		total += st.CPU + st.ChildrenCPU
	}
	return total, nil
}

// idle measures the processes' CPU rate over d while nothing is asked of
// them (kube-apiserver's own loops: APF configuration, leases, etcd's
// heartbeats and compaction).
func (m *cpuMeter) idle(ctx context.Context, d time.Duration) (float64, error) {
	c0, err := m.read()
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(d):
	}
	c1, err := m.read()
	if err != nil {
		return 0, err
	}
	return (c1 - c0).Seconds() / time.Since(t0).Seconds(), nil
}
