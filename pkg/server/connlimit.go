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
// it back when it closes. When every slot is taken, the new connection waits, holding its one
// slot-less connection (the next ones wait in the kernel's accept queue, which costs the process
// nothing), while the listener frees a slot from the client that holds the most connections
// (by IP address): the API server, or a Pod that opened them to keep the API server's out.
//
//   - If that client is using its connections (one is busy with a request, or one it has
//     reused was idle for less than minIdle), the next response on one of them carries
//     "Connection: close" (it is retired), and the connection closes once that is sent. No
//     request is lost: the client reads the header and sends its next one on another
//     connection.
//   - If not, its connection idle the longest is closed, once it has been idle for minIdle
//     (reusedIdle times that if the client reuses its connections) and the new connection has
//     waited for grace, at the TCP level, without a TLS alert, so that a client that does not
//     read cannot stall Accept. A connection that has carried no request yet (in its TLS
//     handshake, or between it and its first request) counts as idle since it was accepted (a
//     kept-alive one reading its next request's headers is idle too), and one whose request's
//     body the server has waited for minIdle since its headers (the API server sends a review in
//     one go) as idle since then: a client that completes no handshake, or sends its request a
//     byte at a time, would otherwise hold its slots until the server's read timeouts, 5 or 10 s
//     a connection, and a Pod could keep the bound full with a hundred new connections a second.
//     A connection whose request is being judged is busy. Grace is waited once for the
//     connections that queue one behind another: a new connection accepted within grace of the
//     last one that waited for a slot waits from when the first of them was accepted, so a
//     client that floods the port with connections does not hold every connection behind its
//     own for grace each (the API server's among them: at 50 ms each, 64 queued ones delayed
//     the next by 3 s).
//
// Closing a kept-alive connection is the last resort because HTTP/1.1 has no way to do it that
// does not race with the client's next request on it, and the API server does not retry a review
// (a POST) whose connection was closed under it: the review fails, and failurePolicy decides the
// object. A client in a burst (an API server with more reviews in flight than the bound, after a
// pause) sends on the connections it kept alive at once; closing one of them to admit its next
// one lost reviews, in bench-load's bursts and in TestConnectionLimitSparesBurstyClients. Its
// connections are retired instead, and grace lets the requests of a burst arrive, and make
// their connections busy, before an idle one is taken. A Pod that opens connections and holds
// them idle, to keep the API server's out, holds the most and loses them first
// (TestConnectionLimitTakesFromTheClientHoldingTheMost).
type connLimit struct {
	net.Listener
	minIdle, grace time.Duration
	slots          chan struct{}
	done           chan struct{}
	closeOnce      sync.Once
	idleClose      atomic.Uint64
	retired        atomic.Uint64

	// beforeClose, when set (by tests), runs between choosing an idle connection and closing it.
	beforeClose atomic.Pointer[func()]
	// graceWaits counts the connections that waited for grace (read by tests).
	graceWaits atomic.Uint64

	// Only Accept's goroutine reads and writes these: when the last connection that had to wait
	// got its slot (zero if the last one accepted did not wait), and when the connections that
	// have since queued one behind another began to wait.
	lastWaited, waitingSince time.Time

	mu      sync.Mutex
	conns   map[*limitedConn]struct{} // every connection open
	changed chan struct{}             // signalled when a connection turns idle or busy
}

// reusedIdle is how many times minIdle the connection of a client that reuses its connections
// (one has carried more than one request) must have been idle before it is closed: the client
// may resume after a pause on it, and while it is busy free retires its connections rather than
// close them. A client that holds its connections idle after one request each loses them after
// minIdle.
const reusedIdle = 8

// retireWait is how long a new connection waits for a retired connection's slot before the
// listener retires another: a review is answered in milliseconds, but one may take seconds.
const retireWait = 100 * time.Millisecond

func newConnLimit(l net.Listener, n int, minIdle, grace time.Duration) *connLimit {
	return &connLimit{Listener: l, minIdle: minIdle, grace: grace, slots: make(chan struct{}, n), done: make(chan struct{}),
		conns: make(map[*limitedConn]struct{}), changed: make(chan struct{}, 1)}
}

// Accept accepts a connection, then finds it a slot: a free one, or one that free makes; until
// then it waits, holding that one connection.
func (l *connLimit) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	accepted := time.Now()
	var since time.Time
	for {
		select {
		case l.slots <- struct{}{}:
			l.lastWaited = time.Time{}
			if !since.IsZero() {
				l.lastWaited = time.Now()
			}
			return l.admit(c), nil
		default:
		}
		if since.IsZero() {
			since = l.queuedSince(accepted)
		}
		closed, retry := l.free(time.Now(), since)
		if closed {
			continue // its Close gave its slot back
		}
		// With a retry, wait that long (a retired connection closing, an idle one ripening, a
		// burst's requests arriving), or for a slot; free looks again then, not at every
		// request meanwhile. Without one, wait for a connection to turn idle or busy.
		ripe, changed := (<-chan time.Time)(nil), l.changed
		if retry > 0 {
			ripe, changed = time.After(retry), nil
		}
		select {
		case l.slots <- struct{}{}:
			l.lastWaited = time.Now()
			return l.admit(c), nil
		case <-changed:
		case <-ripe:
		case <-l.done:
			_ = c.Close()
			return nil, net.ErrClosed
		}
	}
}

// queuedSince is since when a connection accepted at accepted, which finds no free slot, counts
// as waiting: since it was accepted, or, if the last connection that waited got its slot within
// grace before, since the first of those queued behind one another began to wait.
func (l *connLimit) queuedSince(accepted time.Time) time.Time {
	if l.lastWaited.IsZero() || accepted.Sub(l.lastWaited) > l.grace {
		l.waitingSince = accepted
	}
	return l.waitingSince
}

// admit wraps c, which has a slot, and counts it open.
func (l *connLimit) admit(c net.Conn) *limitedConn {
	lc := &limitedConn{Conn: c, l: l, client: clientOf(c), acceptedAt: time.Now()}
	l.mu.Lock()
	l.conns[lc] = struct{}{}
	l.mu.Unlock()
	return lc
}

// clientOf is the IP address a connection comes from (its whole remote address if it has none).
func clientOf(c net.Conn) string {
	addr := c.RemoteAddr()
	if tcp, ok := addr.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	if addr == nil {
		return ""
	}
	return addr.String()
}

// Close stops Accept and closes the listener.
func (l *connLimit) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// open is the number of connections open.
func (l *connLimit) open() int { return len(l.slots) }

// track is the server's ConnState hook: it keeps each connection's state.
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
	switch state {
	case http.StateActive:
		lc.busy, lc.idleSince = true, time.Time{}
		lc.waitingSince.Store(time.Now().UnixNano())
		lc.requests++
	case http.StateIdle:
		lc.busy, lc.idleSince = false, time.Now()
	default:
		lc.busy, lc.idleSince = false, time.Time{}
		return
	}
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// client is what one client holds, as free sees it.
type client struct {
	open int
	// reuses: one of its connections has carried more than one request.
	reuses bool
	// closing: one of its busy connections was retired within retireWait; it closes after its
	// response.
	closing bool
	// busy is one of its busy connections not retired; fresh, the one idle the shortest among
	// those not retired that have carried more than one request, if for less than minIdle (the
	// client reuses it, and is about to send on it); idlest, the one idle the longest (stalled
	// and new connections among them), since idlestSince.
	busy, fresh, idlest *limitedConn
	idlestSince         time.Time
}

// free frees a slot for a connection waiting since since (queuedSince), from the client that
// holds the most connections. In order: it waits for a busy connection retired within
// retireWait to close; retires a busy one, or a fresh one (the client uses its connections:
// closing an idle one would race with its next request); or closes its longest-idle one, once
// it has been idle for minIdle (reusedIdle times that if the client reuses its connections) and
// grace has passed since since. closed is whether it closed one (its slot is free); otherwise
// retry is how long until free may do more (0: until a connection turns idle or busy).
func (l *connLimit) free(now, since time.Time) (closed bool, retry time.Duration) {
	l.mu.Lock()
	clients := make(map[string]*client)
	var most *client
	for c := range l.conns {
		cl := clients[c.client]
		if cl == nil {
			cl = &client{}
			clients[c.client] = cl
		}
		cl.open++
		if most == nil || cl.open > most.open {
			most = cl
		}
		cl.reuses = cl.reuses || c.requests > 1
		retired := !c.retiredAt.IsZero()
		stalledSince, stalled := c.stalled(now, l.minIdle)
		switch {
		case stalled:
			if cl.idlest == nil || stalledSince.Before(cl.idlestSince) {
				cl.idlest, cl.idlestSince = c, stalledSince
			}
		case c.busy && retired:
			cl.closing = cl.closing || now.Sub(c.retiredAt) < retireWait
		case c.busy:
			cl.busy = c
		default:
			if since := c.idle(); cl.idlest == nil || since.Before(cl.idlestSince) {
				cl.idlest, cl.idlestSince = c, since
			}
			if !retired && c.requests > 1 && now.Sub(c.idleSince) < l.minIdle && (cl.fresh == nil || c.idleSince.After(cl.fresh.idleSince)) {
				cl.fresh = c
			}
		}
	}
	switch {
	case most == nil:
		l.mu.Unlock()
		return false, 0
	case most.closing:
		l.mu.Unlock()
		return false, retireWait / 10
	case most.busy != nil:
		l.retire(most.busy, now)
		return false, retireWait
	case most.fresh != nil:
		l.retire(most.fresh, now)
		return false, retireWait
	case most.idlest == nil: // every one of its connections is busy and retired: each closes after its response
		l.mu.Unlock()
		return false, 0
	}
	victim, floor := most.idlest, l.minIdle
	if most.reuses {
		floor *= reusedIdle
	}
	idleWait, graceWait := floor-now.Sub(most.idlestSince), l.grace-now.Sub(since)
	if wait := max(idleWait, graceWait); wait > 0 {
		l.mu.Unlock()
		if graceWait > idleWait {
			l.graceWaits.Add(1)
		}
		return false, wait
	}
	if pendingInput(victim.Conn) {
		l.mu.Unlock()
		if victim.busy || victim.requests == 0 {
			return false, retireWait / 10 // its request or handshake goes on: it may yet stall
		}
		return false, 0 // its next request has arrived: it turns busy, to be retired
	}
	delete(l.conns, victim)
	l.mu.Unlock()
	l.idleClose.Add(1)
	if f := l.beforeClose.Load(); f != nil {
		(*f)()
	}
	_ = victim.Close()
	return true, 0
}

// retire marks c, under l.mu, to close after its next response, and unlocks l.mu.
func (l *connLimit) retire(c *limitedConn, now time.Time) {
	c.retiredAt = now
	c.retire.Store(true)
	l.mu.Unlock()
	l.retired.Add(1)
}

// limitedConn gives its slot back once, when it is first closed.
type limitedConn struct {
	net.Conn
	l      *connLimit
	once   sync.Once
	client string
	// retire asks the server to answer the connection's next response with "Connection: close".
	retire atomic.Bool
	// acceptedAt is when it got its slot.
	acceptedAt time.Time
	// waitingSince is when the server began to wait on the client for the request it is
	// serving, in Unix nanoseconds: from the end of the request's headers until its body is
	// read, and again from its handler's return; 0 while the request is judged.
	waitingSince atomic.Int64
	// Under l.mu: whether a request is being served on it, since when it has been idle between
	// requests (zero while busy, or before its first request), when it was retired, and how
	// many requests it has carried.
	busy      bool
	idleSince time.Time
	retiredAt time.Time
	requests  int
}

// stalled is whether c, under l.mu, is busy with a request the server has waited on its client
// for at least minIdle to read, or to send its response and discard the rest of its body, and
// since when it has waited.
func (c *limitedConn) stalled(now time.Time, minIdle time.Duration) (since time.Time, ok bool) {
	w := c.waitingSince.Load()
	if !c.busy || w == 0 {
		return time.Time{}, false
	}
	since = time.Unix(0, w)
	return since, now.Sub(since) >= minIdle
}

// idle is since when c, not busy, has been idle, under l.mu: since its last response, or, if it
// has carried no request yet (in its TLS handshake, or before its first request), since it was
// accepted.
func (c *limitedConn) idle() time.Time {
	if c.idleSince.IsZero() {
		return c.acceptedAt
	}
	return c.idleSince
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		<-c.l.slots
	})
	return err
}
