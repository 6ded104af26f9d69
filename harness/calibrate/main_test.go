package calibrate

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/stampede-sim/stampede/internal/testenv"
)

// stampede is the binary the tests run (`stampede etcd` and a run's
// components).
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

// requireKubeAPIServer returns the built kube-apiserver, or skips (fails
// with STAMPEDE_STRICT_SKIPS=1) when it has not been built.
func requireKubeAPIServer(t testing.TB) string {
	t.Helper()
	bin, err := KubeAPIServer("")
	if err != nil {
		testenv.Skip(t, "%v", err)
	}
	return bin
}
