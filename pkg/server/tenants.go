package server

import (
	"context"
	"errors"
	"sync"
	"time"
)

// gatedDuty is the inverse of the share of a core one slot of the TenantGate may keep busy: after
// an evaluation of d, the slot stays closed for 7d more, so a tenant that keeps it busy uses an
// eighth of a core per slot, not a whole one.
const gatedDuty = 8

// maxCooldown bounds how long a slot stays closed after one evaluation.
const maxCooldown = 10 * time.Second

// GatedCost is the estimated cost of a namespace's Policies from which its reviews go through the
// TenantGate: 0.1 to 0.3 s of CPU on the reference object (see docs/security.md). Cheaper
// Policies never wait.
const GatedCost = 1_000_000

// TenantGate bounds how many reviews of one namespace evaluate its costly Policies at once, and
// how much of a core each slot keeps busy (gatedDuty), so that a tenant whose Policies are costly,
// sending many objects, takes at most an eighth of a core per slot. A few more reviews may wait
// for a slot until their deadline; past that queue a review is turned away at once, so that the
// waiting reviews of one namespace cannot hold the memory budget every review shares. Namespaces
// without costly Policies never go through it. Memory is bounded by the reviews in flight: a
// namespace's entry lives while one of its reviews does.
type TenantGate struct {
	slots, queue int
	mu           sync.Mutex
	gates        map[string]*nsGate
}

type nsGate struct {
	sem  chan struct{}
	refs int // holding or waiting for a slot
}

// NewTenantGate returns a gate of slots reviews per namespace, with as many again times three
// waiting; nil (slots ≤ 0) bounds nothing.
func NewTenantGate(slots int) *TenantGate {
	if slots <= 0 {
		return nil
	}
	return &TenantGate{slots: slots, queue: 3 * slots, gates: map[string]*nsGate{}}
}

// errGateFull is acquire's answer when the namespace's queue is full.
var errGateFull = errors.New("the namespace's queue is full")

// acquire waits for one of the namespace's slots until ctx ends, and returns its release.
func (g *TenantGate) acquire(ctx context.Context, ns string) (func(), error) {
	if g == nil {
		return func() {}, nil
	}
	g.mu.Lock()
	e := g.gates[ns]
	if e == nil {
		e = &nsGate{sem: make(chan struct{}, g.slots)}
		g.gates[ns] = e
	}
	if e.refs >= g.slots+g.queue {
		g.mu.Unlock()
		return nil, errGateFull
	}
	e.refs++
	g.mu.Unlock()
	done := func() {
		g.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(g.gates, ns)
		}
		g.mu.Unlock()
	}
	select {
	case e.sem <- struct{}{}:
		start := time.Now()
		return func() {
			free := func() { <-e.sem; done() }
			if cool := min(time.Since(start)*(gatedDuty-1), maxCooldown); cool > time.Millisecond {
				time.AfterFunc(cool, free)
			} else {
				free()
			}
		}, nil
	case <-ctx.Done():
		done()
		return nil, context.Cause(ctx)
	}
}
