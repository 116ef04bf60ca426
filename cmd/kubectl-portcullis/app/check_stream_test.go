package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-dev/portcullis/pkg/manifest"
)

// check streams its output a resource at a time, yet prints nothing when a document it
// reaches only after judging others is invalid: the run fails as a whole, as before.
func TestCheckPrintsNothingWhenALaterDocumentIsInvalid(t *testing.T) {
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: web-%d, namespace: shop}\nspec: {containers: [{name: app, image: nginx:1.27}]}\n"
	var b strings.Builder
	for i := range manifest.ChunkSize + 1 { // judged by the first chunk
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, pod, i)
	}
	valid := b.String()
	b.WriteString("---\napiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec: {containers: 3}\n") // in the second
	dir := t.TempDir()
	for name, content := range map[string]string{"valid.yaml": valid, "invalid.yaml": b.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, format := range []string{"text", "json", "junit", "sarif"} {
		code, out, _ := runCLI(t, "", "check", "-f", filepath.Join(dir, "valid.yaml"), "--policies", library, "-o", format)
		if code == ExitUsage || !strings.Contains(out, "web-1024") {
			t.Fatalf("-o %s, valid: exit %d, and the last Pod not in the output", format, code)
		}
		code, out, errOut := runCLI(t, "", "check", "-f", filepath.Join(dir, "invalid.yaml"), "--policies", library, "-o", format)
		if code != ExitUsage || out != "" || !strings.Contains(errOut, "broken") {
			t.Errorf("-o %s, a later document invalid: exit %d, %d bytes printed, stderr %q; want exit %d, nothing printed, the document named", format, code, len(out), errOut, ExitUsage)
		}
	}
}
