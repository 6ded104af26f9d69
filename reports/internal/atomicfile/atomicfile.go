// Package atomicfile writes files so that a reader sees the old or the
// new content, never a mix: results.json while a run rewrites it, and the
// report files a browser may have open. It imports nothing from this
// module.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data so that readers see the old or
// the new content, never a mix.
func Write(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	for _, e := range []error{werr, cerr} {
		if e != nil {
			os.Remove(tmp)
			return fmt.Errorf("write %s: %w", path, e)
		}
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
