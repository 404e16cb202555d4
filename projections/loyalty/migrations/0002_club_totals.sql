-- The club's totals, kept up to date with every write instead of summed over every
-- member and every ledger entry on each request (a full scan of both tables: about a
-- second and a half per request at a million members). Rows are per partition, so the
-- projector's workers, which own disjoint partitions, never wait on each other's rows;
-- a reader sums a few hundred rows. Statement-level triggers with transition tables
-- keep them: one aggregate per statement, whatever path wrote the rows (the fold, a
-- customer recomputed in place, a redrive), in the writing transaction.

ALTER TABLE entries ADD COLUMN partition int NOT NULL DEFAULT -1;  -- -1: entries stored before this migration

CREATE TABLE tier_totals (
    partition  int    NOT NULL,
    tier       text   NOT NULL,
    members    bigint NOT NULL,
    balance    bigint NOT NULL,
    overdraft  bigint NOT NULL,
    PRIMARY KEY (partition, tier)
);

CREATE TABLE month_totals (
    partition  int    NOT NULL,
    month      int    NOT NULL,   -- local month (year*12 + month-1), as entries.month
    kind       text   NOT NULL,
    entries    bigint NOT NULL,
    points     bigint NOT NULL,   -- signed sum
    negative   bigint NOT NULL,   -- sum of the negative points only
    PRIMARY KEY (partition, month, kind)
);

INSERT INTO tier_totals (partition, tier, members, balance, overdraft)
    SELECT partition, tier, count(*), sum(balance), sum(overdraft) FROM members GROUP BY partition, tier;
INSERT INTO month_totals (partition, month, kind, entries, points, negative)
    SELECT partition, month, kind, count(*), sum(points), coalesce(sum(points) FILTER (WHERE points < 0), 0)
    FROM entries GROUP BY partition, month, kind;

-- sign is -1 for the rows a statement removed (old_rows), +1 for those it wrote.
-- Rows are added in key order, so two transactions lock shared rows in the same order.
CREATE FUNCTION members_totals() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO tier_totals AS t (partition, tier, members, balance, overdraft)
            SELECT partition, tier, -count(*), -sum(balance), -sum(overdraft) FROM old_rows
            GROUP BY partition, tier ORDER BY partition, tier
        ON CONFLICT (partition, tier) DO UPDATE SET members = t.members + excluded.members,
            balance = t.balance + excluded.balance, overdraft = t.overdraft + excluded.overdraft;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO tier_totals AS t (partition, tier, members, balance, overdraft)
            SELECT partition, tier, count(*), sum(balance), sum(overdraft) FROM new_rows
            GROUP BY partition, tier ORDER BY partition, tier
        ON CONFLICT (partition, tier) DO UPDATE SET members = t.members + excluded.members,
            balance = t.balance + excluded.balance, overdraft = t.overdraft + excluded.overdraft;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION entries_totals() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO month_totals AS t (partition, month, kind, entries, points, negative)
            SELECT partition, month, kind, -count(*), -sum(points), -coalesce(sum(points) FILTER (WHERE points < 0), 0) FROM old_rows
            GROUP BY partition, month, kind ORDER BY partition, month, kind
        ON CONFLICT (partition, month, kind) DO UPDATE SET entries = t.entries + excluded.entries,
            points = t.points + excluded.points, negative = t.negative + excluded.negative;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO month_totals AS t (partition, month, kind, entries, points, negative)
            SELECT partition, month, kind, count(*), sum(points), coalesce(sum(points) FILTER (WHERE points < 0), 0) FROM new_rows
            GROUP BY partition, month, kind ORDER BY partition, month, kind
        ON CONFLICT (partition, month, kind) DO UPDATE SET entries = t.entries + excluded.entries,
            points = t.points + excluded.points, negative = t.negative + excluded.negative;
    END IF;
    RETURN NULL;
END $$;

-- An INSERT ... ON CONFLICT DO UPDATE fires both: inserted rows reach the INSERT
-- trigger's new_rows, updated ones the UPDATE trigger's old_rows and new_rows.
CREATE TRIGGER members_totals_insert AFTER INSERT ON members REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION members_totals();
CREATE TRIGGER members_totals_update AFTER UPDATE ON members REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION members_totals();
CREATE TRIGGER members_totals_delete AFTER DELETE ON members REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION members_totals();
CREATE TRIGGER entries_totals_insert AFTER INSERT ON entries REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION entries_totals();
CREATE TRIGGER entries_totals_update AFTER UPDATE ON entries REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION entries_totals();
CREATE TRIGGER entries_totals_delete AFTER DELETE ON entries REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION entries_totals();
