package exepages

import (
	"strings"
	"testing"
)

const exe = "/usr/local/bin/webhook"

// smapsFixture has the executable's five mappings (code, read-only data, function tables
// written by a loader, data, and one the kernel marks deleted), another file's, and anonymous
// memory.
var smapsFixture = `00400000-02000000 r-xp 00000000 fd:01 1234                       /usr/local/bin/webhook
Size:              28672 kB
Rss:               20480 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
02000000-04000000 r--p 01c00000 fd:01 1234                       /usr/local/bin/webhook
Size:              32768 kB
Rss:               12288 kB
Anonymous:             0 kB
04000000-04010000 r--p 03c00000 fd:01 1234                       /usr/local/bin/webhook
Size:                 64 kB
Rss:                  64 kB
Anonymous:             8 kB
04010000-04100000 rw-p 03c10000 fd:01 1234                       /usr/local/bin/webhook
Size:                960 kB
Rss:                 900 kB
Anonymous:           700 kB
04100000-04200000 r--p 03d00000 fd:01 1234                       /usr/local/bin/webhook (deleted)
Size:               1024 kB
Rss:                 512 kB
Anonymous:             0 kB
7f0000000000-7f0000100000 r--p 00000000 fd:01 99                         /usr/lib/locale/C.utf8/LC_CTYPE
Size:               1024 kB
Rss:                1024 kB
Anonymous:             0 kB
7f0000100000-7f0004100000 rw-p 00000000 00:00 0 
Size:              65536 kB
Rss:               40000 kB
Anonymous:         40000 kB
`

func TestPlan(t *testing.T) {
	maps, err := parseSmaps([]byte(smapsFixture), exe)
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 5 {
		t.Fatalf("%d mappings of the executable, want 5: %+v", len(maps), maps)
	}
	release, st := plan(maps)
	var ranges []string
	for _, m := range release {
		ranges = append(ranges, m.perms)
	}
	// The writable mapping is never touched, nor the read-only one holding a page of its own.
	if got := strings.Join(ranges, ","); got != "r-xp,r--p,r--p" {
		t.Errorf("released %s, want r-xp,r--p,r--p (code, read-only data, the deleted file's)", got)
	}
	if release[0].start != 0x400000 || release[0].end != 0x2000000 {
		t.Errorf("first range %#x-%#x, want 0x400000-0x2000000", release[0].start, release[0].end)
	}
	want := Stats{Mappings: 4, Skipped: 1, Before: (20480 + 12288 + 64 + 512) << 10}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

func TestParseSmapsErrors(t *testing.T) {
	for name, tc := range map[string]struct{ smaps, want string }{
		"bad range": {"zz-00400000 r-xp 00000000 fd:01 1234 " + exe + "\nRss: 4 kB\n", "smaps line 1: bad address range"},
		"bad size":  {"00400000-00500000 r-xp 00000000 fd:01 1234 " + exe + "\nRss: many kB\n", "smaps line 2"},
		"no exe":    {"00400000-00500000 r-xp 00000000 fd:01 1234 /bin/other\nRss: 4 kB\n", "no mapping of the executable"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := parseSmaps([]byte(tc.smaps), exe)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
