// Package threads reads the nice value of a process's threads from /proc (Linux), for the tests
// and harnesses that check the audit's scan thread runs below admission's priority.
package threads

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Niced returns the threads of process pid whose nice value is not 0, by thread id.
func Niced(pid int) (map[int]int, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	niced := map[int]int{}
	for _, task := range tasks {
		tid, err := strconv.Atoi(task.Name())
		if err != nil {
			continue
		}
		nice, err := Nice(pid, tid)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // exited since the listing
		}
		if err != nil {
			return nil, err
		}
		if nice != 0 {
			niced[tid] = nice
		}
	}
	return niced, nil
}

// Nice reads the nice value of thread tid of process pid: field 19 of its stat.
func Nice(pid, tid int) (int, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndex(string(stat), ") ") // the command before it may hold spaces and parentheses
	var fields []string
	if i >= 0 {
		fields = strings.Fields(string(stat[i+2:]))
	}
	if len(fields) < 17 {
		return 0, fmt.Errorf("thread %d of %d: unexpected stat %q", tid, pid, stat)
	}
	return strconv.Atoi(fields[16]) // the first field after the command is field 3, the state
}
