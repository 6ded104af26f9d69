package results

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/stampede-sim/stampede/reports/internal/atomicfile"
	"github.com/stampede-sim/stampede/scenarios"
)

// Writer keeps a run's Results and rewrites results.json atomically (write
// a temporary file in the same directory, rename it over the old one)
// after updates, so a run killed at any moment (Ctrl-C, a crash, the OOM
// killer) leaves the last complete version. It does not fsync: surviving
// a power cut is not worth blocking the sampling loop on the disk. It is
// safe for concurrent use.
type Writer struct {
	cfg WriterConfig

	mu        sync.Mutex
	res       *Results
	dirty     bool
	lastWrite time.Time
}

// WriterConfig configures a Writer.
type WriterConfig struct {
	// Path is the results.json to write. Required.
	Path string
	// MinInterval bounds how often Update rewrites the file: an update
	// within MinInterval of the last write only marks the results dirty,
	// and the next Update after it (or Flush) writes them. 0 writes on
	// every Update. With 1 s sampling, time.Second keeps the cost of
	// rewriting a large file once per second at most.
	MinInterval time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// NewWriter writes r to cfg.Path (creating its directory) and returns a
// Writer that owns r from then on: change it only through Update. An empty
// SchemaVersion is set to SchemaVersion. Call Flush when the run ends.
func NewWriter(cfg WriterConfig, r *Results) (*Writer, error) {
	if cfg.Path == "" {
		return nil, fmt.Errorf("results writer: empty path")
	}
	if cfg.MinInterval < 0 {
		return nil, fmt.Errorf("results writer: negative MinInterval %v", cfg.MinInterval)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	path := cfg.Path
	if r == nil {
		r = &Results{}
	}
	// The writer writes only the current version.
	r.SchemaVersion, r.UpgradedFrom = SchemaVersion, ""
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("results writer: %w", err)
	}
	w := &Writer{cfg: cfg, res: r}
	if err := w.flush(); err != nil {
		return nil, err
	}
	return w, nil
}

// Path is the file the Writer writes.
func (w *Writer) Path() string { return w.cfg.Path }

// Update applies fn to the results under the Writer's lock and rewrites the
// file (see WriterConfig.MinInterval). fn must not keep references to the
// Results past its return.
func (w *Writer) Update(fn func(r *Results)) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	fn(w.res)
	w.dirty = true
	if w.cfg.MinInterval > 0 && w.cfg.Now().Sub(w.lastWrite) < w.cfg.MinInterval {
		return nil
	}
	return w.flush()
}

// Flush writes pending updates now.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.dirty {
		return nil
	}
	return w.flush()
}

// Mode returns the entry for mode m, adding a pending one if there is none.
// Call it inside Update.
func (r *Results) Mode(m scenarios.Mode) *ModeResult {
	for i := range r.Modes {
		if r.Modes[i].Mode == m {
			return &r.Modes[i]
		}
	}
	// A preset's name gives its axes; the harness sets any mode's axes.
	p, _ := scenarios.Preset(m)
	r.Modes = append(r.Modes, ModeResult{Mode: m, Axes: p.Axes, Status: StatusPending})
	return &r.Modes[len(r.Modes)-1]
}

// Snapshot returns a deep copy of the current results.
func (w *Writer) Snapshot() (*Results, error) {
	w.mu.Lock()
	data, err := json.Marshal(w.res)
	w.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("snapshot results: %w", err)
	}
	var out Results
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("snapshot results: %w", err)
	}
	return &out, nil
}

// flush writes the file; w.mu is held (or w is not shared yet).
func (w *Writer) flush() error {
	data, err := Encode(w.res)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(w.cfg.Path, data); err != nil {
		return err
	}
	w.dirty = false
	w.lastWrite = w.cfg.Now()
	return nil
}
