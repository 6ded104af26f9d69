package calibrate

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Confinement limits processes to a number of cores: a CPU quota in a
// cgroup of their own (cgroup v1's cpu controller or cgroup v2's cpu.max,
// whichever the machine has), or, without a usable cgroup, CPU affinity to
// the first ceil(cores) CPUs.
type Confinement struct {
	// Method is "cgroup v1 cpu quota", "cgroup v2 cpu.max" or
	// "sched_setaffinity"; Path the cgroup directory (empty for affinity).
	Method string
	Path   string
	Cores  float64
}

// cfsPeriod is the quota period, in microseconds (the kernel's default).
const cfsPeriod = 100000

// Confine creates a cgroup named name with a quota of cores and moves pids
// (whole thread groups; their future threads and children follow) into
// it, or falls back to CPU affinity. Release removes the cgroup once the
// processes have exited.
func Confine(name string, cores float64, pids []int) (*Confinement, error) {
	if !(cores > 0) || math.IsInf(cores, 0) {
		return nil, fmt.Errorf("confine: cores must be a positive finite number, got %v", cores)
	}
	var errs []error
	if dir, v, err := cpuCgroupRoot(); err == nil {
		c, err := confineCgroup(dir, v, name, cores, pids)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	} else {
		errs = append(errs, err)
	}
	c, err := confineAffinity(cores, pids)
	if err != nil {
		errs = append(errs, err)
		return nil, fmt.Errorf("confine to %v cores: %w", cores, errors.Join(errs...))
	}
	return c, nil
}

// cpuCgroupRoot finds where the cpu controller is mounted: a cgroup v1
// hierarchy with the cpu option, or a cgroup2 mount that offers cpu.
func cpuCgroupRoot() (string, int, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", 0, fmt.Errorf("find cpu cgroup: %w", err)
	}
	defer f.Close()
	var v2 string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mountpoint ... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		mnt := pf[4]
		switch qf[0] {
		case "cgroup":
			for _, o := range strings.Split(qf[2], ",") {
				if o == "cpu" {
					return mnt, 1, nil
				}
			}
		case "cgroup2":
			if data, err := os.ReadFile(filepath.Join(mnt, "cgroup.controllers")); err == nil && hasWord(string(data), "cpu") && v2 == "" {
				v2 = mnt
			}
		}
	}
	if v2 != "" {
		return v2, 2, nil
	}
	return "", 0, errors.New("find cpu cgroup: no cgroup v1 cpu hierarchy and no cgroup2 mount offering cpu")
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

func confineCgroup(root string, version int, name string, cores float64, pids []int) (*Confinement, error) {
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	c := &Confinement{Path: dir, Cores: cores}
	quota := int64(math.Round(cores * cfsPeriod))
	var err error
	if version == 1 {
		c.Method = "cgroup v1 cpu quota"
		err = writeFile(filepath.Join(dir, "cpu.cfs_period_us"), strconv.Itoa(cfsPeriod))
		if err == nil {
			err = writeFile(filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(quota, 10))
		}
	} else {
		c.Method = "cgroup v2 cpu.max"
		// The parent must hand the cpu controller down to its children.
		if e := writeFile(filepath.Join(root, "cgroup.subtree_control"), "+cpu"); e != nil {
			err = e
		} else {
			err = writeFile(filepath.Join(dir, "cpu.max"), fmt.Sprintf("%d %d", quota, cfsPeriod))
		}
	}
	for _, pid := range pids {
		if err != nil {
			break
		}
		err = writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid))
	}
	if err != nil {
		_ = c.Release()
		return nil, err
	}
	return c, nil
}

func writeFile(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("write %q to %s: %w", value, path, err)
	}
	return nil
}

// confineAffinity pins every thread of pids to the first ceil(cores) CPUs
// (threads created later inherit it from the thread that creates them).
func confineAffinity(cores float64, pids []int) (*Confinement, error) {
	n := int(math.Ceil(cores))
	if n >= runtime.NumCPU() {
		return nil, fmt.Errorf("affinity: %v cores is not fewer than the machine's %d", cores, runtime.NumCPU())
	}
	var set unix.CPUSet
	for i := range n {
		set.Set(i)
	}
	for _, pid := range pids {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return nil, fmt.Errorf("affinity of %d: %w", pid, err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return nil, fmt.Errorf("sched_setaffinity %d: %w", tid, err)
			}
		}
	}
	return &Confinement{Method: "sched_setaffinity", Cores: float64(n)}, nil
}

// Release removes the cgroup (its processes must have exited; any still
// in it are moved back to the root first).
func (c *Confinement) Release() error {
	if c == nil || c.Path == "" {
		return nil
	}
	if data, err := os.ReadFile(filepath.Join(c.Path, "cgroup.procs")); err == nil {
		for _, f := range strings.Fields(string(data)) {
			_ = writeFile(filepath.Join(filepath.Dir(c.Path), "cgroup.procs"), f)
		}
	}
	if err := os.Remove(c.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup %s: %w", c.Path, err)
	}
	return nil
}

func (c *Confinement) String() string {
	if c.Path != "" {
		return fmt.Sprintf("%s of %v cores (cgroup %s)", c.Method, c.Cores, filepath.Dir(c.Path))
	}
	return fmt.Sprintf("%s to %v CPUs", c.Method, c.Cores)
}
