-- Tally authority schema on PostgreSQL, version 1: the SQLite schema's
-- versions 1 to 3 in PostgreSQL's types, plus the log's head row.

-- Singleton facts: the epoch (random id of this database's history), the
-- oldest retained revocation seq.
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE orgs (
    org        TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL           -- unix ms
);

-- Root keys, sealed with the operator's key-encryption key (XChaCha20-Poly1305,
-- associated data binds the ciphertext to its key id and org). Never plaintext.
CREATE TABLE root_keys (
    key_id     BIGINT PRIMARY KEY,
    org        TEXT NOT NULL REFERENCES orgs(org),
    sealed     BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT                    -- NULL while active
);
CREATE INDEX root_keys_org ON root_keys(org);

-- The revocation log. seq is contiguous and strictly increasing in commit
-- order: a batch takes its seqs after the head row below, which it updates
-- (and so locks) inside its own transaction; never a database sequence,
-- whose values commit out of order. digest chains every row to the one before it.
CREATE TABLE revocations (
    seq        BIGINT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('family', 'branch', 'key')),
    target     BYTEA NOT NULL,           -- family: 16-byte nonce; branch: family ‖ 16-byte branch hash; key: id as 8 bytes big-endian
    digest     BYTEA NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT NOT NULL,            -- family id of the caller's token, never the token
    created_at BIGINT NOT NULL,
    expires_at BIGINT                    -- after this the target cannot be valid anyway; NULL: never
);

-- The log's head: its one row is the last seq and digest committed, and
-- which authority process writes the log (`owner`, set when it opens the
-- database): a batch moves the head only from the seq it started at and
-- only for its owner, so two writers can never hand out one seq twice.
CREATE TABLE log_head (
    one    BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    seq    BIGINT NOT NULL,
    digest BYTEA NOT NULL,
    owner  TEXT
);
INSERT INTO log_head (seq, digest) VALUES (0, '\x00000000000000000000000000000000'::bytea);

-- Registry of minted tokens (never the token or its signature). How many
-- caveats each token was minted with: Verify hands a verifier chain
-- signatures only from that position on.
CREATE TABLE tokens (
    family         BYTEA PRIMARY KEY,
    org            TEXT NOT NULL,
    key_id         BIGINT NOT NULL,
    subject        TEXT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT,
    minted_caveats BIGINT
);

-- Who did what, when. Never a token, a signature or a key: tokens appear by
-- family id. Refusals are aggregated: one row per actor, action, org and
-- minute, with a count; refusal_key names that group (NULL for every other
-- row). Rows older than the retention period are pruned by the writer: `at`
-- grows with `id` (one writer), so it searches ids; no index on `at`.
CREATE TABLE audit (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    org         TEXT,
    target      TEXT,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    count       BIGINT NOT NULL DEFAULT 1,
    refusal_key TEXT
);
CREATE UNIQUE INDEX audit_refusal_key ON audit(refusal_key) WHERE refusal_key IS NOT NULL;
