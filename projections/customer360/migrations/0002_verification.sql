-- Columns that `touchstream verify` compares with the log, maintained by the fold:
--   seq_hash            order-independent hash of the stream sequences counted in
--                       events_total: sum mod 2^64 of splitmix64(seq) (customer360.SeqHash);
--   recharge_total_fen  recharge.completed minus recharge.reversed, retracted events left out;
--   lifetime_spend_fen  recharges, reversals, bills and adjustments (the profile's
--                       lifetime spend), retracted events left out.
-- A version folded before this migration has seq_hash and recharge_total_fen at 0 and
-- does not verify until it is rebuilt; lifetime_spend_fen is copied from the profile.
ALTER TABLE profiles
    ADD COLUMN seq_hash           bigint NOT NULL DEFAULT 0,
    ADD COLUMN recharge_total_fen bigint NOT NULL DEFAULT 0,
    ADD COLUMN lifetime_spend_fen bigint NOT NULL DEFAULT 0;
UPDATE profiles SET lifetime_spend_fen = coalesce((convert_from(doc, 'UTF8')::jsonb ->> 'lifetime_spend_fen')::bigint, 0);
