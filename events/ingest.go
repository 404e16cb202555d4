package events

import (
	"fmt"
	"strings"
)

// ChannelSubjectPrefix is the first token of the gateway's NATS door subjects.
const ChannelSubjectPrefix = "ingest"

// ChannelSubject is the subject on which a channel system sends events of one type to
// the gateway's NATS request-reply door: ingest.<channel>.<type>, for example
// ingest.store.recharge.completed. The subject carries the type so that a channel's
// NATS permissions can be limited to its allowed types (a family wildcard "offer.*"
// becomes ingest.<channel>.offer.*); a request holds one event or a batch of events
// of that one type. The gateway still checks the channel's source and types itself.
func ChannelSubject(channel, eventType string) string {
	return ChannelSubjectPrefix + "." + channel + "." + eventType
}

// ParseChannelSubject splits a door subject into its channel and event type. The
// subject must be exactly ingest.<channel>.<family>.<name>.
func ParseChannelSubject(subject string) (channel, eventType string, err error) {
	tokens := strings.Split(subject, ".")
	if len(tokens) != 4 || tokens[0] != ChannelSubjectPrefix {
		return "", "", fmt.Errorf("subject %q: must be %s.<channel>.<type>, e.g. %s", subject, ChannelSubjectPrefix,
			ChannelSubject("store", TypeRechargeCompleted))
	}
	for _, tok := range tokens[1:] {
		if tok == "" || tok == "*" || tok == ">" {
			return "", "", fmt.Errorf("subject %q: empty or wildcard token", subject)
		}
	}
	return tokens[1], tokens[2] + "." + tokens[3], nil
}
