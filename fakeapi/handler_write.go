package fakeapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clientscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// readBody reads a request body within the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", s.cfg.MaxBodyBytes))
		}
		return nil, apierrors.NewBadRequest(fmt.Sprintf("read request body: %v", err))
	}
	return body, nil
}

// protobufToJSON converts a Kubernetes protobuf envelope of a built-in
// type to JSON.
func protobufToJSON(body []byte) ([]byte, error) {
	obj, _, err := protobufCodec.Decode(body, nil, nil)
	if err != nil {
		return nil, err
	}
	return json.Marshal(obj)
}

var protobufCodec = protobuf.NewSerializer(clientscheme.Scheme, clientscheme.Scheme)

func unsupportedMediaType(ct string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType,
		Message: fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got %q)", ct),
	}}
}

// decodeBody decodes a JSON or YAML request body, or a protobuf one for
// a built-in type (kubectl sends those).
func decodeBody(r *http.Request, res *resource, body []byte) (*document, error) {
	ct := r.Header.Get("Content-Type")
	// kube-apiserver takes a missing Content-Type as JSON and answers any
	// type it has no serializer for with 415 (k8s.io/apiserver
	// pkg/endpoints/handlers/negotiation NegotiateInputSerializerForMediaType).
	if ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		switch {
		case err != nil:
			return nil, unsupportedMediaType(ct)
		case mt == "application/json", mt == "application/yaml":
		case mt == "application/vnd.kubernetes.protobuf" && res.smp != nil:
		default:
			return nil, unsupportedMediaType(ct)
		}
	}
	if strings.HasPrefix(ct, "application/vnd.kubernetes.protobuf") {
		if res.smp == nil {
			return nil, unsupportedMediaType(ct)
		}
		j, err := protobufToJSON(body)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid protobuf in request body: %v", err))
		}
		body = j
	} else if strings.Contains(ct, "cbor") {
		return nil, unsupportedMediaType(ct)
	}
	if strings.HasPrefix(ct, "application/yaml") {
		j, err := yaml.YAMLToJSON(body)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid YAML in request body: %v", err))
		}
		body = j
	}
	return decodeDocument(body)
}

func (s *Server) serveCreate(w http.ResponseWriter, r *http.Request, rq *request) {
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	d, err := decodeBody(r, rq.res, body)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := rq.store.prepareMeta(d, rq.namespace, ""); err != nil {
		writeError(w, err)
		return
	}
	if err := s.checkNamespace(rq); err != nil {
		writeError(w, err)
		return
	}
	d.meta.ManagedFields = nil
	rq.store.setManagedFields(d, fieldManager(r), "", s.cfg.Now())
	o, err := rq.store.create(d)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, o.raw)
}

// checkNamespace refuses writes into a namespace that does not exist.
func (s *Server) checkNamespace(rq *request) error {
	if !rq.res.namespaced {
		return nil
	}
	if _, err := s.storeFor("", "v1", "namespaces").get("", rq.namespace); err != nil {
		return err
	}
	return nil
}

func (s *Server) serveUpdate(w http.ResponseWriter, r *http.Request, rq *request) {
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	d, err := decodeBody(r, rq.res, body)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := rq.store.prepareMeta(d, rq.namespace, rq.name); err != nil {
		writeError(w, err)
		return
	}
	created := false
	var create func() (*object, error)
	if rq.res.createOnUpdate && rq.subresource == "" {
		create = func() (*object, error) {
			if err := s.checkNamespace(rq); err != nil {
				return nil, err
			}
			created = true
			d.meta.ResourceVersion = ""
			d.meta.ManagedFields = nil
			rq.store.setManagedFields(d, fieldManager(r), "", s.cfg.Now())
			return rq.store.create(d)
		}
	}
	// update may call the mutation again (the object changed meanwhile)
	// and changes what it returns: each call gets its own copy of d.
	o, err := rq.store.update(rq.namespace, rq.name, rq.subresource, fieldManager(r), func(*document, []byte) (*document, error) {
		c := *d
		c.fields = maps.Clone(d.fields)
		return &c, nil
	}, create)
	if err != nil {
		writeError(w, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, o.raw)
}

func (s *Server) servePatch(w http.ResponseWriter, r *http.Request, rq *request) {
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	ct := r.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	p, err := newPatcher(rq.res, strings.TrimSpace(ct), body)
	if err != nil {
		writeError(w, err)
		return
	}
	p.name = rq.name
	o, err := rq.store.update(rq.namespace, rq.name, rq.subresource, fieldManager(r), rq.store.patchMutation(p, rq.namespace, rq.name), nil)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, o.raw)
}

// patchMutation applies p to the current object.
func (s *store) patchMutation(p *patcher, namespace, name string) mutation {
	return func(_ *document, curRaw []byte) (*document, error) {
		out, err := p.apply(curRaw)
		if err != nil {
			return nil, err
		}
		d, err := decodeDocument(out)
		if err != nil {
			return nil, apierrors.NewInvalid(s.res.groupKind(), name, field.ErrorList{field.Invalid(field.NewPath("patch"), truncate(p.body, 256), err.Error())})
		}
		if err := s.prepareMeta(d, namespace, name); err != nil {
			return nil, err
		}
		return d, nil
	}
}

func (s *Server) deletePreconditions(w http.ResponseWriter, r *http.Request) (preconditions, error) {
	var pre preconditions
	body, err := s.readBody(w, r)
	if err != nil {
		return pre, err
	}
	var opts metav1.DeleteOptions
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &opts); err != nil {
			return pre, apierrors.NewBadRequest(fmt.Sprintf("invalid DeleteOptions: %v", err))
		}
	}
	if err := deleteOptionsFromQuery(r, &opts); err != nil {
		return pre, err
	}
	if opts.Preconditions != nil {
		if opts.Preconditions.UID != nil {
			pre.uid = string(*opts.Preconditions.UID)
		}
		if opts.Preconditions.ResourceVersion != nil {
			pre.rv = *opts.Preconditions.ResourceVersion
		}
	}
	return pre, nil
}

func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request, rq *request) {
	pre, err := s.deletePreconditions(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	o, err := rq.store.remove(rq.namespace, rq.name, pre)
	if err != nil {
		writeError(w, err)
		return
	}
	if rq.res.name == "namespaces" {
		s.deleteNamespaceContents(rq.name)
	}
	writeJSON(w, http.StatusOK, o.raw)
}

// deleteNamespaceContents removes what a namespace held (kube-apiserver's
// namespace controller does this while the namespace is Terminating).
func (s *Server) deleteNamespaceContents(ns string) {
	for _, r := range s.resources {
		if !r.namespaced {
			continue
		}
		st := s.stores[r]
		for _, k := range st.keysIn(ns) {
			_, name := splitKey(k)
			_, _ = st.remove(ns, name, preconditions{})
		}
	}
}

func (s *Server) serveDeleteCollection(w http.ResponseWriter, r *http.Request, rq *request) {
	f, err := parseFilter(rq.res, rq.namespace, r.URL.Query())
	if err != nil {
		writeError(w, err)
		return
	}
	if _, err := s.deletePreconditions(w, r); err != nil {
		writeError(w, err)
		return
	}
	objs, _, _ := rq.store.snapshot(f)
	sort.Slice(objs, func(i, j int) bool { return objs[i].key < objs[j].key })
	var deleted []*object
	for _, o := range objs {
		d, err := rq.store.remove(o.namespace, o.name, preconditions{})
		if err != nil {
			continue // deleted meanwhile
		}
		if rq.res.name == "namespaces" {
			s.deleteNamespaceContents(o.name)
		}
		deleted = append(deleted, d)
	}
	rq.objects = len(deleted)
	writeList(w, rq.res, deleted, rq.store.rv.Load(), "", 0)
}

// deleteOptionsFromQuery reads DeleteOptions from the query as
// kube-apiserver's delete handler does (k8s.io/apiserver
// pkg/endpoints/handlers/delete.go, v1.36): a parameter that does not
// decode is 400, options that do not validate are 422 Invalid
// DeleteOptions (ValidateDeleteOptions).
func deleteOptionsFromQuery(r *http.Request, opts *metav1.DeleteOptions) error {
	q := r.URL.Query()
	if len(q) > 0 {
		if err := metainternalversionscheme.ParameterCodec.DecodeParameters(q, metav1.SchemeGroupVersion, opts); err != nil {
			return apierrors.NewBadRequest(err.Error())
		}
	}
	if errs := metav1validation.ValidateDeleteOptions(opts); len(errs) > 0 {
		return apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "DeleteOptions"}, "", errs)
	}
	return nil
}
