package calibrate

import (
	"os"
	"testing"

	"github.com/stampede-sim/stampede/internal/testenv"
)

// stampede is the binary the tests run (`stampede etcd` and a run's
// components).
var stampede testenv.StampedeBinary

func TestMain(m *testing.M) { os.Exit(stampede.Main(m)) }

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
