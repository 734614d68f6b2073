-- The outbox: what producers insert (message, attachment) and what the worker writes back
-- (delivery: one per message and recipient; history: every change, append-only).
CREATE SCHEMA IF NOT EXISTS altinn_outbox;
COMMENT ON SCHEMA altinn_outbox IS 'altinn-outbox: messages to send through Altinn 3 Correspondence, and their results';

-- Recipient keys for uniqueness: every accepted form of one party maps to one key, so that
-- "991825827", "0192:991825827" and the URN count as the same recipient. Forms the worker
-- will reject pass through lower-cased; they fail on the row, not at INSERT.
CREATE FUNCTION altinn_outbox.recipient_key(r text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN x ~ '^[0-9]{9}$' THEN 'urn:altinn:organization:identifier-no:' || x
    WHEN x ~ '^0192:[0-9]{9}$' THEN 'urn:altinn:organization:identifier-no:' || substr(x, 6)
    WHEN x ~ '^[0-9]{11}$' THEN 'urn:altinn:person:identifier-no:' || x
    ELSE x
  END
  FROM (SELECT lower(btrim(r)) AS x) s
$$;
COMMENT ON FUNCTION altinn_outbox.recipient_key(text) IS 'Normalised recipient (Altinn URN form) used to refuse a second message to the same recipient with the same reference';

CREATE FUNCTION altinn_outbox.recipient_keys(rs text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT array(SELECT DISTINCT altinn_outbox.recipient_key(r) FROM unnest(rs) AS r ORDER BY 1)
$$;

-- What makes a message "the same letter" for a producer's retried INSERT. Declared
-- immutable: it reads only its arguments (jsonb and epoch output do not depend on settings).
CREATE FUNCTION altinn_outbox.content_hash(language text, title text, summary text, body text, message_sender text,
    publish timestamptz, due timestamptz, notification jsonb, external_references jsonb, property_list jsonb,
    reply_options jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT md5(jsonb_build_array(language, title, summary, body, message_sender, extract(epoch FROM publish),
                               extract(epoch FROM due), notification, external_references, property_list,
                               reply_options)::text)
$$;

CREATE TABLE altinn_outbox.message (
    id                     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at             timestamptz NOT NULL DEFAULT now(),
    resource_id            text        NOT NULL,
    senders_reference      text        NOT NULL,
    resend                 integer     NOT NULL DEFAULT 0,
    recipients             text[]      NOT NULL,
    language               text        NOT NULL DEFAULT 'nb',
    title                  text        NOT NULL,
    summary                text,
    body                   text        NOT NULL,
    message_sender         text,
    requested_publish_time timestamptz,
    due_date_time          timestamptz,
    external_references    jsonb,
    property_list          jsonb,
    reply_options          jsonb,
    notification           jsonb,
    ignore_reservation     boolean,
    is_confirmation_needed boolean     NOT NULL DEFAULT false,
    is_confidential        boolean     NOT NULL DEFAULT false,
    allow_forwarding       boolean     NOT NULL DEFAULT false,
    existing_attachments   uuid[]      NOT NULL DEFAULT '{}',
    recipient_keys         text[]      GENERATED ALWAYS AS (altinn_outbox.recipient_keys(recipients)) STORED,
    content_hash           text        GENERATED ALWAYS AS (altinn_outbox.content_hash(language, title, summary, body,
                               message_sender, requested_publish_time, due_date_time, notification,
                               external_references, property_list, reply_options)) STORED,
    -- Recipients are the unit of work (one delivery each): a message without one would
    -- never be picked up, so it is refused here rather than left waiting forever.
    CONSTRAINT message_recipients_count CHECK (cardinality(recipients) BETWEEN 1 AND 500),
    CONSTRAINT message_resend_non_negative CHECK (resend >= 0)
);
-- A producer that retries its own transaction inserts the very same message again; this
-- index lets it write INSERT ... ON CONFLICT DO NOTHING. The content is part of it, so a
-- different letter that reuses a reference is not swallowed: it fails on
-- delivery_reference_unique, even with ON CONFLICT DO NOTHING.
CREATE UNIQUE INDEX message_reference_unique ON altinn_outbox.message (resource_id, senders_reference, resend, recipient_keys, content_hash);
COMMENT ON TABLE altinn_outbox.message IS 'One letter to one or more recipients, inserted by a producer; one delivery row per recipient is created by trigger';
COMMENT ON COLUMN altinn_outbox.message.id IS 'Outbox message id (log lines name it)';
COMMENT ON COLUMN altinn_outbox.message.created_at IS 'When the producer inserted the message';
COMMENT ON COLUMN altinn_outbox.message.resource_id IS 'Altinn resource id of the correspondence service (correspondence.resourceId)';
COMMENT ON COLUMN altinn_outbox.message.senders_reference IS 'The producer''s own reference (correspondence.sendersReference); with the resource, the recipient and resend it makes the idempotency key, so it is unique per recipient';
COMMENT ON COLUMN altinn_outbox.message.resend IS 'Deliberate re-send number: 0 for the first letter; insert the same reference with resend = 1, 2, ... to send it again under a new idempotency key';
COMMENT ON COLUMN altinn_outbox.message.recipients IS 'Recipients: organisation numbers (9 digits or 0192:), national identity numbers (11 digits) or Altinn URNs; 1 to 500';
COMMENT ON COLUMN altinn_outbox.message.language IS 'Content language: nb, nn or en';
COMMENT ON COLUMN altinn_outbox.message.title IS 'Message title, plain text, 1 to 255 characters';
COMMENT ON COLUMN altinn_outbox.message.summary IS 'Optional summary, plain text, at most 255 characters';
COMMENT ON COLUMN altinn_outbox.message.body IS 'Message body, CommonMark markdown without raw HTML, 1 to 30000 characters';
COMMENT ON COLUMN altinn_outbox.message.message_sender IS 'Optional sender display name instead of the organisation name, at most 255 characters';
COMMENT ON COLUMN altinn_outbox.message.requested_publish_time IS 'When Altinn should publish the message (default: at once)';
COMMENT ON COLUMN altinn_outbox.message.due_date_time IS 'Due date; in the future, not before the publish time; required when confirmation is needed';
COMMENT ON COLUMN altinn_outbox.message.external_references IS 'JSON array of {"referenceValue", "referenceType"}, at most 10';
COMMENT ON COLUMN altinn_outbox.message.property_list IS 'JSON object of string to string, at most 10 entries (key <= 50, value <= 300 characters)';
COMMENT ON COLUMN altinn_outbox.message.reply_options IS 'JSON array of {"linkURL", "linkText"}; https URLs of at most 255 characters';
COMMENT ON COLUMN altinn_outbox.message.notification IS 'JSON object in the shape of the Altinn request''s correspondence.notification (template, channel, texts, reminders, custom recipients)';
COMMENT ON COLUMN altinn_outbox.message.ignore_reservation IS 'Send to persons reserved against digital mail (KRR)';
COMMENT ON COLUMN altinn_outbox.message.is_confirmation_needed IS 'The recipient must confirm; requires due_date_time';
COMMENT ON COLUMN altinn_outbox.message.is_confidential IS 'Must match the resource''s confidentiality';
COMMENT ON COLUMN altinn_outbox.message.allow_forwarding IS 'Allow the recipient to forward the message by e-mail';
COMMENT ON COLUMN altinn_outbox.message.recipient_keys IS 'Recipients normalised and sorted (generated), for ON CONFLICT DO NOTHING on exact retries';
COMMENT ON COLUMN altinn_outbox.message.content_hash IS 'Hash of the letter''s content (generated), so that ON CONFLICT DO NOTHING only absorbs a retry of the same letter';
COMMENT ON COLUMN altinn_outbox.message.existing_attachments IS 'Ids of attachments already uploaded to Altinn and Published';

CREATE TABLE altinn_outbox.attachment (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id        bigint NOT NULL REFERENCES altinn_outbox.message (id) ON DELETE CASCADE,
    file_name         text   NOT NULL,
    display_name      text,
    senders_reference text   NOT NULL,
    content           bytea  NOT NULL
);
CREATE INDEX attachment_message_idx ON altinn_outbox.attachment (message_id);
COMMENT ON TABLE altinn_outbox.attachment IS 'Files to send with a message; insert them in the same transaction as the message';
COMMENT ON COLUMN altinn_outbox.attachment.id IS 'Attachment id';
COMMENT ON COLUMN altinn_outbox.attachment.message_id IS 'The message the file belongs to';
COMMENT ON COLUMN altinn_outbox.attachment.file_name IS 'File name with an allowed extension, at most 255 characters';
COMMENT ON COLUMN altinn_outbox.attachment.display_name IS 'Name shown to the recipient, at most 255 characters';
COMMENT ON COLUMN altinn_outbox.attachment.senders_reference IS 'The producer''s reference for the file';
COMMENT ON COLUMN altinn_outbox.attachment.content IS 'The file itself';

CREATE TABLE altinn_outbox.delivery (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id         bigint      NOT NULL REFERENCES altinn_outbox.message (id) ON DELETE CASCADE,
    recipient          text        NOT NULL,
    recipient_key      text        NOT NULL,
    resource_id        text        NOT NULL,
    senders_reference  text        NOT NULL,
    resend             integer     NOT NULL,
    state              text        NOT NULL DEFAULT 'pending',
    attempts           integer     NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    lease_no           bigint      NOT NULL DEFAULT 0,
    locked_by          text,
    locked_until       timestamptz,
    idempotency_key    uuid,
    correspondence_id  uuid,
    sent_at            timestamptz,
    altinn_status      text,
    altinn_status_at   timestamptz,
    status_seen_at     timestamptz,
    polls              integer     NOT NULL DEFAULT 0,
    next_poll_at       timestamptz,
    published_at       timestamptz,
    read_at            timestamptz,
    confirmed_at       timestamptz,
    notification       text,
    notification_detail jsonb,
    finished_at        timestamptz,
    error_code         text,
    error_message      text,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT delivery_state_known CHECK (state IN ('pending', 'sending', 'awaiting_status', 'delivered', 'failed', 'cancelled')),
    -- Altinn keeps idempotency keys forever: a second message with the same reference to the
    -- same recipient would be answered "already created" and never sent. Refuse it at INSERT.
    CONSTRAINT delivery_reference_unique UNIQUE (resource_id, senders_reference, resend, recipient_key)
);
COMMENT ON TABLE altinn_outbox.delivery IS 'One correspondence to one recipient: the unit the worker sends and follows';
COMMENT ON COLUMN altinn_outbox.delivery.id IS 'Delivery id (log lines name it)';
COMMENT ON COLUMN altinn_outbox.delivery.message_id IS 'The message this delivery sends';
COMMENT ON COLUMN altinn_outbox.delivery.resource_id IS 'Copy of the message''s resource_id, for the uniqueness constraint';
COMMENT ON COLUMN altinn_outbox.delivery.senders_reference IS 'Copy of the message''s senders_reference, for the uniqueness constraint';
COMMENT ON COLUMN altinn_outbox.delivery.resend IS 'Copy of the message''s resend number, for the uniqueness constraint';
COMMENT ON COLUMN altinn_outbox.delivery.updated_at IS 'When the worker (or anyone) last changed the row';
COMMENT ON COLUMN altinn_outbox.delivery.recipient IS 'The recipient as the producer wrote it';
COMMENT ON COLUMN altinn_outbox.delivery.recipient_key IS 'The recipient normalised (altinn_outbox.recipient_key), for uniqueness';
COMMENT ON COLUMN altinn_outbox.delivery.state IS 'pending (waiting to be sent), sending (leased by a worker), awaiting_status (sent, waiting for publication), delivered (published), failed, cancelled';
COMMENT ON COLUMN altinn_outbox.delivery.attempts IS 'Send attempts started so far';
COMMENT ON COLUMN altinn_outbox.delivery.next_attempt_at IS 'Earliest time of the next send attempt (backoff after a transient failure)';
COMMENT ON COLUMN altinn_outbox.delivery.lease_no IS 'Incremented at every claim; a worker writes back only if it still holds this lease';
COMMENT ON COLUMN altinn_outbox.delivery.locked_by IS 'The worker instance that holds the lease';
COMMENT ON COLUMN altinn_outbox.delivery.locked_until IS 'When the lease expires and another worker may take the row over';
COMMENT ON COLUMN altinn_outbox.delivery.idempotency_key IS 'idempotentKey sent to Altinn: UUIDv5 of the deployment namespace, resource, sender''s reference, resend and recipient; stored before the first call';
COMMENT ON COLUMN altinn_outbox.delivery.correspondence_id IS 'Altinn correspondence id';
COMMENT ON COLUMN altinn_outbox.delivery.sent_at IS 'When Altinn accepted (or was found to have accepted) the correspondence';
COMMENT ON COLUMN altinn_outbox.delivery.altinn_status IS 'Latest top-level Altinn status (the highest status reached, as Altinn computes it)';
COMMENT ON COLUMN altinn_outbox.delivery.altinn_status_at IS 'When Altinn says that status was reached (statusChanged)';
COMMENT ON COLUMN altinn_outbox.delivery.status_seen_at IS 'When the worker last read the status from Altinn';
COMMENT ON COLUMN altinn_outbox.delivery.polls IS 'Status requests made for this correspondence';
COMMENT ON COLUMN altinn_outbox.delivery.next_poll_at IS 'When the status is read next; null when no longer followed';
COMMENT ON COLUMN altinn_outbox.delivery.published_at IS 'When Altinn published the correspondence to the recipient';
COMMENT ON COLUMN altinn_outbox.delivery.read_at IS 'When the recipient first read it';
COMMENT ON COLUMN altinn_outbox.delivery.confirmed_at IS 'When the recipient confirmed it';
COMMENT ON COLUMN altinn_outbox.delivery.notification IS 'Notification outcome: none, pending, sent, delivered or failed';
COMMENT ON COLUMN altinn_outbox.delivery.notification_detail IS 'Per notification: channel, reminder flag and per-recipient send status, as Altinn reported it (addresses left out)';
COMMENT ON COLUMN altinn_outbox.delivery.finished_at IS 'When the delivery reached delivered, failed or cancelled';
COMMENT ON COLUMN altinn_outbox.delivery.error_code IS 'Machine-readable code of the last error: Altinn''s errorCode (e.g. 1037), an HTTP status, or the outbox''s own (validation:title, ...)';
COMMENT ON COLUMN altinn_outbox.delivery.error_message IS 'Human-readable text of the last error (Altinn''s detail where given)';

-- Claim indexes are partial so that millions of finished deliveries cost the claim nothing.
CREATE INDEX delivery_send_idx ON altinn_outbox.delivery (next_attempt_at) WHERE state = 'pending';
CREATE INDEX delivery_lease_idx ON altinn_outbox.delivery (locked_until) WHERE state = 'sending';
CREATE INDEX delivery_poll_idx ON altinn_outbox.delivery (next_poll_at) WHERE next_poll_at IS NOT NULL;
CREATE INDEX delivery_message_idx ON altinn_outbox.delivery (message_id);

CREATE TABLE altinn_outbox.history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id bigint      NOT NULL REFERENCES altinn_outbox.delivery (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text        NOT NULL,
    old_value   text,
    new_value   text,
    detail      text
);
CREATE INDEX history_delivery_idx ON altinn_outbox.history (delivery_id, id);
COMMENT ON TABLE altinn_outbox.history IS 'Append-only record of every state, Altinn status and notification change of a delivery, written by trigger';
COMMENT ON COLUMN altinn_outbox.history.id IS 'Order of the changes';
COMMENT ON COLUMN altinn_outbox.history.delivery_id IS 'The delivery that changed';
COMMENT ON COLUMN altinn_outbox.history.at IS 'When it changed';
COMMENT ON COLUMN altinn_outbox.history.old_value IS 'The value before';
COMMENT ON COLUMN altinn_outbox.history.new_value IS 'The value after';
COMMENT ON COLUMN altinn_outbox.history.kind IS 'state, altinn_status or notification';
COMMENT ON COLUMN altinn_outbox.history.detail IS 'Error code and text for a failure; worker instance for a claim';

-- Deliveries are made by the database, in one set-based statement per INSERT, so that the
-- producer's transaction either creates every delivery or fails (e.g. a reused reference).
CREATE FUNCTION altinn_outbox.create_deliveries() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO altinn_outbox.delivery (message_id, recipient, recipient_key, resource_id, senders_reference, resend)
    SELECT m.id, r.recipient, altinn_outbox.recipient_key(r.recipient), m.resource_id, m.senders_reference, m.resend
    FROM new_messages m, unnest(m.recipients) AS r(recipient);
    -- One notification per statement wakes idle workers; the payload is empty because
    -- workers claim from the table, never from the notification.
    PERFORM pg_notify('altinn_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER message_create_deliveries AFTER INSERT ON altinn_outbox.message
    REFERENCING NEW TABLE AS new_messages FOR EACH STATEMENT EXECUTE FUNCTION altinn_outbox.create_deliveries();

-- History is written by the database for every writer (worker, admin commands, manual SQL),
-- set-based per statement.
CREATE FUNCTION altinn_outbox.record_history() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO altinn_outbox.history (delivery_id, kind, old_value, new_value, detail)
    SELECT n.id, 'state', o.state, n.state,
           CASE WHEN n.state = 'sending' THEN 'attempt ' || n.attempts || ' by ' || coalesce(n.locked_by, '?')
                WHEN n.error_code IS NOT NULL AND n.state IN ('pending', 'failed') THEN n.error_code || ': ' || coalesce(n.error_message, '')
           END
    FROM new_rows n JOIN old_rows o USING (id) WHERE n.state IS DISTINCT FROM o.state
    UNION ALL
    SELECT n.id, 'altinn_status', o.altinn_status, n.altinn_status, NULL
    FROM new_rows n JOIN old_rows o USING (id) WHERE n.altinn_status IS DISTINCT FROM o.altinn_status
    UNION ALL
    SELECT n.id, 'notification', o.notification, n.notification, NULL
    FROM new_rows n JOIN old_rows o USING (id) WHERE n.notification IS DISTINCT FROM o.notification;
    RETURN NULL;
END $$;
CREATE TRIGGER delivery_record_history AFTER UPDATE ON altinn_outbox.delivery
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION altinn_outbox.record_history();

CREATE FUNCTION altinn_outbox.history_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'altinn_outbox.history is append-only';
END $$;
CREATE TRIGGER history_append_only BEFORE UPDATE ON altinn_outbox.history
    FOR EACH ROW EXECUTE FUNCTION altinn_outbox.history_is_append_only();

-- One line per recipient, for operators.
CREATE VIEW altinn_outbox.delivery_status AS
SELECT d.id AS delivery_id, d.message_id, m.created_at, m.resource_id, m.senders_reference, m.resend,
       d.recipient, d.state, d.attempts, d.next_attempt_at, d.locked_by, d.locked_until,
       d.idempotency_key, d.correspondence_id, d.sent_at, d.altinn_status, d.altinn_status_at,
       d.status_seen_at, d.published_at, d.read_at, d.confirmed_at, d.notification,
       d.error_code, d.error_message, d.finished_at, d.updated_at
FROM altinn_outbox.delivery d JOIN altinn_outbox.message m ON m.id = d.message_id;
COMMENT ON VIEW altinn_outbox.delivery_status IS 'One line per recipient of every message: state, Altinn ids and status, last error';

-- One line per message: its state is the least advanced of its deliveries.
CREATE VIEW altinn_outbox.message_status AS
SELECT m.id AS message_id, m.created_at, m.resource_id, m.senders_reference, m.resend,
       count(*) AS recipients,
       count(*) FILTER (WHERE d.state = 'delivered') AS delivered,
       count(*) FILTER (WHERE d.state = 'failed') AS failed,
       CASE
         WHEN bool_or(d.state = 'sending') THEN 'sending'
         WHEN bool_or(d.state = 'pending') THEN 'pending'
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
COMMENT ON VIEW altinn_outbox.message_status IS 'One line per message: its overall state (the least advanced of its recipients) and counts';
