package fakeapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

var fuzzContentTypes = []string{
	"application/json",
	jsonPatchType,
	mergePatchType,
	strategicPatchType,
	"application/yaml",
	"application/vnd.kubernetes.protobuf",
}

// FuzzWrite drives the request decoder and the patch paths with arbitrary
// bodies: every answer must be JSON (an object or a Status), no handler
// may panic, and every stored object must stay valid JSON with its name.
func FuzzWrite(f *testing.F) {
	seeds := []struct {
		op   uint8
		ct   uint8
		body string
	}{
		{0, 0, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"new","labels":{"a":"b"}},"data":{"x":"y"}}`},
		{0, 0, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"g-"}}`},
		{1, 0, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"keep","resourceVersion":"1"}}`},
		{2, 1, `[{"op":"add","path":"/data/z","value":"1"},{"op":"remove","path":"/metadata/labels"}]`},
		{2, 1, `[{"op":"copy","from":"/data","path":"/data/self"}]`},
		{2, 1, `[{"op":"replace","path":"/metadata/name","value":"other"}]`},
		{2, 2, `{"metadata":{"labels":{"k":null}},"data":{"a":"c"}}`},
		{2, 2, `{"metadata":null}`},
		{2, 3, `{"metadata":{"$patch":"replace"}}`},
		{2, 3, `{"data":{"$retainKeys":["a"]}}`},
		{0, 4, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n"},
		{0, 5, "k8s\x00\x0a\x02v1"},
		{3, 0, `{"preconditions":{"uid":"x"}}`},
		{0, 0, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","creationTimestamp":"bad"}}`},
		{1, 0, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"keep","finalizers":["a/b"],"deletionTimestamp":"2020-01-01T00:00:00Z"}}`},
	}
	for _, s := range seeds {
		f.Add(s.op, s.ct, []byte(s.body))
	}
	s, err := New(Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, op, ct uint8, body []byte) {
		st := s.storeFor("", "v1", "configmaps")
		if _, err := st.get("default", "keep"); err != nil {
			d, _ := decodeDocument([]byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"keep","labels":{"l":"v"}},"data":{"a":"b"}}`))
			_ = st.prepareMeta(d, "default", "")
			if _, err := st.create(d); err != nil {
				t.Fatal(err)
			}
		}
		method, path := http.MethodPost, "/api/v1/namespaces/default/configmaps"
		switch op % 4 {
		case 1:
			method, path = http.MethodPut, path+"/keep"
		case 2:
			method, path = http.MethodPatch, path+"/keep"
		case 3:
			method, path = http.MethodDelete, path+"/keep"
		}
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+s.AdminToken())
		req.Header.Set("Content-Type", fuzzContentTypes[int(ct)%len(fuzzContentTypes)])
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: response is not JSON: %q", method, path, rec.Body.Bytes())
		}
		if rec.Code >= 500 {
			t.Fatalf("%s %s: server error %d: %s", method, path, rec.Code, rec.Body.Bytes())
		}
		st.mu.RLock()
		defer st.mu.RUnlock()
		for k, o := range st.objs {
			d, err := decodeDocument(o.raw)
			if err != nil {
				t.Fatalf("stored %s is corrupt: %v: %s", k, err, o.raw)
			}
			if d.meta.Name != o.name || d.meta.Namespace != o.namespace || d.meta.ResourceVersion == "" || d.meta.UID == "" {
				t.Fatalf("stored %s has wrong metadata: %s", k, o.raw)
			}
		}
	})
}
