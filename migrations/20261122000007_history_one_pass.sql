-- The history trigger in one pass over the statement's rows: one join of the transition
-- tables instead of one per kind of change. Same rows, same order per delivery (state,
-- altinn_status, notification); found by the benchmark (issue 6), where every claim and
-- every write-back fires it. CREATE OR REPLACE resets a function's attributes, so the
-- SECURITY DEFINER and search_path of migration 6 are restated; its grants stay as they were.
CREATE OR REPLACE FUNCTION altinn_outbox.record_history() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
BEGIN
    INSERT INTO altinn_outbox.history (delivery_id, kind, old_value, new_value, detail)
    SELECT n.id, c.kind, c.old_value, c.new_value, c.detail
    FROM new_rows n JOIN old_rows o USING (id)
    CROSS JOIN LATERAL (VALUES
        ('state', o.state, n.state,
         CASE WHEN n.state = 'sending' THEN 'attempt ' || n.attempts || ' by ' || coalesce(n.locked_by, '?')
              WHEN n.error_code IS NOT NULL AND n.state IN ('pending', 'failed') THEN n.error_code || ': ' || coalesce(n.error_message, '')
         END),
        ('altinn_status', o.altinn_status, n.altinn_status, NULL),
        ('notification', o.notification, n.notification, NULL)
    ) AS c(kind, old_value, new_value, detail)
    WHERE c.old_value IS DISTINCT FROM c.new_value;
    RETURN NULL;
END $$;
