package proc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/stampede-sim/stampede/internal/ready"
)

// DefaultGrace is how long Stop waits after SIGTERM before SIGKILL.
const DefaultGrace = 10 * time.Second

// Spec describes a child process.
type Spec struct {
	// Name names the child in errors and logs ("fakeapi", "agents-0").
	Name string
	// Path is the executable; Args are its arguments (without argv[0]).
	Path string
	Args []string
	// Env is added to the parent's environment.
	Env []string
	// LogFile receives the child's stdout and stderr (required).
	LogFile string
	// ReadyFile is the file the child announces itself in (its
	// --ready-file); WaitReady needs it.
	ReadyFile string
	// Grace is the time between SIGTERM and SIGKILL (DefaultGrace if zero).
	Grace time.Duration
}

// Process is a running (or exited) child.
type Process struct {
	spec Spec
	cmd  *exec.Cmd
	pid  int
	log  *os.File

	done    chan struct{} // closed once the child is reaped
	waitErr error         // valid after done

	stopOnce sync.Once
	stopErr  error
	watch    chan struct{} // closed when Stop begins: ends the context watcher
	watchWG  sync.WaitGroup
}

// ErrNotRunning is returned by Signal after the child has exited.
var ErrNotRunning = errors.New("process not running")

// Start starts the child. When ctx ends, the child's group is terminated.
func Start(ctx context.Context, spec Spec) (*Process, error) {
	if spec.Name == "" {
		return nil, errors.New("start process: spec.Name is empty")
	}
	if spec.Path == "" {
		return nil, fmt.Errorf("start %s: spec.Path is empty", spec.Name)
	}
	if spec.LogFile == "" {
		return nil, fmt.Errorf("start %s: spec.LogFile is empty", spec.Name)
	}
	if spec.Grace <= 0 {
		spec.Grace = DefaultGrace
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	logf, err := os.OpenFile(spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", spec.Name, err)
	}
	if spec.ReadyFile != "" {
		if err := os.Remove(spec.ReadyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			logf.Close()
			return nil, fmt.Errorf("start %s: remove stale ready file: %w", spec.Name, err)
		}
	}
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Stdin = nil
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group so that the whole subtree is signalled at once;
	// Pdeathsig so that a crashed harness does not leave children behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Process{
		spec:  spec,
		cmd:   cmd,
		pid:   cmd.Process.Pid,
		log:   logf,
		done:  make(chan struct{}),
		watch: make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		p.log.Close()
		close(p.done)
	}()
	p.watchWG.Add(1)
	go func() {
		defer p.watchWG.Done()
		select {
		case <-ctx.Done():
			p.terminate()
		case <-p.watch:
		case <-p.done:
		}
	}()
	return p, nil
}

// Name is the spec's name.
func (p *Process) Name() string { return p.spec.Name }

// PID is the child's process ID (also its process group ID).
func (p *Process) PID() int { return p.pid }

// LogFile is where the child's output goes.
func (p *Process) LogFile() string { return p.spec.LogFile }

// Done is closed once the child has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the child's exit error (nil for status 0); valid after Done.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.waitErr
	default:
		return nil
	}
}

// Exited reports whether the child has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitReady waits for the child's ready announcement. It fails if the child
// exits first, naming its log file.
func (p *Process) WaitReady(ctx context.Context) (ready.Announcement, error) {
	if p.spec.ReadyFile == "" {
		return ready.Announcement{}, fmt.Errorf("%s: no ready file configured", p.spec.Name)
	}
	a, err := ready.Wait(ctx, p.spec.ReadyFile, p.done)
	if err != nil {
		if p.Exited() {
			return a, fmt.Errorf("%s exited before it was ready (%v; see %s): %w", p.spec.Name, p.waitErr, p.spec.LogFile, err)
		}
		return a, fmt.Errorf("%s: %w", p.spec.Name, err)
	}
	return a, nil
}

// Signal sends sig to the child's whole process group.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return ErrNotRunning
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s: %w", p.spec.Name, err)
	}
	return nil
}

// terminate sends SIGTERM to the group, waits up to the grace period for the
// child to exit, then SIGKILLs the group.
func (p *Process) terminate() {
	if p.Exited() {
		// The leader is reaped; its ID stays reserved only while group
		// members remain, so signal the group only if it has any.
		if len(GroupMembers(p.pid)) > 0 {
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		}
		return
	}
	_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	t := time.NewTimer(p.spec.Grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	}
	// Also kill what the child left in its group.
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.done
}

// Stop terminates the child's group (SIGTERM, then SIGKILL after the grace
// period), waits for it and verifies that no process of the group is left.
// It returns an error only if something is left running; how the child
// exited is in Err. Stop is idempotent.
func (p *Process) Stop(ctx context.Context) error {
	p.stopOnce.Do(func() {
		close(p.watch)
		p.watchWG.Wait()
		p.terminate()
		p.stopErr = p.verifyGone(ctx)
	})
	return p.stopErr
}

// verifyGone polls until no process is left in the child's group. Members
// killed by SIGKILL are reaped by init shortly after.
func (p *Process) verifyGone(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		left := GroupMembers(p.pid)
		if len(left) == 0 {
			return nil
		}
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		select {
		case <-t.C:
		case <-deadline.C:
			return fmt.Errorf("%s: processes %v of group %d still running after SIGKILL", p.spec.Name, left, p.pid)
		case <-ctx.Done():
			return fmt.Errorf("%s: processes %v of group %d still running: %w", p.spec.Name, left, p.pid, ctx.Err())
		}
	}
}

// Tail returns up to n bytes of the end of the child's log, for error
// messages.
func (p *Process) Tail(n int64) string {
	f, err := os.Open(p.spec.LogFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := st.Size() - n
	if off < 0 {
		off = 0
	}
	b, _ := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	return string(b)
}
