package policies

import (
	"regexp"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/overloads"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

// CEL's matches compiles its pattern on every call unless the pattern is a constant and the
// program is optimized; a pattern from params (require-labels' patterns) or from the object is
// compiled again for every object and every label. cachedMatches keeps, per call site of a
// program, the patterns it has compiled: at most regexCacheSize of them, the latest, each no
// longer than regexCacheMaxPattern, so a tenant's object full of distinct or huge patterns costs
// what it did (a compile per call), never memory.
const (
	regexCacheSize       = 32
	regexCacheMaxPattern = MaxTextLength
)

// cachedMatches is the program option that gives every matches call of a program its cache.
var cachedMatches = cel.CustomDecoratorV2(func(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
	call, ok := i.(interpreter.InterpretableCall)
	if !ok || len(call.Args()) != 2 || (call.OverloadID() != overloads.MatchesString && call.OverloadID() != overloads.Matches) {
		return i, nil
	}
	return &cachedMatch{InterpretableCall: call, cache: &regexCache{}}, nil
})

// cachedMatch is a matches call that compiles a pattern once. On anything but two strings it
// answers as the call it replaces (a strict binary call whose target must be a Matcher).
type cachedMatch struct {
	interpreter.InterpretableCall
	cache *regexCache
}

func (m *cachedMatch) Exec(frame *interpreter.ExecutionFrame) ref.Val {
	args := m.Args()
	s, p := args[0].Exec(frame), args[1].Exec(frame)
	switch {
	case types.IsUnknownOrError(s):
		return s
	case types.IsUnknownOrError(p):
		return p
	}
	if out := m.cache.match(s, p); out != nil {
		return types.LabelErrNode(m.ID(), out)
	}
	switch {
	case s.Type().HasTrait(traits.MatcherType):
		return types.LabelErrNode(m.ID(), s.(traits.Matcher).Match(p))
	case s.Type().HasTrait(traits.ReceiverType):
		return types.LabelErrNode(m.ID(), s.(traits.Receiver).Receive(m.Function(), m.OverloadID(), []ref.Val{p}))
	}
	return types.NewErrWithNodeID(m.ID(), "no such overload: %s", m.Function())
}

func (m *cachedMatch) Eval(a interpreter.Activation) ref.Val { return m.Exec(interpreter.AsFrame(a)) }

// regexCache holds compiled patterns; it is safe for concurrent use. Full, it replaces its
// oldest pattern: the patterns a program's policies read again and again (their params') stay
// cached beside a stream of distinct ones from objects, which only churn the slots. A program may
// be held by many policies (envs.go), so no first comers keep the slots for good.
type regexCache struct {
	compiled sync.Map // pattern -> *regexp.Regexp; read without locking
	mu       sync.Mutex
	order    [regexCacheSize]string // the patterns in the order they came; a ring
	n, next  int                    // how many are kept; the slot the next one takes
}

// match is s.matches(p) for two strings, the pattern compiled once; an error when p does not
// compile (as types.String.Match gives), and nil when s or p is not a string.
func (c *regexCache) match(s, p ref.Val) ref.Val {
	str, ok := s.(types.String)
	pattern, ok2 := p.(types.String)
	if !ok || !ok2 {
		return nil
	}
	re, err := c.compile(string(pattern))
	if err != nil {
		return types.WrapErr(err)
	}
	return types.Bool(re.MatchString(string(str)))
}

func (c *regexCache) compile(pattern string) (*regexp.Regexp, error) {
	if re, ok := c.compiled.Load(pattern); ok {
		return re.(*regexp.Regexp), nil
	}
	if len(pattern) > regexCacheMaxPattern {
		return regexp.Compile(pattern)
	}
	// A kept pattern is a copy, and so is the one its regexp keeps: the string may be a part of
	// the request's object (a decoder that is SharingInput), which the cache must not keep alive.
	pattern = strings.Clone(pattern)
	re, err := regexp.Compile(pattern)
	if err != nil {
		return re, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, loaded := c.compiled.LoadOrStore(pattern, re); loaded {
		return re, nil // another goroutine stored it first
	}
	if c.n == regexCacheSize {
		c.compiled.Delete(c.order[c.next])
	} else {
		c.n++
	}
	c.order[c.next] = pattern
	c.next = (c.next + 1) % regexCacheSize
	return re, nil
}

// len is how many patterns are kept.
func (c *regexCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
