-- A state for a letter Altinn accepted whose publication was never confirmed: status reads
-- kept failing (or Altinn never published it) until `status.max_follow_age_h` passed. It is
-- not `failed`: Altinn holds the correspondence (the row keeps its id and the last error), and
-- a failed status read says nothing about the letter. A read failure no longer ends a
-- delivery at all; this state is where following ends without an answer.
ALTER TABLE altinn_outbox.delivery DROP CONSTRAINT delivery_state_known;
ALTER TABLE altinn_outbox.delivery ADD CONSTRAINT delivery_state_known CHECK (state IN
    ('pending', 'waiting_files', 'sending', 'awaiting_status', 'delivered', 'unconfirmed', 'failed', 'cancelled'));
COMMENT ON COLUMN altinn_outbox.delivery.state IS 'pending (waiting to be sent), waiting_files (its message''s files are being uploaded), sending (leased by a worker), awaiting_status (sent, waiting for publication), delivered (published), unconfirmed (Altinn has it; publication not confirmed within the follow period: see error_code), failed, cancelled';

-- The per-message view knows the new state (after the states still moving, before the
-- finished ones) and counts it. CREATE OR REPLACE resets the view's options, so
-- security_invoker (migration 11: producers see their own rows only) is restated.
CREATE OR REPLACE VIEW altinn_outbox.message_status WITH (security_invoker = true) AS
SELECT m.id AS message_id, m.created_at, m.resource_id, m.senders_reference, m.resend,
       count(*) AS recipients,
       count(*) FILTER (WHERE d.state = 'delivered') AS delivered,
       count(*) FILTER (WHERE d.state = 'failed') AS failed,
       CASE
         WHEN bool_or(d.state = 'sending') THEN 'sending'
         WHEN bool_or(d.state = 'pending') THEN 'pending'
         WHEN bool_or(d.state = 'waiting_files') THEN 'waiting_files'
         WHEN bool_or(d.state = 'awaiting_status') THEN 'awaiting_status'
         WHEN bool_and(d.state = 'delivered') THEN 'delivered'
         WHEN bool_and(d.state = 'cancelled') THEN 'cancelled'
         WHEN bool_or(d.state = 'unconfirmed') THEN 'unconfirmed'
         WHEN bool_or(d.state = 'delivered') THEN 'partly_delivered'
         ELSE 'failed'
       END AS state,
       max(d.attempts) AS attempts,
       min(d.next_attempt_at) FILTER (WHERE d.state = 'pending') AS next_attempt_at,
       max(d.updated_at) AS updated_at,
       count(*) FILTER (WHERE d.state = 'unconfirmed') AS unconfirmed
FROM altinn_outbox.message m JOIN altinn_outbox.delivery d ON d.message_id = m.id
GROUP BY m.id;

-- Pruning treats it as finished, like delivered, failed and cancelled (the rule of
-- migration 11, restated with the new state; the grants stay).
CREATE OR REPLACE FUNCTION altinn_outbox.prune_messages(cutoff timestamptz, batch integer,
    OUT messages bigint, OUT deliveries bigint, OUT history bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
BEGIN
    IF cutoff IS NULL OR batch IS NULL OR batch NOT BETWEEN 1 AND 10000 THEN
        RAISE EXCEPTION 'prune_messages: cutoff must be given and batch between 1 and 10000 (got %)', batch
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH candidate AS (
        SELECT m.id FROM altinn_outbox.message m
        WHERE m.created_at < cutoff AND NOT EXISTS (
            SELECT 1 FROM altinn_outbox.delivery d WHERE d.message_id = m.id
              AND NOT (d.state IN ('delivered', 'unconfirmed', 'failed', 'cancelled') AND d.finished_at < cutoff
                       AND d.next_poll_at IS NULL))
        ORDER BY m.id LIMIT batch
    ), held AS (
        SELECT d.id, d.message_id FROM altinn_outbox.delivery d
        WHERE d.message_id IN (SELECT c.id FROM candidate c)
          AND d.state IN ('delivered', 'unconfirmed', 'failed', 'cancelled') AND d.finished_at < cutoff
          AND d.next_poll_at IS NULL
        FOR UPDATE
    ), doomed AS (
        SELECT c.id FROM candidate c
        WHERE (SELECT count(*) FROM held h WHERE h.message_id = c.id)
            = (SELECT count(*) FROM altinn_outbox.delivery d WHERE d.message_id = c.id)
    ), gone AS (
        DELETE FROM altinn_outbox.message m USING doomed WHERE m.id = doomed.id RETURNING m.id
    )
    SELECT (SELECT count(*) FROM gone),
           (SELECT count(*) FROM held WHERE held.message_id IN (SELECT g.id FROM gone g)),
           (SELECT count(*) FROM altinn_outbox.history h JOIN held ON held.id = h.delivery_id
            WHERE held.message_id IN (SELECT g.id FROM gone g))
    INTO messages, deliveries, history;
END $$;
