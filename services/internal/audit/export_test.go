package audit

// Pending is how many reads wait for the writer, for tests of the group commit.
func Pending(l *Log) int { return len(l.queue) }
