package proc

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// threadNice reads a thread's nice value from /proc (field 19 of stat).
func threadNice(t *testing.T, tid string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/task/" + tid + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	n, err := strconv.Atoi(fields[16]) // field 19; fields starts at field 3
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestReniceEveryThreadAndLaterOnes(t *testing.T) {
	if err := Renice(20); err == nil {
		t.Error("Renice(20) succeeded; want an error naming the range")
	}
	if err := Renice(7); err != nil {
		t.Fatal(err)
	}
	before := threads(t)
	// Goroutines locked to their threads and blocked need a thread each:
	// with more of them than threads exist, the runtime starts new ones,
	// which must inherit the value.
	locked := len(before) + 2
	release := make(chan struct{})
	defer close(release)
	started := make(chan struct{})
	for range locked {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			started <- struct{}{}
			<-release
		}()
	}
	for range locked {
		<-started
	}
	after := threads(t)
	newer := 0
	for _, tid := range after {
		if !slices.Contains(before, tid) {
			newer++
		}
		if n := threadNice(t, tid); n != 7 {
			t.Errorf("thread %s has nice %d, want 7", tid, n)
		}
	}
	if newer == 0 {
		t.Errorf("no thread was started after Renice (%d threads before, %d after)", len(before), len(after))
	}
}

func threads(t *testing.T) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, task := range tasks {
		ids = append(ids, task.Name())
	}
	return ids
}
