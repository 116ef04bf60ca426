//go:build !linux

package audit

import (
	"errors"
	"fmt"
	"runtime"
)

// lowerThreadPriority is Linux's alone: elsewhere the scan's thread keeps its priority.
func lowerThreadPriority() error {
	return fmt.Errorf("a thread's priority on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// onMainThread: elsewhere the scan's thread is never lowered, whichever it is.
func onMainThread() bool { return false }
