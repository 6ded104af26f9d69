package harness

import (
	"os"
	"testing"

	"github.com/stampede-sim/stampede/internal/testenv"
)

// stampede is the binary the end-to-end tests run as the run's components.
var stampede testenv.StampedeBinary

func TestMain(m *testing.M) { os.Exit(stampede.Main(m)) }

// stampedeBinary builds ./cmd/stampede once and returns its path.
func stampedeBinary(t testing.TB) string {
	t.Helper()
	return stampede.Path(t)
}
