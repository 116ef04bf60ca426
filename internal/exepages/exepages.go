// Package exepages gives back the pages of the executable that starting the process mapped and
// serving does not use.
//
// A Go server's initialization runs the init functions of every package it links, and the
// kernel maps each page they touch together with its neighbours (fault-around, 64 KiB at a
// time): the webhook server ends its start with about 36 MiB of its binary resident, where
// admission runs in a few. Those pages are clean copies of the file, so dropping them from the
// process's page tables loses nothing: a page the process uses again is mapped back from the
// page cache by a minor fault. Release does that once, for the read-only mappings of the
// executable that hold no page of their own (a copy-on-write page, such as a relocation an
// external linker's loader wrote before it made the segment read-only, would be lost: such a
// mapping is left alone).
package exepages

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Stats is what Release did: the resident bytes of the executable's read-only mappings before
// and after, and the mappings it left alone.
type Stats struct {
	Mappings       int   // the executable's read-only mappings
	Skipped        int   // of those, the ones holding pages of their own (left alone)
	Before, After  int64 // their resident bytes
	ReleasedRanges int   // the ranges given back
}

// mapping is one entry of /proc/self/smaps.
type mapping struct {
	start, end uint64
	perms      string
	rss        int64 // bytes
	anonymous  int64 // bytes: pages of its own (copy-on-write), not the file's
}

// readOnly reports whether the mapping can never be written by the process.
func (m mapping) readOnly() bool { return len(m.perms) >= 2 && m.perms[1] != 'w' }

// parseSmaps reads the mappings of path in an smaps file. A mapping whose path the kernel
// marked " (deleted)" (the file was replaced after the start) is still the executable's.
func parseSmaps(data []byte, path string) ([]mapping, error) {
	var out []mapping
	var cur *mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // a mapping's header: range perms offset dev inode [path]
			cur = nil
			if len(fields) < 6 {
				continue // anonymous
			}
			p := strings.TrimSuffix(strings.Join(fields[5:], " "), " (deleted)")
			if p != path {
				continue
			}
			lo, hi, ok := strings.Cut(fields[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if !ok || err1 != nil || err2 != nil || end <= start {
				return nil, fmt.Errorf("smaps line %d: bad address range %q", line, fields[0])
			}
			out = append(out, mapping{start: start, end: end, perms: fields[1]})
			cur = &out[len(out)-1]
			continue
		}
		if cur == nil || len(fields) < 3 || fields[2] != "kB" {
			continue
		}
		var dst *int64
		switch fields[0] {
		case "Rss:":
			dst = &cur.rss
		case "Anonymous:":
			dst = &cur.anonymous
		default:
			continue
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("smaps line %d: %w", line, err)
		}
		*dst = kb << 10
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no mapping of the executable in smaps")
	}
	return out, nil
}

// plan returns the mappings to release, with the stats of the ones before.
func plan(maps []mapping) ([]mapping, Stats) {
	var st Stats
	var release []mapping
	for _, m := range maps {
		if !m.readOnly() {
			continue
		}
		st.Mappings++
		st.Before += m.rss
		if m.anonymous > 0 {
			st.Skipped++
			continue
		}
		release = append(release, m)
	}
	return release, st
}
