package proc

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func runtime_Gosched() { runtime.Gosched(); time.Sleep(10 * time.Millisecond) }

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Stat
		wantErr string
	}{
		{
			name: "plain",
			in:   "1234 (stampede) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 10 5 20 0 12 0 100 1000000 300 18446744073709551615",
			want: Stat{PID: 1234, PPID: 1, PGID: 1234, CPU: 3 * time.Second, ChildrenCPU: 150 * time.Millisecond, RSS: 300 * pageSize, State: "S"},
		},
		{
			name: "name with spaces and parens",
			in:   "42 (a) b (c)) R 7 42 42 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 1 1 5 0",
			want: Stat{PID: 42, PPID: 7, PGID: 42, CPU: 30 * time.Millisecond, RSS: 5 * pageSize, State: "R"},
		},
		{name: "truncated", in: "1 (x) S 1 1 1", wantErr: "fields after the name"},
		{name: "no name", in: "garbage", wantErr: "no command name"},
		{name: "bad number", in: "1 (x) S 1 1 1 0 -1 0 0 0 0 0 zz 2 0 0 20 0 1 0 1 1 5 0", wantErr: "field 14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("ParseStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSnapshotTree(t *testing.T) {
	root := t.TempDir()
	write := func(pid, ppid, utime, rss int) {
		d := filepath.Join(root, strconv.Itoa(pid))
		os.MkdirAll(d, 0o755)
		line := strconv.Itoa(pid) + " (p) S " + strconv.Itoa(ppid) + " 10 10 0 -1 0 0 0 0 0 " + strconv.Itoa(utime) + " 0 1 0 20 0 1 0 1 1 " + strconv.Itoa(rss) + " 0"
		os.WriteFile(filepath.Join(d, "stat"), []byte(line), 0o644)
	}
	write(10, 1, 100, 10) // root
	write(11, 10, 50, 5)  // child
	write(12, 11, 25, 1)  // grandchild
	write(13, 1, 999, 99) // unrelated
	os.MkdirAll(filepath.Join(root, "self"), 0o755)
	s, err := takeSnapshot(root)
	if err != nil {
		t.Fatal(err)
	}
	u, ok := s.Tree(10)
	if !ok {
		t.Fatal("pid 10 missing")
	}
	// CPU: 1.75s own + 3 x 10ms reaped children; RSS 16 pages.
	want := Usage{CPU: 1750*time.Millisecond + 30*time.Millisecond, RSS: 16 * pageSize, Processes: 3}
	if u != want {
		t.Errorf("Tree(10) = %+v, want %+v", u, want)
	}
	if _, ok := s.Tree(99); ok {
		t.Error("Tree(99) found a missing process")
	}
}

func TestReadStatSelf(t *testing.T) {
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.PPID != os.Getppid() || st.RSS == 0 {
		t.Errorf("ReadStat(self) = %+v", st)
	}
	if _, err := ReadStat(1 << 30); err == nil {
		t.Error("ReadStat of a missing pid succeeded")
	}
}

func TestParseMemInfo(t *testing.T) {
	m, err := ParseMemInfo([]byte("MemTotal:       24608236 kB\nMemFree:        23000000 kB\nMemAvailable:   20000000 kB\nBuffers: 1 kB\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Total != 24608236*1024 || m.Available != 20000000*1024 || m.Used() != 4608236*1024 {
		t.Errorf("parsed %+v, used %d", m, m.Used())
	}
	if _, err := ParseMemInfo([]byte("MemTotal: 1 kB\n")); err == nil {
		t.Error("meminfo without MemAvailable: no error")
	}
	if _, err := ParseMemInfo([]byte("MemTotal: x kB\nMemAvailable: 1 kB\n")); err == nil {
		t.Error("meminfo with a bad number: no error")
	}
	if m, err := ReadMemInfo(); err != nil || m.Total == 0 || m.Used() > m.Total {
		t.Errorf("this machine's meminfo: %+v, %v", m, err)
	}
}
