package fakeapi

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

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
