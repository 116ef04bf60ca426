package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

func newMutateCommand(s streams) *cobra.Command {
	o := &checkOptions{output: "yaml"}
	cmd := &cobra.Command{
		Use:   "mutate -f PATH [-f PATH]... --policies PATH [--policies PATH]... [-o yaml|json]",
		Short: "Print the manifests as the cluster would store them, mutations applied",
		Long: `Apply the enforced (Deny) mutating rules of the policies, such as defaultProbes, to the
manifests and print every object: multi-document YAML by default, a List with -o json. Objects no
rule changes are printed as they are. A team can commit the result to fix its manifests.

Mutating rules in Warn or Audit change nothing; check reports what they would do.

Exit status: 0, or 1 when an object still fails a Deny rule once mutated (the failures go to
stderr), or 2 for a usage error, unreadable or invalid input, or an invalid policy.`,
		Example: `  # Add default probes to a folder of manifests, in place
  kubectl portcullis mutate -f deploy/app.yaml --policies platform/ > deploy/app.yaml.new

  # As a JSON List
  kubectl portcullis mutate -f deploy/ --policies platform/ -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate("yaml", "json"); err != nil {
				return err
			}
			engine, err := o.loadEngine(s)
			if err != nil {
				return err
			}
			inputs, err := o.readResources(s)
			if err != nil {
				return err
			}
			namespaces, err := o.namespaces(s)
			if err != nil {
				return err
			}
			objects, rep, err := admit(cmd.Context(), engine, inputs, namespaces)
			if err != nil {
				return err
			}
			if err := printObjects(s.out, objects, o.output); err != nil {
				return err
			}
			if blocking := rep.Blocking(); len(blocking) > 0 {
				for _, r := range blocking {
					_, _ = fmt.Fprintf(s.err, "%s: %s: %s%s\n", r.File, r.Resource, policies.Label(r.Policy, r.Rule), r.Message)
				}
				return errViolation
			}
			return nil
		},
	}
	o.addFlags(cmd, "output format: yaml or json")
	return cmd
}

// printObjects prints the objects as multi-document YAML or as a JSON List.
func printObjects(w io.Writer, objects []manifest.Admitted, format string) error {
	objects = slices.DeleteFunc(slices.Clone(objects), func(a manifest.Admitted) bool { return a.Object == nil }) // a DELETE's
	if format == "json" {
		items := make([]json.RawMessage, len(objects))
		for i, a := range objects {
			items[i] = a.JSON
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}); err != nil {
			return err
		}
		_, err := w.Write(buf.Bytes())
		return err
	}
	for i, a := range objects {
		y, err := yaml.JSONToYAML(a.JSON)
		if err != nil {
			return errors.New(a.Doc.Where() + ": " + err.Error())
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(y); err != nil {
			return err
		}
	}
	return nil
}
