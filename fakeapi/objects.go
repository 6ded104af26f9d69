package fakeapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// document is a JSON object being written: its top-level fields kept as
// raw JSON, and its metadata decoded.
type document struct {
	fields map[string]json.RawMessage
	meta   metav1.ObjectMeta
}

// decodeDocument parses a request body (or a stored object) into a
// document. Errors are 400 Status errors.
func decodeDocument(body []byte) (*document, error) {
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid JSON in request body: %v", err))
	}
	d := &document{}
	if err := json.Unmarshal(compact.Bytes(), &d.fields); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("request body must be a JSON object: %v", err))
	}
	if d.fields == nil {
		return nil, apierrors.NewBadRequest("request body must be a JSON object, got null")
	}
	if m, ok := d.fields["metadata"]; ok && string(m) != "null" {
		if err := json.Unmarshal(m, &d.meta); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("metadata: %v", err))
		}
	}
	return d, nil
}

// stringField returns a top-level string field; a field of another type
// is an error.
func (d *document) stringField(name string) (string, error) {
	raw, ok := d.fields[name]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", apierrors.NewBadRequest(fmt.Sprintf("%s: must be a string, got %s", name, truncate(raw, 64)))
	}
	return s, nil
}

// checkType verifies apiVersion and kind against the resource. Missing
// apiVersion and kind are filled in, as kube-apiserver does for a body
// whose type it can infer from the URL.
func (d *document) checkType(r *resource) error {
	av, err := d.stringField("apiVersion")
	if err != nil {
		return err
	}
	kind, err := d.stringField("kind")
	if err != nil {
		return err
	}
	if av != "" && av != r.apiVersion() {
		return apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)", av, r.apiVersion()))
	}
	if kind != "" && kind != r.kind {
		return apierrors.NewBadRequest(fmt.Sprintf("the kind in the data (%s) does not match the expected kind (%s) of resource %s", kind, r.kind, r.groupResource()))
	}
	d.fields["apiVersion"] = mustJSON(r.apiVersion())
	d.fields["kind"] = mustJSON(r.kind)
	return nil
}

// encode serializes the document with its metadata.
func (d *document) encode() ([]byte, error) {
	m, err := json.Marshal(&d.meta)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	d.fields["metadata"] = m
	out, err := json.Marshal(d.fields)
	if err != nil {
		return nil, fmt.Errorf("encode object: %w", err)
	}
	return out, nil
}

// nodeName extracts spec.nodeName (empty if absent or not a string).
func (d *document) nodeName() string {
	raw, ok := d.fields["spec"]
	if !ok {
		return ""
	}
	var spec struct {
		NodeName string `json:"nodeName"`
	}
	if json.Unmarshal(raw, &spec) != nil {
		return ""
	}
	return spec.NodeName
}

// sameContent reports whether a and b have semantically equal top-level
// fields other than the skipped ones.
func sameContent(a, b *document, skip ...string) bool {
	isSkipped := func(k string) bool {
		for _, s := range skip {
			if s == k {
				return true
			}
		}
		return false
	}
	for k, av := range a.fields {
		if isSkipped(k) {
			continue
		}
		bv, ok := b.fields[k]
		if !ok || !jsonEqual(av, bv) {
			return false
		}
	}
	for k := range b.fields {
		if _, ok := a.fields[k]; !ok && !isSkipped(k) {
			return false
		}
	}
	return true
}

func jsonEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var av, bv any
	if json.Unmarshal(a, &av) != nil || json.Unmarshal(b, &bv) != nil {
		return false
	}
	return reflect.DeepEqual(av, bv)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fakeapi: encode %T: %v", v, err))
	}
	return b
}

func truncate(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	return string(b[:n]) + "..."
}
