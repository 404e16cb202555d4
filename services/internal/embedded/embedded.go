// Package embedded runs a nats-server (the Go module, not the system package) inside a
// touchstream process, for `make run` and for single-machine installations. Its
// JetStream store lives under the data directory, so events survive restarts. Given
// users (services/internal/natsauth), it admits only them, each with its own
// permissions; given a certificate, it speaks only TLS, optionally requiring client
// certificates (mutual TLS).
package embedded

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/touchstream/touchstream/services/internal/config"
)

// Config configures the embedded server.
type Config struct {
	Host     string // default 127.0.0.1
	Port     int    // default 4333 (4222 is often taken by another server)
	StoreDir string // JetStream store
	Name     string
	// ConfigFile, when set, is a nats-server configuration file whose settings are
	// applied first (accounts, TLS, cluster); Host, Port and StoreDir still override.
	ConfigFile string
	// Users, when set, are the only clients admitted: nkey users with their
	// permissions (natsauth.Table.Users). Empty: any client, with every permission.
	Users []*server.NkeyUser
	// TLS, when its certificate is set, makes every client connection use TLS: plain
	// connections are refused, and with Verify a client must present a certificate
	// signed by ClientCA.
	TLS config.NATSServerTLS
}

// Server is a running embedded nats-server.
type Server struct {
	s   *server.Server
	log *slog.Logger
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config, log *slog.Logger) (*Server, error) {
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		o, err := server.ProcessConfigFile(cfg.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: config %s: %w", cfg.ConfigFile, err)
		}
		opts = o
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = 4333
	}
	// A cluster member's name comes from its configuration file: JetStream tells the
	// members apart by it, so it is never overwritten by the default.
	switch {
	case cfg.Name != "":
		opts.ServerName = cfg.Name
	case opts.ServerName == "":
		opts.ServerName = "touchstream-embedded"
	}
	opts.Host = cfg.Host
	opts.Port = cfg.Port
	opts.JetStream = true
	opts.StoreDir = filepath.Clean(cfg.StoreDir)
	opts.NoSigs = true
	opts.NoLog = true
	opts.MaxPayload = 8 << 20
	if len(cfg.Users) > 0 {
		opts.Nkeys = cfg.Users
	}
	if cfg.TLS.Enabled() {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cfg.TLS.Cert, KeyFile: cfg.TLS.Key,
			CaFile: cfg.TLS.ClientCA, Verify: cfg.TLS.Verify})
		if err != nil {
			return nil, fmt.Errorf("embedded nats: tls: %w", err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSVerify = tc, true, cfg.TLS.Verify
		opts.TLSTimeout = 5
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready on %s after 30s (is the port taken?)", net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	}
	log.Info("embedded nats-server started", "url", s.ClientURL(), "store_dir", opts.StoreDir, "version", server.VERSION,
		"users", len(opts.Nkeys), "tls", opts.TLS, "tls_verify", opts.TLSVerify)
	return &Server{s: s, log: log}, nil
}

// URL is the client URL.
func (s *Server) URL() string { return s.s.ClientURL() }

// Run blocks until ctx is done, then shuts the server down.
func (s *Server) Run(ctx context.Context) error {
	<-ctx.Done()
	s.Shutdown()
	return nil
}

// Shutdown stops the server and waits for it.
func (s *Server) Shutdown() {
	s.s.Shutdown()
	s.s.WaitForShutdown()
}
