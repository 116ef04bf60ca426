// Package app is the kubectl-portcullis command line: flag parsing, reading inputs and printing
// results around the one engine in pkg/policies.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/internal/initgc"
)

// Exit codes of every command.
const (
	ExitOK        = 0 // no failed rule blocks
	ExitViolation = 1 // at least one result is a fail whose action is Deny
	ExitUsage     = 2 // usage error, unreadable or invalid input, or an invalid policy
)

// errViolation is returned when the command succeeded and found a blocking failure.
var errViolation = errors.New("violations found")

// streams are the process's standard streams; tests pass buffers.
type streams struct {
	in       io.Reader
	out, err io.Writer
	now      func() time.Time
}

// Main runs the command line and returns the exit code.
//
// The garbage collector is off until Main is called (internal/initgc): the program's start
// allocates what it keeps.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	initgc.Restore()
	return run(ctx, args, streams{in: stdin, out: stdout, err: stderr, now: time.Now})
}

func run(ctx context.Context, args []string, s streams) int {
	root := newRootCommand(s)
	root.SetArgs(args)
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errViolation):
		return ExitViolation
	default: // usage errors, bad input and invalid policies
		_, _ = fmt.Fprintf(s.err, "error: %v\n", err)
		return ExitUsage
	}
}

func newRootCommand(s streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-portcullis",
		Short: "Check Kubernetes manifests against Portcullis policies, offline",
		Long: `kubectl-portcullis runs the Portcullis admission engine on manifests, so a manifest that
passes in CI is admitted by the cluster and one that fails is denied with the same message.

Installed on PATH it is also a kubectl plugin: kubectl portcullis ...`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl portcullis"},
	}
	root.AddCommand(newCheckCommand(s), newMutateCommand(s), newTestCommand(s), newReportCommand(s), newVersionCommand(s))
	return root
}
