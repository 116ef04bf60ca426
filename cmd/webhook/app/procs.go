package app

import (
	"os"
	"runtime"
)

// ensureProcessors gives the audit a processor of its own: with one (GOMAXPROCS 1, as the
// runtime sets it on a node with one CPU or in a container pinned to one, as the kubelet's static
// CPU manager pins a Guaranteed Pod that requests one CPU; under a CPU limit below two it runs
// two itself), whichever goroutine runs holds it, so a
// scan judging objects keeps admission's reviews waiting and nothing reads the network
// meanwhile. With two, a thread is always free to take a review, and the scan's thread runs at
// the lowest priority (pkg/audit), so where the two share a CPU the kernel runs admission first.
// The scan's own CPU stays bounded by --audit-cpu. GOMAXPROCS set in the environment is
// obeyed. Once set here, the runtime no longer follows a change of the container's CPU limit
// made in place (a restart does). It returns the processors before and after.
func ensureProcessors(audit bool) (before, after int) {
	before = runtime.GOMAXPROCS(0)
	if !audit || before >= 2 || os.Getenv("GOMAXPROCS") != "" {
		return before, before
	}
	runtime.GOMAXPROCS(2)
	return before, 2
}
