package cluster

import (
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is one replica behind a Proxy: its address, and the URL of its readiness probe.
type Backend struct {
	Addr, ReadyURL string
}

// Proxy stands in for a Service and its endpoints: it sends each new TCP connection to the next
// ready backend, round robin, as kube-proxy does with a Service's ready endpoints. A backend
// joins and leaves the rotation on its readiness probe, polled every ProbePeriod; connections
// already open stay on their backend, as conntrack keeps them. A connection whose backend cannot
// be dialled is closed, as a DNAT to a dead Pod would be.
type Proxy struct {
	l        net.Listener
	backends []Backend
	ready    []atomic.Bool
	next     atomic.Uint64
	// Dropped counts connections closed because no ready backend took them.
	Dropped atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

// ProbePeriod is how often the proxy probes each backend's readiness. As the kubelet does, a
// backend leaves the rotation after ProbeFailures probes in a row fail (a slow answer on a busy
// machine is not a stopping replica) and joins it again at the first that passes.
const (
	ProbePeriod   = 250 * time.Millisecond
	ProbeFailures = 2
)

// StartProxy listens on a free loopback port and proxies to backends.
func StartProxy(backends []Backend) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{l: l, backends: backends, ready: make([]atomic.Bool, len(backends)), stop: make(chan struct{})}
	p.wg.Add(2)
	go p.probe()
	go p.accept()
	return p, nil
}

// Addr is the proxy's address (host:port).
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Ready reports whether backend i is in the rotation.
func (p *Proxy) Ready(i int) bool { return p.ready[i].Load() }

// Close stops accepting and probing; open connections end with their backends.
func (p *Proxy) Close() {
	close(p.stop)
	_ = p.l.Close()
	p.wg.Wait()
}

func (p *Proxy) probe() {
	defer p.wg.Done()
	client := &http.Client{Timeout: time.Second}
	t := time.NewTicker(ProbePeriod)
	defer t.Stop()
	failures := make([]int, len(p.backends))
	for {
		for i, b := range p.backends {
			resp, err := client.Get(b.ReadyURL)
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				_ = resp.Body.Close()
			}
			if ok {
				failures[i] = 0
			} else {
				failures[i]++
			}
			p.ready[i].Store(failures[i] < ProbeFailures && (ok || p.ready[i].Load()))
		}
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		conn, err := p.l.Accept()
		if err != nil {
			return
		}
		go p.serve(conn)
	}
}

func (p *Proxy) serve(conn net.Conn) {
	n := uint64(len(p.backends))
	for range n {
		i := p.next.Add(1) % n
		if !p.ready[i].Load() {
			continue
		}
		backend, err := net.DialTimeout("tcp", p.backends[i].Addr, time.Second)
		if err != nil {
			break // the endpoint is still listed but gone: this connection fails
		}
		pipe(conn, backend)
		return
	}
	p.Dropped.Add(1)
	_ = conn.Close()
}

// pipe copies both ways until either side closes, then closes both.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	_ = a.Close()
	_ = b.Close()
	<-done
}
