package calibrate

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/stampede-sim/stampede/internal/testenv"
)

var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "stampede-calibrate-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// stampedeBinary builds ./cmd/stampede once (it runs `stampede etcd` and
// the run's components) and returns its path.
func stampedeBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		bin := filepath.Join(binDir, "stampede")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/stampede-sim/stampede/cmd/stampede")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build stampede: %v\n%s", err, out)
			return
		}
		binPath = bin
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
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
