package app

import (
	"context"
	"fmt"

	"github.com/portcullis-dev/portcullis/pkg/version"

	"github.com/spf13/cobra"
)

// RunFunc runs the server with validated options; tests inject their own.
type RunFunc func(ctx context.Context, o *Options) error

// NewCommand returns the server's command. Flags are parsed and validated before run is called.
func NewCommand(ctx context.Context, run RunFunc) *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Portcullis admission webhook server",
		Long: `The Portcullis admission webhook server: it enforces the cluster's ClusterPolicy, Policy and
PolicyException objects on admission, reports their status, and manages its own serving
certificate unless --cert-dir provides one.`,
		Args:         cobra.NoArgs,
		SilenceUsage: true,
		Version:      version.Get().String(),
		RunE: func(*cobra.Command, []string) error {
			if err := o.Validate(); err != nil {
				return fmt.Errorf("invalid flags:\n%w", err)
			}
			return run(ctx, o)
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.SetVersionTemplate("portcullis webhook {{.Version}}\n")
	return cmd
}
