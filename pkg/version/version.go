// Package version says which build of Portcullis runs: set at build time with -ldflags, or read
// from the Go module build information.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit are set by release builds:
//
//	go build -ldflags "-X github.com/portcullis-dev/portcullis/pkg/version.Version=v0.2.0 -X github.com/portcullis-dev/portcullis/pkg/version.Commit=$(git rev-parse HEAD)"
//
// Left empty, they come from the build information Go records: the module version (for
// go install ...@v0.2.0) and the VCS revision of a build in a checkout.
var (
	Version string
	Commit  string
)

// Info is what a build knows of itself.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Date      string `json:"date,omitempty"`     // the commit's time
	Modified  bool   `json:"modified,omitempty"` // built from a checkout with uncommitted changes
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the build's information.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Commit == "" {
					i.Commit = s.Value
				}
			case "vcs.time":
				i.Date = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	return i
}

// String is one line: "v0.2.0 (commit 1a2b3c4d5e6f, 2026-12-02T19:00:00Z, go1.26.8 linux/amd64)".
func (i Info) String() string {
	s := i.Version + " ("
	if i.Commit != "" {
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += "commit " + c
		if i.Modified {
			s += "+modified"
		}
		if i.Date != "" {
			s += ", " + i.Date
		}
		s += ", "
	}
	return s + fmt.Sprintf("%s %s)", i.GoVersion, i.Platform)
}
