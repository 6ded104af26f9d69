package harness

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/stampede-sim/stampede/internal/testenv"
)

// stampede is the binary the end-to-end tests run as the run's components.
var stampede testenv.StampedeBinary

func TestMain(m *testing.M) {
	code := m.Run()
	stampede.Remove()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// stampedeBinary builds ./cmd/stampede once and returns its path.
func stampedeBinary(t testing.TB) string {
	t.Helper()
	return stampede.Path(t)
}
