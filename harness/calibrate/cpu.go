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

// settle waits until the processes are quiet again, so that work a phase
// left behind (watch cache dispatch, etcd's fsyncs, the garbage collection
// its allocations cause) is charged to it: until a 100 ms interval shows no
// more than one tick above the baseline, for at most max. It returns the
// CPU reading at that moment.
func (m *cpuMeter) settle(ctx context.Context, max time.Duration) (time.Duration, error) {
	const step = 100 * time.Millisecond
	prev, err := m.read()
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(step):
		}
		cur, err := m.read()
		if err != nil {
			return 0, err
		}
		if (cur - prev).Seconds() <= m.baseline*step.Seconds()+0.0101 {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}
