package harness

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/stampede-sim/stampede/scenarios"
)

// progress shows where a mode is: a live line rewritten in place on a
// terminal, plain lines otherwise (on every step change and at most every
// 10 s).
type progress struct {
	w     io.Writer
	live  bool
	mode  scenarios.Mode
	steps int
	nodes int
	now   func() time.Time
	start time.Time

	mu        sync.Mutex
	step      string
	index     int
	conv      int
	total     int
	evRate    float64
	lastPlain time.Time
	dirty     bool
}

func newProgress(w io.Writer, live bool, mode scenarios.Mode, steps, nodes int, now func() time.Time) *progress {
	p := &progress{w: w, live: live, mode: mode, steps: steps, nodes: nodes, total: nodes, now: now, start: now(), index: -1}
	return p
}

func (p *progress) line() string {
	step := p.step
	if p.index >= 0 {
		step = fmt.Sprintf("step %d/%d %s", p.index+1, p.steps, p.step)
	}
	return fmt.Sprintf("[%s] %-28s agents converged %d/%d  elapsed %s  events/s %.0f",
		p.mode, step, p.conv, p.total, p.now().Sub(p.start).Truncate(time.Second), p.evRate)
}

func (p *progress) emit(force bool) {
	if p.live {
		fmt.Fprintf(p.w, "\r\033[K%s", p.line())
		return
	}
	if force || p.now().Sub(p.lastPlain) >= 10*time.Second {
		fmt.Fprintln(p.w, p.line())
		p.lastPlain = p.now()
	}
}

func (p *progress) set(step string, index int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := step != p.step || index != p.index
	p.step, p.index = step, index
	p.emit(changed)
}

func (p *progress) converged(n, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conv, p.total = n, total
	p.emit(false)
}

func (p *progress) events(agentRate, serverRate float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evRate = agentRate
	if p.evRate == 0 {
		p.evRate = serverRate
	}
	p.emit(false)
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.live {
		fmt.Fprintf(p.w, "\r\033[K%s\n", p.line())
	} else {
		fmt.Fprintln(p.w, p.line())
	}
}
