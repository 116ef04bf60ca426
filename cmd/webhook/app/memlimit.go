package app

import (
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// The cgroup files that hold a container's memory limit: v2, then v1.
var cgroupMemoryLimitFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// setMemoryLimit tells the Go runtime the container's memory limit, so that the garbage collector
// works harder before the kernel kills the process: GOMEMLIMIT when set (the runtime has read
// it), else ratio of the cgroup's limit. It returns the limit set, 0 for none.
func setMemoryLimit(ratio float64, files []string) int64 {
	if os.Getenv("GOMEMLIMIT") != "" || ratio <= 0 {
		return 0
	}
	for _, f := range files {
		data, err := os.ReadFile(f) //nolint:gosec // fixed cgroup paths
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(data))
		limit, err := strconv.ParseInt(s, 10, 64)
		if err != nil || limit <= 0 || limit >= math.MaxInt64/2 { // "max", or v1's "unlimited"
			return 0
		}
		soft := int64(float64(limit) * ratio)
		debug.SetMemoryLimit(soft)
		return soft
	}
	return 0
}
