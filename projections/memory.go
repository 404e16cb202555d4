package projections

import (
	"bufio"
	"bytes"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Gather windows are sized from the memory this process may use (ADR 35): an eighth
// of it per window (two windows are in memory while one is folded and the next read),
// between 256 MiB and 8 GiB.
const (
	gatherShare    = 8
	gatherMinBytes = 256 << 20
	gatherMaxBytes = 8 << 30
)

// defaultGatherBytes is the window size for a process allowed limit bytes.
func defaultGatherBytes(limit int64) int64 {
	return min(max(limit/gatherShare, gatherMinBytes), gatherMaxBytes)
}

// memoryLimit is the least of the Go memory limit (GOMEMLIMIT), the cgroup's memory
// limit (a container's) and the machine's memory; 0 when none is known.
func memoryLimit() int64 {
	limit := int64(math.MaxInt64)
	if l := debug.SetMemoryLimit(-1); l > 0 {
		limit = min(limit, l)
	}
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(f); err == nil {
			if l, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64); err == nil && l > 0 {
				limit = min(limit, l) // "max" (no limit) does not parse
			}
		}
	}
	if total := memTotal(); total > 0 {
		limit = min(limit, total)
	}
	if limit == math.MaxInt64 {
		return 0
	}
	return limit
}

// memTotal reads MemTotal from /proc/meminfo (0 if it cannot).
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 2 && fields[1] == "kB" {
			if kb, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// DefaultGatherBytes is the window size a Config without GatherBytes uses here.
func DefaultGatherBytes() int64 { return defaultGatherBytes(memoryLimit()) }
