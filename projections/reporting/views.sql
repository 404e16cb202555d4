-- The reporting views: the read-model SQL contract for dashboards (Grafana) and other
-- SQL readers. Readers query schema "reporting" only, through the read-only role
-- (EnsureRole); the versioned schemas behind it (customer360_v1, loyalty_v2, ...) are
-- the projections' own and change on every rebuild.
--
-- Format. Each view is a block opened by a header line
--     -- @view reporting.<name> (<column> <type>, ...)
-- naming the view's columns and their types: the stable part of the contract. Its
-- statements follow, separated by ";" at the end of a line: a CREATE OR REPLACE VIEW
-- whose columns are exactly the header's, in order and type, then COMMENT ON VIEW /
-- COLUMN statements. {{customer360}}, {{loyalty}}, {{churn}} and {{servicelevel}}
-- stand for the serving version's schema of that projection (projections.serving);
-- {{answer_target}} for servicelevel.AnswerTarget. A view whose tables do not exist
-- yet (the version is not migrated) is created from its header instead, typed and
-- empty, so that readers and grants keep working until Refresh runs again.
--
-- Columns may be added at the end of a view; never renamed, retyped or removed
-- (CREATE OR REPLACE VIEW refuses that, and dashboards depend on them). No view
-- exposes personal data: customer ids are opaque identifiers, never names or phones.
-- Text columns are in the database's default collation (the read models keep ids in
-- "C"), so that every version, and an empty stand-in, has the same shape.

-- @view reporting.customers_by_tier (tier text, lifecycle text, customers bigint, spend_3m_fen bigint)
CREATE OR REPLACE VIEW reporting.customers_by_tier AS
SELECT tier::text, lifecycle::text, count(*)::bigint AS customers, coalesce(sum(spend_3m_fen), 0)::bigint AS spend_3m_fen
FROM {{customer360}}.profiles
GROUP BY tier, lifecycle;
COMMENT ON VIEW reporting.customers_by_tier IS 'Customers of the serving customer 360 per value tier and lifecycle stage.';
COMMENT ON COLUMN reporting.customers_by_tier.tier IS 'Value tier (deploy/tiers.json: platinum, gold, silver, bronze).';
COMMENT ON COLUMN reporting.customers_by_tier.lifecycle IS 'Lifecycle stage: new, active, porting_out, terminated.';
COMMENT ON COLUMN reporting.customers_by_tier.customers IS 'Customers in the tier and stage.';
COMMENT ON COLUMN reporting.customers_by_tier.spend_3m_fen IS 'Their rolling three-month spend, summed, in fen (1/100 CNY).';

-- @view reporting.loyalty_monthly (month date, earned bigint, bonus bigint, redeemed bigint, expired bigint, reversed bigint, adjusted bigint, net bigint)
CREATE OR REPLACE VIEW reporting.loyalty_monthly AS
SELECT make_date(month / 12, month % 12 + 1, 1) AS month,
       coalesce(sum(points) FILTER (WHERE kind = 'earn'), 0)::bigint AS earned,
       coalesce(sum(points) FILTER (WHERE kind = 'bonus'), 0)::bigint AS bonus,
       coalesce(-sum(points) FILTER (WHERE kind IN ('redeem', 'overdraft') AND points < 0), 0)::bigint AS redeemed,
       coalesce(-sum(points) FILTER (WHERE kind = 'expire'), 0)::bigint AS expired,
       coalesce(-sum(points) FILTER (WHERE kind = 'reverse'), 0)::bigint AS reversed,
       coalesce(sum(points) FILTER (WHERE kind = 'adjust'), 0)::bigint AS adjusted,
       coalesce(sum(points), 0)::bigint AS net
FROM {{loyalty}}.entries
GROUP BY month;
COMMENT ON VIEW reporting.loyalty_monthly IS 'The loyalty club''s points per local month, as the ledger of the serving loyalty version records them (the same figures as the query API''s club totals).';
COMMENT ON COLUMN reporting.loyalty_monthly.month IS 'First day of the local month (the operator''s zone).';
COMMENT ON COLUMN reporting.loyalty_monthly.earned IS 'Points earned on spend.';
COMMENT ON COLUMN reporting.loyalty_monthly.bonus IS 'Bonus points (anniversaries, campaigns).';
COMMENT ON COLUMN reporting.loyalty_monthly.redeemed IS 'Points redeemed, positive (overdrafts included).';
COMMENT ON COLUMN reporting.loyalty_monthly.expired IS 'Points expired, positive.';
COMMENT ON COLUMN reporting.loyalty_monthly.reversed IS 'Points taken back with reversed spend, positive.';
COMMENT ON COLUMN reporting.loyalty_monthly.adjusted IS 'Manual adjustments, signed.';
COMMENT ON COLUMN reporting.loyalty_monthly.net IS 'Every movement of the month, signed.';

-- @view reporting.loyalty_tiers (tier text, members bigint, points bigint, overdrawn bigint)
CREATE OR REPLACE VIEW reporting.loyalty_tiers AS
SELECT tier::text, count(*)::bigint AS members, coalesce(sum(balance), 0)::bigint AS points, coalesce(sum(overdraft), 0)::bigint AS overdrawn
FROM {{loyalty}}.members
GROUP BY tier;
COMMENT ON VIEW reporting.loyalty_tiers IS 'Loyalty members per club tier, with the points they hold (the club''s liability).';
COMMENT ON COLUMN reporting.loyalty_tiers.tier IS 'Club tier.';
COMMENT ON COLUMN reporting.loyalty_tiers.members IS 'Members in the tier.';
COMMENT ON COLUMN reporting.loyalty_tiers.points IS 'Points balance summed, each as of the member''s own event time.';
COMMENT ON COLUMN reporting.loyalty_tiers.overdrawn IS 'Points overdrawn (owed back by members), summed.';

-- @view reporting.churn_scores (customer_id text, score double precision, model text, tier text, region text, value_fen bigint, state_group text, scored_at timestamptz)
CREATE OR REPLACE VIEW reporting.churn_scores AS
SELECT customer_id::text COLLATE "default" AS customer_id, score::double precision, model::text, tier::text, region::text, value_fen::bigint,
       (CASE WHEN terminated_at IS NOT NULL THEN 'churned' WHEN alert_id IS NOT NULL THEN 'warning' ELSE 'stable' END)::text AS state_group,
       scored_at::timestamptz
FROM {{churn}}.customers
WHERE score IS NOT NULL;
COMMENT ON VIEW reporting.churn_scores IS 'Every scored customer of the serving churn version, with the current score.';
COMMENT ON COLUMN reporting.churn_scores.customer_id IS 'Opaque customer id (no personal data).';
COMMENT ON COLUMN reporting.churn_scores.score IS 'Churn probability, 0 to 1.';
COMMENT ON COLUMN reporting.churn_scores.model IS 'Scorer that produced it: rules:<version> or sha256:<hex> of a trained model.';
COMMENT ON COLUMN reporting.churn_scores.tier IS 'Value tier.';
COMMENT ON COLUMN reporting.churn_scores.region IS 'Region code.';
COMMENT ON COLUMN reporting.churn_scores.value_fen IS 'Monthly spend the customer brings (baseline), in fen.';
COMMENT ON COLUMN reporting.churn_scores.state_group IS 'stable, warning (an alert is not closed) or churned (terminated); churn.StateGroup.';
COMMENT ON COLUMN reporting.churn_scores.scored_at IS 'Event time of the score.';

-- @view reporting.churn_alerts (alert_id text, customer_id text, state text, outcome text, score double precision, priority double precision, model text, raised_at timestamptz, updated_at timestamptz, closed_at timestamptz)
CREATE OR REPLACE VIEW reporting.churn_alerts AS
SELECT alert_id::text, customer_id::text COLLATE "default" AS customer_id, state::text, outcome::text, score::double precision, priority::double precision, model::text,
       raised_at::timestamptz, updated_at::timestamptz, closed_at::timestamptz
FROM {{churn}}.alerts;
COMMENT ON VIEW reporting.churn_alerts IS 'Churn alerts of the serving churn version and their lifecycle.';
COMMENT ON COLUMN reporting.churn_alerts.alert_id IS 'Alert id.';
COMMENT ON COLUMN reporting.churn_alerts.customer_id IS 'Opaque customer id (no personal data).';
COMMENT ON COLUMN reporting.churn_alerts.state IS 'open, acknowledged, actioned or closed.';
COMMENT ON COLUMN reporting.churn_alerts.outcome IS 'When closed: retained or churned; empty otherwise.';
COMMENT ON COLUMN reporting.churn_alerts.score IS 'Score when raised.';
COMMENT ON COLUMN reporting.churn_alerts.priority IS 'Score times monthly value: the retention desk''s order.';
COMMENT ON COLUMN reporting.churn_alerts.model IS 'Scorer that raised it.';
COMMENT ON COLUMN reporting.churn_alerts.raised_at IS 'Event time the alert was raised.';
COMMENT ON COLUMN reporting.churn_alerts.updated_at IS 'Event time of its last change.';
COMMENT ON COLUMN reporting.churn_alerts.closed_at IS 'Event time it closed; NULL while not closed.';

-- @view reporting.answer_rate_hourly (queue text, hour timestamptz, offered bigint, answered bigint, within_20s bigint, abandoned bigint, outbound bigint, answer_rate double precision, target double precision)
CREATE OR REPLACE VIEW reporting.answer_rate_hourly AS
SELECT queue::text COLLATE "default" AS queue, hour::timestamptz, offered::bigint, answered::bigint, within_20s::bigint, abandoned::bigint, outbound::bigint,
       (CASE WHEN offered > 0 THEN within_20s::double precision / offered END)::double precision AS answer_rate,
       {{answer_target}}::double precision AS target
FROM {{servicelevel}}.calls_hourly;
COMMENT ON VIEW reporting.answer_rate_hourly IS 'Inbound call center traffic per queue and local hour, and the 20-second answer rate against its target. Over several hours or queues, compute sum(within_20s) / sum(offered), never an average of answer_rate.';
COMMENT ON COLUMN reporting.answer_rate_hourly.queue IS 'Call center queue.';
COMMENT ON COLUMN reporting.answer_rate_hourly.hour IS 'Start of the operator''s local hour.';
COMMENT ON COLUMN reporting.answer_rate_hourly.offered IS 'Inbound calls offered.';
COMMENT ON COLUMN reporting.answer_rate_hourly.answered IS 'Inbound calls answered.';
COMMENT ON COLUMN reporting.answer_rate_hourly.within_20s IS 'Inbound calls answered within 20 seconds of waiting.';
COMMENT ON COLUMN reporting.answer_rate_hourly.abandoned IS 'Inbound calls not answered.';
COMMENT ON COLUMN reporting.answer_rate_hourly.outbound IS 'Outbound calls: counted apart, no part of the answer rate.';
COMMENT ON COLUMN reporting.answer_rate_hourly.answer_rate IS 'within_20s / offered; NULL when nothing was offered.';
COMMENT ON COLUMN reporting.answer_rate_hourly.target IS 'The answer rate target (servicelevel.AnswerTarget, 0.85).';

-- @view reporting.complaint_breaches (customer_id text, complaint_id text, enterprise boolean, opened_at timestamptz, promised_by timestamptz, resolved_at timestamptz, breached_at timestamptz, breach_reason text)
CREATE OR REPLACE VIEW reporting.complaint_breaches AS
SELECT customer_id::text COLLATE "default" AS customer_id, complaint_id::text COLLATE "default" AS complaint_id, enterprise::boolean, opened_at::timestamptz, promised_by::timestamptz, resolved_at::timestamptz,
       breached_at::timestamptz, breach_reason::text
FROM {{servicelevel}}.complaints
WHERE breached;
COMMENT ON VIEW reporting.complaint_breaches IS 'Complaints that missed their promised resolution deadline, in the serving service-level version.';
COMMENT ON COLUMN reporting.complaint_breaches.customer_id IS 'Opaque customer id (no personal data).';
COMMENT ON COLUMN reporting.complaint_breaches.complaint_id IS 'Complaint id.';
COMMENT ON COLUMN reporting.complaint_breaches.enterprise IS 'Under an enterprise (group customer) SLA.';
COMMENT ON COLUMN reporting.complaint_breaches.opened_at IS 'Event time the complaint was opened.';
COMMENT ON COLUMN reporting.complaint_breaches.promised_by IS 'Deadline promised.';
COMMENT ON COLUMN reporting.complaint_breaches.resolved_at IS 'Event time resolved; NULL while open.';
COMMENT ON COLUMN reporting.complaint_breaches.breached_at IS 'When the deadline was breached (the deadline itself, or the late resolution).';
COMMENT ON COLUMN reporting.complaint_breaches.breach_reason IS 'deadline_passed or resolved_late.';

-- @view reporting.projection_lag (projection text, target text, serving boolean, partition integer, lag_events bigint, lag_seconds double precision, owner text, measured_at timestamptz)
CREATE OR REPLACE VIEW reporting.projection_lag AS
SELECT substring(l.target FROM '^([a-z][a-z0-9]*)_v[0-9]+$')::text AS projection, l.target::text,
       EXISTS (SELECT 1 FROM projections.serving s WHERE s.target = l.target)::boolean AS serving,
       l.partition::integer, l.lag_events::bigint, l.lag_seconds::double precision, l.owner::text, l.measured_at::timestamptz
FROM projections.lag l;
COMMENT ON VIEW reporting.projection_lag IS 'How far each projection target trails the log, per partition, as its runner last measured it (every few seconds).';
COMMENT ON COLUMN reporting.projection_lag.projection IS 'Projection of a versioned target (customer360 for customer360_v2); NULL for an unversioned one (dedup).';
COMMENT ON COLUMN reporting.projection_lag.target IS 'Target schema the version writes.';
COMMENT ON COLUMN reporting.projection_lag.serving IS 'The target is its projection''s serving version (false: a rebuild or a replaced version).';
COMMENT ON COLUMN reporting.projection_lag.partition IS 'Log partition.';
COMMENT ON COLUMN reporting.projection_lag.lag_events IS 'Events in the partition not yet consumed.';
COMMENT ON COLUMN reporting.projection_lag.lag_seconds IS 'Log time between the newest event of the partition and the last one consumed.';
COMMENT ON COLUMN reporting.projection_lag.owner IS 'Runner instance that measured it (holds the partition''s lease).';
COMMENT ON COLUMN reporting.projection_lag.measured_at IS 'When measured: a stale row means no runner owns the partition.';

-- @view reporting.dead_letters (target text, status text, event_type text, count bigint, oldest_parked_at timestamptz, newest_parked_at timestamptz)
CREATE OR REPLACE VIEW reporting.dead_letters AS
SELECT target::text, status::text, coalesce(event_type, '')::text AS event_type, count(*)::bigint AS count,
       min(parked_at)::timestamptz AS oldest_parked_at, max(parked_at)::timestamptz AS newest_parked_at
FROM projections.dead_letters
GROUP BY target, status, coalesce(event_type, '');
COMMENT ON VIEW reporting.dead_letters IS 'Events a projection target could not apply (parked), redriven or discarded, counted; the events themselves are in the operations API (touchstream dlq).';
COMMENT ON COLUMN reporting.dead_letters.target IS 'Target schema.';
COMMENT ON COLUMN reporting.dead_letters.status IS 'parked (waiting for an operator), redriven or discarded.';
COMMENT ON COLUMN reporting.dead_letters.event_type IS 'CloudEvents type of the events; empty when it could not be decoded.';
COMMENT ON COLUMN reporting.dead_letters.count IS 'Dead letters.';
COMMENT ON COLUMN reporting.dead_letters.oldest_parked_at IS 'When the oldest was parked.';
COMMENT ON COLUMN reporting.dead_letters.newest_parked_at IS 'When the newest was parked.';

-- @view reporting.serving_versions (projection text, target text, previous text, switched_at timestamptz)
CREATE OR REPLACE VIEW reporting.serving_versions AS
SELECT projection::text, target::text, previous::text, switched_at::timestamptz
FROM projections.serving;
COMMENT ON VIEW reporting.serving_versions IS 'Which version serves each projection now. The other reporting views read the versions that served at the last Refresh (the projector refreshes after every switch).';
COMMENT ON COLUMN reporting.serving_versions.projection IS 'Projection.';
COMMENT ON COLUMN reporting.serving_versions.target IS 'Serving version (schema).';
COMMENT ON COLUMN reporting.serving_versions.previous IS 'Version it replaced, kept until dropped; NULL if none.';
COMMENT ON COLUMN reporting.serving_versions.switched_at IS 'When it started serving.';
