// Package mutate holds the mutators: rule types that change an object rather than judge it.
// Each computes JSON patches against the object as admitted, touches nothing it does not add,
// and is idempotent: applied to its own output it changes nothing.
package mutate
