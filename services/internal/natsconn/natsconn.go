// Package natsconn opens the NATS connections of touchstream's services: named after
// the process, authenticated with its own identity (a credentials file or an nkey seed
// file), its replies on its own inbox prefix (natsauth.Inbox), over TLS when a CA or
// a client certificate is configured, and reconnecting forever with jittered backoff
// so that a restarting or failing-over server never stops a service.
package natsconn

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/touchstream/touchstream/services/internal/config"
	"github.com/touchstream/touchstream/services/internal/natsauth"
)

// Config is how one process connects.
type Config struct {
	// URL is the server URL, or several comma separated.
	URL string
	// Creds is the identity's file: a credentials file (a user JWT and its seed, as nsc
	// writes them) or an nkey seed file (SU..., as `run` generates and as an nkey user
	// of accounts.conf needs). Empty: no authentication.
	Creds string
	// TLS: a CA verifies the server; a certificate and key authenticate this client to
	// a server that requires them.
	TLS config.NATSTLS
	// Name is the connection name the server shows (touchstream-<service>).
	Name string
	// Identity is the NATS identity (natsauth) this process connects as: its replies
	// arrive on natsauth.Inbox(Identity), the only inbox its permissions allow. Empty:
	// the default inbox prefix (unrestricted servers, tests).
	Identity string
}

// For is the connection of a touchstream subcommand from the common settings: the
// subcommand's service identity (natsauth.ServiceOf), the credentials and TLS files.
func For(c *config.Common, command string) Config {
	return Config{URL: c.NATSURL, Creds: c.NATSCreds, TLS: c.NATSTLS, Name: "touchstream-" + command, Identity: natsauth.ServiceOf(command)}
}

// Connect connects to url as the named service, with the default inbox prefix and
// without TLS. creds, when set, is the identity's credentials or seed file.
func Connect(url, creds, name string, log *slog.Logger) (*nats.Conn, error) {
	return Dial(Config{URL: url, Creds: creds, Name: name}, log)
}

// Dial connects as cfg says.
func Dial(cfg Config, log *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.ReconnectBufSize(64 << 20),
		nats.Timeout(5 * time.Second),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Error("nats async error", "subject", subject, "error", err)
		}),
	}
	if cfg.Identity != "" {
		opts = append(opts, nats.CustomInboxPrefix(natsauth.Inbox(cfg.Identity)))
	}
	if cfg.Creds != "" {
		o, err := identity(cfg.Creds)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	if cfg.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLS.CA))
	}
	if cfg.TLS.Cert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLS.Cert, cfg.TLS.Key))
	}
	if cfg.TLS.Enabled() {
		opts = append(opts, nats.Secure())
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s as %s: %w", cfg.URL, cfg.Name, err)
	}
	return nc, nil
}

// identity is the option that authenticates with a credentials file or a seed file,
// told apart by their content.
func identity(path string) (nats.Option, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("nats identity: %w", err)
	}
	if bytes.Contains(b, []byte("BEGIN NATS USER JWT")) {
		return nats.UserCredentials(path), nil
	}
	o, err := nats.NkeyOptionFromSeed(path)
	if err != nil {
		return nil, fmt.Errorf("nats identity %s: neither a credentials file nor a user nkey seed: %w", path, err)
	}
	return o, nil
}
