package calibrate

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stampede-sim/stampede/internal/proc"
	"github.com/stampede-sim/stampede/internal/testenv"
)

// TestConfineLimitsCPU confines a busy loop to a fifth of a core and checks
// that it gets no more than that.
func TestConfineLimitsCPU(t *testing.T) {
	testenv.RequireRoot(t)
	if _, _, err := cpuCgroupRoot(); err != nil {
		testenv.Skip(t, "no cpu cgroup controller: %v", err)
	}
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	c, err := Confine(fmt.Sprintf("stampede-confine-test-%d", os.Getpid()), 0.2, []int{cmd.Process.Pid})
	if err != nil {
		t.Fatal(err)
	}
	if c.Path == "" {
		t.Fatalf("confined by %s, want a cgroup", c)
	}
	st0, err := proc.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	time.Sleep(1500 * time.Millisecond)
	st1, err := proc.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	rate := (st1.CPU - st0.CPU).Seconds() / time.Since(t0).Seconds()
	if rate > 0.3 {
		t.Errorf("confined to 0.2 cores, the loop used %.2f cores", rate)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := c.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.Path); !os.IsNotExist(err) {
		t.Errorf("cgroup %s left behind: %v", c.Path, err)
	}
}

func TestConfineRejectsBadCores(t *testing.T) {
	for _, c := range []float64{0, -1} {
		if _, err := Confine("x", c, nil); err == nil {
			t.Errorf("Confine(%v) accepted", c)
		}
	}
}
