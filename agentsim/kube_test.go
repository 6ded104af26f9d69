package agentsim

import (
	"bufio"
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
)

// An agent's watch may hold what Go's (and client-go's) default HTTP/2
// stream window admits, 4 MiB, before the server stalls: a smaller window
// moves a lagging agent's backlog into the API server, which cuts such
// watches off, and changed what the relabel measures.
func TestWatchWindowIsClientGos(t *testing.T) {
	var written atomic.Int64
	stalled := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		chunk := make([]byte, 16<<10)
		for written.Load() < 8<<20 {
			// A write the client's window does not admit blocks until
			// the deadline.
			_ = rc.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := w.Write(chunk); err != nil {
				break
			}
			if err := rc.Flush(); err != nil {
				break
			}
			written.Add(int64(len(chunk)))
		}
		close(stalled)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	base := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
	c, err := newKubeClient(base, "t", "node-0", 100, 100, newMetrics(prometheus.NewRegistry(), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body, err := c.stream(ctx, "/api/v1/pods", map[string]string{"watch": "true"})
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	select {
	case <-stalled:
	case <-ctx.Done():
		t.Fatal("the server never stalled on an unread watch")
	}
	if got := written.Load(); got < 3<<20 {
		t.Errorf("the server wrote %d bytes to an unread watch before it stalled, want Go's default window (4 MiB)", got)
	}
}

func TestFrameReader(t *testing.T) {
	long := `{"type":"MODIFIED","object":{"metadata":{"name":"` + strings.Repeat("x", 10000) + `"}}}`
	in := "\n" + `{"type":"ADDED","object":{}}` + "\n\n" + long + "\n" + `{"type":"DELETED","object":{}}`
	fr := frameReader{r: bufio.NewReaderSize(strings.NewReader(in), 16)}
	var got []string
	for {
		line, err := fr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.TrimSpace(string(line)))
	}
	want := []string{`{"type":"ADDED","object":{}}`, long, `{"type":"DELETED","object":{}}`}
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("frame %d: got %.60q, want %.60q", i, got[i], want[i])
		}
	}
}
