package verify_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/portcullis-dev/portcullis/pkg/verify"
	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
)

// The default root follows a TUF repository: a keyless signature from a CA that only the
// refreshed root names is untrusted before the refresh and verified after it, through the same
// compiled verifier and cache; a mirror that serves an unsigned root, or none, changes nothing.
func TestTUFRefresh(t *testing.T) {
	reg := verifytest.NewRegistry(t)
	ca := verifytest.NewCA(t, "fulcio", true)
	image := reg.Push(t, "acme/app:v1")
	verifytest.SignWithCert(t, image, ca.Issue(t, verifytest.Cert{Subject: ghWorkflow, Issuer: ghIssuer}))

	repo := verifytest.NewTUFRepository(t, ca.TrustedRoot(t))
	mirror, err := url.Parse(repo.URL)
	if err != nil {
		t.Fatal(err)
	}
	live := verify.NewLiveRoot(nil)
	var outcomes []string
	refresher := &verify.TUFRefresher{
		Mirror: repo.URL, InitialRoot: repo.Root, Interval: time.Hour, Target: live,
		Transport: loopback(mirror.Host), Observe: func(o string) { outcomes = append(outcomes, o) }, Log: logr.Discard(),
	}
	cache := verify.NewCache(16, time.Hour, time.Hour, nil)
	v := compileWith(t, reg, verify.Options{Keyless: true, DefaultRoot: live, Cache: cache,
		Identities: []verify.Identity{{Issuer: ghIssuer, Subject: ghWorkflow}}})

	// The embedded public-good root does not know the CA; the failure is cached (an hour here).
	expectVerdict(t, v, image, false, "keyless: ")
	if live.Load().ID != verify.PublicGood().ID {
		t.Fatalf("the live root starts as %s, want the embedded public-good root", live.Load().ID)
	}

	// A mirror serving a trusted root its targets key did not sign is refused.
	repo.TamperTarget([]byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`))
	if err := refresher.Refresh(t.Context()); err == nil || !strings.Contains(err.Error(), "hash") {
		t.Fatalf("a tampered trusted_root.json: err = %v, want a hash mismatch", err)
	}
	if live.Load().ID != verify.PublicGood().ID {
		t.Fatal("a failed refresh changed the root in force")
	}

	// A mirror whose metadata was signed by another repository's keys is refused too.
	other := verifytest.NewTUFRepository(t, ca.TrustedRoot(t))
	otherURL, _ := url.Parse(other.URL)
	stranger := *refresher
	stranger.Mirror, stranger.Transport = other.URL, loopback(otherURL.Host)
	if err := stranger.Refresh(t.Context()); err == nil || !strings.Contains(err.Error(), "not enough signatures") {
		t.Fatalf("metadata signed by unknown keys: err = %v, want a TUF signature error", err)
	}

	// An unreachable mirror leaves the root as it is.
	gone := *refresher
	gone.Mirror = "http://" + mirror.Host + "/nothing-here"
	if err := gone.Refresh(t.Context()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a mirror without metadata: err = %v, want a 404", err)
	}

	// The repository's signed trusted root is put in force, and the cached failure is not
	// served under it.
	repo.Publish(t, ca.TrustedRoot(t))
	if err := refresher.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	want, err := verify.NewTrustedRoot(ca.TrustedRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	if live.Load().ID != want.ID {
		t.Fatalf("root in force %s, want the repository's %s", live.Load().ID, want.ID)
	}
	expectVerdict(t, v, image, true, "")

	// A rule with its own trusted root does not follow the default one.
	own := compileWith(t, reg, verify.Options{Keyless: true, DefaultRoot: live, TrustedRoot: verify.PublicGood(),
		Identities: []verify.Identity{{Issuer: ghIssuer, Subject: ghWorkflow}}})
	expectVerdict(t, own, image, false, "keyless: ")

	if got := strings.Join(outcomes, ","); got != "error,error,error,success" {
		t.Errorf("observed refresh outcomes %q, want error,error,error,success", got)
	}
}
