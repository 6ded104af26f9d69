package proc

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Renice sets the nice value of every thread of this process to n. Linux
// keeps a nice value per thread, and a thread inherits its creator's, so
// once every existing thread has it the threads the Go runtime starts
// later have it too; a second pass catches a thread started during the
// first. Raising the value needs no privilege.
func Renice(n int) error {
	if n < -20 || n > 19 {
		return fmt.Errorf("nice value %d: want -20 to 19", n)
	}
	for pass := 0; pass < 2; pass++ {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("nice: list threads: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, n); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("nice %d of thread %d: %w", n, tid, err)
			}
		}
	}
	return nil
}
