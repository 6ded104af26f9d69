package results

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"sync"

	_ "embed"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/stampede-sim/stampede/scenarios"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

//go:embed schema.json
var schemaJSON []byte

// schemaV1JSON is the schema of stampede.results/v1, kept to read older
// files (see upgradeV1).
//
//go:embed schema-v1.json
var schemaV1JSON []byte

// SchemaJSON returns the JSON Schema of results.json (a copy).
func SchemaJSON() []byte { return bytes.Clone(schemaJSON) }

const (
	schemaURL   = "https://stampede-sim.github.io/schemas/stampede.results/v2.json"
	schemaV1URL = "https://stampede-sim.github.io/schemas/stampede.results/v1.json"
)

var compiledSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	return compileSchema(schemaURL, schemaJSON)
})

var compiledSchemaV1 = sync.OnceValues(func() (*jsonschema.Schema, error) {
	return compileSchema(schemaV1URL, schemaV1JSON)
})

func compileSchema(schemaURL string, schemaJSON []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("embedded schema: %w", err)
	}
	return s, nil
}

// ErrUnsupportedVersion is returned for a results file of another schema
// version.
var ErrUnsupportedVersion = errors.New("unsupported results schema version")

// InvalidError is a results file that does not conform to the schema. Each
// problem names where it is (a JSON pointer such as /modes/0/status).
type InvalidError struct {
	Problems []string
}

func (e *InvalidError) Error() string {
	return "results do not match " + SchemaVersion + ":\n  " + strings.Join(e.Problems, "\n  ")
}

// Validate checks that data is a results.json of SchemaVersion (or of
// SchemaVersionV1, which Decode upgrades): the JSON Schema (schema.json,
// schema-v1.json) and the rules it cannot express (every series column as
// long as the time axis, times ascending, converged <= agents). Partial
// results of an interrupted run are valid.
func Validate(data []byte) error {
	var head struct {
		SchemaVersion *string `json:"schemaVersion"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return fmt.Errorf("results: not a JSON object: %w", err)
	}
	if head.SchemaVersion == nil {
		return &InvalidError{Problems: []string{"/schemaVersion: missing"}}
	}
	compiled := compiledSchema
	switch *head.SchemaVersion {
	case SchemaVersion:
	case SchemaVersionV1:
		compiled = compiledSchemaV1
	default:
		return fmt.Errorf("%w %q (this stampede reads %q and %q)", ErrUnsupportedVersion, *head.SchemaVersion, SchemaVersion, SchemaVersionV1)
	}
	sch, err := compiled()
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := sch.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return &InvalidError{Problems: flattenSchemaErrors(ve)}
		}
		return fmt.Errorf("results: %w", err)
	}
	var r Results
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if p := r.check(); len(p) > 0 {
		return &InvalidError{Problems: p}
	}
	return nil
}

func flattenSchemaErrors(ve *jsonschema.ValidationError) []string {
	pr := message.NewPrinter(language.English)
	var problems []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			problems = append(problems, "/"+strings.Join(e.InstanceLocation, "/")+": "+e.ErrorKind.LocalizedString(pr))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return problems
}

// check applies the rules the JSON Schema cannot express.
func (r *Results) check() []string {
	p := r.checkAPIServer()
	for i, m := range r.Modes {
		at := fmt.Sprintf("/modes/%d", i)
		if s := m.Series; s != nil {
			for j := 1; j < len(s.T); j++ {
				if !(s.T[j] >= s.T[j-1]) {
					p = append(p, fmt.Sprintf("%s/series/t/%d: %g is before the previous sample %g", at, j, s.T[j], s.T[j-1]))
					break
				}
			}
			for _, name := range s.Names() {
				if len(s.Values[name]) != len(s.T) {
					p = append(p, fmt.Sprintf("%s/series/values/%s: %d values for %d timestamps", at, name, len(s.Values[name]), len(s.T)))
				}
			}
		}
		if m.Summary != nil {
			for j, c := range m.Summary.Convergence {
				if c.Converged > c.Agents {
					p = append(p, fmt.Sprintf("%s/summary/convergence/%d: converged %d > agents %d", at, j, c.Converged, c.Agents))
				}
				if c.PolicyOverflow > c.Agents-c.Converged {
					p = append(p, fmt.Sprintf("%s/summary/convergence/%d: policyOverflow %d > agents not converged %d", at, j, c.PolicyOverflow, c.Agents-c.Converged))
				}
			}
			for _, k := range slices.Sorted(maps.Keys(m.Summary.WritesRejected)) {
				if n, all := m.Summary.WritesRejected[k], m.Summary.Writes[k]; n > all {
					p = append(p, fmt.Sprintf("%s/summary/writesRejected/%s: %d rejected > %d writes", at, k, n, all))
				}
			}
			for j, v := range m.Summary.SLO {
				if math.IsNaN(v.Value) {
					p = append(p, fmt.Sprintf("%s/summary/slo/%d/value: NaN", at, j))
				}
			}
		}
		for j, st := range m.Steps {
			if st.End != nil && st.End.Before(st.Start) {
				p = append(p, fmt.Sprintf("%s/steps/%d/end: before start", at, j))
			}
		}
	}
	return p
}

// Decode validates data (see Validate) and decodes it; a v1 file is
// upgraded in memory to SchemaVersion (UpgradedFrom says so).
func Decode(data []byte) (*Results, error) {
	if err := Validate(data); err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	if r.SchemaVersion == SchemaVersionV1 {
		if err := upgradeV1(&r); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

// upgradeV1 gives every mode of a v1 file its preset's axes: v1 only ever
// held the five presets crd, ces, kvstore, operator and xds, whose
// meaning is unchanged. The effective scenario's modes (strings in v1)
// get the same.
func upgradeV1(r *Results) error {
	for i := range r.Modes {
		m := &r.Modes[i]
		p, ok := scenarios.Preset(m.Mode)
		if !ok {
			return fmt.Errorf("results: %s file: /modes/%d: mode %q is no preset", SchemaVersionV1, i, m.Mode)
		}
		m.Axes = p.Axes
	}
	if sc := r.Run.EffectiveScenario; sc != nil {
		for i, m := range sc.Modes {
			if p, ok := scenarios.Preset(m.Name); ok && m.Axes == (scenarios.Axes{}) {
				sc.Modes[i] = p
			}
		}
	}
	r.SchemaVersion = SchemaVersion
	r.UpgradedFrom = SchemaVersionV1
	return nil
}

// ReadFile reads and validates a results.json.
func ReadFile(path string) (*Results, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, err := Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// Encode writes r as indented JSON, with arrays of numbers (the series
// columns) kept on one line each.
func Encode(r *Results) ([]byte, error) {
	if r.Modes == nil {
		// Write [] rather than null; the schema wants an array.
		c := *r
		c.Modes = []ModeResult{}
		r = &c
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode results: %w", err)
	}
	data = compactNumberArrays(data)
	return append(data, '\n'), nil
}

// compactNumberArrays rewrites every array of only numbers and nulls in
// indented JSON onto one line. Strings cannot hold raw newlines, so a '['
// followed by a newline always opens an array.
func compactNumberArrays(in []byte) []byte {
	out := make([]byte, 0, len(in))
	for i := 0; i < len(in); {
		if in[i] != '[' || i+1 >= len(in) || in[i+1] != '\n' {
			out = append(out, in[i])
			i++
			continue
		}
		elems, end, ok := scanNumberArray(in, i+1)
		if !ok {
			out = append(out, in[i])
			i++
			continue
		}
		out = append(out, '[')
		for n, e := range elems {
			if n > 0 {
				out = append(out, ',')
			}
			out = append(out, e...)
		}
		out = append(out, ']')
		i = end
	}
	return out
}

// scanNumberArray reads "\n ws scalar,\n ws scalar\n ws ]" from in[j:] and
// returns the scalars and the index after ']'.
func scanNumberArray(in []byte, j int) ([][]byte, int, bool) {
	var elems [][]byte
	for {
		for j < len(in) && (in[j] == '\n' || in[j] == ' ') {
			j++
		}
		if j < len(in) && in[j] == ']' && len(elems) > 0 {
			return elems, j + 1, true
		}
		k := j
		for k < len(in) && isScalarByte(in[k]) {
			k++
		}
		if k == j || k >= len(in) || (in[k] != ',' && in[k] != '\n') {
			return nil, 0, false
		}
		elems = append(elems, in[j:k])
		if in[k] == ',' {
			k++
		}
		j = k
	}
}

func isScalarByte(b byte) bool {
	switch {
	case b >= '0' && b <= '9', b == '-', b == '+', b == '.', b == 'e', b == 'E',
		b == 'n', b == 'u', b == 'l':
		return true
	}
	return false
}
