package fakeapi

import (
	"bytes"
	"fmt"
	"net/http"

	jsonpatch "github.com/evanphx/json-patch/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Content types of PATCH bodies.
const (
	jsonPatchType      = "application/json-patch+json"
	mergePatchType     = "application/merge-patch+json"
	strategicPatchType = "application/strategic-merge-patch+json"
	maxJSONPatchOps    = 10000
)

// patcher applies one PATCH body to stored objects.
type patcher struct {
	res       *resource
	kind      string
	name      string // the patched object, for error messages
	body      []byte
	jsonPatch jsonpatch.Patch
	opts      *jsonpatch.ApplyOptions
}

// newPatcher checks the patch type and body before the object is looked
// at, so that a malformed patch is a 400 (or 415) whatever the object.
func newPatcher(res *resource, contentType string, body []byte) (*patcher, error) {
	p := &patcher{res: res, kind: contentType, body: body}
	switch contentType {
	case jsonPatchType:
		jp, err := jsonpatch.DecodePatch(body)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid JSON patch: %v", err))
		}
		if len(jp) > maxJSONPatchOps {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("The allowed maximum operations in a JSON patch is %d, got %d", maxJSONPatchOps, len(jp)))
		}
		for i, op := range jp {
			switch op.Kind() {
			case "add", "remove", "replace", "move", "copy", "test":
			default:
				return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid JSON patch: operation %d: unknown op %q", i, op.Kind()))
			}
			if _, err := op.Path(); err != nil {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid JSON patch: operation %d: %v", i, err))
			}
		}
		p.jsonPatch = jp
		p.opts = jsonpatch.NewApplyOptions()
		p.opts.AccumulatedCopySizeLimit = DefaultMaxBodyBytes
	case mergePatchType, strategicPatchType:
		if contentType == strategicPatchType && res.smp == nil {
			return nil, &apierrors.StatusError{ErrStatus: metav1.Status{
				Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType,
				Message: fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: %s, %s, application/apply-patch+yaml (strategic merge patch is not supported for custom resource %s)", jsonPatchType, mergePatchType, res.groupResource()),
			}}
		}
		if d, err := decodeDocument(body); err != nil || d == nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid %s body: must be a JSON object: %v", contentType, err))
		}
	default:
		return nil, &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType,
			Message: fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: %s, %s, %s (got %q; server-side apply is not supported by fakeapi)", jsonPatchType, mergePatchType, strategicPatchType, contentType),
		}}
	}
	return p, nil
}

// apply patches cur (a stored object) and returns the result.
func (p *patcher) apply(cur []byte) (out []byte, err error) {
	defer func() {
		// A patch library that panics on hostile input must not take
		// the request (or the stored object) with it.
		if r := recover(); r != nil {
			out, err = nil, p.invalid(fmt.Errorf("patch: %v", r))
		}
	}()
	switch p.kind {
	case jsonPatchType:
		out, err = p.jsonPatch.ApplyWithOptions(cur, p.opts)
	case mergePatchType:
		out, err = jsonpatch.MergePatch(cur, p.body)
	case strategicPatchType:
		out, err = strategicpatch.StrategicMergePatch(cur, p.body, p.res.smp())
	}
	if err != nil {
		return nil, p.invalid(err)
	}
	if int64(len(out)) > 2*DefaultMaxBodyBytes {
		return nil, apierrors.NewRequestEntityTooLargeError("patched object is too large")
	}
	if !bytes.HasPrefix(bytes.TrimSpace(out), []byte("{")) {
		return nil, p.invalid(fmt.Errorf("patched object is not a JSON object"))
	}
	return out, nil
}

func (p *patcher) invalid(err error) error {
	return apierrors.NewInvalid(p.res.groupKind(), p.name, field.ErrorList{field.Invalid(field.NewPath("patch"), truncate(p.body, 256), err.Error())})
}
