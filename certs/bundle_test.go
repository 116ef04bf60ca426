package certs

import (
	"crypto/x509"
	"net"
	"testing"
	"time"
)

var testHosts = hosts{dnsNames: []string{"portcullis-webhook.portcullis-system.svc"}, ips: []net.IP{net.ParseIP("127.0.0.1")}}

// verify checks that the served leaf chains to the bundle for every host.
func verify(t *testing.T, data map[string][]byte, now time.Time) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data[KeyCABundle]) {
		t.Fatal("empty bundle")
	}
	leaf := decodeCerts(data[KeyTLSCert])[0]
	for _, name := range append(testHosts.dnsNames, "127.0.0.1") {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name, CurrentTime: now}); err != nil {
			t.Fatalf("leaf does not verify for %s at %s: %v", name, now, err)
		}
	}
	if _, err := servingCertificate(data); err != nil {
		t.Fatal(err)
	}
	return leaf
}

func TestPlanLifecycle(t *testing.T) {
	lt := Lifetimes{CA: 300 * time.Hour, Leaf: 30 * time.Hour, RenewBefore: 1.0 / 3, CAOverlap: time.Hour}
	t0 := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

	data, changed, err := plan(nil, testHosts, lt, t0)
	if err != nil || !changed {
		t.Fatalf("first plan: changed=%v err=%v", changed, err)
	}
	leaf0 := verify(t, data, t0)
	ca0 := decodeCerts(data[KeyCABundle])

	if _, changed, _ := plan(data, testHosts, lt, t0.Add(time.Hour)); changed {
		t.Fatal("a fresh certificate was renewed")
	}

	// Two thirds into the leaf's life: a new leaf from the same CA, the bundle unchanged.
	t1 := t0.Add(21 * time.Hour)
	data1, changed, _ := plan(data, testHosts, lt, t1)
	leaf1 := verify(t, data1, t1)
	if !changed || leaf1.Equal(leaf0) || string(data1[KeyCABundle]) != string(data[KeyCABundle]) {
		t.Fatalf("leaf renewal: changed=%v sameLeaf=%v sameBundle=%v", changed, leaf1.Equal(leaf0), string(data1[KeyCABundle]) == string(data[KeyCABundle]))
	}

	// Two thirds into the CA's life: the next CA is trusted first, and signs only after the overlap.
	t2 := t0.Add(201 * time.Hour)
	data2, _, _ := plan(data1, testHosts, lt, t2)
	if got := len(decodeCerts(data2[KeyCABundle])); got != 2 || data2[KeyNextCA] == nil {
		t.Fatalf("CA renewal step 1: %d trusted CAs, next CA present=%v", got, data2[KeyNextCA] != nil)
	}
	leaf2 := verify(t, data2, t2)
	if err := leaf2.CheckSignatureFrom(ca0[0]); err != nil {
		t.Fatalf("the leaf must still be signed by the old CA during the overlap: %v", err)
	}
	t3 := t2.Add(2 * time.Hour)
	data3, _, _ := plan(data2, testHosts, lt, t3)
	leaf3 := verify(t, data3, t3)
	if leaf3.CheckSignatureFrom(ca0[0]) == nil || data3[KeyNextCA] != nil {
		t.Fatal("CA renewal step 2: the new CA must sign the leaf")
	}
	if got := len(decodeCerts(data3[KeyCABundle])); got != 2 {
		t.Fatalf("the old CA stays trusted until it expires: %d trusted", got)
	}
	// After the old CA expires it leaves the bundle.
	t4 := t0.Add(301 * time.Hour)
	data4, _, _ := plan(data3, testHosts, lt, t4)
	verify(t, data4, t4)
	if got := len(decodeCerts(data4[KeyCABundle])); got != 1 {
		t.Fatalf("expired CA still trusted: %d", got)
	}
}

func TestPlanRepairs(t *testing.T) {
	lt := DefaultLifetimes
	now := time.Now()
	data, _, _ := plan(nil, testHosts, lt, now)

	broken := map[string][]byte{}
	for k, v := range data {
		broken[k] = v
	}
	broken[KeyTLSKey] = []byte("garbage")
	fixed, changed, _ := plan(broken, testHosts, lt, now)
	if !changed {
		t.Fatal("a broken key was kept")
	}
	verify(t, fixed, now)

	more := hosts{dnsNames: append([]string{"other.example"}, testHosts.dnsNames...), ips: testHosts.ips}
	renamed, changed, _ := plan(data, more, lt, now)
	if !changed || decodeCerts(renamed[KeyTLSCert])[0].VerifyHostname("other.example") != nil {
		t.Fatal("a new host name did not renew the leaf")
	}
	if _, _, err := plan(nil, hosts{}, lt, now); err == nil {
		t.Fatal("a certificate without hosts was issued")
	}
}
