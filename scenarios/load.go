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
// applies defaults and validates it. source names the input in errors. The
// input must be one YAML document of UTF-8 text. Problems with fields are
// reported together in one *ValidationError: unknown fields and values of
// the wrong type or range are set aside, the rest is defaulted and
// validated, and every problem comes back with its field path.
func Parse(source string, data []byte) (*Scenario, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: scenario is %d bytes, over the limit of %d bytes", source, len(data), MaxFileSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: empty scenario", source)
	}
	if err := checkText(data); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if err := checkOneDocument(data); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	doc, shape, err := checkShape(data)
	if err != nil {
		// JSON cannot carry .nan and .inf: the conversion fails without
		// naming a field, so name them.
		if nf := nonFinite(data); len(nf) > 0 {
			return nil, &ValidationError{Source: source, Errors: nf}
		}
		return nil, fmt.Errorf("%s: not valid YAML: %w", source, err)
	}
	s, err := decode(doc)
	if err != nil {
		if len(shape.errs) > 0 {
			return nil, &ValidationError{Source: source, Errors: shape.errs}
		}
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	s.Default()
	l := shape.errs
	var ve *ValidationError
	if err := s.Validate(); errors.As(err, &ve) {
		for _, fe := range ve.Errors {
			if !shape.setAside(fe.Path) {
				l = append(l, fe)
			}
		}
	} else if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if len(l) > 0 {
		return nil, &ValidationError{Source: source, Errors: l}
	}
	return s, nil
}

// LoadFile reads, defaults and validates a scenario file.
func LoadFile(name string) (*Scenario, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > MaxFileSize {
		return nil, fmt.Errorf("%s: scenario is %d bytes, over the limit of %d bytes", name, st.Size(), MaxFileSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read scenario %s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		// Not a regular file (a pipe): its size is unknown.
		return nil, fmt.Errorf("%s: scenario is over the limit of %d bytes", name, MaxFileSize)
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
