package simulate

import (
	"fmt"
	"time"
)

// progress writes a line of counts every interval until stop is closed, then a final
// one. On a terminal the line is rewritten in place.
func (s *Simulator) progress(stop <-chan struct{}, start time.Time) {
	w := s.cfg.Progress
	if w == nil {
		<-stop
		return
	}
	t := time.NewTicker(s.cfg.ProgressInterval)
	defer t.Stop()
	lastSent, lastAt := int64(0), start
	line := func(now time.Time, final bool) {
		st := s.Stats()
		rate := 0.0
		if dt := now.Sub(lastAt).Seconds(); dt > 0 {
			rate = float64(st.Sent-lastSent) / dt
		}
		if final {
			rate = float64(st.Sent) / max(now.Sub(start).Seconds(), 1e-9)
		}
		lastSent, lastAt = st.Sent, now
		msg := fmt.Sprintf("sent %d  stored %d  duplicate %d  refused %d  %.1f ev/s  customers %d  sim %s  elapsed %s",
			st.Sent, st.Stored, st.Duplicate, st.Refused, rate, st.Customers, st.Day.Format("2006-01-02 15:04"),
			now.Sub(start).Truncate(time.Second))
		if st.Abandoned > 0 {
			msg += fmt.Sprintf("  abandoned %d", st.Abandoned)
		}
		switch {
		case s.cfg.Terminal && final:
			fmt.Fprintf(w, "\r%s\x1b[K\n", msg)
		case s.cfg.Terminal:
			fmt.Fprintf(w, "\r%s\x1b[K", msg)
		default:
			fmt.Fprintln(w, msg)
		}
	}
	for {
		select {
		case now := <-t.C:
			line(now, false)
		case <-stop:
			line(time.Now(), true)
			return
		}
	}
}
