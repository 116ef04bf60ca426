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

// limitedServer serves /fast with at most max connections open; a connection that sends nothing
// is cut off after a second.
func limitedServer(t *testing.T, max int) (*WebhookServer, string) {
	t.Helper()
	cert := testServingCert(t)
	o := DefaultWebhookServerOptions
	o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }}
	o.MaxConnections, o.ReadHeaderTimeout, o.LameDuck, o.ShutdownTimeout = max, time.Second, 0, time.Second
	s := NewWebhookServer(o)
	s.Register("/fast", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, "answered") }))
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
func keptAlive(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback, a test certificate
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if err := request(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func request(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := fmt.Fprint(c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
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
	if open, _ := s.Connections(); open != 3 {
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
# HELP portcullis_webhook_idle_connections_closed_total Idle kept-alive connections the webhook server closed to free a slot for new ones at --max-connections.
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

// TestConnectionLimitWaitsForBusyConnections: connections that are not idle (here, ones that
// never finish their TLS handshake) are not closed to free a slot; a new client waits until the
// server cuts them off, and is then served.
func TestConnectionLimitWaitsForBusyConnections(t *testing.T) {
	s, addr := limitedServer(t, 2)
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	time.Sleep(100 * time.Millisecond) // both accepted
	if open, _ := s.Connections(); open != 2 {
		t.Fatalf("%d connections open, want 2", open)
	}
	// Not accepted while both hold their slots (for a second): the handshake cannot finish.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 400 * time.Millisecond}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback, a test certificate
	if err == nil {
		_ = conn.Close()
		t.Fatal("a third connection was served while two held the server's two slots")
	}
	// The server cuts the stalled handshakes off after a second; a new client is then served.
	deadline := time.Now().Add(10 * time.Second)
	d := &net.Dialer{Timeout: 2 * time.Second}
	for {
		c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // loopback, a test certificate
		if err == nil {
			err = request(c)
			_ = c.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no client was served after the stalled connections were cut off: %v", err)
		}
	}
	if _, idleClosed := s.Connections(); idleClosed != 0 {
		t.Errorf("%d connections closed as idle, want none: none was idle", idleClosed)
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
// retried). So a connection is closed only once it has been idle for MinIdleToClose; until
// then the new one waits.
func TestConnectionLimitSparesBusyClients(t *testing.T) {
	s, addr := limitedServer(t, 8)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 64} //nolint:gosec // loopback, a test certificate
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	var failed, served atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 24 {
		wg.Go(func() {
			for range 150 {
				resp, err := c.Post("https://"+addr+"/fast", "application/json", strings.NewReader(`{"kind":"AdmissionReview"}`))
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
	_, idleClosed := s.Connections()
	t.Logf("%d requests served, %d failed; %d idle connections closed", served.Load(), failed.Load(), idleClosed)
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed, first: %v", n, 24*150, firstErr.Load())
	}
}
