package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/portcullis-dev/portcullis/pkg/metrics"
)

// WebhookServerOptions configure the webhook server.
type WebhookServerOptions struct {
	Host string
	Port int
	// TLSConfig is the server's TLS configuration; it must have GetCertificate set.
	TLSConfig *tls.Config
	// ReadHeaderTimeout bounds reading a request's headers, ReadTimeout the whole request with
	// its body: a client that sends a body slowly, or stalls in the middle, is cut off.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end of its response.
	WriteTimeout time.Duration
	// IdleTimeout bounds a kept-alive connection between requests. It must outlast the API
	// server's own (client-go's transport keeps an idle connection 90 s), so that the client
	// closes first: HTTP/1.1 has no way for a server to close a kept-alive connection that does
	// not race with the client's next request on it, and the API server does not retry a review
	// whose connection was closed under it.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
	// MaxConnections bounds the connections open at once (0: no bound). At the bound, new
	// connections wait to be accepted while a slot is freed from the client holding the most
	// connections: one of its connections in use answers with "Connection: close", or, when it
	// uses none, its connection idle the longest is closed, once idle for MinIdleToClose (8
	// times that if it reuses its connections) and after the new connection has waited
	// CloseGrace (connlimit.go).
	MaxConnections int
	// MinIdleToClose is how long a kept-alive connection must have been idle before
	// MaxConnections may close it: closing one its client is about to reuse fails that request.
	MinIdleToClose time.Duration
	// CloseGrace is how long a new connection waits at MaxConnections before an idle one is
	// closed for it: the requests of a client's burst arrive meanwhile, on the connections it
	// kept alive, which are then retired rather than closed.
	CloseGrace time.Duration
	// LameDuck is how long the server keeps accepting once told to stop, while its readiness
	// says it is stopping, so that endpoints drop it before it refuses connections.
	LameDuck time.Duration
	// ShutdownTimeout is how long reviews in flight may finish once the server stops accepting.
	ShutdownTimeout time.Duration
}

// DefaultWebhookServerOptions are the bounds the server runs with unless told otherwise. The API
// server sends a review at once and waits at most 30 s for the answer.
var DefaultWebhookServerOptions = WebhookServerOptions{
	ReadHeaderTimeout: 5 * time.Second,
	ReadTimeout:       10 * time.Second,
	WriteTimeout:      35 * time.Second,
	IdleTimeout:       120 * time.Second, // the API server's keep-alive (90 s) and a margin
	MaxHeaderBytes:    64 << 10,
	MaxConnections:    512,
	MinIdleToClose:    250 * time.Millisecond,
	CloseGrace:        50 * time.Millisecond,
	LameDuck:          5 * time.Second,
	ShutdownTimeout:   30 * time.Second,
}

// WebhookServer serves the webhooks over TLS. Unlike controller-runtime's default server, every
// phase of a request is bounded in time (headers, body, response, idle), and a request's
// context is its own: a review in flight when the process is told to stop is answered on its own
// deadline, not cancelled.
type WebhookServer struct {
	Options WebhookServerOptions

	mux      *http.ServeMux
	started  atomic.Bool // listening, with a certificate
	stopping atomic.Bool // in its lame-duck period or after
	limit    atomic.Pointer[connLimit]
}

var _ webhook.Server = (*WebhookServer)(nil)

// NewWebhookServer returns a server with the given options.
func NewWebhookServer(o WebhookServerOptions) *WebhookServer {
	return &WebhookServer{Options: o, mux: http.NewServeMux()}
}

// NeedLeaderElection implements webhook.Server: every replica serves.
func (*WebhookServer) NeedLeaderElection() bool { return false }

// Register implements webhook.Server.
func (s *WebhookServer) Register(path string, hook http.Handler) {
	s.mux.Handle(path, hook)
}

// WebhookMux implements webhook.Server.
func (s *WebhookServer) WebhookMux() *http.ServeMux { return s.mux }

// Start implements webhook.Server. It listens only once a certificate is loaded, so that no
// client meets a TLS error; it serves until ctx ends; then, for LameDuck, it still accepts while
// its readiness says it is stopping; then it stops accepting and lets the reviews in flight
// finish on their own deadlines, for at most ShutdownTimeout.
func (s *WebhookServer) Start(ctx context.Context) error {
	if s.Options.TLSConfig == nil || s.Options.TLSConfig.GetCertificate == nil {
		return errors.New("webhook server: no certificate source")
	}
	if err := s.waitForCertificate(ctx); err != nil {
		return nil // stopped before a certificate came: nothing was served
	}
	l, err := net.Listen("tcp", net.JoinHostPort(s.Options.Host, strconv.Itoa(s.Options.Port)))
	if err != nil {
		return fmt.Errorf("webhook server: %w", err)
	}
	return s.Serve(ctx, l)
}

// waitForCertificate returns once the TLS configuration yields a certificate, or when ctx ends.
func (s *WebhookServer) waitForCertificate(ctx context.Context) error {
	logged := false
	for {
		if c, err := s.Options.TLSConfig.GetCertificate(&tls.ClientHelloInfo{}); err == nil && c != nil {
			return nil
		}
		if !logged {
			log.FromContext(ctx).Info("waiting for the serving certificate before listening")
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Serve serves on l until ctx ends, then drains as Start says.
func (s *WebhookServer) Serve(ctx context.Context, l net.Listener) error {
	o := s.Options
	srv := &http.Server{
		Handler:           s.closingWhenAsked(s.mux),
		TLSConfig:         o.TLSConfig,
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		// A review's context is not the process's: stopping does not cancel reviews in flight.
		BaseContext: func(net.Listener) context.Context { return context.Background() },
	}
	if o.MaxConnections > 0 {
		lim := newConnLimit(l, o.MaxConnections, o.MinIdleToClose, o.CloseGrace)
		s.limit.Store(lim)
		l, srv.ConnState = lim, lim.track
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		}
	}
	s.started.Store(true)
	log.FromContext(ctx).Info("serving webhooks", "address", l.Addr().String())

	done := make(chan struct{})
	go func() { //nolint:gosec // G118: shutdown outlives ctx by design: reviews in flight get their own time
		defer close(done)
		<-ctx.Done()
		s.stopping.Store(true)
		if o.LameDuck > 0 {
			log.FromContext(ctx).Info("stopping: not ready, still serving for the lame-duck period", "period", o.LameDuck.String())
			time.Sleep(o.LameDuck)
		}
		srv.SetKeepAlivesEnabled(false)
		sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.FromContext(ctx).Error(err, "reviews in flight did not finish before the shutdown timeout")
		}
	}()
	err := srv.Serve(tls.NewListener(l, o.TLSConfig))
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("webhook server: %w", err)
	}
	<-done
	return nil
}

// Connections counts the connections open, and those closed or retired to free a slot for new
// ones under MaxConnections; all 0 while the server does not serve or has no bound.
func (s *WebhookServer) Connections() metrics.Connections {
	lim := s.limit.Load()
	if lim == nil {
		return metrics.Connections{}
	}
	return metrics.Connections{Open: lim.open(), IdleClosed: lim.idleClose.Load(), Retired: lim.retired.Load()}
}

// ReadyChecker is ready while the server listens and is not stopping: in its lame-duck period
// it still serves, but says so, so that endpoints drop it.
func (s *WebhookServer) ReadyChecker() healthz.Checker {
	return func(*http.Request) error {
		switch {
		case !s.started.Load():
			return errors.New("webhook server has not been started yet")
		case s.stopping.Load():
			return errors.New("webhook server is stopping")
		}
		return nil
	}
}

// StartedChecker implements webhook.Server: healthy once the server listens. It does not dial
// the server: a probe's half-made TLS connections would only fill the log.
func (s *WebhookServer) StartedChecker() healthz.Checker {
	return func(*http.Request) error {
		if !s.started.Load() {
			return errors.New("webhook server has not been started yet")
		}
		return nil
	}
}

// connKey is the request context's key of the connection it came on.
type connKey struct{}

// closingWhenAsked answers with "Connection: close" once the server is stopping, so that the API
// server retires each kept-alive connection to this replica as soon as it carries one more review,
// and opens the next one through the Service, to a replica that stays; and on a connection the
// connection bound retired to free a slot. Closing them from this side instead would race with a
// review the client is sending on one.
func (s *WebhookServer) closingWhenAsked(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &closeWhenAsked{ResponseWriter: w, stopping: &s.stopping}
		if tc, ok := r.Context().Value(connKey{}).(*tls.Conn); ok {
			cw.conn, _ = tc.NetConn().(*limitedConn)
		}
		if c := cw.conn; c != nil {
			// The request is read once its body is: then the server judges it, and no longer
			// waits on the client; it waits on it again from the handler's return until the
			// connection turns idle (the response sent, the rest of an unread body discarded).
			if r.ContentLength == 0 {
				c.waitingSince.Store(0)
			} else {
				r.Body = &bodyRead{ReadCloser: r.Body, conn: c, left: r.ContentLength}
			}
			defer func() { c.waitingSince.Store(time.Now().UnixNano()) }()
		}
		h.ServeHTTP(cw, r)
	})
}

// bodyRead tells its connection when the request's body has been read: its announced length
// (left, -1 if none was), or to its end.
type bodyRead struct {
	io.ReadCloser
	conn *limitedConn
	left int64
}

func (b *bodyRead) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	if b.left == 0 || err != nil {
		b.conn.waitingSince.Store(0)
	}
	return n, err
}

// closeWhenAsked decides on "Connection: close" when the response's header is written, so that a
// review in flight when the server was told to stop, or its connection retired, closes its
// connection too.
type closeWhenAsked struct {
	http.ResponseWriter
	stopping *atomic.Bool
	conn     *limitedConn // nil without a connection bound
	wrote    bool
}

func (w *closeWhenAsked) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		if w.stopping.Load() || (w.conn != nil && w.conn.retire.Load()) {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closeWhenAsked) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}
