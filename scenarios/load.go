package scenarios

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// MaxFileSize bounds the size of a scenario file.
const MaxFileSize = 1 << 20

// ErrUnknownScenario is returned by Builtin for a name it does not know.
var ErrUnknownScenario = errors.New("unknown scenario")

// Parse decodes a scenario from YAML strictly (unknown fields are errors),
// applies defaults and validates it. source names the input in errors. A
// validation failure is a *ValidationError listing every problem.
func Parse(source string, data []byte) (*Scenario, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: scenario is %d bytes, more than the %d allowed", source, len(data), MaxFileSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: empty scenario", source)
	}
	shape, err := checkShape(data)
	if err != nil {
		return nil, fmt.Errorf("%s: not valid YAML: %w", source, err)
	}
	if len(shape) > 0 {
		return nil, &ValidationError{Source: source, Errors: shape}
	}
	var s Scenario
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	s.Default()
	if err := s.Validate(); err != nil {
		var ve *ValidationError
		if errors.As(err, &ve) {
			ve.Source = source
		}
		return nil, err
	}
	return &s, nil
}

// LoadFile reads, defaults and validates a scenario file.
func LoadFile(name string) (*Scenario, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read scenario %s: %w", name, err)
	}
	return Parse(name, data)
}

// Builtin returns the embedded scenario called name, defaulted and validated.
func Builtin(name string) (*Scenario, error) {
	data, err := builtinFS.ReadFile(path.Join("builtin", name+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("%w %q (built-ins: %s)", ErrUnknownScenario, name, strings.Join(BuiltinNames(), ", "))
	}
	return Parse("builtin:"+name, data)
}

// BuiltinYAML returns the embedded source of a built-in scenario.
func BuiltinYAML(name string) ([]byte, bool) {
	data, err := builtinFS.ReadFile(path.Join("builtin", name+".yaml"))
	return data, err == nil
}

// BuiltinNames lists the embedded scenarios.
func BuiltinNames() []string {
	entries, _ := builtinFS.ReadDir("builtin")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Resolve loads a scenario by built-in name or file path: a name that is a
// built-in wins unless it contains a path separator or ends in .yaml/.yml.
func Resolve(nameOrFile string) (*Scenario, error) {
	if !strings.ContainsRune(nameOrFile, '/') && !strings.HasSuffix(nameOrFile, ".yaml") && !strings.HasSuffix(nameOrFile, ".yml") {
		return Builtin(nameOrFile)
	}
	return LoadFile(nameOrFile)
}

// YAML renders a scenario (typically defaulted) as YAML.
func (s *Scenario) YAML() ([]byte, error) {
	return yaml.Marshal(s)
}
