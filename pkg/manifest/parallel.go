package manifest

import (
	"runtime"
	"sync"
)

// parallel runs f on every index of n items with one worker per CPU, each worker with its own
// state from newState (a decoder: they are not safe for concurrent use), and returns the results
// in index order, so that the output does not depend on the scheduling.
func parallel[S, R any](n int, newState func() S, f func(s S, i int) R) []R {
	out := make([]R, n)
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		s := newState()
		for i := range n {
			out[i] = f(s, i)
		}
		return out
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			s := newState()
			for i := range next {
				out[i] = f(s, i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}
