// Package config is the only place touchstream reads its environment. Every command
// registers the settings it needs on its flag set; a setting not given as a flag falls
// back to its environment variable, then to its default. Values are validated before
// anything starts, and errors name the flag and the variable.
package config

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Common are the settings every service shares.
type Common struct {
	DeployDir   string // configuration files (streams.json, channels.json, ...)
	DataDir     string // local state for the embedded default (NATS store, keys)
	NATSURL     string // external NATS; empty means the embedded server (run only)
	NATSCreds   string // credentials file for the NATS identity of this process
	NATSTLS     NATSTLS
	DatabaseURL string
	LogLevel    slog.Level
	LogFormat   string // text or json
	AdminAddr   string // /metrics, /healthz, /readyz, /debug/pprof
	MasterKey   string // file holding the key service's key-encryption key
}

// Env reads an environment variable. Commands receive it from main (os.Getenv), tests
// pass a map.
type Env func(string) string

// OSEnv is the process environment.
func OSEnv() Env { return os.Getenv }

// MapEnv is an environment made of a map, for tests.
func MapEnv(m map[string]string) Env { return func(k string) string { return m[k] } }

// Register adds the common flags to fs with defaults from env.
func (c *Common) Register(fs *flag.FlagSet, env Env) {
	def := func(key, fallback string) string {
		if v := env(key); v != "" {
			return v
		}
		return fallback
	}
	fs.StringVar(&c.DeployDir, "deploy-dir", def("TOUCHSTREAM_DEPLOY_DIR", "deploy"), "directory of configuration files (env TOUCHSTREAM_DEPLOY_DIR)")
	fs.StringVar(&c.DataDir, "data-dir", def("TOUCHSTREAM_DATA_DIR", ".data"), "local state for the embedded default (env TOUCHSTREAM_DATA_DIR)")
	fs.StringVar(&c.NATSURL, "nats-url", def("TOUCHSTREAM_NATS_URL", ""), "NATS server URL(s), comma separated (env TOUCHSTREAM_NATS_URL)")
	fs.StringVar(&c.NATSCreds, "nats-creds", def("TOUCHSTREAM_NATS_CREDS", ""), "NATS credentials file of this process's identity (env TOUCHSTREAM_NATS_CREDS)")
	c.NATSTLS.register(fs, def)
	fs.StringVar(&c.DatabaseURL, "database-url", def("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/touchstream?sslmode=disable"), "PostgreSQL URL (env DATABASE_URL)")
	fs.TextVar(&c.LogLevel, "log-level", levelDefault(env("TOUCHSTREAM_LOG_LEVEL")), "log level: debug, info, warn, error (env TOUCHSTREAM_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", def("TOUCHSTREAM_LOG_FORMAT", "text"), "log format: text or json (env TOUCHSTREAM_LOG_FORMAT)")
	fs.StringVar(&c.AdminAddr, "admin-addr", def("TOUCHSTREAM_ADMIN_ADDR", "127.0.0.1:9090"), "admin listener: metrics, health, pprof (env TOUCHSTREAM_ADMIN_ADDR)")
	fs.StringVar(&c.MasterKey, "master-key-file", def("TOUCHSTREAM_MASTER_KEY_FILE", ""), "file with the key service's 32-byte key-encryption key, base64 (env TOUCHSTREAM_MASTER_KEY_FILE); default <data-dir>/secrets/master.key")
}

func levelDefault(s string) *slog.Level {
	var l slog.Level
	if s != "" {
		_ = l.UnmarshalText([]byte(s))
	}
	return &l
}

// Validate checks the common settings.
func (c *Common) Validate() error {
	var errs []error
	if c.DeployDir == "" {
		errs = append(errs, errors.New("--deploy-dir (TOUCHSTREAM_DEPLOY_DIR): required"))
	} else if st, err := os.Stat(c.DeployDir); err != nil || !st.IsDir() {
		errs = append(errs, fmt.Errorf("--deploy-dir (TOUCHSTREAM_DEPLOY_DIR) %q: not a directory", c.DeployDir))
	}
	errs = append(errs, c.NATSTLS.validate())
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format (TOUCHSTREAM_LOG_FORMAT) %q: must be text or json", c.LogFormat))
	}
	if c.DatabaseURL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres://") && !strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		errs = append(errs, errors.New("--database-url (DATABASE_URL): must be a postgres:// URL"))
	}
	return errors.Join(errs...)
}

// DeployFile is the path of a configuration file in the deploy directory.
func (c *Common) DeployFile(name string) string { return filepath.Join(c.DeployDir, name) }

// MasterKeyFile is the key-encryption key file, defaulting into the data directory.
func (c *Common) MasterKeyFile() string {
	if c.MasterKey != "" {
		return c.MasterKey
	}
	return c.SecretFile("master.key")
}

// SecretFile is the default path of a secret in the data directory (development
// default; production provisions secrets and points at them with flags).
func (c *Common) SecretFile(name string) string { return filepath.Join(c.DataDir, "secrets", name) }

// Logger builds the process logger.
func (c *Common) Logger() *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// Duration reads a duration flag default from env.
func Duration(env Env, key string, fallback time.Duration) time.Duration {
	if v := env(key); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return fallback
}

// String reads a string flag default from env.
func String(env Env, key, fallback string) string {
	if v := env(key); v != "" {
		return v
	}
	return fallback
}
