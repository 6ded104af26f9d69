package fakeapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// ciliumToken is how the harness's agents authenticate: Cilium's service
// account in kube-system with the service-account groups.
var ciliumToken = Token{Token: "cilium-tok", User: "system:serviceaccount:kube-system:cilium", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"}}

// holdSeat starts a create as token's user whose body never ends, so that
// it holds an APF seat until release is called.
func holdSeat(t *testing.T, s *Server, token string) (release func() int) {
	t.Helper()
	pr, pw := io.Pipe()
	tr, err := rest.TransportFor(&rest.Config{TLSClientConfig: rest.TLSClientConfig{CAData: s.CAData()}})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), "POST", s.URL()+"/api/v1/namespaces/default/configmaps", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	done := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			done <- 0
			return
		}
		_ = resp.Body.Close()
		done <- resp.StatusCode
	}()
	if _, err := pw.Write([]byte(`{"apiVersion":"v1","kind":"ConfigMap",`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return metricValue(t, s, "apiserver_current_inflight_requests", `request_kind="mutating"`) == 1
	})
	return func() int {
		_, _ = pw.Write([]byte(`"metadata":{"name":"held"}}`))
		_ = pw.Close()
		return <-done
	}
}

// TestAPFClassifiesAsKubeAPIServer checks that requests land in the
// bootstrap FlowSchema and priority level kube-apiserver puts them in:
// Cilium's service account in kube-system in kube-system-service-accounts
// (workload-high), the admin (system:masters) in exempt, any other
// authenticated user in global-default.
func TestAPFClassifiesAsKubeAPIServer(t *testing.T) {
	other := Token{Token: "other-tok", User: "someone"}
	s := start(t, Config{Tokens: []Token{ciliumToken, other}})
	for _, tc := range []struct {
		token, flowSchema, priorityLevel string
	}{
		{ciliumToken.Token, "kube-system-service-accounts", "workload-high"},
		{s.AdminToken(), "exempt", "exempt"},
		{other.Token, "global-default", "global-default"},
	} {
		match := `flow_schema="` + tc.flowSchema + `",priority_level="` + tc.priorityLevel + `"`
		before := metricValue(t, s, "apiserver_flowcontrol_dispatched_requests_total", match)
		if code, _, body := rawRequestAs(t, s, tc.token, "GET", "/api/v1/namespaces/default/configmaps", "", nil); code != 200 {
			t.Fatalf("list as %s: %d %s", tc.flowSchema, code, body)
		}
		if got := metricValue(t, s, "apiserver_flowcontrol_dispatched_requests_total", match) - before; got != 1 {
			t.Errorf("dispatched{%s} grew by %v, want 1", match, got)
		}
	}
}

// TestAPFQueuesThenRejects checks kube-apiserver's answer to overload:
// with the priority level's only seat taken a request waits in a queue
// (no 429), and only when every queue of its flow's hand is full (6
// queues of 50 in global-default) is a request rejected, with 429,
// Retry-After and kube-apiserver's plain-text body. Once the seat frees,
// the queued requests are served.
func TestAPFQueuesThenRejects(t *testing.T) {
	u := Token{Token: "u-tok", User: "someone"}
	// A server concurrency limit of 1: every priority level gets 1 seat.
	s := start(t, Config{Tokens: []Token{u}, MaxRequestsInflight: 1, MaxMutatingRequestsInflight: -1})
	release := holdSeat(t, s, u.Token)
	const queued = 6 * 50
	inQueue := `flow_schema="global-default",priority_level="global-default"`
	before := metricValue(t, s, "apiserver_flowcontrol_current_inqueue_requests", inQueue)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	codes := make(chan int, queued)
	for range queued {
		wg.Go(func() {
			code, _, _ := rawRequestAs(t, s, u.Token, "GET", "/api/v1/namespaces/default/configmaps", "", nil)
			codes <- code
		})
	}
	waitFor(t, func() bool {
		return metricValue(t, s, "apiserver_flowcontrol_current_inqueue_requests", inQueue)-before == queued || ctx.Err() != nil
	})
	select {
	case c := <-codes:
		t.Fatalf("a queued request was answered %d while the seat was held", c)
	default:
	}
	rejected := metricValue(t, s, "apiserver_flowcontrol_rejected_requests_total", `flow_schema="global-default",priority_level="global-default",reason="queue-full"`)
	code, hdr, body := rawRequestAs(t, s, u.Token, "GET", "/api/v1/namespaces/default/configmaps", "", nil)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !bytes.Contains(body, []byte("Too many requests, please try again later.")) {
		t.Errorf("request beyond the queues: %d Retry-After %q %q, want 429", code, hdr.Get("Retry-After"), body)
	}
	if got := metricValue(t, s, "apiserver_flowcontrol_rejected_requests_total", `flow_schema="global-default",priority_level="global-default",reason="queue-full"`) - rejected; got != 1 {
		t.Errorf("rejected{queue-full} grew by %v, want 1", got)
	}
	// The admin is exempt: served at once although the level is full.
	if code, _, _ := rawRequest(t, s, "GET", "/api/v1/namespaces/default/configmaps", "", nil); code != 200 {
		t.Errorf("exempt request while global-default is full: %d", code)
	}
	if c := release(); c != 201 {
		t.Errorf("held write: %d", c)
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("queued request: %d, want 200", c)
			break
		}
	}
	if n := metricValue(t, s, "apiserver_flowcontrol_request_wait_duration_seconds", `flow_schema="global-default",priority_level="global-default"`); n < queued {
		t.Errorf("request_wait_duration_seconds has %v samples, want >= %d", n, queued)
	}
}
