package app

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-dev/portcullis/pkg/manifest"
)

// A spool gives back what was written to it, from memory or, past spoolMemory, from a file that
// is gone once it is closed.
func TestSpool(t *testing.T) {
	for _, size := range []int{0, 100, spoolMemory, spoolMemory + 1, 3*spoolMemory + 7} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Setenv("TMPDIR", t.TempDir())
			want := make([]byte, size)
			for i := range want {
				want[i] = byte('a' + i%26)
			}
			s := &spool{}
			for rest := want; len(rest) > 0; { // in writes of a resource's size
				n := min(len(rest), 4093)
				if _, err := s.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			if toFile := size > spoolMemory; (s.file != nil) != toFile {
				t.Errorf("%d bytes: in a file %v, want %v", size, s.file != nil, toFile)
			}
			var got bytes.Buffer
			if _, err := s.WriteTo(&got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%d bytes written, %d read back, or other bytes", size, got.Len())
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if left, _ := os.ReadDir(os.Getenv("TMPDIR")); len(left) != 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// Where no temporary file can be made, a spool keeps everything in memory, as a run that keeps
// its results would.
func TestSpoolWithoutATemporaryDirectory(t *testing.T) {
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))
	want := bytes.Repeat([]byte("x"), spoolMemory+100)
	s := &spool{}
	if _, err := s.Write(want[:spoolMemory]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(want[spoolMemory:]); err != nil {
		t.Fatalf("past spoolMemory with no temporary directory: %v", err)
	}
	var got bytes.Buffer
	if _, err := s.WriteTo(&got); err != nil || !bytes.Equal(got.Bytes(), want) {
		t.Errorf("read back %d bytes (%v), want %d", got.Len(), err, len(want))
	}
	_ = s.Close()
}

// check streams its text and json a resource at a time, yet prints nothing when a document it
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
	for _, format := range []string{"text", "json"} {
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
