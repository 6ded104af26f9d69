package fakeapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stampede-sim/stampede/internal/capacity"
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
		if s.budget != nil && r.Header.Get(capacity.MeterHeader) == "" {
			s.budget.chargeScrape(r.Context())
		}
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
	s.countRequest(rq)
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
