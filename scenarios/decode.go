package scenarios

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

var durationType = reflect.TypeOf(Duration{})

// checkShape walks the YAML document against the Scenario type and reports
// every unknown field and every value of the wrong type with its field path,
// so that a user sees all decoding problems at once, not only the first.
func checkShape(data []byte) ([]FieldError, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		if nf := nonFinite(data); len(nf) > 0 {
			return nf, nil
		}
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, err
	}
	if doc == nil {
		return nil, fmt.Errorf("empty scenario")
	}
	var l errs
	walkShape(&l, "", doc, reflect.TypeOf(Scenario{}))
	return l, nil
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func walkShape(l *errs, path string, v any, t reflect.Type) {
	if v == nil {
		return // null: leave the zero value, defaults apply
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
			l.add(where, "must be a duration string such as \"5s\", got %s", describe(v))
		} else if _, err := time.ParseDuration(str); err != nil {
			l.add(where, "invalid duration %q (use a Go duration such as 500ms, 5s or 10m)", str)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			l.add(where, "must be a mapping, got %s", describe(v))
			return
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
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				l.add(join(path, k), "unknown field%s", suggest(k, names))
				continue
			}
			walkShape(l, join(path, k), m[k], ft)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			l.add(where, "must be a mapping, got %s", describe(v))
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walkShape(l, path+"["+k+"]", m[k], t.Elem())
		}
	case reflect.Slice:
		s, ok := v.([]any)
		if !ok {
			l.add(where, "must be a list, got %s", describe(v))
			return
		}
		for i, e := range s {
			walkShape(l, fmt.Sprintf("%s[%d]", path, i), e, t.Elem())
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			l.add(where, "must be a string, got %s (quote it)", describe(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			l.add(where, "must be true or false, got %s", describe(v))
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		f, ok := v.(float64)
		if !ok {
			l.add(where, "must be an integer, got %s", describe(v))
		} else if f != math.Trunc(f) {
			l.add(where, "must be an integer, got %v", f)
		} else if f > math.MaxInt32 || f < math.MinInt32 {
			l.add(where, "out of range: %v", f)
		}
	case reflect.Float64:
		if _, ok := v.(float64); !ok {
			l.add(where, "must be a number, got %s", describe(v))
		}
	}
}

func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case float64:
		return fmt.Sprintf("number %v", x)
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
