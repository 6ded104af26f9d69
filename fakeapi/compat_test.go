package fakeapi

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// TestNoopWritesAreNotWritten checks that a patch or update that changes
// nothing keeps the resourceVersion and sends no watch event, as
// kube-apiserver's GuaranteedUpdate skips the write.
func TestNoopWritesAreNotWritten(t *testing.T) {
	s := start(t, Config{})
	cs, _ := clients(t, s)
	ctx := t.Context()
	code, _, body := rawRequest(t, s, "POST", "/api/v1/namespaces/default/configmaps", "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"a":"b"}},"data":{"k":"v"}}`))
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "c", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: cm.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for _, tc := range []struct{ method, ct, body string }{
		{"PATCH", mergePatchType, `{}`},
		{"PATCH", mergePatchType, `{"data":{"k":"v"}}`},
		{"PATCH", strategicPatchType, `{"metadata":{"labels":{"a":"b"}}}`},
		{"PATCH", jsonPatchType, `[{"op":"replace","path":"/data/k","value":"v"}]`},
		{"PUT", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"a":"b"},"resourceVersion":"` + cm.ResourceVersion + `"},"data":{"k":"v"}}`},
	} {
		code, _, body := rawRequest(t, s, tc.method, "/api/v1/namespaces/default/configmaps/c", tc.ct, []byte(tc.body))
		if code != 200 || !bytes.Contains(body, []byte(`"resourceVersion":"`+cm.ResourceVersion+`"`)) {
			t.Errorf("%s %s: %d %s, want 200 with resourceVersion %s", tc.method, tc.body, code, body, cm.ResourceVersion)
		}
	}
	// A real change is written, and is the first event the watch sees.
	if code, _, body := rawRequest(t, s, "PATCH", "/api/v1/namespaces/default/configmaps/c", mergePatchType, []byte(`{"data":{"k":"w"}}`)); code != 200 {
		t.Fatalf("patch: %d %s", code, body)
	}
	select {
	case e := <-w.ResultChan():
		if got := e.Object.(metav1.Object).GetResourceVersion(); got == cm.ResourceVersion {
			t.Errorf("first event after the no-op writes has the old resourceVersion %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event for the real change")
	}
}

// TestAnswersAsKubeAPIServer covers requests the fake used to answer
// differently from kube-apiserver v1.36.
func TestAnswersAsKubeAPIServer(t *testing.T) {
	s := start(t, Config{})
	cm := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"d"}}`)
	if code, _, body := rawRequest(t, s, "POST", "/api/v1/namespaces/default/configmaps", "application/json", cm); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, tc := range []struct {
		name, method, path, ct string
		body                   []byte
		code                   int
		want                   string
	}{
		{"text/plain create", "POST", "/api/v1/namespaces/default/configmaps", "text/plain", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"t"}}`), 415, `"reason":"UnsupportedMediaType"`},
		{"unparsable content type", "POST", "/api/v1/namespaces/default/configmaps", "application/", cm, 415, `"reason":"UnsupportedMediaType"`},
		{"bogus propagationPolicy", "DELETE", "/api/v1/namespaces/default/configmaps/d?propagationPolicy=Bogus", "", nil, 422, `DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Bogus\"`},
		{"non-numeric gracePeriodSeconds", "DELETE", "/api/v1/namespaces/default/configmaps/d?gracePeriodSeconds=abc", "", nil, 400, `"reason":"BadRequest"`},
		{"field selector ===", "GET", "/api/v1/namespaces/default/configmaps?fieldSelector=%3D%3D%3D", "", nil, 400, `invalid field selector`},
		{"field selector with an empty field", "GET", "/api/v1/namespaces/default/configmaps?fieldSelector=%3Dx", "", nil, 400, `field label not supported`},
		{"json patch test fails", "PATCH", "/api/v1/namespaces/default/configmaps/d", jsonPatchType, []byte(`[{"op":"test","path":"/metadata/name","value":"x"}]`), 422, `ConfigMap \"d\" is invalid: patch`},
		{"merge patch to a list", "PATCH", "/api/v1/namespaces/default/configmaps/d", mergePatchType, []byte(`[]`), 400, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := rawRequest(t, s, tc.method, tc.path, tc.ct, tc.body)
			if code != tc.code || !strings.Contains(string(body), tc.want) {
				t.Errorf("%d %s, want %d with %s", code, body, tc.code, tc.want)
			}
		})
	}
	// The object survived the refused deletes.
	if code, _, _ := rawRequest(t, s, "GET", "/api/v1/namespaces/default/configmaps/d", "", nil); code != 200 {
		t.Errorf("configmap d after refused deletes: %d", code)
	}
	// Valid delete options still work.
	if code, _, body := rawRequest(t, s, "DELETE", "/api/v1/namespaces/default/configmaps/d?propagationPolicy=Background&gracePeriodSeconds=0", "", nil); code != 200 {
		t.Errorf("delete with valid options: %d %s", code, body)
	}
}

// TestBearerSchemeIsCaseInsensitive: kube-apiserver accepts "bearer",
// "BEARER" and "Bearer".
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	s := start(t, Config{})
	for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
		req, err := http.NewRequestWithContext(t.Context(), "GET", s.URL()+"/api/v1/namespaces", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", scheme+" "+s.AdminToken())
		resp, err := httpClient(t, s).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("Authorization: %s ...: %d, want 200", scheme, resp.StatusCode)
		}
	}
	for _, h := range []string{"Basic " + s.AdminToken(), "bearer", "Bearer  " + s.AdminToken()} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", s.URL()+"/api/v1/namespaces", nil)
		req.Header.Set("Authorization", h)
		resp, err := httpClient(t, s).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("Authorization %q: %d, want 401", h, resp.StatusCode)
		}
	}
}

func httpClient(t *testing.T, s *Server) *http.Client {
	t.Helper()
	tr, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: s.CAData()}})
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: tr}
}
