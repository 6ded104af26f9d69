package calibrate

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sync"
)

// progress is calibrate's progress line: rewritten in place on a terminal,
// one line per update otherwise.
type progress struct {
	mu   sync.Mutex
	w    io.Writer
	live bool
	any  bool
}

func newProgress(w io.Writer, live bool) *progress { return &progress{w: w, live: live} }

func (p *progress) set(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := "calibrate: " + fmt.Sprintf(format, args...)
	if p.live {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(p.w, line)
	}
	p.any = true
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live && p.any {
		fmt.Fprintln(p.w)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
