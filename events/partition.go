package events

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// DefaultSubjectPrefix is the first token of every stored subject.
const DefaultSubjectPrefix = "tp"

// Partition returns the partition of a customer: FNV-1a 32-bit of the customer id,
// modulo the number of partitions. It is the same function as the NATS server's
// {{partition(n, ...)}} subject mapping, so a server-side transform and every client
// agree on where a customer's events live.
func Partition(customerID string, partitions int) int {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(customerID); i++ {
		h ^= uint32(customerID[i])
		h *= prime32
	}
	return int(h % uint32(partitions))
}

// Layout describes how the log is laid out on NATS: the subject prefix, the fixed
// number of partitions and which stream holds which partition. It is configuration
// (deploy/streams.json) and never changes for the life of a log: changing the number
// of partitions is a migration.
type Layout struct {
	Prefix     string         `json:"subject_prefix"`
	Partitions int            `json:"partitions"`
	Streams    []StreamLayout `json:"streams"`
}

// StreamLayout is one stream and the partitions it holds.
type StreamLayout struct {
	Name string `json:"name"`
	// First and Last bound the partitions the stream holds, inclusive.
	First int `json:"first_partition"`
	Last  int `json:"last_partition"`
}

var streamName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
var subjectToken = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Validate checks that the layout covers every partition exactly once.
func (l Layout) Validate() error {
	if !subjectToken.MatchString(l.Prefix) {
		return fmt.Errorf("layout: subject_prefix %q: must be one subject token of [A-Za-z0-9_-]", l.Prefix)
	}
	if l.Partitions < 1 || l.Partitions > 4096 {
		return fmt.Errorf("layout: partitions %d: must be between 1 and 4096", l.Partitions)
	}
	if len(l.Streams) == 0 {
		return fmt.Errorf("layout: streams: at least one stream is required")
	}
	owner := make([]string, l.Partitions)
	seen := map[string]bool{}
	for i, s := range l.Streams {
		if !streamName.MatchString(s.Name) {
			return fmt.Errorf("layout: streams[%d].name %q: must match %s", i, s.Name, streamName)
		}
		if seen[s.Name] {
			return fmt.Errorf("layout: streams[%d].name %q: duplicate", i, s.Name)
		}
		seen[s.Name] = true
		if s.First < 0 || s.Last >= l.Partitions || s.First > s.Last {
			return fmt.Errorf("layout: streams[%d] %s: partitions %d-%d outside 0-%d", i, s.Name, s.First, s.Last, l.Partitions-1)
		}
		for p := s.First; p <= s.Last; p++ {
			if owner[p] != "" {
				return fmt.Errorf("layout: partition %d is held by both %s and %s", p, owner[p], s.Name)
			}
			owner[p] = s.Name
		}
	}
	for p, o := range owner {
		if o == "" {
			return fmt.Errorf("layout: partition %d is held by no stream", p)
		}
	}
	return nil
}

// DefaultLayout is one stream, TOUCHPOINTS, holding 64 partitions.
func DefaultLayout() Layout {
	return Layout{Prefix: DefaultSubjectPrefix, Partitions: 64, Streams: []StreamLayout{{Name: "TOUCHPOINTS", First: 0, Last: 63}}}
}

// Stream returns the name of the stream that holds partition p.
func (l Layout) Stream(p int) string {
	for _, s := range l.Streams {
		if p >= s.First && p <= s.Last {
			return s.Name
		}
	}
	return ""
}

// PartitionOf returns the partition of a customer under this layout.
func (l Layout) PartitionOf(customerID string) int { return Partition(customerID, l.Partitions) }

// Subject is the stored subject of an event type in a partition: <prefix>.<p>.<type>.
func (l Layout) Subject(partition int, eventType string) string {
	return l.Prefix + "." + strconv.Itoa(partition) + "." + eventType
}

// PartitionFilter is the subject filter matching every event of a partition.
func (l Layout) PartitionFilter(partition int) string {
	return l.Prefix + "." + strconv.Itoa(partition) + ".>"
}

// StreamSubjects lists the subjects a stream binds: one filter per partition it holds.
func (l Layout) StreamSubjects(s StreamLayout) []string {
	if s.First == 0 && s.Last == l.Partitions-1 {
		return []string{l.Prefix + ".*.>"}
	}
	out := make([]string, 0, s.Last-s.First+1)
	for p := s.First; p <= s.Last; p++ {
		out = append(out, l.PartitionFilter(p))
	}
	return out
}

// IngestSubject is the subject a publisher that only knows the customer id may use when
// the log is a single stream: a stream subject transform maps
// <prefix>in.<customer>.<type> to the partitioned subject and drops the id, so customer
// ids never become stored subjects. The SDK computes the partition itself and does not
// need it.
func (l Layout) IngestSubject(customerID, eventType string) string {
	return l.Prefix + "in." + customerID + "." + eventType
}

// ParseSubject extracts the partition and event type from a stored subject.
func (l Layout) ParseSubject(subject string) (partition int, eventType string, err error) {
	rest, ok := strings.CutPrefix(subject, l.Prefix+".")
	if !ok {
		return 0, "", fmt.Errorf("subject %q: prefix is not %q", subject, l.Prefix)
	}
	p, t, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, "", fmt.Errorf("subject %q: no event type", subject)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n >= l.Partitions {
		return 0, "", fmt.Errorf("subject %q: partition token %q is not in 0-%d", subject, p, l.Partitions-1)
	}
	return n, t, nil
}
