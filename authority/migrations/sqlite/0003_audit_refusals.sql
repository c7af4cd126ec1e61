-- Refusals are aggregated: one row per actor, action, org and minute, with a
-- count (a flood of unauthenticated calls once wrote a row each, never
-- pruned). refusal_key names that group; NULL for every other row. Rows
-- older than the retention period are pruned by the writer: `at` grows
-- with `id`, so it searches ids; no index on `at` (a page more per commit).
ALTER TABLE audit ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE audit ADD COLUMN refusal_key TEXT;
CREATE UNIQUE INDEX audit_refusal_key ON audit(refusal_key) WHERE refusal_key IS NOT NULL;
