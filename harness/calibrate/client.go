package calibrate

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// client is a minimal JSON client of the API server that counts the bytes
// of every request and response body: the capacity model charges by them.
type client struct {
	base  string
	token string
	http  *http.Client
	// header is set on every request.
	header http.Header
}

// newClient returns a client with its own transport, speaking HTTP/2 over
// TLS as client-go and the simulated agents do (agentsim/kube.go): the
// server's cost of a request and of a watch event depends on the
// protocol, and kube-apiserver's HTTP/2 framing costs more per event than
// HTTP/1.1's. Requests of one client share its connection as an agent's
// do; conns bounds the connections if the server refuses HTTP/2.
func newClient(base, caFile, token string, conns int) (*client, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		ca, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("read CA %s: no certificate", caFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := &http.Transport{
		TLSClientConfig:     tlsCfg,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     time.Minute,
		ForceAttemptHTTP2:   true,
	}
	return &client{base: strings.TrimSuffix(base, "/"), token: token, http: &http.Client{Transport: tr}}, nil
}

func (c *client) close() { c.http.CloseIdleConnections() }

// apiError is a non-2xx answer.
type apiError struct {
	method, path string
	status       int
	body         string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %.300s", e.method, e.path, e.status, strings.TrimSpace(e.body))
}

// do sends one request and returns the response body and the bytes of the
// request and response bodies together.
func (c *client) do(ctx context.Context, method, path, contentType string, body []byte) ([]byte, int64, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	for k, v := range c.header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return out, 0, &apiError{method: method, path: path, status: resp.StatusCode, body: string(out)}
	}
	return out, int64(len(body) + len(out)), nil
}

// watch opens a watch stream; the caller reads and closes the body.
func (c *client) watch(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, &apiError{method: "WATCH", path: path, status: resp.StatusCode, body: string(b)}
	}
	return resp.Body, nil
}
