// Package initgc holds the garbage collector off while a program's packages initialize, until
// the program turns it back on (Restore) as its first step: kubectl-portcullis does, in app.Main.
//
// Initializing the packages the binaries link (client-go's and the API server's schemes, CEL's
// library, cosign's verification stack) allocates about 10 MB, nearly all of it kept: with the
// collector on, the heap's first goals (4 MB and up) made it run three to five times before
// main, each cycle marking what lives anyway. For the CLI, which starts once per run in CI, that
// was a sixth of the CPU its start takes (101 → 84 ms, `perf stat -r 15 kubectl-portcullis
// version`) and 8% of its wall time (90 → 82 ms). The package imports nothing but runtime/debug,
// so the runtime initializes it early (packages in import path order, as soon as their imports
// are): in kubectl-portcullis, before the first collection would have run.
package initgc

import "runtime/debug"

// percent is the GOGC the program started with: the environment's, or 100.
var percent = debug.SetGCPercent(-1)

// Restore turns the collector back on, with the GOGC the program started with. A GOMEMLIMIT set
// in the environment applied all along.
func Restore() { debug.SetGCPercent(percent) }
