package server

import (
	"context"
	"fmt"

	"golang.org/x/sync/semaphore"

	"github.com/portcullis-dev/portcullis/internal/jsonscan"
)

// Budget bounds the memory that the reviews in flight may hold. Each review reserves an estimate
// of what reading, decoding and evaluating it costs before it does any of that: first what its
// body needs (from Content-Length), then, once a scan of the body has told its shape, what
// decoding it needs. A review that cannot reserve its share before its deadline is turned away
// with 429, and the webhook configuration's failurePolicy decides. A review whose estimate alone
// exceeds MaxPerReview is refused whatever the load.
type Budget struct {
	sem   *semaphore.Weighted
	total int64
	// MaxPerReview is the largest estimate one review may have.
	MaxPerReview int64
}

// NewBudget returns a budget of total bytes, of which one review may take at most half.
func NewBudget(total int64) *Budget {
	return &Budget{sem: semaphore.NewWeighted(total), total: total, MaxPerReview: total / 2}
}

// reservation is what one review holds of the budget.
type reservation struct {
	b    *Budget
	held int64
}

// reserve waits for n bytes of the budget, until ctx ends. A nil budget reserves nothing.
func (b *Budget) reserve(ctx context.Context, n int64) (*reservation, error) {
	r := &reservation{b: b}
	if b == nil {
		return r, nil
	}
	if err := b.sem.Acquire(ctx, min(n, b.total)); err != nil {
		return nil, err
	}
	r.held = min(n, b.total)
	return r, nil
}

// grow raises the reservation to n bytes. It never waits while holding part of the budget: when
// the extra is not free at once it gives back what it holds and waits for all n, so that two
// growing reviews cannot wait on each other.
func (r *reservation) grow(ctx context.Context, n int64) error {
	if r.b == nil || n <= r.held {
		return nil
	}
	n = min(n, r.b.total)
	if r.b.sem.TryAcquire(n - r.held) {
		r.held = n
		return nil
	}
	r.release()
	if err := r.b.sem.Acquire(ctx, n); err != nil {
		return err
	}
	r.held = n
	return nil
}

func (r *reservation) release() {
	if r.b != nil && r.held > 0 {
		r.b.sem.Release(r.held)
		r.held = 0
	}
}

// shape is what one pass over a JSON document tells of the memory decoding it takes.
type shape struct {
	objects, arrays, separators int
	depth                       int // the deepest nesting
}

// MaxDepth bounds the nesting of a review: far beyond any Kubernetes object, far below what
// would exhaust a decoder's stack.
const MaxDepth = 200

// scanShape counts the objects, arrays and separators of data, skipping strings, without
// allocating. It does not validate: the decoder does that afterwards.
func scanShape(data []byte) shape {
	var s shape
	depth := 0
	for i := 0; i < len(data); i++ {
		c := data[i]
		if !shapeBytes[c] {
			continue
		}
		switch c {
		case '"':
			if i = jsonscan.StringEnd(data, i) - 1; i < 0 {
				return s // unterminated: the decoder says so
			}
		case '{':
			s.objects++
			depth++
		case '[':
			s.arrays++
			depth++
		case '}', ']':
			depth--
		case ',', ':':
			s.separators++
		}
		s.depth = max(s.depth, depth)
	}
	return s
}

// shapeBytes marks the bytes scanShape counts or acts on; it skips every other byte outside strings.
var shapeBytes = [256]bool{'"': true, '{': true, '[': true, '}': true, ']': true, ',': true, ':': true}

// The per-value costs of decoding, an upper bound measured by TestDecodeCostBound over hostile
// shapes: a JSON object may become a typed struct as large as a corev1.Container (408 bytes)
// grown into a slice by doubling, or a map; every member or element costs a string header, an
// interface or a map slot.
const (
	costPerObject    = 3072
	costPerArray     = 128
	costPerSeparator = 160
	// costPerByte covers the body, a copy of the object (made only for an envelope decoded the
	// general way: see decodeReview) and the strings decoded from it.
	costPerByte = 4
)

// decodeCost estimates the memory that reading, decoding and evaluating a review of n bytes of
// this shape takes.
func (s shape) decodeCost(n int) int64 {
	return int64(n)*costPerByte + int64(s.objects)*costPerObject + int64(s.arrays)*costPerArray + int64(s.separators)*costPerSeparator
}

// check returns why a review of this shape is refused, or "".
func (s shape) check(n int, b *Budget) string {
	if s.depth > MaxDepth {
		return fmt.Sprintf("it nests %d levels deep, more than the %d Portcullis evaluates", s.depth, MaxDepth)
	}
	if b != nil && s.decodeCost(n) > b.MaxPerReview {
		return fmt.Sprintf("its %d JSON objects and %d values would take about %d MiB to evaluate, more than the %d MiB one review may use (--max-review-memory)",
			s.objects, s.separators, s.decodeCost(n)>>20, b.MaxPerReview>>20)
	}
	return ""
}
