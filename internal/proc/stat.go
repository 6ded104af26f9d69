package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of the times in /proc/PID/stat. It is 100
// on every Linux architecture Go supports.
const clockTicks = 100

var pageSize = uint64(os.Getpagesize())

// Stat is what the harness reads of one process.
type Stat struct {
	PID  int
	PPID int
	PGID int
	// CPU is utime+stime of the process itself.
	CPU time.Duration
	// ChildrenCPU is cutime+cstime: the CPU of children it has waited for.
	ChildrenCPU time.Duration
	// RSS is the resident set size in bytes.
	RSS uint64
	// State is the one-letter state ("R", "S", "Z", ...).
	State string
}

// ErrNoProcess is returned when the process does not exist (any more).
var ErrNoProcess = errors.New("no such process")

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	return readStat("/proc", pid)
}

func readStat(root string, pid int) (Stat, error) {
	data, err := os.ReadFile(root + "/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, errESRCH()) {
			return Stat{}, fmt.Errorf("read stat of %d: %w", pid, ErrNoProcess)
		}
		return Stat{}, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	return ParseStat(data)
}

// ParseStat parses the content of a /proc/PID/stat file.
func ParseStat(data []byte) (Stat, error) {
	// The command name is in parentheses and may itself contain spaces and
	// parentheses: the fields after it start after the last ')'.
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 1 || end < open {
		return Stat{}, fmt.Errorf("parse /proc stat: no command name in %.60q", data)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(data[:open])))
	if err != nil {
		return Stat{}, fmt.Errorf("parse /proc stat: pid: %w", err)
	}
	f := bytes.Fields(data[end+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	const need = 24 - 3 + 1
	if len(f) < need {
		return Stat{}, fmt.Errorf("parse /proc stat of %d: %d fields after the name, want at least %d", pid, len(f), need)
	}
	var vals [25]int64
	for _, field := range []int{4, 5, 14, 15, 16, 17, 24} {
		v, err := strconv.ParseInt(string(f[field-3]), 10, 64)
		if err != nil {
			return Stat{}, fmt.Errorf("parse /proc stat of %d: field %d: %w", pid, field, err)
		}
		vals[field] = v
	}
	s := Stat{PID: pid, State: string(f[0])}
	s.PPID = int(vals[4])
	s.PGID = int(vals[5])
	s.CPU = ticks(vals[14] + vals[15])
	s.ChildrenCPU = ticks(vals[16] + vals[17])
	if vals[24] > 0 {
		s.RSS = uint64(vals[24]) * pageSize
	}
	return s, nil
}

func ticks(n int64) time.Duration {
	if n < 0 {
		n = 0
	}
	return time.Duration(n) * (time.Second / clockTicks)
}

// listPIDs lists the numeric entries of /proc.
func listPIDs(root string) ([]int, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", root, err)
	}
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Snapshot is the stat of every process at one moment.
type Snapshot map[int]Stat

// TakeSnapshot reads the stat of every process in /proc. Processes that exit
// while it reads are left out.
func TakeSnapshot() (Snapshot, error) { return takeSnapshot("/proc") }

func takeSnapshot(root string) (Snapshot, error) {
	pids, err := listPIDs(root)
	if err != nil {
		return nil, err
	}
	s := make(Snapshot, len(pids))
	for _, pid := range pids {
		st, err := readStat(root, pid)
		if err != nil {
			continue
		}
		s[pid] = st
	}
	return s, nil
}

// Usage is the resource use of a process tree.
type Usage struct {
	// CPU is utime+stime of the process, of its live descendants, and of
	// the children they have reaped.
	CPU time.Duration
	// RSS sums the resident set of the process and its live descendants.
	RSS uint64
	// Processes counts the live processes in the tree.
	Processes int
}

// Tree returns the usage of pid and all its live descendants, and whether
// pid exists in the snapshot.
func (s Snapshot) Tree(pid int) (Usage, bool) {
	root, ok := s[pid]
	if !ok {
		return Usage{}, false
	}
	children := map[int][]int{}
	for p, st := range s {
		children[st.PPID] = append(children[st.PPID], p)
	}
	var u Usage
	seen := map[int]bool{}
	var walk func(st Stat)
	walk = func(st Stat) {
		if seen[st.PID] {
			return
		}
		seen[st.PID] = true
		u.CPU += st.CPU + st.ChildrenCPU
		u.RSS += st.RSS
		u.Processes++
		for _, c := range children[st.PID] {
			walk(s[c])
		}
	}
	walk(root)
	return u, true
}

// TreeUsage reads the usage of pid and its live descendants now.
func TreeUsage(pid int) (Usage, error) {
	s, err := TakeSnapshot()
	if err != nil {
		return Usage{}, err
	}
	u, ok := s.Tree(pid)
	if !ok {
		return Usage{}, fmt.Errorf("usage of %d: %w", pid, ErrNoProcess)
	}
	return u, nil
}

// GroupMembers lists the processes whose process group is pgid (zombies
// included: they are still there until reaped).
func GroupMembers(pgid int) []int {
	s, err := TakeSnapshot()
	if err != nil {
		return nil
	}
	var out []int
	for pid, st := range s {
		if st.PGID == pgid {
			out = append(out, pid)
		}
	}
	return out
}
