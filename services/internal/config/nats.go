package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// NATSTLS are a NATS client's TLS settings, shared by every command.
type NATSTLS struct {
	// CA is the PEM file of the certificate authorities that sign the server's
	// certificate; set, the connection requires TLS and verifies the server.
	CA string
	// Cert and Key are the PEM files of this client's certificate and key, for a
	// server that requires client certificates (mutual TLS). Both or neither.
	Cert, Key string
}

// Enabled reports whether the client uses TLS.
func (t NATSTLS) Enabled() bool { return t.CA != "" || t.Cert != "" }

func (t *NATSTLS) register(fs *flag.FlagSet, def func(key, fallback string) string) {
	fs.StringVar(&t.CA, "nats-tls-ca", def("TOUCHSTREAM_NATS_TLS_CA", ""), "PEM file of the CAs that sign the NATS server's certificate: connect with TLS and verify the server (env TOUCHSTREAM_NATS_TLS_CA)")
	fs.StringVar(&t.Cert, "nats-tls-cert", def("TOUCHSTREAM_NATS_TLS_CERT", ""), "PEM file of this client's certificate, for a server that requires client certificates (env TOUCHSTREAM_NATS_TLS_CERT)")
	fs.StringVar(&t.Key, "nats-tls-key", def("TOUCHSTREAM_NATS_TLS_KEY", ""), "PEM file of this client's private key (env TOUCHSTREAM_NATS_TLS_KEY)")
}

func (t NATSTLS) validate() error {
	var errs []error
	if (t.Cert == "") != (t.Key == "") {
		errs = append(errs, errors.New("--nats-tls-cert (TOUCHSTREAM_NATS_TLS_CERT) and --nats-tls-key (TOUCHSTREAM_NATS_TLS_KEY): give both or neither"))
	}
	errs = append(errs, readable("--nats-tls-ca (TOUCHSTREAM_NATS_TLS_CA)", t.CA),
		readable("--nats-tls-cert (TOUCHSTREAM_NATS_TLS_CERT)", t.Cert), readable("--nats-tls-key (TOUCHSTREAM_NATS_TLS_KEY)", t.Key))
	return errors.Join(errs...)
}

// NATSServerTLS are the TLS settings of the embedded nats-server (`run`, `nats`).
type NATSServerTLS struct {
	// Cert and Key are the PEM files of the server's certificate and key; set, every
	// client connection must use TLS (plain connections are refused).
	Cert, Key string
	// ClientCA is the PEM file of the CAs that sign client certificates; with Verify,
	// a client without a certificate signed by it cannot connect (mutual TLS).
	ClientCA string
	Verify   bool
}

// Enabled reports whether the server requires TLS.
func (t NATSServerTLS) Enabled() bool { return t.Cert != "" }

// Register adds the embedded server's TLS flags to fs with defaults from env.
func (t *NATSServerTLS) Register(fs *flag.FlagSet, env Env) {
	fs.StringVar(&t.Cert, "nats-server-tls-cert", String(env, "TOUCHSTREAM_NATS_SERVER_TLS_CERT", ""), "embedded nats-server: PEM certificate; set, clients must connect with TLS (env TOUCHSTREAM_NATS_SERVER_TLS_CERT)")
	fs.StringVar(&t.Key, "nats-server-tls-key", String(env, "TOUCHSTREAM_NATS_SERVER_TLS_KEY", ""), "embedded nats-server: PEM private key (env TOUCHSTREAM_NATS_SERVER_TLS_KEY)")
	fs.StringVar(&t.ClientCA, "nats-server-tls-client-ca", String(env, "TOUCHSTREAM_NATS_SERVER_TLS_CLIENT_CA", ""), "embedded nats-server: PEM CAs that sign client certificates (env TOUCHSTREAM_NATS_SERVER_TLS_CLIENT_CA)")
	fs.BoolVar(&t.Verify, "nats-server-tls-verify", String(env, "TOUCHSTREAM_NATS_SERVER_TLS_VERIFY", "") == "true", "embedded nats-server: require client certificates signed by the client CA: mutual TLS (env TOUCHSTREAM_NATS_SERVER_TLS_VERIFY=true)")
}

// Validate checks the server's TLS settings.
func (t NATSServerTLS) Validate() error {
	var errs []error
	if (t.Cert == "") != (t.Key == "") {
		errs = append(errs, errors.New("--nats-server-tls-cert and --nats-server-tls-key: give both or neither"))
	}
	if t.Verify && t.ClientCA == "" {
		errs = append(errs, errors.New("--nats-server-tls-verify: needs --nats-server-tls-client-ca, the CAs client certificates are checked against"))
	}
	if t.Verify && t.Cert == "" {
		errs = append(errs, errors.New("--nats-server-tls-verify: needs the server's own certificate (--nats-server-tls-cert)"))
	}
	errs = append(errs, readable("--nats-server-tls-cert", t.Cert), readable("--nats-server-tls-key", t.Key),
		readable("--nats-server-tls-client-ca", t.ClientCA))
	return errors.Join(errs...)
}

// readable checks that a file named by a setting can be read.
func readable(setting, path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s %q: %w", setting, path, errors.Unwrap(err))
	}
	return f.Close()
}
