-- Fewer writes per send (issue 6's benchmark). A send updates its delivery twice (the claim,
-- then the write-back) and a status read once more. None of these updates can be HOT (the
-- state is in the partial indexes' predicates), so each pays for every index of delivery and
-- for whatever checks the trigger's history rows carry. Two of those costs go:
--
-- 1. History rows no longer carry a foreign key to their delivery. The key checked every
--    history row as it was inserted: an index probe and a row lock (FOR KEY SHARE) on the
--    delivery the same statement had just updated, four per send (a claim's row and a
--    write-back's three); the largest single cost of the history trigger. The reference
--    holds by construction: history is written only by record_history, from the rows of the
--    delivery UPDATE that fired it, and no role but the owner may write history at all
--    (deploy/roles.sql).
-- 2. The uniqueness of (resource, sender's reference, resend, recipient) moves from delivery
--    to a table of its own, written once when the delivery is made and never updated. On
--    delivery the unique index, the widest (four text columns), took a new entry and a
--    uniqueness check at every update of the row. The constraint keeps its name, so a reused
--    reference fails exactly as before (duplicate key value violates unique constraint
--    "delivery_reference_unique"), and ON CONFLICT DO NOTHING on message still does not
--    swallow it.
--
-- What the foreign key's ON DELETE CASCADE did, a statement trigger on delivery now does for
-- both tables: a deleted delivery (a pruned message's) takes its history and its reference
-- with it, in one set-based DELETE each per statement.
ALTER TABLE altinn_outbox.history DROP CONSTRAINT history_delivery_id_fkey;
ALTER TABLE altinn_outbox.delivery DROP CONSTRAINT delivery_reference_unique;

CREATE TABLE altinn_outbox.delivery_reference (
    resource_id       text    NOT NULL,
    senders_reference text    NOT NULL,
    resend            integer NOT NULL,
    recipient_key     text    NOT NULL,
    delivery_id       bigint  NOT NULL,
    -- Altinn keeps idempotency keys forever: a second message with the same reference to the
    -- same recipient would be answered "already created" and never sent. Refuse it at INSERT.
    CONSTRAINT delivery_reference_unique PRIMARY KEY (resource_id, senders_reference, resend, recipient_key)
);
COMMENT ON TABLE altinn_outbox.delivery_reference IS
    'One row per delivery, written with it by trigger and removed with it: the reference that must be unique per recipient (Altinn''s idempotency key is made of it)';
INSERT INTO altinn_outbox.delivery_reference (resource_id, senders_reference, resend, recipient_key, delivery_id)
SELECT resource_id, senders_reference, resend, recipient_key, id FROM altinn_outbox.delivery;

COMMENT ON COLUMN altinn_outbox.delivery.resource_id IS 'Copy of the message''s resource_id (its reference is unique in delivery_reference)';
COMMENT ON COLUMN altinn_outbox.delivery.senders_reference IS 'Copy of the message''s senders_reference (its reference is unique in delivery_reference)';
COMMENT ON COLUMN altinn_outbox.delivery.resend IS 'Copy of the message''s resend number (its reference is unique in delivery_reference)';
COMMENT ON COLUMN altinn_outbox.history.delivery_id IS
    'The delivery that changed (no foreign key: written only by the delivery trigger, removed with the delivery by trigger)';

CREATE OR REPLACE FUNCTION altinn_outbox.create_deliveries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
BEGIN
    WITH made AS (
        INSERT INTO altinn_outbox.delivery (message_id, recipient, recipient_key, resource_id, senders_reference, resend)
        SELECT m.id, r.recipient, altinn_outbox.recipient_key(r.recipient), m.resource_id, m.senders_reference, m.resend
        FROM new_messages m, unnest(m.recipients) AS r(recipient)
        RETURNING id, resource_id, senders_reference, resend, recipient_key
    )
    INSERT INTO altinn_outbox.delivery_reference (resource_id, senders_reference, resend, recipient_key, delivery_id)
    SELECT resource_id, senders_reference, resend, recipient_key, id FROM made;
    -- One notification per statement wakes idle workers; the payload is empty because
    -- workers claim from the table, never from the notification.
    PERFORM pg_notify('altinn_outbox', '');
    RETURN NULL;
END $$;

CREATE FUNCTION altinn_outbox.forget_deliveries() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
BEGIN
    DELETE FROM altinn_outbox.history h USING old_rows o WHERE h.delivery_id = o.id;
    DELETE FROM altinn_outbox.delivery_reference r USING old_rows o
    WHERE (r.resource_id, r.senders_reference, r.resend, r.recipient_key)
        = (o.resource_id, o.senders_reference, o.resend, o.recipient_key);
    RETURN NULL;
END $$;
-- As for the other trigger functions (migration 6): it runs as its owner, so that pruning as
-- the worker (DELETE on message only) still removes history and references, and nobody else
-- may call it.
REVOKE EXECUTE ON FUNCTION altinn_outbox.forget_deliveries() FROM PUBLIC;

CREATE TRIGGER delivery_forget AFTER DELETE ON altinn_outbox.delivery
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION altinn_outbox.forget_deliveries();
