package scenarios

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	yaml3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

var (
	durationType = reflect.TypeOf(Duration{})
	modeSpecType = reflect.TypeOf(ModeSpec{})
)

// modeSpecObject is the object form of a mode as checkShape walks it
// (ModeSpec embeds Axes, which the walk would not see through).
type modeSpecObject struct {
	Name      string `json:"name"`
	Identity  string `json:"identity"`
	Endpoints string `json:"endpoints"`
	ReadPath  string `json:"readPath"`
}

// checkText rejects input that is not YAML text before the YAML parser
// sees it, because the parser's own errors for these carry no position.
// YAML allows tab, line breaks and the printable characters (YAML 1.2
// section 5.1, c-printable); scenario files are UTF-8.
func checkText(data []byte) error {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return fmt.Errorf("line %d, column %d: byte 0x%02x is not UTF-8 (scenario files are UTF-8 text)", line, col, data[i])
		}
		if !printable(r) {
			return fmt.Errorf("line %d, column %d: control character %U is not allowed in YAML", line, col, r)
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return nil
}

func printable(r rune) bool {
	switch {
	case r == '\t', r == '\n', r == '\r', r == 0x85:
		return true
	case r >= 0x20 && r <= 0x7e, r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}

// checkOneDocument rejects a second YAML document: the decoder reads only
// the first and would drop the rest without a word. Empty documents (a
// trailing "---") are harmless. Errors in the first document are left to
// the decoder proper.
func checkOneDocument(data []byte) error {
	dec := yaml3.NewDecoder(bytes.NewReader(data))
	for i := 1; ; i++ {
		var n yaml3.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if i == 1 {
				return nil
			}
			return fmt.Errorf("document %d: %w", i, err)
		}
		if i > 1 && len(n.Content) > 0 && n.Content[0].Tag != "!!null" {
			return fmt.Errorf("document %d (line %d): a scenario file holds one YAML document; remove this one or the \"---\" before it", i, n.Content[0].Line)
		}
	}
}

// shapeCheck is what checkShape found: every unknown field and value of
// the wrong type or range, with its field path. Those values are removed
// from the document (set aside) so that the rest can still be decoded and
// validated.
type shapeCheck struct {
	errs    errs
	setPath []string
}

func (c *shapeCheck) reject(path, format string, args ...any) {
	c.errs.add(path, format, args...)
	c.setPath = append(c.setPath, path)
}

// setAside reports whether path is, or is inside, a value that was set
// aside: validating the default that took its place would only repeat the
// problem.
func (c *shapeCheck) setAside(path string) bool {
	for _, p := range c.setPath {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

// checkShape converts the YAML document to its JSON form, walks it against
// the Scenario type and sets aside what does not fit. Numbers stay exact
// (json.Number), so an int64 is checked against the int64 range.
func checkShape(data []byte) (any, *shapeCheck, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, err
	}
	if doc == nil {
		return nil, nil, fmt.Errorf("empty scenario")
	}
	c := &shapeCheck{}
	c.walk("", doc, reflect.TypeOf(Scenario{}))
	return doc, c, nil
}

// decode decodes the checked document into a Scenario.
func decode(doc any) (*Scenario, error) {
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var s Scenario
	if err := dec.Decode(&s); err != nil {
		return nil, err
	}
	return &s, nil
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// walk checks v against t and reports whether v fits; the caller removes
// a value that does not.
func (c *shapeCheck) walk(path string, v any, t reflect.Type) bool {
	if v == nil {
		return true // null: leave the zero value, defaults apply
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	where := path
	if where == "" {
		where = "(top level)"
	}
	if t == durationType {
		str, ok := v.(string)
		if !ok {
			c.reject(where, "must be a duration string such as \"5s\", got %s", describe(v))
			return false
		}
		if _, err := time.ParseDuration(str); err != nil {
			c.reject(where, "invalid duration %q (use a Go duration such as 500ms, 5s or 10m)", str)
			return false
		}
		return true
	}
	if t == modeSpecType {
		// A mode is a preset's name or the object form.
		if _, ok := v.(string); ok {
			return true
		}
		if _, ok := v.(map[string]any); !ok {
			c.reject(where, "must be a preset's name or a mapping {name, identity, endpoints, readPath}, got %s", describe(v))
			return false
		}
		t = reflect.TypeOf(modeSpecObject{})
	}
	switch t.Kind() {
	case reflect.Struct:
		return c.walkStruct(path, where, v, t)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			c.reject(where, "must be a mapping, got %s", describe(v))
			return false
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !c.walk(path+"["+k+"]", m[k], t.Elem()) {
				delete(m, k)
			}
		}
	case reflect.Slice:
		s, ok := v.([]any)
		if !ok {
			c.reject(where, "must be a list, got %s", describe(v))
			return false
		}
		for i, e := range s {
			if !c.walk(fmt.Sprintf("%s[%d]", path, i), e, t.Elem()) {
				s[i] = nil
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			c.reject(where, "must be a string, got %s (quote it)", describe(v))
			return false
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			c.reject(where, "must be true or false, got %s", describe(v))
			return false
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		return c.walkInt(where, v, t)
	case reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			c.reject(where, "must be a number, got %s", describe(v))
			return false
		}
		if _, err := n.Float64(); err != nil {
			c.reject(where, "out of range: %s", n)
			return false
		}
	}
	return true
}

func (c *shapeCheck) walkStruct(path, where string, v any, t reflect.Type) bool {
	m, ok := v.(map[string]any)
	if !ok {
		c.reject(where, "must be a mapping, got %s", describe(v))
		return false
	}
	fields := map[string]reflect.Type{}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		ft, ok := fields[k]
		if !ok {
			c.reject(join(path, k), "unknown field%s", suggest(k, names))
			delete(m, k)
			continue
		}
		if !c.walk(join(path, k), m[k], ft) {
			delete(m, k)
		}
	}
	return true
}

// walkInt checks an integer against the range of its Go type (an int64
// seed takes any int64, an int32 only an int32).
func (c *shapeCheck) walkInt(where string, v any, t reflect.Type) bool {
	n, ok := v.(json.Number)
	if !ok {
		c.reject(where, "must be an integer, got %s", describe(v))
		return false
	}
	bits := t.Bits()
	if _, err := strconv.ParseInt(n.String(), 10, bits); err == nil {
		return true
	} else if errors.Is(err, strconv.ErrRange) {
		c.reject(where, "out of range: %s is not a %d-bit integer", n, bits)
		return false
	}
	f, err := n.Float64()
	switch {
	case err != nil || math.Abs(f) >= math.Exp2(float64(bits-1)):
		c.reject(where, "out of range: %s is not a %d-bit integer", n, bits)
	case f != math.Trunc(f):
		c.reject(where, "must be an integer, got %s", n)
	default:
		return true // 1e3, 4.0: YAML floats with an integer value
	}
	return false
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case json.Number:
		return fmt.Sprintf("number %s", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// suggest names the closest known field when the unknown one looks like a
// typo of it.
func suggest(k string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(k), strings.ToLower(n)); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
