package server

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// connLimit bounds the connections a server holds open, and so their memory: each costs about
// 20 KiB (TLS state, buffers, a goroutine) for as long as it is open, whoever opened it, and the
// webhook's port may be reachable from any Pod. Each connection accepted takes a slot, and gives
// it back when it closes. When every slot is taken, the listener closes the connection that has
// been idle (kept alive between requests) the longest, so that clients holding connections idle
// cannot keep the API server's reviews out; when none is idle, it waits for a slot, holding the
// one connection it accepted, and the next ones wait in the kernel's accept queue, which costs
// the process nothing. An idle connection is closed at the TCP level, without a TLS alert, so
// that a client that does not read cannot stall Accept.
//
// Only a connection idle for at least minIdle is closed. HTTP/1.1 has no way to close a
// kept-alive connection that does not race with the client's next request on it, and the API
// server does not retry a review (a POST) whose connection was closed under it: it fails, and
// failurePolicy decides the object. A busy client (an API server with more reviews in flight than
// the bound) reuses each of its connections within milliseconds; closing those to admit its
// next one failed half its reviews in TestConnectionLimitSparesBusyClients. With the floor, its
// new connection waits for a slot instead, and only connections left idle are closed.
type connLimit struct {
	net.Listener
	minIdle   time.Duration
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	idleClose atomic.Uint64

	mu     sync.Mutex
	idle   map[*limitedConn]time.Time // the connections now idle, and since when
	turned chan struct{}              // signalled when a connection turns idle
}

func newConnLimit(l net.Listener, n int, minIdle time.Duration) *connLimit {
	return &connLimit{Listener: l, minIdle: minIdle, slots: make(chan struct{}, n), done: make(chan struct{}),
		idle: make(map[*limitedConn]time.Time), turned: make(chan struct{}, 1)}
}

// Accept accepts a connection, then finds it a slot: a free one, or the one of the connection
// idle the longest, if for minIdle, closed; otherwise it waits, holding that one connection,
// until a slot frees or a connection has been idle for minIdle.
func (l *connLimit) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		select {
		case l.slots <- struct{}{}:
			return &limitedConn{Conn: c, l: l}, nil
		default:
		}
		closed, retry := l.closeIdlest(time.Now())
		if closed {
			continue // its Close gave its slot back
		}
		// With one idle, wait until it has been idle long enough: one that turns idle meanwhile
		// is younger. With none, wait for one to turn idle.
		ripe, turned := (<-chan time.Time)(nil), l.turned
		if retry > 0 {
			ripe, turned = time.After(retry), nil
		}
		select {
		case l.slots <- struct{}{}:
			return &limitedConn{Conn: c, l: l}, nil
		case <-turned:
		case <-ripe:
		case <-l.done:
			_ = c.Close()
			return nil, net.ErrClosed
		}
	}
}

// Close stops Accept and closes the listener.
func (l *connLimit) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// open is the number of connections open.
func (l *connLimit) open() int { return len(l.slots) }

// idleClosed is the number of idle connections closed to free a slot.
func (l *connLimit) idleClosed() uint64 { return l.idleClose.Load() }

// track is the server's ConnState hook: it keeps the set of idle connections.
func (l *connLimit) track(c net.Conn, state http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if state != http.StateIdle {
		delete(l.idle, lc)
		return
	}
	l.idle[lc] = time.Now()
	select {
	case l.turned <- struct{}{}:
	default:
	}
}

// closeIdlest closes the connection idle the longest, if it has been idle for minIdle, passing
// over those on which the client's next request has already arrived. A request that arrives on
// it at that moment fails as if the idle timeout had closed it. When it closes none but one is
// idle, retry is how long until the longest-idle one may be closed.
func (l *connLimit) closeIdlest(now time.Time) (closed bool, retry time.Duration) {
	l.mu.Lock()
	var oldest *limitedConn
	var since time.Time
	for c, t := range l.idle {
		if (oldest == nil || t.Before(since)) && !pendingInput(c.Conn) {
			oldest, since = c, t
		}
	}
	if oldest == nil {
		l.mu.Unlock()
		return false, 0
	}
	if wait := l.minIdle - now.Sub(since); wait > 0 {
		l.mu.Unlock()
		return false, wait
	}
	delete(l.idle, oldest)
	l.mu.Unlock()
	l.idleClose.Add(1)
	_ = oldest.Close()
	return true, 0
}

// limitedConn gives its slot back once, when it is first closed.
type limitedConn struct {
	net.Conn
	l    *connLimit
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.idle, c)
		c.l.mu.Unlock()
		<-c.l.slots
	})
	return err
}
