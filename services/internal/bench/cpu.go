package bench

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is a reading of this process's CPU time and of the machine's, so that a
// measurement can say how many cores it kept busy and how many the rest of the machine
// (PostgreSQL, other processes) used meanwhile.
type cpuSample struct {
	at      time.Time
	self    time.Duration // user + system time of this process (embedded NATS included)
	busy    uint64        // machine-wide busy jiffies (/proc/stat)
	total   uint64        // machine-wide jiffies
	hasProc bool
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := bytes.Cut(b, []byte("\n"))
		f := strings.Fields(string(line))
		if len(f) >= 8 && f[0] == "cpu" {
			var v [8]uint64
			for i := range v {
				v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
			}
			// user nice system idle iowait irq softirq steal
			s.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
			s.total = s.busy + v[3] + v[4]
			s.hasProc = true
		}
	}
	return s
}

// cpuUse is the CPU spent between two samples, in cores (1.0 = one core all along).
type cpuUse struct {
	self    float64 // this process
	machine float64 // every process, this one included; -1 if unknown
}

func (a cpuSample) until(b cpuSample) cpuUse {
	wall := b.at.Sub(a.at).Seconds()
	u := cpuUse{machine: -1}
	if wall > 0 {
		u.self = (b.self - a.self).Seconds() / wall
	}
	if a.hasProc && b.hasProc && b.total > a.total {
		// /proc/stat is tick-sampled and undercounts short bursts; this process's own
		// figure is exact, and the machine's cannot be below it.
		u.machine = max(u.self, float64(b.busy-a.busy)/float64(b.total-a.total)*float64(runtime.NumCPU()))
	}
	return u
}

// String renders "self/machine" in cores.
func (u cpuUse) String() string {
	if u.machine < 0 {
		return cores(u.self) + "/?"
	}
	return cores(u.self) + "/" + cores(u.machine)
}

// loadAverage is the one-minute load average, "?" where unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return f[0] + " " + f[1] + " " + f[2]
}
