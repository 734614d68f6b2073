-- One statement trigger after UPDATE of delivery instead of three (delivery_keep_ids,
-- delivery_record_history, delivery_record_keys). Each of them joined the statement's old and
-- new rows on its own, and each was a trigger call of its own; a send updates delivery twice
-- (claim, write-back), so every send paid six joins and six calls. Now it is one call, one
-- join, materialized once, feeding the same three things:
--   1. the ids that tie a delivery to Altinn (idempotency_key, correspondence_id) are kept
--      once set (migration 11);
--   2. a key set for the first time is recorded in delivery_key, whose primary key holds each
--      key for one delivery only (migration 10);
--   3. every change of state, Altinn status and notification is a history row (migration 7).
-- What each does is unchanged, and so is what an UPDATE that breaks a rule gets: the
-- statement fails as a whole, so nothing it wrote (history, keys) stays. The function runs as
-- its owner: the worker may neither insert history nor write delivery_key itself.
-- Migration 11 let the owner disable the ids' trigger for a deliberate repair; disabling this
-- one also stops the history and the key ledger for that while, so a repair that changes
-- states should write its own history rows.

CREATE FUNCTION altinn_outbox.after_delivery_update() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
DECLARE
    changed record;
BEGIN
    WITH pairs AS MATERIALIZED (
        SELECT n.id, n.attempts, n.locked_by, n.error_code, n.error_message,
               n.state, o.state AS old_state,
               n.altinn_status, o.altinn_status AS old_altinn_status,
               n.notification, o.notification AS old_notification,
               n.idempotency_key, o.idempotency_key AS old_idempotency_key,
               n.correspondence_id, o.correspondence_id AS old_correspondence_id
        FROM new_rows n JOIN old_rows o USING (id)),
    keys AS (
        INSERT INTO altinn_outbox.delivery_key (idempotency_key, delivery_id)
        SELECT p.idempotency_key, p.id FROM pairs p
        WHERE p.idempotency_key IS NOT NULL AND p.old_idempotency_key IS NULL),
    history AS (
        INSERT INTO altinn_outbox.history (delivery_id, kind, old_value, new_value, detail)
        SELECT p.id, c.kind, c.old_value, c.new_value, c.detail
        FROM pairs p
        CROSS JOIN LATERAL (VALUES
            ('state', p.old_state, p.state,
             CASE WHEN p.state = 'sending' THEN 'attempt ' || p.attempts || ' by ' || coalesce(p.locked_by, '?')
                  WHEN p.error_code IS NOT NULL AND p.state IN ('pending', 'failed') THEN p.error_code || ': ' || coalesce(p.error_message, '')
             END),
            ('altinn_status', p.old_altinn_status, p.altinn_status, NULL),
            ('notification', p.old_notification, p.notification, NULL)
        ) AS c(kind, old_value, new_value, detail)
        WHERE c.old_value IS DISTINCT FROM c.new_value)
    SELECT p.id, CASE WHEN p.old_idempotency_key IS NOT NULL AND p.idempotency_key IS DISTINCT FROM p.old_idempotency_key
                      THEN 'idempotency_key' ELSE 'correspondence_id' END AS col
    INTO changed
    FROM pairs p
    WHERE (p.old_idempotency_key IS NOT NULL AND p.idempotency_key IS DISTINCT FROM p.old_idempotency_key)
       OR (p.old_correspondence_id IS NOT NULL AND p.correspondence_id IS DISTINCT FROM p.old_correspondence_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'delivery %: % cannot be changed or cleared once set (it ties the delivery to its correspondence at Altinn)',
            changed.id, changed.col
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION altinn_outbox.after_delivery_update() FROM PUBLIC;

DROP TRIGGER delivery_keep_ids ON altinn_outbox.delivery;
DROP TRIGGER delivery_record_history ON altinn_outbox.delivery;
DROP TRIGGER delivery_record_keys ON altinn_outbox.delivery;
DROP FUNCTION altinn_outbox.keep_delivery_ids();
DROP FUNCTION altinn_outbox.record_history();
DROP FUNCTION altinn_outbox.record_keys();

CREATE TRIGGER delivery_after_update AFTER UPDATE ON altinn_outbox.delivery
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION altinn_outbox.after_delivery_update();
