-- New root keys take random key ids (see keys::fresh_key_id), so a token from
-- another database, or from keys made after the backup a database was restored
-- from, is an unknown key here and never a forgery under a key that reuses its
-- id. Creation order, which picks an org's current key (its newest active
-- one), moves from the key id to its own column; existing keys keep theirs.
ALTER TABLE root_keys ADD COLUMN ordinal BIGINT;
UPDATE root_keys SET ordinal = key_id;
ALTER TABLE root_keys ALTER COLUMN ordinal SET NOT NULL;
CREATE UNIQUE INDEX root_keys_ordinal ON root_keys(ordinal);
