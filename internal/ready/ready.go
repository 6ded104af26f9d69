// Package ready is how a stampede server process (fakeapi, etcd,
// controlplane, agents) tells the process that started it where it listens:
// once it serves, it writes a JSON Announcement to the file named by its
// --ready-file flag (atomically: the file appears complete or not at all)
// and prints the same JSON as one line on stdout. The harness waits for the
// file with Wait.
package ready

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Announcement says where a process serves. Endpoints are named by role:
// "api" (Kubernetes API URL), "metrics" (http://host:port serving /metrics
// and /debug/pprof), "client" (etcd client URL), "xds" (gRPC address), and so
// on; each component documents the names it writes.
type Announcement struct {
	Component string            `json:"component"`
	PID       int               `json:"pid"`
	Endpoints map[string]string `json:"endpoints"`
	// Extra carries component-specific facts (for example etcd's fsync
	// setting) as strings.
	Extra map[string]string `json:"extra,omitempty"`
}

// Announce writes a to path (if not empty) atomically and prints it to w.
func Announce(path string, w io.Writer, a Announcement) error {
	if a.PID == 0 {
		a.PID = os.Getpid()
	}
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode announcement: %w", err)
	}
	if path != "" {
		tmp, err := os.CreateTemp(filepath.Dir(path), ".ready-*")
		if err != nil {
			return fmt.Errorf("write ready file: %w", err)
		}
		_, werr := tmp.Write(append(data, '\n'))
		cerr := tmp.Close()
		if err := errors.Join(werr, cerr); err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("write ready file %s: %w", path, err)
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			os.Remove(tmp.Name())
			return fmt.Errorf("write ready file %s: %w", path, err)
		}
	}
	if w != nil {
		fmt.Fprintf(w, "%s\n", data)
	}
	return nil
}

// Wait polls path until it holds an Announcement, ctx ends, or exited
// (if not nil) is closed, which means the process died before it was ready.
func Wait(ctx context.Context, path string, exited <-chan struct{}) (Announcement, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		data, err := os.ReadFile(path)
		if err == nil {
			var a Announcement
			if err := json.Unmarshal(data, &a); err != nil {
				return Announcement{}, fmt.Errorf("ready file %s: %w", path, err)
			}
			return a, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return Announcement{}, fmt.Errorf("ready file: %w", err)
		}
		select {
		case <-ctx.Done():
			return Announcement{}, fmt.Errorf("wait for ready file %s: %w", path, ctx.Err())
		case <-exited:
			return Announcement{}, fmt.Errorf("process exited before writing ready file %s", path)
		case <-t.C:
		}
	}
}
