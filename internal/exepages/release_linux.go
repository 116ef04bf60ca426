package exepages

import (
	"fmt"
	"os"
	"syscall"
)

// Release drops the pages of the executable's read-only mappings from the process's page tables
// (madvise MADV_DONTNEED), skipping any mapping that holds a page of its own. It is safe while
// other goroutines run: a page one of them needs is mapped back from the page cache.
func Release() (Stats, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return Stats{}, err
	}
	maps, err := readMappings(exe)
	if err != nil {
		return Stats{}, err
	}
	release, st := plan(maps)
	for _, m := range release {
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), syscall.MADV_DONTNEED); errno != 0 {
			return st, fmt.Errorf("madvise %#x-%#x %s: %w", m.start, m.end, m.perms, errno)
		}
		st.ReleasedRanges++
	}
	after, err := readMappings(exe)
	if err != nil {
		return st, err
	}
	for _, m := range after {
		if m.readOnly() {
			st.After += m.rss
		}
	}
	return st, nil
}

func readMappings(exe string) ([]mapping, error) {
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	maps, err := parseSmaps(data, exe)
	if err != nil {
		return nil, fmt.Errorf("/proc/self/smaps: %w", err)
	}
	return maps, nil
}
