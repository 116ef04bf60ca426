package app

import (
	"bytes"
	"context"
	"io"
	"log"
	"path/filepath"
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

// The standard logger, which cosign writes hostile input to, is silenced by the server.
func TestRunSilencesTheStandardLogger(t *testing.T) {
	defer log.SetOutput(log.Writer())
	o := NewOptions()
	o.Kubeconfig = filepath.Join(t.TempDir(), "missing")
	if err := Run(t.Context(), o); err == nil {
		t.Fatal("Run started without a kubeconfig")
	}
	if log.Writer() != io.Discard {
		t.Errorf("the standard logger writes to %v, want io.Discard", log.Writer())
	}
}
