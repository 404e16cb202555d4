package projections

import "testing"

func TestDefaultGatherBytes(t *testing.T) {
	for _, c := range []struct{ limit, want int64 }{
		{0, gatherMinBytes},         // unknown: the floor
		{1 << 30, gatherMinBytes},   // a 1 GiB pod: 128 MiB would be below the floor
		{24 << 30, 3 << 30},         // this machine: 3 GiB windows
		{512 << 30, gatherMaxBytes}, // a big host: capped
	} {
		if got := defaultGatherBytes(c.limit); got != c.want {
			t.Errorf("defaultGatherBytes(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
	if l := memoryLimit(); l <= 0 {
		t.Errorf("memoryLimit() = %d on a Linux machine with /proc/meminfo", l)
	}
}
