package gate

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestExamples keeps the examples under examples/ loadable.
func TestExamples(t *testing.T) {
	rules, err := LoadGateRules("examples/gate-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(rules.SLOModes) != 2 || len(rules.Rules) != 4 {
		t.Errorf("rules: %+v", rules)
	}
	data, err := os.ReadFile("examples/stampede-gate.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Run string `json:"run"`
			} `json:"steps"`
		} `json:"jobs"`
	}
	// Only the fields above are declared; the rest of the file is ignored.
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range wf.Jobs["gate"].Steps {
		found = found || strings.Contains(s.Run, "bin/stampede gate")
	}
	if !found {
		t.Error("workflow has no gate step")
	}
}
