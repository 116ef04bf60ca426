package audit

import (
	"errors"
	"runtime"
)

// onScanThread runs f on an OS thread of its own, at the lowest priority (nice 19), and returns
// what f returns. Where that thread shares a CPU with admission's, the kernel runs admission's
// first: the scan takes the CPU admission leaves. The thread ends with f, so no other goroutine
// ever runs at its priority (and threads the runtime starts meanwhile are cloned from a thread of
// normal priority, never from a locked one). f is told why the priority was not lowered, or nil.
//
// With one processor (GOMAXPROCS 1) the thread keeps its priority: it would hold the only
// processor, and admission would wait for it behind whatever else the kernel runs first. The
// server gives the audit a second processor (cmd/webhook's ensureProcessors).
func onScanThread(f func(notLowered error) error) error {
	done := make(chan error, 1)
	run := func() { // on a locked thread that is not the process's first
		var why error
		if runtime.GOMAXPROCS(0) < 2 {
			why = errors.New("one processor (GOMAXPROCS 1): the scan's thread would hold it")
		} else {
			why = lowerThreadPriority()
		}
		done <- f(why)
	}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		if !onMainThread() {
			run()
			return
		}
		// The process's first thread never exits (the runtime parks it for good when its
		// goroutine ends locked), so it must keep its priority: another thread, found while
		// this one is held, runs the scan, and this one goes back to the runtime as it was.
		held := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(held)
			run()
		}()
		<-held
		runtime.UnlockOSThread()
	}()
	return <-done
}
