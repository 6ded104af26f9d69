package harness

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRunWritesOnly: the API server's own writes (its 422s on the
// kubernetes Endpoints object, its identity Lease) are not the run's.
func TestRunWritesOnly(t *testing.T) {
	cur := map[string]float64{
		"PUT endpoints 422":             7,
		"PUT leases 200":                30,
		"POST ciliumidentities 201":     50,
		"POST ciliumidentities 409":     4,
		"PATCH ciliumendpoints 200":     120,
		"POST pods 201":                 20,
		"POST ciliumendpointslices 201": 3,
	}
	all, rejected := writeCounts(cur, nil)
	all, rejected = runWritesOnly(all), runWritesOnly(rejected)
	wantAll := map[string]int64{
		"create ciliumidentities":     54,
		"patch ciliumendpoints":       120,
		"create pods":                 20,
		"create ciliumendpointslices": 3,
	}
	if diff := cmp.Diff(wantAll, all); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{"create ciliumidentities": 4}, rejected); diff != "" {
		t.Errorf("writesRejected (-want +got):\n%s", diff)
	}
}
