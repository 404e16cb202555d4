// Package pgsetup opens touchstream's PostgreSQL pool, creating the database first
// when it does not exist (the embedded default runs against a local cluster where the
// touchstream database may not have been made yet).
package pgsetup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Open connects a pool to dsn. With create set, a missing database is created through
// the cluster's maintenance database first.
func Open(ctx context.Context, dsn string, maxConns int32, create bool) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("database url: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "touchstream"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err = pool.Ping(pctx)
	var pgErr *pgconn.PgError
	if create && errors.As(err, &pgErr) && pgErr.Code == "3D000" { // invalid_catalog_name
		pool.Close()
		if err := createDatabase(ctx, dsn, cfg.ConnConfig.Database); err != nil {
			return nil, err
		}
		return Open(ctx, dsn, maxConns, false)
	}
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("database %s: %w", redact(dsn), err)
	}
	return pool, nil
}

func createDatabase(ctx context.Context, dsn, name string) error {
	u, err := url.Parse(dsn)
	if err != nil {
		return fmt.Errorf("database url: %w", err)
	}
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created meanwhile
			return nil
		}
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparseable url)"
	}
	return strings.TrimSuffix(u.Redacted(), "?"+u.RawQuery)
}
