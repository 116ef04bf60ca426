package app

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
)

// TestVersionFlag: --version prints the build's version and does not start the server.
func TestVersionFlag(t *testing.T) {
	ran := false
	cmd := NewCommand(t.Context(), func(context.Context, *Options) error { ran = true; return nil })
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if ran || !strings.HasPrefix(out.String(), "portcullis webhook ") || !strings.Contains(out.String(), runtime.Version()) {
		t.Errorf("ran %v, output %q", ran, out.String())
	}
}
