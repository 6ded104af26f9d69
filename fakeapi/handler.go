package fakeapi

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// request is one parsed resource request.
type request struct {
	res         *resource
	store       *store
	verb        string // get, list, watch, create, update, patch, delete, deletecollection
	namespace   string
	name        string
	subresource string
	user        *user
	objects     int // objects a list or deletecollection returned
}

func (rq *request) scope() string {
	switch {
	case rq.name != "":
		return "resource"
	case rq.namespace != "":
		return "namespace"
	default:
		return "cluster"
	}
}

// recorder remembers the status code and size of a response.
type recorder struct {
	http.ResponseWriter
	code int
	size int64
}

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.size += int64(n)
	return n, err
}

func (w *recorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

type userCount struct {
	n atomic.Int64
	c prometheus.Counter
}

// ServeHTTP serves the API. It is the server's http.Handler.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	s.activeMu.RLock()
	if s.closing {
		s.activeMu.RUnlock()
		writeError(rw, apierrors.NewServiceUnavailable("the server is shutting down"))
		return
	}
	s.active.Add(1)
	s.activeMu.RUnlock()
	defer s.active.Done()

	w := &recorder{ResponseWriter: rw}
	start := time.Now()
	var rq *request
	defer func() {
		if p := recover(); p != nil {
			if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(p)
			}
			s.metrics.panics.Inc()
			s.log.Error("fakeapi handler panic", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			if w.code == 0 {
				writeError(w, apierrors.NewInternalError(fmt.Errorf("handler panic: %v", p)))
			}
		}
		s.observe(r, rq, w.code, time.Since(start))
	}()

	path := r.URL.Path
	switch {
	case path == "/healthz" || path == "/livez" || path == "/readyz" || strings.HasPrefix(path, "/healthz/") || strings.HasPrefix(path, "/livez/") || strings.HasPrefix(path, "/readyz/"):
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok")
		return
	case path == "/metrics":
		promhttp.HandlerFor(gatherers(s.cfg.Registry), promhttp.HandlerOpts{}).ServeHTTP(w, r)
		return
	case strings.HasPrefix(path, "/debug/pprof"):
		servePprof(w, r)
		return
	case path == "/version" || path == "/version/":
		writeJSONValue(w, http.StatusOK, versionInfo)
		return
	}

	u, err := s.authenticate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	s.countUser(u.name)

	var next http.HandlerFunc
	switch parsed, disc, err := s.parse(r); {
	case r.URL.Path == "/openapi/v2":
		next = serveOpenAPIV2
	case err != nil:
		writeError(w, err)
		return
	case disc != nil:
		next = disc
	default:
		rq = parsed
		rq.user = u
		next = func(w http.ResponseWriter, r *http.Request) { s.serveAuthorized(w, r, rq) }
	}
	// As in kube-apiserver's handler chain (k8s.io/apiserver
	// pkg/server/config.go DefaultBuildHandlerChain), API Priority and
	// Fairness sits between authentication and authorization. A server
	// used as a handler without Start has no APF running.
	if s.apf != nil && s.apf.filter != nil {
		s.apf.serve(w, r, u, next)
		return
	}
	next(w, r)
}

// serveAuthorized serves a resource request once APF dispatched it.
func (s *Server) serveAuthorized(w http.ResponseWriter, r *http.Request, rq *request) {
	if rq.verb != "watch" {
		kind := "readOnly"
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			kind = "mutating"
		}
		g := s.metrics.inflight.WithLabelValues(kind)
		g.Inc()
		defer g.Dec()
	}
	if err := s.authorize(rq); err != nil {
		writeError(w, err)
		return
	}
	if r.URL.Query().Has("dryRun") && rq.verb != "get" && rq.verb != "list" && rq.verb != "watch" {
		writeError(w, apierrors.NewBadRequest("dryRun is not supported by fakeapi"))
		return
	}
	if s.budget != nil {
		s.budget.chargeRequest(w, r, rq, func() { s.serveResource(w, r, rq) })
		return
	}
	s.serveResource(w, r, rq)
}

func (s *Server) countUser(name string) {
	v, ok := s.byUser.Load(name)
	if !ok {
		v, _ = s.byUser.LoadOrStore(name, &userCount{c: s.metrics.byUser.WithLabelValues(name)})
	}
	uc := v.(*userCount)
	uc.n.Add(1)
	uc.c.Inc()
}

// observe records apiserver_request_total and _duration_seconds.
func (s *Server) observe(r *http.Request, rq *request, code int, d time.Duration) {
	if code == 0 {
		code = http.StatusOK
	}
	verb := strings.ToUpper(r.Method)
	var group, version, resource, sub, scope string
	if rq != nil {
		group, version, resource, sub, scope = rq.res.group, rq.res.version, rq.res.name, rq.subresource, rq.scope()
		switch rq.verb {
		case "list":
			verb = "LIST"
		case "watch":
			verb = "WATCH"
		case "deletecollection":
			verb = "DELETECOLLECTION"
		}
	}
	dryRun := ""
	if r.URL.Query().Has("dryRun") {
		dryRun = "All"
	}
	s.metrics.requests.WithLabelValues(verb, dryRun, group, version, resource, sub, scope, "apiserver", strconv.Itoa(code)).Inc()
	s.metrics.latency.WithLabelValues(verb, dryRun, group, version, resource, sub, scope, "apiserver").Observe(d.Seconds())
}

func servePprof(w http.ResponseWriter, r *http.Request) {
	switch strings.TrimPrefix(r.URL.Path, "/debug/pprof/") {
	case "cmdline":
		pprof.Cmdline(w, r)
	case "profile":
		pprof.Profile(w, r)
	case "symbol":
		pprof.Symbol(w, r)
	case "trace":
		pprof.Trace(w, r)
	default:
		pprof.Index(w, r)
	}
}

func (s *Server) authenticate(r *http.Request) (*user, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if s.cfg.AllowAnonymous {
			return &user{name: "system:anonymous", groups: []string{"system:unauthenticated"}}, nil
		}
		return nil, apierrors.NewUnauthorized("Unauthorized")
	}
	// The scheme is case-insensitive, as kube-apiserver's bearer token
	// authenticator reads it (k8s.io/apiserver
	// pkg/authentication/request/bearertoken/bearertoken.go, v1.36).
	parts := strings.SplitN(h, " ", 3)
	if len(parts) < 2 || !strings.EqualFold(parts[0], "bearer") {
		return nil, apierrors.NewUnauthorized("Unauthorized")
	}
	tok := parts[1]
	u := s.tokens[strings.TrimSpace(tok)]
	if u == nil {
		return nil, apierrors.NewUnauthorized("Unauthorized")
	}
	return u, nil
}

func (s *Server) authorize(rq *request) error {
	if s.cfg.Rules == nil {
		return nil
	}
	for _, g := range rq.user.groups {
		if g == "system:masters" {
			return nil
		}
	}
	resource := rq.res.name
	if rq.subresource != "" {
		resource += "/" + rq.subresource
	}
	for _, rule := range s.cfg.Rules {
		if !matchesAny(rule.Users, rq.user.name) && !matchesAnyOf(rule.Groups, rq.user.groups) {
			continue
		}
		if matchesAny(rule.Verbs, rq.verb) && matchesAny(rule.APIGroups, rq.res.group) && matchesAny(rule.Resources, resource) {
			return nil
		}
	}
	where := "at the cluster scope"
	if rq.namespace != "" {
		where = fmt.Sprintf("in the namespace %q", rq.namespace)
	}
	return apierrors.NewForbidden(rq.res.groupResource(), rq.name, statusMessage(fmt.Sprintf("User %q cannot %s resource %q in API group %q %s", rq.user.name, rq.verb, resource, rq.res.group, where)))
}

func matchesAny(list []string, v string) bool {
	for _, x := range list {
		if x == "*" || x == v {
			return true
		}
	}
	return false
}

func matchesAnyOf(list, vs []string) bool {
	for _, v := range vs {
		if matchesAny(list, v) {
			return true
		}
	}
	return false
}

var errNotFound = &apierrors.StatusError{ErrStatus: metav1.Status{
	Status: metav1.StatusFailure, Code: http.StatusNotFound, Reason: metav1.StatusReasonNotFound,
	Message: "the server could not find the requested resource",
}}

// parse maps a URL to a resource request, or to a discovery handler.
func (s *Server) parse(r *http.Request) (*request, http.HandlerFunc, error) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var group, version string
	switch parts[0] {
	case "api":
		if len(parts) == 1 {
			return nil, s.serveAPIVersions, nil
		}
		group, version, parts = "", parts[1], parts[2:]
	case "apis":
		if len(parts) == 1 {
			return nil, s.serveAPIGroupList, nil
		}
		if len(parts) == 2 {
			g := parts[1]
			return nil, func(w http.ResponseWriter, r *http.Request) { s.serveAPIGroup(w, r, g) }, nil
		}
		group, version, parts = parts[1], parts[2], parts[3:]
	default:
		return nil, nil, errNotFound
	}
	if len(parts) == 0 {
		if !s.hasGroupVersion(group, version) {
			return nil, nil, errNotFound
		}
		return nil, func(w http.ResponseWriter, r *http.Request) { s.serveResourceList(w, r, group, version) }, nil
	}
	watchPrefix := false
	if parts[0] == "watch" {
		watchPrefix, parts = true, parts[1:]
	}
	rq := &request{}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		rq.namespace = parts[1]
		if len(parts) > 2 && parts[2] != "status" && parts[2] != "finalize" {
			parts = parts[2:]
		} else {
			// The namespace object itself: /namespaces/NAME[/status].
			rq.namespace = ""
		}
	}
	if len(parts) == 0 || len(parts) > 3 {
		return nil, nil, errNotFound
	}
	rq.res = s.byPath[group+"/"+version+"/"+parts[0]]
	if rq.res == nil {
		return nil, nil, errNotFound
	}
	if rq.namespace != "" && !rq.res.namespaced {
		return nil, nil, errNotFound
	}
	rq.store = s.stores[rq.res]
	if len(parts) > 1 {
		rq.name = parts[1]
		if rq.name == "" {
			return nil, nil, errNotFound
		}
	}
	if len(parts) > 2 {
		rq.subresource = parts[2]
		if rq.subresource != "status" || !rq.res.status {
			return nil, nil, errNotFound
		}
	}
	q := r.URL.Query()
	isWatch := watchPrefix || q.Get("watch") == "true" || q.Get("watch") == "1"
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case isWatch:
			rq.verb = "watch"
		case rq.name == "":
			rq.verb = "list"
		default:
			rq.verb = "get"
		}
	case http.MethodPost:
		rq.verb = "create"
	case http.MethodPut:
		rq.verb = "update"
	case http.MethodPatch:
		rq.verb = "patch"
	case http.MethodDelete:
		rq.verb = "delete"
		if rq.name == "" {
			rq.verb = "deletecollection"
		}
	default:
		return nil, nil, apierrors.NewMethodNotSupported(rq.res.groupResource(), r.Method)
	}
	if rq.subresource != "" && rq.verb != "get" && rq.verb != "update" && rq.verb != "patch" {
		return nil, nil, apierrors.NewMethodNotSupported(schema2(rq.res, rq.subresource), rq.verb)
	}
	if (rq.verb == "create" && rq.name != "") || ((rq.verb == "update" || rq.verb == "patch") && rq.name == "") || (watchPrefix && rq.verb != "watch") {
		return nil, nil, apierrors.NewMethodNotSupported(rq.res.groupResource(), rq.verb)
	}
	return rq, nil, nil
}

func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, rq *request) {
	switch rq.verb {
	case "get":
		s.serveGet(w, r, rq)
	case "list":
		s.serveList(w, r, rq)
	case "watch":
		s.serveWatch(w, r, rq)
	case "create":
		s.serveCreate(w, r, rq)
	case "update":
		s.serveUpdate(w, r, rq)
	case "patch":
		s.servePatch(w, r, rq)
	case "delete":
		s.serveDelete(w, r, rq)
	case "deletecollection":
		s.serveDeleteCollection(w, r, rq)
	}
}

func (s *Server) serveGet(w http.ResponseWriter, r *http.Request, rq *request) {
	o, err := rq.store.get(rq.namespace, rq.name)
	if err != nil {
		writeError(w, err)
		return
	}
	if wantsTable(r) {
		s.writeTable(w, []*object{o}, o.rv, "")
		return
	}
	writeJSON(w, http.StatusOK, o.raw)
}

// continueToken is the (opaque to clients) state of a paged list.
type continueToken struct {
	V     string `json:"v"`
	RV    uint64 `json:"rv"`
	Start string `json:"start"`
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request, rq *request) {
	q := r.URL.Query()
	f, err := parseFilter(rq.res, rq.namespace, q)
	if err != nil {
		writeError(w, err)
		return
	}
	rvParam, match := q.Get("resourceVersion"), q.Get("resourceVersionMatch")
	var limit int64
	if l := q.Get("limit"); l != "" {
		limit, err = strconv.ParseInt(l, 10, 64)
		if err != nil || limit < 0 {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("limit: invalid value %q", l)))
			return
		}
	}
	cont := q.Get("continue")
	if match != "" && rvParam == "" {
		writeError(w, invalidListOptions("resourceVersionMatch", match, "resourceVersionMatch is forbidden unless resourceVersion is provided"))
		return
	}
	if match != "" && match != string(metav1.ResourceVersionMatchExact) && match != string(metav1.ResourceVersionMatchNotOlderThan) {
		writeError(w, invalidListOptions("resourceVersionMatch", match, "must be one of Exact, NotOlderThan"))
		return
	}
	if cont != "" && rvParam != "" && rvParam != "0" {
		writeError(w, invalidListOptions("resourceVersion", rvParam, "specifying resource version is not allowed when using continue"))
		return
	}
	var want uint64
	if rvParam != "" {
		want, err = strconv.ParseUint(rvParam, 10, 64)
		if err != nil {
			writeError(w, invalidListOptions("resourceVersion", rvParam, "must be a non-negative integer"))
			return
		}
	}
	if rvParam == "0" {
		limit = 0 // served from the watch cache in full, as kube-apiserver does
	}
	var tok continueToken
	if cont != "" {
		b, err := base64.RawURLEncoding.DecodeString(cont)
		if err == nil {
			err = json.Unmarshal(b, &tok)
		}
		if err != nil || tok.V != "meta.k8s.io/v1" {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("continue key is not valid: %q", cont)))
			return
		}
	}
	objs, _, cur := rq.store.snapshot(f)
	if want > cur {
		writeError(w, tooLargeRV(want, cur))
		return
	}
	listRV := cur
	if match == string(metav1.ResourceVersionMatchExact) && want != 0 {
		if last := rq.store.lastRV(); last > want {
			writeError(w, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", want, last)))
			return
		}
		listRV = want
	}
	if cont != "" {
		listRV = tok.RV
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].key < objs[j].key })
	if tok.Start != "" {
		i := sort.Search(len(objs), func(i int) bool { return objs[i].key > tok.Start })
		objs = objs[i:]
	}
	var next string
	var remaining int64
	if limit > 0 && int64(len(objs)) > limit {
		remaining = int64(len(objs)) - limit
		objs = objs[:limit]
		b, _ := json.Marshal(continueToken{V: "meta.k8s.io/v1", RV: listRV, Start: objs[len(objs)-1].key})
		next = base64.RawURLEncoding.EncodeToString(b)
	}
	if wantsTable(r) {
		s.writeTable(w, objs, listRV, next)
		return
	}
	rq.objects = len(objs)
	writeList(w, rq.res, objs, listRV, next, remaining)
}

func writeList(w http.ResponseWriter, res *resource, objs []*object, rv uint64, next string, remaining int64) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := &stickyWriter{w: bufio.NewWriterSize(w, 32<<10)}
	bw.printf(`{"kind":%q,"apiVersion":%q,"metadata":{"resourceVersion":"%d"`, res.kind+"List", res.apiVersion(), rv)
	if next != "" {
		bw.printf(`,"continue":%q,"remainingItemCount":%d`, next, remaining)
	}
	bw.write([]byte(`},"items":[`))
	for i, o := range objs {
		if i > 0 {
			bw.write([]byte{','})
		}
		bw.write(o.raw)
	}
	bw.write([]byte("]}\n"))
	bw.flush()
}

func invalidListOptions(fieldName, value, detail string) error {
	return apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("ListOptions").GroupKind(), "", field.ErrorList{field.Invalid(field.NewPath(fieldName), value, detail)})
}

func tooLargeRV(want, cur uint64) error {
	err := apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", want, cur), 1)
	err.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: metav1.CauseTypeResourceVersionTooLarge, Message: "Too large resource version"}}
	return err
}

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
			return rq.store.create(d)
		}
	}
	// update may call the mutation again (the object changed meanwhile)
	// and changes what it returns: each call gets its own copy of d.
	o, err := rq.store.update(rq.namespace, rq.name, rq.subresource, func(*document, []byte) (*document, error) {
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
	o, err := rq.store.update(rq.namespace, rq.name, rq.subresource, rq.store.patchMutation(p, rq.namespace, rq.name), nil)
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

func writeJSON(w http.ResponseWriter, code int, raw []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(raw)+1))
	w.WriteHeader(code)
	_, _ = w.Write(raw)
	_, _ = w.Write([]byte{'\n'})
}

func writeJSONValue(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, apierrors.NewInternalError(err))
		return
	}
	writeJSON(w, code, b)
}

// writeError writes err as a metav1.Status.
func writeError(w http.ResponseWriter, err error) {
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		se = apierrors.NewInternalError(err)
	}
	st := se.Status()
	st.Kind, st.APIVersion = "Status", "v1"
	if st.Status == "" {
		st.Status = metav1.StatusFailure
	}
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	if st.Details != nil && st.Details.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(st.Details.RetryAfterSeconds)))
	}
	b, merr := json.Marshal(&st)
	if merr != nil {
		b = []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","code":500}`)
	}
	writeJSON(w, int(st.Code), b)
}

func schema2(r *resource, sub string) schema.GroupResource {
	gr := r.groupResource()
	gr.Resource += "/" + sub
	return gr
}

// stickyWriter writes a streamed response; after the first error (the
// client went away) it writes nothing more.
type stickyWriter struct {
	w   *bufio.Writer
	err error
}

func (s *stickyWriter) write(b []byte) {
	if s.err == nil {
		_, s.err = s.w.Write(b)
	}
}

func (s *stickyWriter) printf(format string, args ...any) {
	if s.err == nil {
		_, s.err = fmt.Fprintf(s.w, format, args...)
	}
}

func (s *stickyWriter) flush() {
	if s.err == nil {
		s.err = s.w.Flush()
	}
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
