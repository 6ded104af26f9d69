package scenarios

import (
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// ResolveWithRelease loads a scenario as Resolve does, with its
// cilium.version replaced by version and, when modes is not empty, its
// modes by modes, before defaults are applied: every knob the file leaves
// unset then comes from that release (setting the version on a defaulted
// scenario would keep the first release's values), and modes the release
// lacks can be left out. Knobs the file sets stay as set.
func ResolveWithRelease(nameOrFile, version string, modes []string) (*Scenario, error) {
	if _, err := LookupRelease(version); err != nil {
		return nil, err
	}
	source := nameOrFile
	var data []byte
	if !strings.ContainsRune(nameOrFile, '/') && !strings.HasSuffix(nameOrFile, ".yaml") && !strings.HasSuffix(nameOrFile, ".yml") {
		d, ok := BuiltinYAML(nameOrFile)
		if !ok {
			return nil, fmt.Errorf("%w %q (built-ins: %s)", ErrUnknownScenario, nameOrFile, strings.Join(BuiltinNames(), ", "))
		}
		data, source = d, "builtin:"+nameOrFile
	} else {
		d, err := os.ReadFile(nameOrFile)
		if err != nil {
			return nil, fmt.Errorf("read scenario: %w", err)
		}
		data = d
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil || doc == nil {
		// Let Parse name what is wrong with the file.
		return Parse(source, data)
	}
	c, _ := doc["cilium"].(map[string]any)
	if c == nil {
		c = map[string]any{}
	}
	c["version"] = version
	doc["cilium"] = c
	if len(modes) > 0 {
		doc["modes"] = modes
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return Parse(fmt.Sprintf("%s (cilium.version %s)", source, version), out)
}
