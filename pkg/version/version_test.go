package version

import (
	"runtime"
	"strings"
	"testing"
)

// TestGet: release builds' ldflags win over the build information; without either the version
// is "devel"; the line names the Go version and platform.
func TestGet(t *testing.T) {
	defer func(v, c string) { Version, Commit = v, c }(Version, Commit)
	Version, Commit = "v9.8.7", "0123456789abcdef0123"
	i := Get()
	if i.Version != "v9.8.7" || i.Commit != "0123456789abcdef0123" || i.GoVersion != runtime.Version() {
		t.Errorf("%+v", i)
	}
	if s := i.String(); !strings.HasPrefix(s, "v9.8.7 (commit 0123456789ab") || !strings.HasSuffix(s, runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH+")") {
		t.Errorf("String() = %q", s)
	}
	Version, Commit = "", ""
	if v := Get().Version; v == "" {
		t.Error("an empty version")
	}
}
