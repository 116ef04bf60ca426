package spool

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// A spool gives back what was written to it, from memory or, past Memory, from a file that
// is gone once it is closed.
func TestSpool(t *testing.T) {
	for _, size := range []int{0, 100, Memory, Memory + 1, 3*Memory + 7} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Setenv("TMPDIR", t.TempDir())
			want := make([]byte, size)
			for i := range want {
				want[i] = byte('a' + i%26)
			}
			s := &Spool{}
			for rest := want; len(rest) > 0; { // in writes of a resource's size
				n := min(len(rest), 4093)
				if _, err := s.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			if toFile := size > Memory; (s.file != nil) != toFile {
				t.Errorf("%d bytes: in a file %v, want %v", size, s.file != nil, toFile)
			}
			var got bytes.Buffer
			if _, err := s.WriteTo(&got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%d bytes written, %d read back, or other bytes", size, got.Len())
			}
			if s.Len() != int64(size) {
				t.Errorf("Len %d, want %d", s.Len(), size)
			}
			for _, r := range [][2]int{{0, size}, {size / 3, size / 2}, {size, size}} {
				var part bytes.Buffer
				if err := s.CopyRange(&part, int64(r[0]), int64(r[1])); err != nil || !bytes.Equal(part.Bytes(), want[r[0]:r[1]]) {
					t.Errorf("%d bytes: range %v read back %d bytes (%v), or other bytes", size, r, part.Len(), err)
				}
			}
			if err := s.CopyRange(&bytes.Buffer{}, 0, int64(size)+1); err == nil {
				t.Errorf("%d bytes: a range past the end was copied", size)
			}
			got.Reset()
			if _, err := s.WriteTo(&got); err != nil || !bytes.Equal(got.Bytes(), want) {
				t.Errorf("%d bytes: a second WriteTo read back %d bytes (%v)", size, got.Len(), err)
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
	want := bytes.Repeat([]byte("x"), Memory+100)
	s := &Spool{}
	if _, err := s.Write(want[:Memory]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(want[Memory:]); err != nil {
		t.Fatalf("past Memory with no temporary directory: %v", err)
	}
	var got bytes.Buffer
	if _, err := s.WriteTo(&got); err != nil || !bytes.Equal(got.Bytes(), want) {
		t.Errorf("read back %d bytes (%v), want %d", got.Len(), err, len(want))
	}
	_ = s.Close()
}
