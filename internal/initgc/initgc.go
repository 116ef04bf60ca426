// Package initgc holds the garbage collector off while a program's packages initialize, until
// the program turns it back on (Restore) as its first step: kubectl-portcullis does, in app.Main.
//
// Initializing the packages the binaries link (client-go's and the API server's schemes, CEL's
// library, cosign's verification stack) allocates about 10 MB, nearly all of it kept: with the
// collector on, the heap's first goals (4 MB and up) make it run four or five times before
// main, each cycle marking what will live anyway. For the CLI, which starts once per run in CI,
// that was about a fifth of its start. The package imports nothing but runtime/debug, so it is
// initialized before the packages that allocate (the runtime initializes a package as soon as
// its imports are, taking the lowest import path first).
package initgc

import "runtime/debug"

// percent is the GOGC the program started with: the environment's, or 100.
var percent = debug.SetGCPercent(-1)

// Restore turns the collector back on, with the GOGC the program started with. A GOMEMLIMIT set
// in the environment applied all along.
func Restore() { debug.SetGCPercent(percent) }
