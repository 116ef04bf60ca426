//go:build linux

package audit

import "golang.org/x/sys/unix"

// lowerThreadPriority gives the calling OS thread the lowest priority, nice 19. On Linux,
// setpriority(2) given a thread's id changes that thread alone, not the process.
func lowerThreadPriority() error {
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19)
}

// onMainThread says whether the calling goroutine runs on the process's first thread.
func onMainThread() bool { return unix.Gettid() == unix.Getpid() }
