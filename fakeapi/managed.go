package fakeapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Server-set metadata as kube-apiserver writes it, so that stored objects
// and watch events carry the same bytes as a real server's: managedFields
// (one Update entry per field manager and subresource, as the field
// manager of k8s.io/apiserver pkg/endpoints/handlers/fieldmanager records
// for create, update and patch) and generation where kube-apiserver's
// strategies set it (pods, custom resources).
//
// The field sets are derived from the object's JSON: every object key is
// "f:<key>", a list item with a "name" is keyed "k:{"name":...}", other
// lists are atomic. kube-apiserver derives them from the type's schema
// (structured-merge-diff); the shapes and sizes are the same for the
// objects Stampede writes, the exact sets may differ for lists.

// fieldManager is the manager of a request: ?fieldManager=, else the user
// agent up to its first "/" (kube-apiserver's prefixFromUserAgent),
// at most 128 bytes.
func fieldManager(r *http.Request) string {
	m := r.URL.Query().Get("fieldManager")
	if m == "" {
		m, _, _ = strings.Cut(r.UserAgent(), "/")
	}
	if len(m) > 128 {
		m = m[:128]
	}
	return m
}

// hasGeneration tells the resources whose strategy sets
// metadata.generation (pods since 1.33, every custom resource).
func (r *resource) hasGeneration() bool {
	return r.group == "cilium.io" || r.name == "pods"
}

// setManagedFields records that manager wrote d through subresource ("" or
// "status") at now. An existing entry of the manager keeps its time if
// its field set is unchanged, so that a no-op write stays byte-identical.
func (s *store) setManagedFields(d *document, manager, subresource string, now time.Time) {
	if manager == "" {
		return
	}
	set := s.fieldSet(d, subresource)
	entries := d.meta.ManagedFields[:0:0]
	for _, e := range d.meta.ManagedFields {
		if e.Manager != manager || e.Subresource != subresource {
			entries = append(entries, e)
		}
	}
	t := metav1.NewTime(now.UTC().Truncate(time.Second))
	for _, e := range d.meta.ManagedFields {
		if e.Manager == manager && e.Subresource == subresource && e.FieldsV1 != nil && bytes.Equal(e.FieldsV1.Raw, set) && e.Time != nil {
			t = *e.Time
		}
	}
	entries = append(entries, metav1.ManagedFieldsEntry{
		Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: s.res.apiVersion(),
		Time: &t, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: set}, Subresource: subresource,
	})
	sortManagedFields(entries)
	d.meta.ManagedFields = entries
}

// touchManagedFields sets the time of manager's entry to now: the write
// changed the object.
func touchManagedFields(d *document, manager, subresource string, now time.Time) {
	t := metav1.NewTime(now.UTC().Truncate(time.Second))
	for i := range d.meta.ManagedFields {
		if e := &d.meta.ManagedFields[i]; e.Manager == manager && e.Subresource == subresource {
			e.Time = &t
		}
	}
}

// fieldSet is the FieldsV1 of what a write through subresource owns.
func (s *store) fieldSet(d *document, subresource string) []byte {
	set := map[string]any{}
	if subresource == "status" {
		if st, ok := d.fields["status"]; ok {
			set["f:status"] = fieldsOf(st)
		}
		return mustJSON(set)
	}
	for k, v := range d.fields {
		switch {
		case k == "apiVersion", k == "kind", k == "metadata":
		case k == "status" && s.res.status:
		default:
			set["f:"+k] = fieldsOf(v)
		}
	}
	meta := map[string]any{}
	if len(d.meta.Labels) > 0 {
		meta["f:labels"] = keysOf(d.meta.Labels)
	}
	if len(d.meta.Annotations) > 0 {
		meta["f:annotations"] = keysOf(d.meta.Annotations)
	}
	if len(d.meta.Finalizers) > 0 {
		fin := map[string]any{".": struct{}{}}
		for _, f := range d.meta.Finalizers {
			fin["v:"+string(mustJSON(f))] = struct{}{}
		}
		meta["f:finalizers"] = fin
	}
	if len(meta) > 0 {
		set["f:metadata"] = meta
	}
	return mustJSON(set)
}

func keysOf(m map[string]string) map[string]any {
	out := map[string]any{".": struct{}{}}
	for k := range m {
		out["f:"+k] = struct{}{}
	}
	return out
}

// fieldsOf is the field set of one JSON value.
func fieldsOf(raw json.RawMessage) any {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) > 0 && raw[0] == '{':
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return struct{}{}
		}
		out := map[string]any{}
		for k, v := range m {
			out["f:"+k] = fieldsOf(v)
		}
		return out
	case len(raw) > 0 && raw[0] == '[':
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return struct{}{}
		}
		out := map[string]any{}
		for _, it := range items {
			var named struct {
				Name *string `json:"name"`
			}
			if json.Unmarshal(it, &named) != nil || named.Name == nil {
				return struct{}{} // atomic list
			}
			item, _ := fieldsOf(it).(map[string]any)
			if item == nil {
				item = map[string]any{}
			}
			item["."] = struct{}{}
			out["k:"+string(mustJSON(map[string]string{"name": *named.Name}))] = item
		}
		return out
	}
	return struct{}{}
}

// sortManagedFields keeps entries in a stable order (by manager, then
// subresource), so that equal metadata encodes to equal bytes.
func sortManagedFields(m []metav1.ManagedFieldsEntry) {
	sort.SliceStable(m, func(i, j int) bool {
		if m[i].Manager != m[j].Manager {
			return m[i].Manager < m[j].Manager
		}
		return m[i].Subresource < m[j].Subresource
	})
}
