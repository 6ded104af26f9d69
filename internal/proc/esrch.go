package proc

import "syscall"

// errESRCH is what reading /proc/PID of a vanishing process may return.
func errESRCH() error { return syscall.ESRCH }
