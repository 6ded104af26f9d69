package fakeapi

import (
	"fmt"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// filter selects objects for list and watch: the URL's namespace, the
// label selector and the field selector.
type filter struct {
	namespace string // "" means all namespaces
	labels    labels.Selector
	fields    []fields.Requirement
	// exactKey is set when the field selector names one object.
	exactKey string
}

// parseFilter reads labelSelector and fieldSelector from q.
func parseFilter(r *resource, namespace string, q url.Values) (*filter, error) {
	f := &filter{namespace: namespace}
	if s := q.Get("labelSelector"); s != "" {
		sel, err := labels.Parse(s)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: labelSelector %q: %v", s, err))
		}
		if !sel.Empty() {
			f.labels = sel
		}
	}
	if s := q.Get("fieldSelector"); s != "" {
		sel, err := fields.ParseSelector(s)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector %q: %v", s, err))
		}
		for _, req := range sel.Requirements() {
			if !r.selectableField(req.Field) {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", req.Field))
			}
			f.fields = append(f.fields, req)
		}
	}
	for _, req := range f.fields {
		if req.Field == "metadata.name" && req.Operator != selection.NotEquals && (!r.namespaced || namespace != "") {
			f.exactKey = objectKey(namespace, req.Value)
		}
	}
	return f, nil
}

func (f *filter) matches(o *object) bool {
	if f.namespace != "" && o.namespace != f.namespace {
		return false
	}
	for _, req := range f.fields {
		var v string
		switch req.Field {
		case "metadata.name":
			v = o.name
		case "metadata.namespace":
			v = o.namespace
		case "spec.nodeName":
			v = o.nodeName
		}
		if (v == req.Value) == (req.Operator == selection.NotEquals) {
			return false
		}
	}
	if f.labels != nil && !f.labels.Matches(labels.Set(o.labels)) {
		return false
	}
	return true
}

// nodeIndex returns the node of a spec.nodeName=X requirement, the index
// watchers of pods are woken by.
func (f *filter) nodeIndex() (string, bool) {
	for _, req := range f.fields {
		if req.Field == "spec.nodeName" && (req.Operator == selection.Equals || req.Operator == selection.DoubleEquals) {
			return req.Value, true
		}
	}
	return "", false
}

// selectableField tells the field selector labels r supports.
func (r *resource) selectableField(field string) bool {
	switch field {
	case "metadata.name", "metadata.namespace":
		return true
	case "spec.nodeName":
		return r.nodeNameField
	}
	return false
}
