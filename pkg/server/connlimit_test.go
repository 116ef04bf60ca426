package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis-dev/portcullis/pkg/metrics"
)

// limitedServer serves /fast, /slow in 20 ms and /judge in 600 ms, with at most max connections
// open; a connection that sends nothing is cut off after a second.
func limitedServer(t *testing.T, max int) (*WebhookServer, string) {
	t.Helper()
	return limitedServerCutting(t, max, time.Second)
}

// limitedServerCutting is limitedServer cutting off a connection that sends no request headers
// after readHeader.
func limitedServerCutting(t *testing.T, max int, readHeader time.Duration) (*WebhookServer, string) {
	t.Helper()
	cert := testServingCert(t)
	o := DefaultWebhookServerOptions
	o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }}
	o.MaxConnections, o.ReadHeaderTimeout, o.LameDuck, o.ShutdownTimeout = max, readHeader, 0, time.Second
	s := NewWebhookServer(o)
	// Each reads the request's body first, as a review's handler does.
	s.Register("/fast", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = fmt.Fprint(w, "answered")
	}))
	s.Register("/slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(20 * time.Millisecond)
		_, _ = fmt.Fprint(w, "answered")
	}))
	s.Register("/judge", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return
		}
		time.Sleep(600 * time.Millisecond)
		_, _ = fmt.Fprint(w, "answered")
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("serving: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the server did not stop")
		}
	})
	return s, l.Addr().String()
}

// keptAlive is a TLS connection that made one request and reads the answer; it is then idle.
func keptAlive(t *testing.T, addr string) net.Conn { return keptAliveFrom(t, addr, nil) }

// keptAliveFrom is keptAlive from the local address from (nil: any).
func keptAliveFrom(t *testing.T, addr string, from net.Addr) net.Conn {
	t.Helper()
	c := dialFrom(t, addr, from)
	if err := request(c); err != nil {
		t.Fatal(err)
	}
	return c
}

// dialFrom is a TLS connection from the local address from (nil: any), closed when the test ends.
func dialFrom(t *testing.T, addr string, from net.Addr) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: from}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback, a test certificate
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// post sends a POST with a small body to path on c and reads the answer.
func post(c net.Conn, path string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", path); err != nil {
		return err
	}
	return answered(c)
}

func request(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := fmt.Fprint(c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	return answered(c)
}

// answered reads a response from c, and fails unless its body is "answered".
func answered(c net.Conn) error {
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "answered" {
		return fmt.Errorf("answer %q: %w", body, err)
	}
	return nil
}

// closed reports whether the server closed c: a read ends at EOF or a reset rather than at a
// short deadline.
func closed(c net.Conn, wait time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && (!errors.As(err, &ne) || !ne.Timeout())
}

// TestConnectionLimitClosesTheLongestIdle: at the bound, a new client is served by closing the
// connection idle the longest, and only that one.
func TestConnectionLimitClosesTheLongestIdle(t *testing.T) {
	s, addr := limitedServer(t, 3)
	reg := prometheus.NewRegistry()
	metrics.WatchConnections(reg, s.Connections)
	var idle []net.Conn
	for range 3 {
		idle = append(idle, keptAlive(t, addr))
		time.Sleep(20 * time.Millisecond) // distinct idle times
	}
	time.Sleep(DefaultWebhookServerOptions.MinIdleToClose) // none in use: none to retire
	if open := s.Connections().Open; open != 3 {
		t.Fatalf("%d connections open, want 3", open)
	}
	keptAlive(t, addr) // served: a slot was made
	if !closed(idle[0], 2*time.Second) {
		t.Error("the longest-idle connection is still open")
	}
	for i, c := range idle[1:] {
		if closed(c, 100*time.Millisecond) {
			t.Errorf("idle connection %d was closed too", i+2)
		}
	}
	// Closing it gave its slot back: still at most 3, and one closed to free a slot.
	want := `
# HELP portcullis_webhook_connections Connections the webhook server holds open (at most --max-connections).
# TYPE portcullis_webhook_connections gauge
portcullis_webhook_connections 3
# HELP portcullis_webhook_connections_retired_total Kept-alive connections the webhook server asked to close after their next response (Connection: close), to free a slot for new ones at --max-connections.
# TYPE portcullis_webhook_connections_retired_total counter
portcullis_webhook_connections_retired_total 0
# HELP portcullis_webhook_idle_connections_closed_total Connections the webhook server closed to free a slot for new ones at --max-connections: idle kept-alive ones, and ones stalled in their TLS handshake or in a request.
# TYPE portcullis_webhook_idle_connections_closed_total counter
portcullis_webhook_idle_connections_closed_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	// The connections that stayed still serve.
	for _, c := range idle[1:] {
		if err := request(c); err != nil {
			t.Errorf("a kept connection: %v", err)
		}
	}
}

// TestConnectionLimitWaitsForBusyConnections: connections whose requests are being judged are
// never closed to free a slot: they are retired, and a new client waits for one to answer (its
// client then opens its next connection), and is then served. No request is lost.
func TestConnectionLimitWaitsForBusyConnections(t *testing.T) {
	s, addr := limitedServer(t, 2)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			c := dialFrom(t, addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)})
			if err := post(c, "/judge"); err != nil {
				t.Errorf("a review being judged: %v", err)
			}
		})
	}
	for deadline := time.Now().Add(5 * time.Second); s.Connections().Open < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the two reviews did not start")
		}
	}
	time.Sleep(300 * time.Millisecond) // judged for longer than MinIdleToClose
	// Not accepted before one of the two answers: the handshake cannot finish.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 100 * time.Millisecond}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback, a test certificate
	if err == nil {
		_ = conn.Close()
		t.Fatal("a third connection was served while two reviews being judged held the server's two slots")
	}
	keptAliveFrom(t, addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)})
	wg.Wait()
	if c := s.Connections(); c.IdleClosed != 0 || c.Retired == 0 || c.Open > 2 {
		t.Errorf("%+v: want none closed and one or more retired", c)
	}
}

// TestPendingInput: a connection with unread bytes is told from one without, so that the limit
// never closes a connection whose next request has arrived.
func TestPendingInput(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("told only on Linux")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Close() }()
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = server.Close() }()
	if pendingInput(server) {
		t.Error("pending input on a connection nothing was sent on")
	}
	if _, err := client.Write([]byte("POST")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !pendingInput(server) {
		if time.Now().After(deadline) {
			t.Fatal("4 bytes sent, no pending input seen")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := io.ReadFull(server, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if pendingInput(server) {
		t.Error("pending input after every byte was read")
	}
}

// TestConnectionLimitSparesBusyClients: a client that keeps more requests in flight than the
// bound allows connections, as an API server under load may, loses none of them. Its
// connections go idle between requests for microseconds; closing one of them to free a slot
// races with the request the client is about to send on it, which then fails (a POST is not
// retried). Its busy connections are retired instead: they close after their response.
func TestConnectionLimitSparesBusyClients(t *testing.T) {
	s, addr := limitedServer(t, 8)
	stats := hammer(t, addr, "/fast", 1, 24, 150, 0)
	if c := s.Connections(); c.Retired == 0 {
		t.Errorf("%+v: no connection retired, with 24 clients' requests in flight at a bound of 8", c)
	}
	t.Log(stats)
}

// TestConnectionLimitSparesBurstyClients: a client whose bursts need more connections than the
// bound, after pauses longer than MinIdleToClose, loses none of its requests. After a pause
// every connection it kept alive has been idle long enough to be closed, and the burst's
// requests are sent on them at once; closing one of them to admit the burst's new connections
// races with the request on it. The race is widened here (a server slow between choosing the
// connection and closing it, as one under load is), as it is when bench-load's server stalls.
func TestConnectionLimitSparesBurstyClients(t *testing.T) {
	s, addr := limitedServer(t, 8)
	slow := func() { time.Sleep(20 * time.Millisecond) }
	limit(t, s).beforeClose.Store(&slow)
	t.Log(hammer(t, addr, "/fast", 6, 24, 10, DefaultWebhookServerOptions.MinIdleToClose+150*time.Millisecond))
	if c := s.Connections(); c.Retired == 0 {
		t.Errorf("%+v: no connection retired, with bursts of 24 requests at a bound of 8", c)
	}
}

// TestConnectionLimitTakesFromTheClientHoldingTheMost: a Pod holding idle connections (from
// 127.0.0.2) loses them to a busy client's (from 127.0.0.1), which loses none of its requests,
// whether the Pod made one request on each or reused each (then they are closed later).
func TestConnectionLimitTakesFromTheClientHoldingTheMost(t *testing.T) {
	for _, requests := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d requests each", requests), func(t *testing.T) {
			s, addr := limitedServer(t, 8)
			var held []net.Conn
			for range 6 {
				c := keptAliveFrom(t, addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)})
				for range requests - 1 {
					if err := request(c); err != nil {
						t.Fatal(err)
					}
				}
				held = append(held, c)
			}
			idle := DefaultWebhookServerOptions.MinIdleToClose
			if requests > 1 {
				idle *= reusedIdle
			}
			time.Sleep(idle)
			t.Log(hammer(t, addr, "/slow", 1, 5, 50, 0))
			lost := 0
			for _, c := range held {
				if closed(c, 10*time.Millisecond) {
					lost++
				}
			}
			// The busy client needs 5 connections: the Pod keeps at most 3 (4 while tied with it).
			if c := s.Connections(); lost < 2 || c.IdleClosed < 2 {
				t.Errorf("the Pod lost %d of its 6 idle connections (%+v), want 2 or more", lost, c)
			}
		})
	}
}

// TestConnectionLimitClosesStalledConnections: a Pod that holds the bound with connections that
// stall (before or in their TLS handshake, between it and the first request, in a request's
// headers or in its body) loses them once they have stalled as long as an idle one must have
// been idle: the client it kept out is served at once, not after the server's read timeouts (5
// s for the headers, 10 s for the body). On the old code, where such connections were spared,
// the new client's handshake timed out.
func TestConnectionLimitClosesStalledConnections(t *testing.T) {
	for _, stall := range []string{"before the handshake", "in the handshake", "after the handshake", "in the headers", "in the body"} {
		t.Run(stall, func(t *testing.T) {
			const bound = 8
			s, addr := limitedServerCutting(t, bound, DefaultWebhookServerOptions.ReadHeaderTimeout)
			pod := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
			var held []net.Conn
			for range bound {
				c := stalled(t, addr, pod, stall)
				held = append(held, c)
			}
			l := limit(t, s)
			for deadline := time.Now().Add(5 * time.Second); l.open() < bound; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%d of the %d stalled connections accepted", l.open(), bound)
				}
			}
			start := time.Now()
			keptAliveFrom(t, addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}) // a 2 s dial timeout, handshake included
			waited := time.Since(start)
			lost := 0
			for _, c := range held {
				if closed(c, 10*time.Millisecond) {
					lost++
				}
			}
			t.Logf("served after %v; the Pod lost %d of its %d stalled connections", waited.Round(time.Millisecond), lost, bound)
			if c := s.Connections(); lost != 1 || c.IdleClosed != 1 || c.Open != bound {
				t.Errorf("%+v: the Pod lost %d stalled connections, want 1 closed for the new one, and %d open", c, lost, bound)
			}
		})
	}
}

// stalled is a connection from from that stalls where stall says: before its TLS handshake
// (no byte sent), in it (half a ClientHello sent), after it (no request sent), in a request's
// headers (all but the blank line that ends them), or in its body (10 of the 100 bytes
// announced, to /judge, which reads it).
func stalled(t *testing.T, addr string, from net.Addr, stall string) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: from}
	var c net.Conn
	var err error
	switch stall {
	case "before the handshake":
		c, err = d.Dial("tcp", addr)
	case "in the handshake":
		if c, err = d.Dial("tcp", addr); err == nil {
			// A TLS record header announcing a 512-byte ClientHello, and a few bytes of it.
			_, err = c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03})
		}
	default:
		c, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback, a test certificate
		switch {
		case err != nil:
		case stall == "in the headers":
			_, err = fmt.Fprint(c, "POST /judge HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
		case stall == "in the body":
			_, err = fmt.Fprint(c, "POST /judge HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// limit is s's connection bound, once it serves.
func limit(t *testing.T, s *WebhookServer) *connLimit {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.limit.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the server did not start serving")
		}
		time.Sleep(time.Millisecond)
	}
	return s.limit.Load()
}

// hammer sends POSTs to path from clients goroutines, each sending requests one after another,
// in bursts bursts with pause between them, through one HTTP client that keeps up to 64
// connections alive (the API server keeps 25); it fails the test if any request fails.
func hammer(t *testing.T, addr, path string, bursts, clients, requests int, pause time.Duration) string {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 64} //nolint:gosec // loopback, a test certificate
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var failed, served atomic.Int64
	var firstErr atomic.Value
	for b := range bursts {
		if b > 0 {
			time.Sleep(pause)
		}
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for range requests {
					resp, err := c.Post("https://"+addr+path, "application/json", strings.NewReader(`{"kind":"AdmissionReview"}`))
					if err == nil {
						_, err = io.Copy(io.Discard, resp.Body)
						_ = resp.Body.Close()
					}
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err)
						continue
					}
					served.Add(1)
				}
			})
		}
		wg.Wait()
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed, first: %v", n, bursts*clients*requests, firstErr.Load())
	}
	return fmt.Sprintf("%d requests served, %d failed", served.Load(), failed.Load())
}

// TestConnectionLimitGraceOncePerQueue: connections that queue behind one another at the bound
// wait for grace once between them, not once each: a client that floods the port would
// otherwise hold every connection behind its own for grace each, the API server's among them.
// Every one is still served, and each slot is still freed from the client holding the most.
func TestConnectionLimitGraceOncePerQueue(t *testing.T) {
	const bound, queued = 16, 8
	s, addr := limitedServer(t, bound)
	for range bound {
		keptAliveFrom(t, addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)})
	}
	time.Sleep(DefaultWebhookServerOptions.MinIdleToClose) // all idle long enough to be closed
	l := limit(t, s)
	var wg sync.WaitGroup
	for range queued {
		wg.Go(func() { keptAliveFrom(t, addr, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}) })
	}
	wg.Wait()
	c := s.Connections()
	if c.IdleClosed != queued || c.Open != bound {
		t.Errorf("%+v: want %d idle connections closed for the %d new ones, and %d open", c, queued, queued, bound)
	}
	// One waited; a stall of the test's host longer than grace between two of them starts a
	// new queue, so a few may. Each waited before the change.
	if n := l.graceWaits.Load(); n == 0 || n > queued/2 {
		t.Errorf("%d of %d queued connections waited for grace, want 1 (a few on a host that stalls)", n, queued)
	}
}

// TestQueuedSince: a connection accepted within grace of the last one that waited for a slot
// waits from when the first of them was accepted; after a pause longer than grace, or once a
// connection found a free slot, from when it was itself accepted.
func TestQueuedSince(t *testing.T) {
	l := newConnLimit(nil, 1, time.Second, 50*time.Millisecond)
	t0 := time.Unix(1000, 0)
	if got := l.queuedSince(t0); !got.Equal(t0) {
		t.Errorf("the first: %v, want %v", got, t0)
	}
	l.lastWaited = t0.Add(60 * time.Millisecond) // got its slot after grace
	if got := l.queuedSince(t0.Add(61 * time.Millisecond)); !got.Equal(t0) {
		t.Errorf("queued behind it: %v, want %v", got, t0)
	}
	l.lastWaited = t0.Add(70 * time.Millisecond)
	later := t0.Add(70*time.Millisecond + 51*time.Millisecond)
	if got := l.queuedSince(later); !got.Equal(later) {
		t.Errorf("after a pause longer than grace: %v, want %v", got, later)
	}
	l.lastWaited = time.Time{} // the last one found a free slot
	next := later.Add(time.Millisecond)
	if got := l.queuedSince(next); !got.Equal(next) {
		t.Errorf("after a free slot: %v, want %v", got, next)
	}
}

// TestWaitingOnTheClient: the server waits on a connection's client from the end of a request's
// headers until its body is read, not while the request is judged, and again from the handler's
// return (the response sent, the rest of an unread body discarded).
func TestWaitingOnTheClient(t *testing.T) {
	server, client := net.Pipe()
	defer func() { _ = client.Close() }()
	lc := &limitedConn{Conn: server}
	ctx := context.WithValue(context.Background(), connKey{}, tls.Server(lc, &tls.Config{MinVersion: tls.VersionTLS12}))
	s := &WebhookServer{}
	var judged int64 = -1
	h := s.closingWhenAsked(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if lc.waitingSince.Load() == 0 {
			t.Error("not waiting on the client before the body is read")
		}
		_, _ = io.Copy(io.Discard, r.Body)
		judged = lc.waitingSince.Load()
		time.Sleep(50 * time.Millisecond)
	}))
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("{}")).WithContext(ctx)
	lc.waitingSince.Store(time.Now().UnixNano()) // the request's headers read (StateActive)
	h.ServeHTTP(httptest.NewRecorder(), req)
	returned := time.Now()
	if judged != 0 {
		t.Errorf("waiting on the client since %d while judging, want 0", judged)
	}
	if w := time.Unix(0, lc.waitingSince.Load()); returned.Sub(w) > 25*time.Millisecond {
		t.Errorf("waiting on the client since %v after the handler's return, %v before it: want since its return", w, returned.Sub(w))
	}
}
