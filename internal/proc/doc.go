// Package proc supervises the child processes of a run and reads their
// resource usage from /proc.
//
// Start runs a child (typically `stampede <subcommand>`) in its own process
// group with stdout and stderr streamed to a log file. WaitReady waits for
// the child's internal/ready announcement. Stop sends SIGTERM to the whole
// group, then SIGKILL after a grace period, waits for the child and checks
// that no member of the group is left. When the context given to Start ends,
// the group is stopped the same way; the caller still calls Stop (or Wait)
// to learn the outcome. The Process owns its log file and closes it once the
// child has exited.
//
// ReadStat and TreeUsage read utime+stime and RSS of a process (and of its
// descendants) from /proc/PID/stat; they are what the harness samples every
// second.
package proc
