package fakeapi

import (
	"net/http"
	"strings"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
)

// serveOpenAPIV2 serves an OpenAPI v2 document without definitions. kubectl
// needs one to exist: with it, client-side validation finds no schema and
// skips, and apply builds strategic merge patches from its Go types.
func serveOpenAPIV2(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.Header.Get("Accept"), "protobuf") {
		doc := &openapiv2.Document{
			Swagger: "2.0",
			Info:    &openapiv2.Info{Title: "stampede fakeapi", Version: Version},
			Paths:   &openapiv2.Paths{},
		}
		b, err := proto.Marshal(doc)
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"swagger":"2.0","info":{"title":"stampede fakeapi","version":"` + Version + `"},"paths":{}}` + "\n"))
}
