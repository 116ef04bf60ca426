package exepages

import (
	"crypto/sha256"
	"encoding/hex"
	"runtime"
	"strings"
	"testing"
)

// Release unmaps the test binary's own resident code and tables, and the process goes on:
// code, the function tables the collector and tracebacks read, and read-only data come back
// from the file as they were.
func TestRelease(t *testing.T) {
	st, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if st.Mappings < 2 || st.ReleasedRanges != st.Mappings-st.Skipped {
		t.Fatalf("stats %+v: want the code and read-only data mappings, each released or skipped", st)
	}
	if st.Before <= 0 || st.After >= st.Before {
		t.Errorf("resident %d bytes before, %d after: want fewer after", st.Before, st.After)
	}
	t.Logf("%+v", st)

	sum := sha256.Sum256([]byte("portcullis"))
	if got, want := hex.EncodeToString(sum[:]), "74e19dcd5ceecfb9f1579fda3c43a847f3fad01c8606d85caa17242e9bc99f0e"; got != want {
		t.Errorf("sha256 after Release %s, want %s", got, want)
	}
	runtime.GC()
	buf := make([]byte, 1<<16)
	if stack := string(buf[:runtime.Stack(buf, false)]); !strings.Contains(stack, "exepages.TestRelease") {
		t.Errorf("traceback after Release does not name the test:\n%s", stack)
	}

	// Twice is harmless: what the test touched since is released again.
	if _, err := Release(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRelease is one release of the test binary's pages: two reads of /proc/self/smaps and
// the madvise calls; the faults that map back what the process uses next are not in it.
func BenchmarkRelease(b *testing.B) {
	for b.Loop() {
		if _, err := Release(); err != nil {
			b.Fatal(err)
		}
	}
}
