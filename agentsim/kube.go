package agentsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// kubeClient is one agent's API client: its own http.Transport (and so its
// own TCP connection; client-go's transport cache would otherwise share one
// connection between all agents with equal TLS settings), its own
// client-side rate limiter, its own credentials, instrumented.
type kubeClient struct {
	rc        *rest.RESTClient
	transport *http.Transport
	m         *Metrics
}

// newKubeClient builds a client from base with the agent's token, QPS and
// burst.
func newKubeClient(base *rest.Config, token, node string, qps float32, burst int, m *Metrics) (*kubeClient, error) {
	tlsConf, err := rest.TLSConfigFor(base)
	if err != nil {
		return nil, fmt.Errorf("tls config: %w", err)
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ForceAttemptHTTP2:     tlsConf != nil,
		MaxIdleConnsPerHost:   25,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// HTTP/2 receive windows are Go's defaults, as client-go's and
		// so cilium-agent's are. A smaller window keeps a lagging
		// agent's backlog in the API server instead of its own buffers,
		// where the server cuts its watches off: CiliumIdentity watches
		// break and back off, agents see other agents' identities
		// late, and crd mode allocates far more duplicate identities
		// than a real cluster would (enough to overflow the policy
		// map). The cost is memory: a shard of many agents can hold
		// their unread watch data in its own buffers.
	}
	cfg := rest.CopyConfig(base)
	cfg.TLSClientConfig = rest.TLSClientConfig{}
	cfg.Transport = &instrumentedTransport{next: tr, m: m}
	cfg.Dial = nil
	if token != "" {
		cfg.BearerToken = token
		cfg.BearerTokenFile = ""
	}
	cfg.UserAgent = "stampede-agent/" + node
	cfg.RateLimiter = &measuredLimiter{RateLimiter: flowcontrol.NewTokenBucketRateLimiter(qps, burst), m: m}
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("http client: %w", err)
	}
	rc, err := rest.UnversionedRESTClientForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("rest client: %w", err)
	}
	return &kubeClient{rc: rc, transport: tr, m: m}, nil
}

// close drops the client's idle connections.
func (c *kubeClient) close() { c.transport.CloseIdleConnections() }

// apiError is a non-2xx answer of the API server.
type apiError struct {
	Code    int
	Reason  string
	Message string
}

func (e *apiError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("%d %s: %s", e.Code, e.Reason, e.Message)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Reason)
}

// httpCode returns the HTTP status of an apiError, or 0.
func httpCode(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return 0
}

// do sends a request with a JSON body (nil for none) and returns the
// response body of a 2xx answer, or an *apiError.
func (c *kubeClient) do(ctx context.Context, method, path, contentType string, body []byte, params map[string]string) ([]byte, error) {
	req := c.rc.Verb(method).AbsPath(path)
	for k, v := range params {
		req = req.Param(k, v)
	}
	if body != nil {
		req = req.Body(body).SetHeader("Content-Type", contentType)
	}
	res := req.Do(ctx)
	var code int
	res.StatusCode(&code)
	raw, err := res.Raw()
	if code >= 200 && code < 300 {
		return raw, nil
	}
	if code == 0 {
		if err == nil {
			err = errors.New("no response")
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	ae := &apiError{Code: code}
	var st statusObj
	if json.Unmarshal(raw, &st) == nil && st.Code != 0 {
		ae.Reason, ae.Message = st.Reason, st.Message
	} else {
		ae.Reason = http.StatusText(code)
	}
	return nil, fmt.Errorf("%s %s: %w", method, path, ae)
}

// stream opens a watch.
func (c *kubeClient) stream(ctx context.Context, path string, params map[string]string) (io.ReadCloser, error) {
	req := c.rc.Get().AbsPath(path)
	for k, v := range params {
		req = req.Param(k, v)
	}
	rc, err := req.Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, streamError(err))
	}
	return rc, nil
}

// streamError maps client-go's error of a failed Stream to an *apiError
// when it carries a status.
func streamError(err error) error {
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		s := st.Status()
		if s.Code != 0 {
			return &apiError{Code: int(s.Code), Reason: string(s.Reason), Message: s.Message}
		}
	}
	return err
}

// measuredLimiter records how long the client waited for its rate limiter.
type measuredLimiter struct {
	flowcontrol.RateLimiter
	m *Metrics
}

func (l *measuredLimiter) Wait(ctx context.Context) error {
	start := time.Now()
	err := l.RateLimiter.Wait(ctx)
	if d := time.Since(start); d > time.Millisecond {
		l.m.throttleWait.Observe(d.Seconds())
	}
	return err
}

// instrumentedTransport counts requests by verb, resource and code, and
// bytes received by resource.
type instrumentedTransport struct {
	next http.RoundTripper
	m    *Metrics
}

func (t *instrumentedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	verb, resource := classify(r)
	resp, err := t.next.RoundTrip(r)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests {
			t.m.tooMany.Inc()
		}
		resp.Body = &countingBody{ReadCloser: resp.Body, c: t.m.bytes.WithLabelValues(resource)}
	}
	t.m.requests.WithLabelValues(verb, resource, code).Inc()
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	c interface{ Add(float64) }
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.c.Add(float64(n))
	}
	return n, err
}

// classify names a request's Kubernetes verb and resource from its URL.
func classify(r *http.Request) (verb, resource string) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	// /api/v1/[namespaces/NS/]RES[/NAME[/SUB]]
	// /apis/G/V/[namespaces/NS/]RES[/NAME[/SUB]]
	var rest []string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		rest = parts[3:]
	default:
		return strings.ToLower(r.Method), "other"
	}
	if len(rest) >= 2 && rest[0] == "namespaces" && len(rest) != 2 {
		rest = rest[2:]
	}
	named := len(rest) >= 2
	if len(rest) > 0 {
		resource = rest[0]
	}
	if len(rest) >= 3 {
		resource += "/" + rest[2]
	}
	switch r.Method {
	case http.MethodGet:
		switch {
		case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		verb = "delete"
	default:
		verb = strings.ToLower(r.Method)
	}
	return verb, resource
}
