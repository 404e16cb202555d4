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

// Gather windows are sized from the memory this process may count on (ADR 35): its
// budget is the Go memory limit, at most half the machine's memory (the least of the
// cgroup's limit and MemTotal; touchstream's main sets GOMEMLIMIT to that half when the
// environment does not). A window gets a quarter of the budget: two windows are in
// memory while one is folded and the next read, each message costs more on the heap
// than its bytes, and the collector needs room to work below the limit. Windows are
// between 256 MiB and 8 GiB.
const (
	gatherShare    = 4
	gatherMinBytes = 256 << 20
	gatherMaxBytes = 8 << 30
)

// defaultGatherBytes is the window size for a process whose budget is budget bytes.
func defaultGatherBytes(budget int64) int64 {
	return min(max(budget/gatherShare, gatherMinBytes), gatherMaxBytes)
}

// memoryBudget is half of MachineMemory, or the Go memory limit where that is lower;
// 0 when neither is known.
func memoryBudget() int64 {
	budget := MachineMemory() / 2
	if l := debug.SetMemoryLimit(-1); l > 0 && l < math.MaxInt64 && (budget == 0 || l < budget) {
		budget = l
	}
	return budget
}

// MachineMemory is the memory this process's machine or container has: the least of
// the cgroup's memory limit and MemTotal; 0 when neither is known.
func MachineMemory() int64 {
	limit := int64(math.MaxInt64)
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
func DefaultGatherBytes() int64 { return defaultGatherBytes(memoryBudget()) }
