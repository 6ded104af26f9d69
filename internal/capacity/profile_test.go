package capacity

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const placeholder = "testdata/placeholder.yaml"

func TestLoadPlaceholderRoundTrip(t *testing.T) {
	p, err := Load(placeholder)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Requests["list"].Seconds(100, 10); math.Abs(got-(0.001+0.003+0.0001)) > 1e-12 {
		t.Errorf("list cost for 100 objects, 10 KiB = %v, want 0.0041", got)
	}
	if got := p.Watch.EncodeSeconds(2) + p.Watch.DeliverSeconds(2); math.Abs(got-(0.00005+0.000011)) > 1e-12 {
		t.Errorf("watch cost of a 2 KiB event to one watcher = %v, want 6.1e-05", got)
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	q, err := Parse(buf.Bytes())
	if err != nil {
		t.Fatalf("parse written profile: %v\n%s", err, buf.String())
	}
	if diff := cmp.Diff(p, q); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// TestLoadErrors edits the placeholder line by line and wants an error that
// names the file and the field.
func TestLoadErrors(t *testing.T) {
	orig, err := os.ReadFile(placeholder)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name, old, new string
		want           []string
		is             error
	}{
		{"malformed", "machine:", "machine: [", []string{"malformed"}, nil},
		{"unknown field", "etcdVersion:", "etcdVersoin:", []string{"unknown field", "etcdVersoin"}, nil},
		{"duplicate field", "etcdVersion: v3.6.16", "etcdVersion: v3.6.16\netcdVersion: v3.6.15", []string{"etcdVersion"}, nil},
		{"schema version", "schemaVersion: 1", "schemaVersion: 2", []string{"schemaVersion: 2, want 1"}, ErrSchemaVersion},
		{"kube version", "kubeAPIServerVersion: v1.36.3", "kubeAPIServerVersion: v1.35.0", []string{"kubeAPIServerVersion", "v1.35.0"}, ErrKubeVersion},
		{"zero base", "get: {base: {value: 0.0004", "get: {base: {value: 0", []string{"requests.get.base.value: 0"}, nil},
		{"negative slope", "perObject: {value: 0.00003,", "perObject: {value: -0.00003,", []string{"requests.list.perObject.value: -3e-05"}, nil},
		{"negative stderr", "deliver: {value: 0.000009, stdErr: 0.000001}", "deliver: {value: 0.000009, stdErr: -1}", []string{"watch.deliver.stdErr"}, nil},
		{"missing verb", "  delete: {", "  deletee: {", []string{"requests.delete: missing"}, nil},
		{"r2 above one", "get: 0.9,", "get: 1.5,", []string{"fit.r2.get"}, nil},
		{"no cores", "cores: 2", "cores: 0", []string{"machine.cores"}, nil},
		{"empty", string(orig), "", []string{"empty profile"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(orig), tc.old) {
				t.Fatalf("placeholder has no %q", tc.old)
			}
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(file, []byte(strings.Replace(string(orig), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(file)
			if err == nil {
				t.Fatal("Load accepted it")
			}
			for _, w := range append(tc.want, file) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
		})
	}
	missing := filepath.Join(dir, "absent.yaml")
	if _, err := Load(missing); err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error naming %s", err, missing)
	}
}

// TestValidateNonFinite covers what YAML cannot carry into the JSON the
// decoder reads: NaN and infinities set in code.
func TestValidateNonFinite(t *testing.T) {
	for _, tc := range []struct {
		field string
		set   func(p *Profile)
	}{
		{"requests.patch.perKiB.value: NaN", func(p *Profile) {
			c := p.Requests["patch"]
			c.PerKiB.Value = math.NaN()
			p.Requests["patch"] = c
		}},
		{"watch.encode.value: +Inf", func(p *Profile) { p.Watch.Encode.Value = math.Inf(1) }},
		{"fit.maxRelResidual: NaN", func(p *Profile) { p.Fit.MaxRelResidual = math.NaN() }},
	} {
		p, err := Load(placeholder)
		if err != nil {
			t.Fatal(err)
		}
		tc.set(p)
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate = %v, want an error naming %q", err, tc.field)
		}
	}
}

func TestResolve(t *testing.T) {
	p, err := Resolve(placeholder)
	if err != nil || p.Name != "test-placeholder" {
		t.Fatalf("Resolve(path) = %v, %v", p, err)
	}
	if _, err := Resolve("no-such-profile"); !errors.Is(err, ErrNoProfile) {
		t.Errorf("Resolve(unknown name) = %v, want ErrNoProfile", err)
	}
	for _, name := range Builtins() {
		p, err := Builtin(name)
		if err != nil {
			t.Errorf("shipped profile %s: %v", name, err)
			continue
		}
		if p.Name != name {
			t.Errorf("shipped profile %s.yaml is named %q", name, p.Name)
		}
	}
	p, err = Resolve("")
	shippedDefault := false
	for _, n := range Builtins() {
		shippedDefault = shippedDefault || n == DefaultProfile
	}
	switch {
	case shippedDefault && (err != nil || p.Name != DefaultProfile):
		t.Errorf("Resolve(\"\") = %v, %v, want the shipped %s", p, err, DefaultProfile)
	case !shippedDefault && !errors.Is(err, ErrNoProfile):
		t.Errorf("Resolve(\"\") without a shipped default = %v, want ErrNoProfile", err)
	}
}

// TestProfileResourcesAndIdle: resource factors scale a request's price,
// and a malformed factor, background or scrape cost is refused with its
// field path.
func TestProfileResourcesAndIdle(t *testing.T) {
	p, err := Load("testdata/placeholder.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base := p.RequestSeconds("create", "ciliumendpoints", 1, 1)
	p.Resources = map[string]map[string]Coefficient{"ciliumendpoints": {"create": {Value: 1.5, StdErr: 0.1}}}
	p.Background = Coefficient{Value: 0.03, StdErr: 0.01}
	p.MetricsScrape = Coefficient{Value: 0.04}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := p.RequestSeconds("create", "ciliumendpoints", 1, 1); math.Abs(got-1.5*base) > 1e-12 {
		t.Errorf("ciliumendpoints create = %v, want 1.5 x %v", got, base)
	}
	if got := p.RequestSeconds("create", "pods", 1, 1); got != base {
		t.Errorf("pods create (no factor) = %v, want %v", got, base)
	}
	var buf bytes.Buffer
	if err := p.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if back, err := Parse(buf.Bytes()); err != nil || back.Resources["ciliumendpoints"]["create"].Value != 1.5 || back.Background.Value != 0.03 {
		t.Fatalf("round trip: %v, %+v", err, back)
	}
	for _, tc := range []struct {
		mutate func(*Profile)
		field  string
	}{
		{func(p *Profile) { p.Resources["ciliumendpoints"]["create"] = Coefficient{Value: -1} }, "resources.ciliumendpoints.create.value"},
		{func(p *Profile) { p.Resources["ciliumendpoints"]["watch"] = Coefficient{Value: 1} }, "resources.ciliumendpoints.watch: unknown verb"},
		{func(p *Profile) { p.Background = Coefficient{Value: math.NaN()} }, "background.value"},
		{func(p *Profile) { p.MetricsScrape = Coefficient{Value: 0.1, StdErr: -1} }, "metricsScrape.stdErr"},
	} {
		q, _ := Parse(buf.Bytes())
		tc.mutate(q)
		if err := q.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("want an error naming %s, got %v", tc.field, err)
		}
	}
}
