package verify

import (
	"container/list"
	"sync"
	"time"
)

// Cache is a bounded LRU of verdicts with a TTL: long for verified digests, short for
// definitive failures (an image may be signed a minute later). Errors are never cached.
type Cache struct {
	mu          sync.Mutex
	size        int
	ttl, negTTL time.Duration
	now         func() time.Time
	order       *list.List // front: most recently used
	entries     map[string]*list.Element
}

type cacheEntry struct {
	key     string
	verdict Verdict
	expires time.Time
}

// NewCache returns a cache of at most size verdicts; now is the clock (nil: time.Now).
func NewCache(size int, ttl, negativeTTL time.Duration, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{size: size, ttl: ttl, negTTL: negativeTTL, now: now, order: list.New(), entries: map[string]*list.Element{}}
}

// Get returns a fresh verdict.
func (c *Cache) Get(key string) (Verdict, bool) {
	if c == nil {
		return Verdict{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return Verdict{}, false
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.order.Remove(el)
		delete(c.entries, key)
		return Verdict{}, false
	}
	c.order.MoveToFront(el)
	return e.verdict, true
}

// Put stores a verdict, evicting the least recently used beyond the size.
func (c *Cache) Put(key string, v Verdict) {
	if c == nil {
		return
	}
	ttl := c.ttl
	if !v.Verified {
		ttl = c.negTTL
	}
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		el.Value = &cacheEntry{key: key, verdict: v, expires: c.now().Add(ttl)}
		c.order.MoveToFront(el)
		return
	}
	c.entries[key] = c.order.PushFront(&cacheEntry{key: key, verdict: v, expires: c.now().Add(ttl)})
	for c.order.Len() > c.size {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.entries, last.Value.(*cacheEntry).key)
	}
}

// Len is the number of entries.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
