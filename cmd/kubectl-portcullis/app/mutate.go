package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

func newMutateCommand(s streams) *cobra.Command {
	o := &checkOptions{output: "yaml"}
	var inPlace bool
	cmd := &cobra.Command{
		Use:   "mutate -f PATH [-f PATH]... --policies PATH [--policies PATH]... [-o yaml|json | -i]",
		Short: "Print the manifests as the cluster would store them, mutations applied",
		Long: `Apply the enforced (Deny) mutating rules of the policies, such as defaultProbes, to the
manifests and print every object: multi-document YAML by default, a List with -o json. Objects no
rule changes are printed as they are. A team can commit the result to fix its manifests.

YAML is edited as a person would: comments, key order, quoting and blank lines stay, and the
diff is the fields added (a probe) or replaced (an image pinned to its digest). A change that
cannot be made in place (into a flow mapping such as "metadata: {name: x}", for example) writes
that object anew, and says so on stderr. -i writes each changed file in place instead of
printing; files and documents nothing changes are left as they are.

Mutating rules in Warn or Audit change nothing; check reports what they would do.

Exit status: 0, or 1 when an object still fails a Deny rule once mutated (the failures go to
stderr), or 2 for a usage error, unreadable or invalid input, or an invalid policy.`,
		Example: `  # Add default probes to a folder of manifests, in place
  kubectl portcullis mutate -f deploy/ --policies platform/ -i

  # Print the manifests as the cluster would store them
  kubectl portcullis mutate -f deploy/app.yaml --policies platform/

  # As a JSON List
  kubectl portcullis mutate -f deploy/ --policies platform/ -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate("yaml", "json"); err != nil {
				return err
			}
			if inPlace && (o.output != "yaml" || slices.Contains(o.files, "-")) {
				return errors.New("invalid flags (see --help):\n  -i writes the files given with -f: it cannot be given with -o json or -f -")
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
			if inPlace {
				err = writeInPlace(objects, s)
			} else {
				err = printObjects(s.out, s.err, objects, o.output)
			}
			if err != nil {
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
	cmd.Flags().BoolVarP(&inPlace, "in-place", "i", false, "write each changed file in place instead of printing")
	return cmd
}

// printObjects prints the objects as multi-document YAML, each edited in place (edited), or as
// a JSON List.
func printObjects(w, errw io.Writer, objects []manifest.Admitted, format string) error {
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
		y, err := edited(a, errw)
		if err != nil {
			return err
		}
		if !bytes.HasSuffix(y, []byte("\n")) {
			y = append(y, '\n')
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

// edited is an object's YAML: its document as written with the patches applied in place, or,
// when it has no text of its own (a List's item, JSON) or a patch cannot be made in place,
// written anew from the mutated object (said on errw).
func edited(a manifest.Admitted, errw io.Writer) ([]byte, error) {
	if a.Doc.Raw != nil && !isJSON(a.Doc.Raw) {
		if len(a.Patches) == 0 {
			return a.Doc.Raw, nil
		}
		y, err := manifest.EditYAML(a.Doc.Raw, a.Patches)
		if err == nil {
			return y, nil
		}
		_, _ = fmt.Fprintf(errw, "%s: written anew, its formatting not kept: %v\n", a.Doc.Where(), err)
	}
	y, err := yaml.JSONToYAML(a.JSON)
	if err != nil {
		return nil, errors.New(a.Doc.Where() + ": " + err.Error())
	}
	return y, nil
}

func isJSON(raw []byte) bool {
	t := bytes.TrimSpace(raw)
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// writeInPlace rewrites each file with a changed object: the changed documents are replaced by
// their edited text, and everything else in the file is kept byte for byte.
func writeInPlace(objects []manifest.Admitted, s streams) error {
	byFile := map[string][]manifest.Admitted{}
	var files []string
	for _, a := range objects {
		if a.Object == nil || len(a.Patches) == 0 {
			continue
		}
		if a.Doc.Raw == nil {
			return fmt.Errorf("%s: -i cannot write an item of a List in place", a.Doc.Where())
		}
		if _, ok := byFile[a.Doc.File]; !ok {
			files = append(files, a.Doc.File)
		}
		byFile[a.Doc.File] = append(byFile[a.Doc.File], a)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var out bytes.Buffer
		at := 0
		for _, a := range byFile[f] { // in file order: the inputs are
			if a.Doc.Span[0] < at || a.Doc.Span[1] > len(data) || !bytes.Equal(data[a.Doc.Span[0]:a.Doc.Span[1]], a.Doc.Raw) {
				return fmt.Errorf("%s: changed while it was read; nothing written", f)
			}
			y, err := edited(a, s.err)
			if err != nil {
				return err
			}
			out.Write(data[at:a.Doc.Span[0]])
			out.Write(y)
			at = a.Doc.Span[1]
		}
		out.Write(data[at:])
		st, err := os.Stat(f)
		if err != nil {
			return err
		}
		if err := os.WriteFile(f, out.Bytes(), st.Mode().Perm()); err != nil {
			return err
		}
		_, _ = fmt.Fprintf(s.err, "%s: %d object(s) changed\n", f, len(byFile[f]))
	}
	return nil
}
