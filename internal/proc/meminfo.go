package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// MemInfo is the machine's memory from /proc/meminfo, in bytes.
type MemInfo struct {
	Total     uint64
	Available uint64
}

// Used is what the machine cannot give back without freeing someone's
// memory: Total - Available. Unlike the processes' RSS it includes kernel
// memory such as BPF maps and socket buffers.
func (m MemInfo) Used() uint64 {
	if m.Available > m.Total {
		return 0
	}
	return m.Total - m.Available
}

// ReadMemInfo reads /proc/meminfo.
func ReadMemInfo() (MemInfo, error) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return MemInfo{}, err
	}
	return ParseMemInfo(data)
}

// ParseMemInfo parses the contents of /proc/meminfo; it needs MemTotal
// and MemAvailable.
func ParseMemInfo(data []byte) (MemInfo, error) {
	var m MemInfo
	var haveTotal, haveAvail bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		var dst *uint64
		switch string(f[0]) {
		case "MemTotal:":
			dst, haveTotal = &m.Total, true
		case "MemAvailable:":
			dst, haveAvail = &m.Available, true
		default:
			continue
		}
		n, err := strconv.ParseUint(string(f[1]), 10, 64)
		if err != nil {
			return MemInfo{}, fmt.Errorf("meminfo: %s: %w", f[0], err)
		}
		if len(f) > 2 && string(f[2]) == "kB" {
			n *= 1024
		}
		*dst = n
	}
	if !haveTotal || !haveAvail {
		return MemInfo{}, fmt.Errorf("meminfo: no MemTotal or MemAvailable")
	}
	return m, nil
}
