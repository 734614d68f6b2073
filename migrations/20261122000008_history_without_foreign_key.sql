-- History rows no longer carry a foreign key to their delivery. The key checked every history
-- row as it was inserted: an index probe and a row lock (FOR KEY SHARE) on the delivery the
-- same statement had just updated, four per send (a claim's row and a write-back's three).
-- The benchmark (issue 6) found that check to be the largest single cost of the history
-- trigger, about 15 % of the database's time per send. The reference still holds by
-- construction: history is written only by record_history, from the rows of the delivery
-- UPDATE that fired it, and no role but the owner may write history at all (deploy/roles.sql).
-- What the key's ON DELETE CASCADE did, taking a delivery's history with it (a pruned
-- message, a deleted delivery), a statement trigger on delivery now does, in one set-based
-- DELETE per statement through history_delivery_idx.
ALTER TABLE altinn_outbox.history DROP CONSTRAINT history_delivery_id_fkey;

CREATE FUNCTION altinn_outbox.forget_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
BEGIN
    DELETE FROM altinn_outbox.history h USING old_rows o WHERE h.delivery_id = o.id;
    RETURN NULL;
END $$;
-- As for the other trigger functions (migration 6): it runs as its owner, so that pruning as
-- the worker (DELETE on message only) still removes history, and nobody else may call it.
REVOKE EXECUTE ON FUNCTION altinn_outbox.forget_history() FROM PUBLIC;

CREATE TRIGGER delivery_forget_history AFTER DELETE ON altinn_outbox.delivery
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION altinn_outbox.forget_history();

COMMENT ON COLUMN altinn_outbox.history.delivery_id IS
    'The delivery that changed (no foreign key: written only by the delivery trigger, removed with the delivery by trigger)';
