package server

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestTenantGate: one slot per namespace, three waiting; past that a review is turned away at
// once; a waiting review gives up at its deadline; a slot stays closed for seven times the
// evaluation it served; other namespaces are not held up.
func TestTenantGate(t *testing.T) {
	g := NewTenantGate(1)
	release, err := g.acquire(t.Context(), "noisy")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	var waiting sync.WaitGroup
	for range 3 {
		waiting.Go(func() {
			if _, err := g.acquire(ctx, "noisy"); err == nil {
				t.Error("a waiting review got the busy slot")
			}
		})
	}
	eventuallyTrue(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.gates["noisy"].refs == 4 })
	if _, err := g.acquire(t.Context(), "noisy"); !errors.Is(err, errGateFull) {
		t.Errorf("a fifth review: %v, want it turned away at once", err)
	}
	if r, err := g.acquire(t.Context(), "quiet"); err != nil {
		t.Errorf("another namespace waited: %v", err)
	} else {
		r()
	}
	waiting.Wait()
	time.Sleep(20 * time.Millisecond) // the evaluation the slot served
	release()
	short, cancel2 := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel2()
	if _, err := g.acquire(short, "noisy"); err == nil {
		t.Error("the slot opened without its cooldown")
	}
	if _, err := g.acquire(t.Context(), "noisy"); err != nil { // within 7 x 70 ms
		t.Errorf("the slot did not open after its cooldown: %v", err)
	}
	if NewTenantGate(0) != nil {
		t.Error("zero slots bound something")
	}
}

func eventuallyTrue(t *testing.T, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !f(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not within 5s")
		}
	}
}
