// Package reporting provides the read-model SQL contract: stable, documented views in
// PostgreSQL schema "reporting" over the serving versions of the read models, and a
// read-only role that can read them and nothing else. Dashboards (deploy/grafana)
// and any other SQL reader query these views, never the versioned schemas
// (customer360_v1, loyalty_v2, ...), which a rebuild replaces.
//
// # The contract
//
// The views are defined in views.sql (embedded; Views lists them with their columns).
// Each view has a header declaring its columns and their types, COMMENT ON VIEW and
// COMMENT ON COLUMN text (visible in psql \d+ and in Grafana's query builder), and
// every column is cast to its declared type, so a view's shape does not depend on the
// version behind it. Columns may be added at the end of a view; they are never
// renamed, retyped or removed. The views are:
//
//	reporting.customers_by_tier   (tier, lifecycle, customers, spend_3m_fen)             customer360
//	reporting.loyalty_monthly     (month, earned, bonus, redeemed, expired, reversed,
//	                               adjusted, net)                                        loyalty
//	reporting.loyalty_tiers       (tier, members, points, overdrawn)                     loyalty
//	reporting.churn_scores        (customer_id, score, model, tier, region, value_fen,
//	                               state_group, scored_at)                               churn
//	reporting.churn_alerts        (alert_id, customer_id, state, outcome, score,
//	                               priority, model, raised_at, updated_at, closed_at)    churn
//	reporting.answer_rate_hourly  (queue, hour, offered, answered, within_20s,
//	                               abandoned, outbound, answer_rate, target)             servicelevel
//	reporting.complaint_breaches  (customer_id, complaint_id, enterprise, opened_at,
//	                               promised_by, resolved_at, breached_at, breach_reason) servicelevel
//	reporting.projection_lag      (projection, target, serving, partition, lag_events,
//	                               lag_seconds, owner, measured_at)                      projections.lag
//	reporting.dead_letters        (target, status, event_type, count,
//	                               oldest_parked_at, newest_parked_at)                   projections.dead_letters
//	reporting.serving_versions    (projection, target, previous, switched_at)            projections.serving
//
// No view exposes personal data: customer ids are opaque identifiers; names, phone
// numbers and id numbers are only ever sealed inside the read models' documents,
// which no view reads. The churn state group is named state_group ("group" is a
// reserved word in SQL).
//
// # Refresh
//
// Refresh reads projections.serving and, in one transaction, creates schema
// reporting and creates or replaces every view over the serving version of its
// projection (a projection with no serving version recorded: its _v1). Readers see
// either the views before or after, never a mix. Concurrent Refreshes (several
// projector instances) are serialised by an advisory lock. A view whose version has
// no tables yet (not migrated) is created typed and empty instead, so the others are
// refreshed and readers keep working; the next Refresh after the version is migrated
// replaces it. Refresh must follow every switch of a serving version (the projector
// calls it when it starts and after it follows a switch): until then the views read
// the replaced version, and dropping that version (DropTarget, DROP SCHEMA ...
// CASCADE) drops the views still over it, until Refresh recreates them.
//
// # The read-only role
//
// EnsureRole creates a role (NOLOGIN) if missing and grants it USAGE on schema
// reporting and SELECT on its views, including the views created later (default
// privileges): EnsureRole and Refresh must run as the same database user, which owns
// the views; that user needs CREATEROLE to create the role. The views run with their
// owner's rights, so the role reads the read models only through them and has no
// access to the versioned schemas or the runtime's tables. In production, give it a
// login and a password out of band (see deploy/grafana/README.md):
//
//	ALTER ROLE touchstream_reporting LOGIN PASSWORD '...';
//
// or, better, create a login role that is a member of it:
//
//	CREATE ROLE grafana LOGIN PASSWORD '...' IN ROLE touchstream_reporting;
package reporting
