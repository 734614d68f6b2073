-- An idempotency key belongs to one delivery. Altinn answers a reused key with 409/1034 and
-- the id of whatever correspondence holds it; if two deliveries could share a key, the second
-- would be taken for the first and never sent. Keys are derived from the delivery's unique
-- reference, so a shared key means a fault (a changed derivation, a row copied by hand), and
-- the database refuses it rather than trusting the derivation.
--
-- The key is unique in a table of its own, written once when the claim stores the key (a
-- statement trigger, as the owner), instead of a unique index on delivery: delivery is updated
-- three times per send and none of those updates is HOT, so an index there would take a new
-- entry and a uniqueness check at every one of them (the cost migration 8 removed for the
-- reference). The claim looks a new key up here first and fails that delivery alone
-- (error_code idempotency_key_taken); the trigger only backs it up against a concurrent
-- claim, whose transaction then fails and is retried.
CREATE TABLE altinn_outbox.delivery_key (
    idempotency_key uuid   NOT NULL,
    delivery_id     bigint NOT NULL,
    CONSTRAINT delivery_key_unique PRIMARY KEY (idempotency_key)
);
COMMENT ON TABLE altinn_outbox.delivery_key IS
    'Every stored idempotency key and its delivery, written by trigger when a claim stores the key and removed with the delivery: a key belongs to one delivery';

-- Keys stored before this migration: the first delivery keeps a key that several share (such
-- deliveries can only come from the fault this table now refuses; the others keep theirs).
INSERT INTO altinn_outbox.delivery_key (idempotency_key, delivery_id)
SELECT idempotency_key, min(id) FROM altinn_outbox.delivery WHERE idempotency_key IS NOT NULL
GROUP BY idempotency_key;

CREATE FUNCTION altinn_outbox.record_keys() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
BEGIN
    INSERT INTO altinn_outbox.delivery_key (idempotency_key, delivery_id)
    SELECT n.idempotency_key, n.id FROM new_rows n JOIN old_rows o USING (id)
    WHERE n.idempotency_key IS NOT NULL AND o.idempotency_key IS NULL;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION altinn_outbox.record_keys() FROM PUBLIC;
-- Without a column list (PostgreSQL allows none with transition tables); the transition
-- tables are the ones the history trigger has built for the same statement.
CREATE TRIGGER delivery_record_keys AFTER UPDATE ON altinn_outbox.delivery
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION altinn_outbox.record_keys();

-- A deleted delivery (a pruned message's) takes its key with it, as it takes its history and
-- its reference (migration 8, restated with the key).
CREATE OR REPLACE FUNCTION altinn_outbox.forget_deliveries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
BEGIN
    DELETE FROM altinn_outbox.history h USING old_rows o WHERE h.delivery_id = o.id;
    DELETE FROM altinn_outbox.delivery_reference r USING old_rows o
    WHERE (r.resource_id, r.senders_reference, r.resend, r.recipient_key)
        = (o.resource_id, o.senders_reference, o.resend, o.recipient_key);
    DELETE FROM altinn_outbox.delivery_key k USING old_rows o
    WHERE k.idempotency_key = o.idempotency_key AND k.delivery_id = o.id;
    RETURN NULL;
END $$;
