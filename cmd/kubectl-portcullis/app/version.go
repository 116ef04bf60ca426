package app

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/portcullis-dev/portcullis/pkg/version"
)

func newVersionCommand(s streams) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version [-o text|json]",
		Short: "Print the version, commit and Go version of this build",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			info := version.Get()
			switch output {
			case "json":
				enc := json.NewEncoder(s.out)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			case "text":
				_, err := fmt.Fprintf(s.out, "kubectl-portcullis %s\n", info)
				return err
			}
			return fmt.Errorf("invalid flags (see --help):\n  -o %q: want text or json", output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}
