// Package natsauth builds the NATS identities of channel systems: one nkey user per
// channel that may publish only on its own ingest subject (ingest.<channel>.>) and
// receive replies only on its own inbox prefix (_INBOX_<channel>.>). A channel can
// therefore neither write as another channel, nor reach the log (no JetStream API, no
// stored subject), nor read anyone else's replies. The gateway answers on the reply
// subject the request names, so its own identity needs no per-channel rule.
package natsauth

import (
	"fmt"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/touchstream/touchstream/services/internal/gateway"
)

// Inbox is the inbox prefix of a channel's connection: pass nats.CustomInboxPrefix
// (see InboxOption) when the channel connects.
func Inbox(channel string) string { return "_INBOX_" + channel }

// InboxOption is the connect option a channel system uses so that replies reach it.
func InboxOption(channel string) nats.Option { return nats.CustomInboxPrefix(Inbox(channel)) }

// ChannelUsers returns the nkey users of the channels that have a NATS nkey.
func ChannelUsers(channels []gateway.Channel) ([]*server.NkeyUser, error) {
	var out []*server.NkeyUser
	for _, ch := range channels {
		if ch.NATSNkey == "" {
			continue
		}
		if ch.Name == "" {
			return nil, fmt.Errorf("natsauth: channel without a name")
		}
		out = append(out, &server.NkeyUser{
			Nkey: ch.NATSNkey,
			Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"ingest." + ch.Name + ".>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{Inbox(ch.Name) + ".>"}},
			},
		})
	}
	return out, nil
}
