package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
)

func TestPublic(t *testing.T) {
	tests := []struct {
		ip   string
		want bool
	}{
		{"8.8.8.8", true},
		{"140.82.112.3", true},
		{"2606:4700::6810:85e5", true},
		{"127.0.0.1", false},
		{"127.255.0.9", false},
		{"10.0.0.1", false},
		{"172.16.5.4", false},
		{"172.32.0.1", true},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"100.64.0.10", false},     // carrier-grade NAT
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"224.0.0.1", false},
		{"255.255.255.255", false},
		{"198.18.0.1", false},
		{"::1", false},
		{"::", false},
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"ff02::1", false},
		{"::ffff:127.0.0.1", false},       // IPv4-mapped loopback
		{"::ffff:169.254.169.254", false}, // IPv4-mapped metadata
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::a9fe:a9fe", false}, // NAT64 of 169.254.169.254
		{"64:ff9b::808:808", true},    // NAT64 of 8.8.8.8
		{"2002:7f00:1::", false},      // 6to4 of 127.0.0.1
		{"2002:0808:0808::", true},
	}
	for _, tt := range tests {
		if got := Public(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Public(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}

// fakeDNS resolves names from a table; everything it returns is dialled on loopback by the
// test's dialer, so that "public" answers can be served by local test servers.
type fakeDNS map[string][]string

func (f fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	ips, ok := f[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, s := range ips {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

// recordingDialer records the addresses dialled and sends public ones to a loopback port.
type recordingDialer struct {
	dialled []string
	public  string // loopback host:port standing in for any public address
}

func (d *recordingDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.dialled = append(d.dialled, address)
	host, _, _ := net.SplitHostPort(address)
	if ip := netip.MustParseAddr(host); Public(ip) && d.public != "" {
		address = d.public
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, address)
}

func TestEgressDial(t *testing.T) {
	var hits atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = fmt.Fprint(w, "INTERNAL-ONLY-DATA")
	}))
	defer internal.Close()
	_, port, _ := net.SplitHostPort(internal.Listener.Addr().String())
	dns := fakeDNS{
		"public.example":   {"93.184.216.34"},
		"rebind.example":   {"10.1.2.3"},
		"mixed.example":    {"169.254.169.254", "93.184.216.34"},
		"mapped.example":   {"::ffff:127.0.0.1"},
		"internal.example": {"127.0.0.1"},
	}
	tests := []struct {
		name    string
		url     string
		opts    EgressOptions
		wantErr error
		dialled string // the address dialled, when one is
	}{
		{"public name", "http://public.example:" + port, EgressOptions{Insecure: []string{"public.example"}}, nil, "93.184.216.34:" + port},
		{"name resolving to a private range", "http://rebind.example:" + port, EgressOptions{Insecure: []string{"rebind.example"}}, ErrAddressNotAllowed, ""},
		{"mixed answer: only the public address", "http://mixed.example:" + port, EgressOptions{Insecure: []string{"mixed.example"}}, nil, "93.184.216.34:" + port},
		{"IPv4-mapped loopback", "http://mapped.example:" + port, EgressOptions{Insecure: []string{"mapped.example"}}, ErrAddressNotAllowed, ""},
		{"loopback literal", "http://127.0.0.1:" + port, EgressOptions{Insecure: []string{"127.0.0.1"}}, ErrAddressNotAllowed, ""},
		{"metadata literal", "http://169.254.169.254:" + port, EgressOptions{Insecure: []string{"169.254.169.254"}}, ErrAddressNotAllowed, ""},
		{"IPv6 loopback literal", "http://[::1]:" + port, EgressOptions{Insecure: []string{"::1"}}, ErrAddressNotAllowed, ""},
		{"allowed private registry", "http://internal.example:" + port, EgressOptions{Insecure: []string{"internal.example"}, Private: []string{"internal.example:" + port}}, nil, "127.0.0.1:" + port},
		{"insecure is not private", "http://internal.example:" + port, EgressOptions{Insecure: []string{"internal.example"}}, ErrAddressNotAllowed, ""},
		{"plain HTTP to a registry not listed insecure", "http://public.example:" + port, EgressOptions{}, ErrPlainHTTP, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits.Store(0)
			d := &recordingDialer{public: internal.Listener.Addr().String()}
			tt.opts.Resolver, tt.opts.Dialer = dns, d
			client := &http.Client{Transport: NewTransport(tt.opts), Timeout: 5 * time.Second}
			resp, err := client.Get(tt.url)
			if resp != nil {
				_ = resp.Body.Close()
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && (hits.Load() != 0 || len(d.dialled) != 0) {
				t.Fatalf("refused, yet dialled %v (%d hits)", d.dialled, hits.Load())
			}
			if tt.dialled != "" && (len(d.dialled) != 1 || d.dialled[0] != tt.dialled) {
				t.Fatalf("dialled %v, want %s", d.dialled, tt.dialled)
			}
		})
	}
}

// TestRedirectsAreChecked: a redirect or a token realm to an internal address is refused at the
// dial, and nothing of what any server answered reaches the message.
func TestRedirectsAreChecked(t *testing.T) {
	var internalHits atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		internalHits.Add(1)
		w.WriteHeader(http.StatusForbidden)
		_, _ = fmt.Fprint(w, `{"errors":[{"code":"DENIED","message":"INTERNAL-ONLY-DATA"}]}`)
	}))
	defer internal.Close()
	_, internalPort, _ := net.SplitHostPort(internal.Listener.Addr().String())
	var mode atomic.Value
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "redirect":
			http.Redirect(w, r, "http://internal.example:"+internalPort+"/latest/meta-data/", http.StatusTemporaryRedirect)
		case "realm":
			w.Header().Set("WWW-Authenticate", `Bearer realm="http://internal.example:`+internalPort+`/token",service="x"`)
			w.WriteHeader(http.StatusUnauthorized)
		case "reflect":
			w.WriteHeader(http.StatusForbidden)
			_, _ = fmt.Fprint(w, `{"errors":[{"code":"DENIED","message":"INTERNAL-ONLY-DATA"}]}`)
		case "huge":
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("a", 64))
			_, _ = w.Write([]byte(strings.Repeat(" ", DefaultMaxResponseBytes+10)))
		}
	}))
	defer evil.Close()
	_, evilPort, _ := net.SplitHostPort(evil.Listener.Addr().String())
	dns := fakeDNS{"evil.example": {"127.0.0.1"}, "internal.example": {"127.0.0.1"}}
	// The attacker's registry is reachable (allowed as private here because the test serves it on
	// loopback); the internal service is not.
	transport := NewTransport(EgressOptions{
		Insecure: []string{"evil.example", "internal.example"}, Private: []string{"evil.example"}, Resolver: dns,
	})
	v, err := Compile(Options{PublicKeys: []string{verifytest.NewKeyPair(t).PublicKey}, IgnoreTlog: true, InsecureRegistries: []string{"evil.example"}, Transport: transport, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"redirect", "realm", "reflect", "huge"} {
		t.Run(m, func(t *testing.T) {
			mode.Store(m)
			internalHits.Store(0)
			_, err := v.Verify(t.Context(), "evil.example:"+evilPort+"/team/app:v1", nil)
			if err == nil {
				t.Fatal("verified")
			}
			var re *RegistryError
			if !errors.As(err, &re) {
				t.Fatalf("not a RegistryError: %v", err)
			}
			if internalHits.Load() != 0 {
				t.Errorf("the internal service was reached %d times", internalHits.Load())
			}
			if strings.Contains(err.Error(), "INTERNAL-ONLY-DATA") || strings.Contains(err.Error(), "DENIED") || strings.Contains(err.Error(), "meta-data") {
				t.Errorf("the message reflects the registry's answer: %v", err)
			}
			t.Log(err)
		})
	}
}
