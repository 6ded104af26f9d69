package calibrate

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// kind is one resource the workload exercises: two built-in types (one
// namespaced, one cluster-scoped) and the two cilium.io types agents write
// most (CiliumIdentity cluster-scoped, CiliumEndpoint namespaced), so that
// the costs cover typed and CRD (unstructured) storage in both scopes.
type kind struct {
	resource   string
	prefix     string // URL prefix: /api/v1 or /apis/cilium.io/v2
	namespaced bool
	// deletable is false for namespaces: without kube-controller-manager a
	// deleted namespace stays Terminating and is never removed.
	deletable bool
	// numericNames gives objects numeric names, as Cilium names identities.
	numericNames bool
	object       func(r *rand.Rand, name, ns string, pad string) map[string]any
}

var kinds = []kind{
	{resource: "pods", prefix: "/api/v1", namespaced: true, deletable: true, object: podObject},
	{resource: "namespaces", prefix: "/api/v1", object: namespaceObject},
	{resource: "ciliumidentities", prefix: "/apis/cilium.io/v2", deletable: true, numericNames: true, object: identityObject},
	{resource: "ciliumendpoints", prefix: "/apis/cilium.io/v2", namespaced: true, deletable: true, object: endpointObject},
}

func (k kind) collection(ns string) string {
	if k.namespaced {
		return k.prefix + "/namespaces/" + ns + "/" + k.resource
	}
	return k.prefix + "/" + k.resource
}

// padAnnotation is the annotation that gives an object its size.
const padAnnotation = "calibrate.stampede.io/pad"

// labelsFor are pod-like labels drawn from the workload's random source.
func labelsFor(r *rand.Rand, ns string) map[string]string {
	return map[string]string{
		"app":                         fmt.Sprintf("app-%d", r.IntN(50)),
		"tier":                        []string{"frontend", "backend", "cache"}[r.IntN(3)],
		"calibrate.stampede.io/owner": "calibrate",
		"io.kubernetes.pod.namespace": ns,
		"calibrate.stampede.io/rev":   "0",
	}
}

func meta(name, ns string, labels map[string]string, pad string) map[string]any {
	m := map[string]any{"name": name, "labels": labels}
	if ns != "" {
		m["namespace"] = ns
	}
	if pad != "" {
		m["annotations"] = map[string]string{padAnnotation: pad}
	}
	return m
}

func podObject(r *rand.Rand, name, ns, pad string) map[string]any {
	return map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": meta(name, ns, labelsFor(r, ns), pad),
		"spec": map[string]any{
			"containers": []any{map[string]any{
				"name": "app", "image": "registry.k8s.io/pause:3.10",
				"ports": []any{map[string]any{"containerPort": 8080, "protocol": "TCP"}},
			}},
			"serviceAccountName": "default",
		},
	}
}

func namespaceObject(r *rand.Rand, name, _, pad string) map[string]any {
	l := labelsFor(r, name)
	delete(l, "io.kubernetes.pod.namespace")
	return map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": meta(name, "", l, pad)}
}

func identityObject(r *rand.Rand, name, _, pad string) map[string]any {
	ns := fmt.Sprintf("ns-%d", r.IntN(5))
	l := labelsFor(r, ns)
	sec := map[string]string{}
	for k, v := range l {
		if !strings.HasPrefix(k, "calibrate.stampede.io/") {
			sec["k8s:"+k] = v
		}
	}
	return map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumIdentity",
		"metadata":        meta(name, "", l, pad),
		"security-labels": sec,
	}
}

func endpointObject(r *rand.Rand, name, ns, pad string) map[string]any {
	id := 100000 + r.IntN(50000)
	return map[string]any{
		"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
		"metadata": meta(name, ns, labelsFor(r, ns), pad),
		"status": map[string]any{
			"id":       r.IntN(4096),
			"identity": map[string]any{"id": id, "labels": []string{"k8s:app=app-" + strconv.Itoa(id%50), "k8s:io.kubernetes.pod.namespace=" + ns}},
			"networking": map[string]any{
				"addressing": []any{map[string]any{"ipv4": fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), 1+r.IntN(254))}},
				"node":       fmt.Sprintf("10.0.%d.%d", r.IntN(256), 1+r.IntN(254)),
			},
			"state": "ready",
		},
	}
}

// pad returns a deterministic string of n bytes, drawn from r so that it
// does not compress to nothing.
func pad(r *rand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

// bumpRevision sets the object's rev label to rev (an update that changes
// something, so that kube-apiserver writes it and sends a watch event).
func bumpRevision(obj map[string]any, rev int) error {
	md, ok := obj["metadata"].(map[string]any)
	if !ok {
		return fmt.Errorf("object has no metadata")
	}
	labels, ok := md["labels"].(map[string]any)
	if !ok {
		labels = map[string]any{}
		md["labels"] = labels
	}
	labels["calibrate.stampede.io/rev"] = strconv.Itoa(rev)
	return nil
}

// revisionPatch is a JSON merge patch that sets the rev label.
func revisionPatch(rev int) []byte {
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{"calibrate.stampede.io/rev": strconv.Itoa(rev)}}})
	return b
}
