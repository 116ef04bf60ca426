package verify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// EgressOptions say which registry addresses image verification may reach. Image references
// come from Pods, and the registries they name may answer with redirects and token realms of
// their choosing: every connection is checked at the address actually dialled, after DNS and
// after every redirect.
type EgressOptions struct {
	// Insecure registries (host[:port], or a host for any port) may be reached over plain HTTP.
	// No other request uses plain HTTP.
	Insecure []string
	// Private registries (host[:port], or a host for any port) may resolve to loopback,
	// link-local, private and other non-public addresses. No other host may.
	Private []string
	// AllowPrivate lets every host reach every address: for the CLI, whose user chose the
	// policies and the images.
	AllowPrivate bool
	// MaxResponseBytes bounds one response body; zero is DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// Resolver resolves host names; nil is net.DefaultResolver.
	Resolver Resolver
	// Dialer dials the checked addresses; nil is a net.Dialer with a 10 s timeout.
	Dialer interface {
		DialContext(ctx context.Context, network, address string) (net.Conn, error)
	}
}

// Resolver resolves a host name to addresses.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DefaultMaxResponseBytes bounds a registry response: manifests and signature payloads are a
// few KiB; no verification needs more.
const DefaultMaxResponseBytes = 4 << 20

// The errors of egress control; messages name the rule, never what the registry said.
var (
	ErrAddressNotAllowed = errors.New("the registry's address is not allowed (loopback, link-local or private; see --private-registries)")
	ErrPlainHTTP         = errors.New("plain HTTP is not allowed for this registry (see --insecure-registries)")
	ErrResponseTooLarge  = errors.New("the registry's response is too large")
)

// NewTransport returns the HTTP transport to registries under these egress rules.
func NewTransport(o EgressOptions) http.RoundTripper {
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	base := &http.Transport{
		// A proxy from the environment is the operator's choice: egress control is then the
		// proxy's, and the proxy's own address is dialled as configured.
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            o.dial,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    10,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		ResponseHeaderTimeout:  10 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &egressTransport{o: o, base: base}
}

type egressTransport struct {
	o    EgressOptions
	base *http.Transport
}

func (t *egressTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	plainAllowed := req.URL.Scheme == "http" && listed(t.o.Insecure, req.URL.Host)
	if req.URL.Scheme != "https" && !plainAllowed {
		return nil, ErrPlainHTTP
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.o.MaxResponseBytes {
		_ = resp.Body.Close()
		return nil, ErrResponseTooLarge
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: t.o.MaxResponseBytes}
	return resp, nil
}

// limitedBody fails a read past its limit rather than truncating silently.
type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body that ends exactly at the limit from one that goes on.
		var one [1]byte
		n, err := b.ReadCloser.Read(one[:])
		if n > 0 {
			return 0, ErrResponseTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// dial resolves the host itself and dials only addresses the rules allow.
func (o EgressOptions) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	open := o.AllowPrivate || listed(o.Private, address) || o.isProxy(address)
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else if addrs, err = o.Resolver.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, err
	}
	lastErr := ErrAddressNotAllowed
	for _, ip := range addrs {
		if !open && !Public(ip) {
			continue
		}
		conn, err := o.Dialer.DialContext(ctx, network, net.JoinHostPort(ip.Unmap().String(), port))
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

// isProxy reports whether address is the proxy the environment configures.
func (o EgressOptions) isProxy(address string) bool {
	for _, scheme := range []string{"https", "http"} {
		u, err := http.ProxyFromEnvironment(&http.Request{URL: mustURL(scheme + "://registry.invalid/")})
		if err == nil && u != nil && (u.Host == address || u.Hostname() == address) {
			return true
		}
	}
	return false
}

// listed reports whether host[:port] is in the list as itself or as its host alone.
func listed(list []string, hostport string) bool {
	if slices.Contains(list, hostport) {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	return slices.Contains(list, host) || slices.Contains(list, strings.Trim(host, "[]"))
}

// nonPublic are the ranges no registry is reached at unless the operator allows it, beyond what
// netip classifies itself (loopback, private, link-local, multicast, unspecified).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT, often the pod network
	netip.MustParsePrefix("192.0.0.0/24"),   // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),  // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, and the broadcast address
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64
	netip.MustParsePrefix("2001:db8::/32"),  // documentation
	netip.MustParsePrefix("fec0::/10"),      // site-local (deprecated)
	netip.MustParsePrefix("100::/64"),       // discard-only
}

// Public reports whether ip is a public unicast address. IPv4 embedded in IPv6 (mapped,
// NAT64, 6to4) is judged as the IPv4 address it carries.
func Public(ip netip.Addr) bool {
	ip = ip.Unmap()
	if v4, ok := embeddedIPv4(ip); ok {
		return Public(v4)
	}
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// embeddedIPv4 returns the IPv4 address an IPv6 address carries by NAT64 or 6to4.
func embeddedIPv4(ip netip.Addr) (netip.Addr, bool) {
	if !ip.Is6() {
		return netip.Addr{}, false
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), true
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	}
	return netip.Addr{}, false
}

// describe turns a registry error into a fixed phrase: a registry's answer may carry anything,
// an internal service's data included, and messages reach tenants.
func describe(err error) string {
	for _, e := range []error{ErrAddressNotAllowed, ErrPlainHTTP, ErrResponseTooLarge} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	var status *transport.Error
	var dnsErr *net.DNSError
	var opErr *net.OpError
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "the registry did not answer in time"
	case errors.As(err, &status):
		return statusPhrase(status.StatusCode)
	case errors.As(err, &dnsErr):
		return "the registry's host name could not be resolved"
	case errors.As(err, &certErr):
		return "the registry's TLS certificate is not trusted"
	case errors.As(err, &opErr):
		return "could not connect to the registry"
	}
	return "the registry could not be read"
}

// statusPhrase says what an HTTP status from a registry means, without its body.
func statusPhrase(code int) string {
	phrase := "an error"
	switch {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		phrase = "not authorized"
	case code == http.StatusNotFound:
		phrase = "not found"
	case code == http.StatusTooManyRequests:
		phrase = "too many requests"
	case code >= 500:
		phrase = "a server error"
	}
	return fmt.Sprintf("the registry answered HTTP %d (%s)", code, phrase)
}

// RegistryError is a verification that the registry could not answer. Its message is a fixed
// phrase; the underlying error stays available to errors.Is and errors.As.
type RegistryError struct {
	Image string
	err   error
}

func (e *RegistryError) Error() string { return fmt.Sprintf("image %s: %s", e.Image, describe(e.err)) }
func (e *RegistryError) Unwrap() error { return e.err }

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err) // fixed strings
	}
	return u
}
