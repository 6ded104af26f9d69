package fakeapi

import (
	"bufio"
	"encoding/json"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/version"
)

// Version is the Kubernetes version the server reports on /version.
const Version = "v1.36.3"

var versionInfo = version.Info{
	Major:      "1",
	Minor:      "36",
	GitVersion: Version + "+stampede-fakeapi",
	GoVersion:  runtime.Version(),
	Compiler:   runtime.Compiler,
	Platform:   runtime.GOOS + "/" + runtime.GOARCH,
}

// Discovery is served in its legacy (unaggregated) form with Content-Type
// application/json, which is how clients that ask for the aggregated
// apidiscovery.k8s.io/v2 form learn to fall back.

func (s *Server) serveAPIVersions(w http.ResponseWriter, r *http.Request) {
	writeJSONValue(w, http.StatusOK, &metav1.APIVersions{
		TypeMeta:                   metav1.TypeMeta{Kind: "APIVersions"},
		Versions:                   []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: s.Addr()}},
	})
}

// groups returns the API groups other than core, each with its versions
// in preference order.
func (s *Server) groups() []metav1.APIGroup {
	var out []metav1.APIGroup
	idx := map[string]int{}
	for _, r := range s.resources {
		if r.group == "" {
			continue
		}
		i, ok := idx[r.group]
		if !ok {
			i = len(out)
			idx[r.group] = i
			out = append(out, metav1.APIGroup{Name: r.group})
		}
		g := &out[i]
		seen := false
		for _, v := range g.Versions {
			seen = seen || v.Version == r.version
		}
		if !seen {
			g.Versions = append(g.Versions, metav1.GroupVersionForDiscovery{GroupVersion: r.group + "/" + r.version, Version: r.version})
		}
	}
	for i := range out {
		// v2 before v2alpha1, as Kubernetes orders versions.
		sort.SliceStable(out[i].Versions, func(a, b int) bool {
			return !strings.Contains(out[i].Versions[a].Version, "alpha") && strings.Contains(out[i].Versions[b].Version, "alpha")
		})
		out[i].PreferredVersion = out[i].Versions[0]
	}
	return out
}

func (s *Server) serveAPIGroupList(w http.ResponseWriter, r *http.Request) {
	writeJSONValue(w, http.StatusOK, &metav1.APIGroupList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"},
		Groups:   s.groups(),
	})
}

func (s *Server) serveAPIGroup(w http.ResponseWriter, r *http.Request, group string) {
	for _, g := range s.groups() {
		if g.Name == group {
			g.TypeMeta = metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}
			writeJSONValue(w, http.StatusOK, &g)
			return
		}
	}
	writeError(w, errNotFound)
}

func (s *Server) hasGroupVersion(group, version string) bool {
	for _, r := range s.resources {
		if r.group == group && r.version == version {
			return true
		}
	}
	return false
}

var allVerbs = metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

func (s *Server) serveResourceList(w http.ResponseWriter, r *http.Request, group, ver string) {
	list := &metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: ver,
	}
	if group != "" {
		list.GroupVersion = group + "/" + ver
	}
	for _, res := range s.resources {
		if res.group != group || res.version != ver {
			continue
		}
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: res.name, SingularName: res.singular, Namespaced: res.namespaced, Kind: res.kind,
			Verbs: allVerbs, ShortNames: res.shortNames, Categories: res.categories,
		})
		if res.status {
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: res.name + "/status", Namespaced: res.namespaced, Kind: res.kind,
				Verbs: metav1.Verbs{"get", "patch", "update"},
			})
		}
	}
	writeJSONValue(w, http.StatusOK, list)
}

// wantsTable reports whether the client (kubectl get) asked for a
// meta.k8s.io Table.
func wantsTable(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "as=Table")
}

// writeTable answers kubectl get with the columns kube-apiserver shows for
// a resource without printer columns: Name and Age.
func (s *Server) writeTable(w http.ResponseWriter, objs []*object, rv uint64, next string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := &stickyWriter{w: bufio.NewWriter(w)}
	bw.printf(`{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"%d"`, rv)
	if next != "" {
		bw.printf(`,"continue":%q`, next)
	}
	bw.write([]byte(`},"columnDefinitions":[{"name":"Name","type":"string","format":"name","description":"Name must be unique within a namespace.","priority":0},{"name":"Age","type":"date","format":"","description":"CreationTimestamp is the time the object was created.","priority":0}],"rows":[`))
	for i, o := range objs {
		var top struct {
			Metadata json.RawMessage `json:"metadata"`
		}
		var meta struct {
			CreationTimestamp string `json:"creationTimestamp"`
		}
		_ = json.Unmarshal(o.raw, &top)
		_ = json.Unmarshal(top.Metadata, &meta)
		if len(top.Metadata) == 0 {
			top.Metadata = json.RawMessage("{}")
		}
		if i > 0 {
			bw.write([]byte{','})
		}
		name, _ := json.Marshal(o.name)
		age := "<unknown>"
		if t, err := time.Parse(time.RFC3339, meta.CreationTimestamp); err == nil {
			age = duration.HumanDuration(s.cfg.Now().Sub(t))
		}
		ts, _ := json.Marshal(age)
		bw.printf(`{"cells":[%s,%s],"object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":%s}}`, name, ts, top.Metadata)
	}
	bw.write([]byte("]}\n"))
	bw.flush()
}
