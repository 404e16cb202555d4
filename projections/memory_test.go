package projections

import (
	"runtime/debug"
	"testing"
)

func TestDefaultGatherBytes(t *testing.T) {
	for _, c := range []struct{ budget, want int64 }{
		{0, gatherMinBytes},         // unknown: the floor
		{512 << 20, gatherMinBytes}, // a 1 GiB pod's budget: 128 MiB would be below the floor
		{12 << 30, 3 << 30},         // this machine (24 GiB, half of it the budget): 3 GiB windows
		{256 << 30, gatherMaxBytes}, // a big host: capped
	} {
		if got := defaultGatherBytes(c.budget); got != c.want {
			t.Errorf("defaultGatherBytes(%d) = %d, want %d", c.budget, got, c.want)
		}
	}
	m := MachineMemory()
	if m <= 0 {
		t.Fatalf("MachineMemory() = %d on a Linux machine with /proc/meminfo", m)
	}
	if b := memoryBudget(); b <= 0 || b > m/2 {
		t.Errorf("memoryBudget() = %d, want at most half of %d", b, m)
	}
	// A lower Go memory limit is the budget.
	prev := debug.SetMemoryLimit(m / 8)
	defer debug.SetMemoryLimit(prev)
	if b := memoryBudget(); b != m/8 {
		t.Errorf("memoryBudget() = %d under GOMEMLIMIT %d", b, m/8)
	}
}
