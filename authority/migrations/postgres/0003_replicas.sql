-- Any number of authorities (replicas) serve one database. Each locks the
-- head row while its batch appends (SELECT … FOR UPDATE), so the head needs
-- no owner any more; and each follows what the others commit: these
-- triggers NOTIFY tally (delivered at COMMIT, one per transaction) when the
-- head moves or a key is made, which wakes the other replicas' followers.
-- A lost notification costs a follower one poll interval, never an entry.
ALTER TABLE log_head DROP COLUMN owner;

CREATE FUNCTION tally_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tally', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER log_head_moved AFTER UPDATE ON log_head
    FOR EACH STATEMENT EXECUTE FUNCTION tally_notify();
CREATE TRIGGER root_keys_made AFTER INSERT ON root_keys
    FOR EACH STATEMENT EXECUTE FUNCTION tally_notify();
