package metrics

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// counters finds the counter of a vector's series once per series. WithLabelValues checks each
// label value and hashes them all on every call, and a review called it for each of its results
// (28 of them cost about 2.5 µs). Lookups read an immutable map without a lock; a series seen
// for the first time is added to a copy, under a lock: series come once each, and are few. The
// map holds the series the vector holds, so the vector's bound on its labels (the package's
// doc) bounds it too.
type counters struct {
	vec *prometheus.CounterVec
	m   atomic.Pointer[map[[4]string]prometheus.Counter]
	mu  sync.Mutex // serializes additions
}

// get returns the counter of the series whose four label values are k.
func (c *counters) get(k [4]string) prometheus.Counter {
	if m := c.m.Load(); m != nil {
		if ctr, ok := (*m)[k]; ok {
			return ctr
		}
	}
	return c.add(k)
}

func (c *counters) add(k [4]string) prometheus.Counter {
	c.mu.Lock()
	defer c.mu.Unlock()
	var next map[[4]string]prometheus.Counter
	if old := c.m.Load(); old != nil {
		if ctr, ok := (*old)[k]; ok {
			return ctr
		}
		next = make(map[[4]string]prometheus.Counter, len(*old)+1)
		for key, ctr := range *old {
			next[key] = ctr
		}
	} else {
		next = make(map[[4]string]prometheus.Counter, 1)
	}
	for i := range k {
		k[i] = strings.Clone(k[i]) // the key outlives the review whose strings it may be made of
	}
	ctr := c.vec.WithLabelValues(k[:]...)
	next[k] = ctr
	c.m.Store(&next)
	return ctr
}
