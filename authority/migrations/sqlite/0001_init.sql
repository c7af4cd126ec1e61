-- Tally authority schema, version 1.

-- Singleton facts: the epoch (random id of this database), the oldest
-- retained revocation seq.
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE orgs (
    org        TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL          -- unix ms
) STRICT;

-- Root keys, sealed with the operator's key-encryption key (XChaCha20-Poly1305,
-- associated data binds the ciphertext to its key id and org). Never plaintext.
CREATE TABLE root_keys (
    key_id     INTEGER PRIMARY KEY,
    org        TEXT NOT NULL REFERENCES orgs(org),
    sealed     BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER                   -- NULL while active
) STRICT;
CREATE INDEX root_keys_org ON root_keys(org);

-- The revocation log. seq is assigned by the single writer: contiguous and
-- strictly increasing. digest chains every row to the one before it.
CREATE TABLE revocations (
    seq        INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('family', 'branch', 'key')),
    target     BLOB NOT NULL,            -- family: 16-byte nonce; branch: family ‖ 16-byte branch hash; key: id as 8 bytes big-endian
    digest     BLOB NOT NULL,
    reason     TEXT NOT NULL,
    actor      TEXT NOT NULL,            -- family id of the caller's token, never the token
    created_at INTEGER NOT NULL,
    expires_at INTEGER                   -- after this the target cannot be valid anyway; NULL: never
) STRICT;

-- Registry of minted tokens (never the token or its signature).
CREATE TABLE tokens (
    family     BLOB PRIMARY KEY,
    org        TEXT NOT NULL,
    key_id     INTEGER NOT NULL,
    subject    TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
) STRICT;

-- Who did what, when. Never a token, a signature or a key: tokens appear by family id.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    org     TEXT,
    target  TEXT,
    outcome TEXT NOT NULL,
    detail  TEXT NOT NULL
) STRICT;
