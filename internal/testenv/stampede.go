package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

// StampedeBinary builds ./cmd/stampede once per test binary, on first use,
// so that test runs that need no subprocess do not pay for the build. The
// zero value is ready; call Remove from TestMain after m.Run.
type StampedeBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Path returns the built binary, building it on the first call; a failed
// build fails tb.
func (b *StampedeBinary) Path(tb testing.TB) string {
	tb.Helper()
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "stampede-test-")
		if b.err != nil {
			return
		}
		bin := filepath.Join(b.dir, "stampede")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/stampede-sim/stampede/cmd/stampede")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build stampede: %v\n%s", err, out)
			return
		}
		b.path = bin
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// Remove deletes the built binary, if any.
func (b *StampedeBinary) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// Main runs a package's tests for TestMain: m.Run, then Remove, then,
// when every test passed, a check that no goroutine outlived them.
func (b *StampedeBinary) Main(m *testing.M) int {
	code := m.Run()
	b.Remove()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}
