// Command librarydocs writes the README's table of the policy library from the policies'
// annotations (make docs); its test fails when the README's table is stale.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/manifest"
)

// The README's table sits between these lines.
const (
	begin = "<!-- library table: generated from the policies' annotations by make docs -->"
	end   = "<!-- end of library table -->"
)

// categories orders the table.
var categories = []string{"Pod Security", "Best Practices", "Supply Chain", "Multi-Tenancy", "Networking"}

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	readme := root + "/README.md"
	data, err := os.ReadFile(readme) //nolint:gosec // the repository given on the command line
	if err == nil {
		var out []byte
		if out, err = render(root+"/manifests/library", data); err == nil {
			err = os.WriteFile(readme, out, 0o644) //nolint:gosec // the README is world-readable
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "librarydocs: %v\n", err)
		os.Exit(1)
	}
}

// render returns the README with its library table written from the policies in dir.
func render(dir string, readme []byte) ([]byte, error) {
	i, j := bytes.Index(readme, []byte(begin)), bytes.Index(readme, []byte(end))
	if i < 0 || j < i {
		return nil, fmt.Errorf("the README has no %q ... %q section", begin, end)
	}
	table, err := table(dir)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(readme[:i+len(begin)])
	b.WriteString("\n" + table)
	b.Write(readme[j:])
	return b.Bytes(), nil
}

func table(dir string) (string, error) {
	docs, err := manifest.Read([]string{dir}, nil)
	if err != nil {
		return "", err
	}
	type row struct{ category, name, line string }
	var rows []row
	var errs []error
	for _, doc := range docs {
		var p v1alpha1.ClusterPolicy
		if err := yaml.Unmarshal(doc.JSON, &p); err != nil {
			return "", fmt.Errorf("%s: %w", doc.Where(), err)
		}
		a := func(key string) string { return p.Annotations["policies.portcullis.dev/"+key] }
		if a("title") == "" || a("description") == "" || !slices.Contains(categories, a("category")) {
			errs = append(errs, fmt.Errorf("%s: needs the title, description and category annotations (category one of %v)", doc.Where(), categories))
			continue
		}
		rows = append(rows, row{a("category"), p.Name, fmt.Sprintf("| `%s` | %s | %s | **%s.** %s |",
			p.Name, a("category"), a("severity"), a("title"), strings.ReplaceAll(a("description"), "|", `\|`))})
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	slices.SortFunc(rows, func(x, y row) int {
		if c := slices.Index(categories, x.category) - slices.Index(categories, y.category); c != 0 {
			return c
		}
		return strings.Compare(x.name, y.name)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "\n%d policies.\n\n| policy | category | severity | what and why |\n| --- | --- | --- | --- |\n", len(rows))
	for _, r := range rows {
		b.WriteString(r.line + "\n")
	}
	b.WriteString("\n")
	return b.String(), nil
}
