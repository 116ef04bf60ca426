package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portcullis-dev/portcullis/pkg/verify/verifytest"
)

// --namespaced-policy-kinds bounds what tenants' Policies can have intercepted cluster-wide.
func TestNamespacedPolicyKinds(t *testing.T) {
	o := NewOptions()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	kinds := o.tenantKinds()
	selects := func(gk schema.GroupKind) bool {
		for _, k := range kinds {
			if k.Selects(gk) {
				return true
			}
		}
		return false
	}
	if !selects(schema.GroupKind{Group: "apps", Kind: "Deployment"}) || !selects(schema.GroupKind{Kind: "Pod"}) {
		t.Errorf("the default %v leaves out workloads", kinds)
	}
	if selects(schema.GroupKind{Kind: "Secret"}) || selects(schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}) {
		t.Errorf("the default %v lets tenants intercept Secrets or RoleBindings", kinds)
	}

	o.NamespacedPolicyKinds = []string{"*"}
	if got := o.tenantKinds(); got != nil {
		t.Errorf(`"*": %v, want nil (every namespaced kind)`, got)
	}
	o.NamespacedPolicyKinds = nil
	if got := o.tenantKinds(); got == nil || len(got) != 0 {
		t.Errorf("empty: %v, want no kind at all", got)
	}
	o.NamespacedPolicyKinds = []string{"pods"}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), `--namespaced-policy-kinds=pods: must be "*", "Kind" or "group/Kind"`) {
		t.Errorf("a malformed kind: %v", err)
	}
}

// The TUF flags: a mirror URL, plain HTTP only to an insecure host, a readable TUF root.json.
func TestTUFFlags(t *testing.T) {
	dir := t.TempDir()
	notRoot, root := filepath.Join(dir, "not-root.json"), filepath.Join(dir, "root.json")
	if err := os.WriteFile(notRoot, []byte(`{"signed":{"_type":"targets"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root, verifytest.NewTUFRepository(t, []byte(`{}`)).Root, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		set  func(o *Options)
		want string // empty: valid
	}{
		{"defaults", func(*Options) {}, ""},
		{"off", func(o *Options) { o.TUF.Mirror = "" }, ""},
		{"mirror and root", func(o *Options) { o.TUF.Mirror, o.TUF.RootFile = "https://tuf.internal.example", root }, ""},
		{"insecure mirror", func(o *Options) {
			o.TUF.Mirror, o.InsecureRegistries = "http://tuf.portcullis-system.svc:8080", []string{"tuf.portcullis-system.svc"}
		}, ""},
		{"plain HTTP", func(o *Options) { o.TUF.Mirror = "http://tuf.example" }, "--tuf-mirror=http://tuf.example: plain HTTP needs the mirror's host in --insecure-registries"},
		{"not a URL", func(o *Options) { o.TUF.Mirror = "tuf.example" }, "--tuf-mirror=tuf.example: must be an http(s) URL"},
		{"root without mirror", func(o *Options) { o.TUF.Mirror, o.TUF.RootFile = "", root }, "--tuf-root=" + root + ": needs --tuf-mirror"},
		{"missing root", func(o *Options) { o.TUF.RootFile = filepath.Join(dir, "absent.json") }, "not a TUF root.json: open "},
		{"not a root", func(o *Options) { o.TUF.RootFile = notRoot }, "--tuf-root=" + notRoot + ": not a TUF root.json"},
		{"interval", func(o *Options) { o.TUF.Interval = time.Second }, "--tuf-refresh-interval=1s: must be at least 1m"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := NewOptions()
			c.set(o)
			err := o.Validate()
			switch {
			case c.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// intervalCase is a duration flag's value and the error its validation gives (empty: valid).
type intervalCase struct {
	interval time.Duration
	want     string
}

// checkInterval validates the options with each case's interval set by set.
func checkInterval(t *testing.T, set func(*Options, time.Duration), cases []intervalCase) {
	t.Helper()
	for _, c := range cases {
		o := NewOptions()
		set(o, c.interval)
		err := o.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: unexpected error: %v", c.interval, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one containing %q", c.interval, err, c.want)
		}
	}
}

// --binary-page-release-interval: never, or no more often than every 10 s.
func TestPageReleaseInterval(t *testing.T) {
	checkInterval(t, func(o *Options, d time.Duration) { o.PageRelease = d }, []intervalCase{
		{0, ""},
		{10 * time.Second, ""},
		{5 * time.Minute, ""},
		{time.Second, "--binary-page-release-interval=1s: must be 0 (never) or at least 10s"},
		{-time.Minute, "--binary-page-release-interval=-1m0s: must be 0 (never) or at least 10s"},
	})
}

// --gc-cycle-interval: off, or between 100ms and a minute; a GOGC in the environment turns the
// pacer off.
func TestGCCycleInterval(t *testing.T) {
	checkInterval(t, func(o *Options, d time.Duration) { o.GCCycleInterval = d }, []intervalCase{
		{0, ""},
		{100 * time.Millisecond, ""},
		{time.Second, ""},
		{time.Minute, ""},
		{50 * time.Millisecond, "--gc-cycle-interval=50ms: must be 0 (Go's pacing alone) or between 100ms and 1m"},
		{2 * time.Minute, "--gc-cycle-interval=2m0s: must be 0"},
		{-time.Second, "--gc-cycle-interval=-1s: must be 0"},
	})
	if gcPacer(0) != nil {
		t.Error("a pacer for --gc-cycle-interval=0")
	}
	if p := gcPacer(time.Second); p == nil || p.Interval != time.Second {
		t.Errorf("--gc-cycle-interval=1s: pacer %+v", p)
	}
	t.Setenv("GOGC", "200")
	if gcPacer(time.Second) != nil {
		t.Error("a pacer with GOGC set in the environment")
	}
}
