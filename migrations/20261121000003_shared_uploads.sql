-- Files of a message to several recipients are uploaded once, through Altinn's attachment
-- API, and every delivery then refers to them (existingAttachments). Files of a message to one
-- recipient travel inside its multipart request and keep upload_state 'none'.
ALTER TABLE altinn_outbox.attachment
    ADD COLUMN upload_state         text        NOT NULL DEFAULT 'none',
    ADD COLUMN altinn_attachment_id uuid,
    ADD COLUMN upload_attempts      integer     NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at      timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN lease_no             bigint      NOT NULL DEFAULT 0,
    ADD COLUMN locked_by            text,
    ADD COLUMN locked_until         timestamptz,
    ADD COLUMN error_code           text,
    ADD COLUMN error_message        text,
    ADD COLUMN updated_at           timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT attachment_upload_state_known CHECK (upload_state IN
        ('none', 'pending', 'initialized', 'uploading', 'processing', 'published', 'failed'));
COMMENT ON COLUMN altinn_outbox.attachment.upload_state IS 'none (sent in each multipart request), or the shared upload: pending (no Altinn attachment yet), initialized (attachment created, not uploaded), uploading (upload started: the one-shot attachment is spent if it fails), processing (uploaded, malware scan running), published, failed';
COMMENT ON COLUMN altinn_outbox.attachment.altinn_attachment_id IS 'Altinn attachment id, stored as soon as Altinn returns it';
COMMENT ON COLUMN altinn_outbox.attachment.upload_attempts IS 'Upload steps started (attachment creation, upload, status reads that failed)';
COMMENT ON COLUMN altinn_outbox.attachment.next_attempt_at IS 'When the next step (create, upload or status read) is due';
COMMENT ON COLUMN altinn_outbox.attachment.lease_no IS 'Incremented at every claim; fences write-backs';
COMMENT ON COLUMN altinn_outbox.attachment.locked_by IS 'The worker instance that holds the lease';
COMMENT ON COLUMN altinn_outbox.attachment.locked_until IS 'When the lease expires';
COMMENT ON COLUMN altinn_outbox.attachment.error_code IS 'Machine-readable code of the last error';
COMMENT ON COLUMN altinn_outbox.attachment.error_message IS 'Human-readable text of the last error';
COMMENT ON COLUMN altinn_outbox.attachment.updated_at IS 'When the row last changed';

CREATE INDEX attachment_upload_idx ON altinn_outbox.attachment (next_attempt_at)
    WHERE upload_state IN ('pending', 'initialized', 'processing');
CREATE INDEX attachment_uploading_idx ON altinn_outbox.attachment (locked_until) WHERE upload_state = 'uploading';

-- Deliveries whose files are still being uploaded wait in a state of their own: the send
-- claim never sees them, however many recipients are waiting.
ALTER TABLE altinn_outbox.delivery DROP CONSTRAINT delivery_state_known;
ALTER TABLE altinn_outbox.delivery ADD CONSTRAINT delivery_state_known CHECK (state IN
    ('pending', 'waiting_files', 'sending', 'awaiting_status', 'delivered', 'failed', 'cancelled'));
COMMENT ON COLUMN altinn_outbox.delivery.state IS 'pending (waiting to be sent), waiting_files (its message''s files are being uploaded), sending (leased by a worker), awaiting_status (sent, waiting for publication), delivered (published), failed, cancelled';

-- Runs in the producer's transaction, so no worker ever sees such a delivery as pending.
CREATE FUNCTION altinn_outbox.route_files() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH shared AS (
        SELECT DISTINCT n.message_id FROM new_files n
        JOIN altinn_outbox.message m ON m.id = n.message_id
        WHERE cardinality(m.recipients) > 1
    ), files AS (
        UPDATE altinn_outbox.attachment a SET upload_state = 'pending'
        FROM new_files n WHERE a.id = n.id AND n.message_id IN (SELECT message_id FROM shared)
    )
    UPDATE altinn_outbox.delivery d SET state = 'waiting_files', updated_at = now()
    WHERE d.message_id IN (SELECT message_id FROM shared) AND d.state = 'pending';
    RETURN NULL;
END $$;
CREATE TRIGGER attachment_route_files AFTER INSERT ON altinn_outbox.attachment
    REFERENCING NEW TABLE AS new_files FOR EACH STATEMENT EXECUTE FUNCTION altinn_outbox.route_files();

-- The per-message view knows the new state.
CREATE OR REPLACE VIEW altinn_outbox.message_status AS
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
         WHEN bool_or(d.state = 'delivered') THEN 'partly_delivered'
         ELSE 'failed'
       END AS state,
       max(d.attempts) AS attempts,
       min(d.next_attempt_at) FILTER (WHERE d.state = 'pending') AS next_attempt_at,
       max(d.updated_at) AS updated_at
FROM altinn_outbox.message m JOIN altinn_outbox.delivery d ON d.message_id = m.id
GROUP BY m.id;
