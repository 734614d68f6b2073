-- Altinn Events: what Altinn pushes (or the pull API returns) is stored, once per event id,
-- and moves the next status read of the deliveries it names to now. An event is a hint, never
-- a state: the read that follows decides (events come in no order, and Altinn signs nothing).

-- The receiver's secret path segment (the push endpoint is <public_url>/<secret>): made once by
-- the daemon, shared by every instance, readable by the worker only.
CREATE TABLE altinn_outbox.event_receiver (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    secret     text        NOT NULL CHECK (secret ~ '^[A-Za-z0-9_-]{22,}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE altinn_outbox.event_receiver IS 'The secret path segment of the Altinn Events push endpoint (a bearer secret: at least 128 bits)';
COMMENT ON COLUMN altinn_outbox.event_receiver.singleton IS 'Always true: there is one receiver secret';
COMMENT ON COLUMN altinn_outbox.event_receiver.secret IS 'URL-safe base64 of random bytes; pushes come to <events.public_url>/<secret>';
COMMENT ON COLUMN altinn_outbox.event_receiver.created_at IS 'When an instance made it';

-- Every event received, by Altinn's id. Nothing personal is kept: the subject (a recipient
-- URN, possibly a national identity number) is not stored.
CREATE TABLE altinn_outbox.event (
    id                text        PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    type              text        NOT NULL CHECK (length(type) BETWEEN 1 AND 200),
    resource          text        CHECK (length(resource) <= 300),
    resource_instance text        CHECK (length(resource_instance) <= 200),
    time              timestamptz,
    received_at       timestamptz NOT NULL DEFAULT now(),
    via               text        NOT NULL CHECK (via IN ('push', 'pull')),
    -- False for a re-publication: an earlier event had the same instance and type, so this one
    -- woke nothing and wrote no history.
    first_of_kind     boolean     NOT NULL
);
CREATE INDEX event_instance_type_idx ON altinn_outbox.event (resource_instance, type);
CREATE INDEX event_received_idx ON altinn_outbox.event (received_at);
COMMENT ON TABLE altinn_outbox.event IS 'Altinn Events received (push or pull), once per event id; a hint to read the named correspondences again';
COMMENT ON COLUMN altinn_outbox.event.id IS 'The CloudEvent id Altinn gave it (a redelivery has the same id)';
COMMENT ON COLUMN altinn_outbox.event.type IS 'The CloudEvent type, e.g. no.altinn.correspondence.correspondencepublished';
COMMENT ON COLUMN altinn_outbox.event.resource IS 'The resource, urn:altinn:resource:<id>';
COMMENT ON COLUMN altinn_outbox.event.resource_instance IS 'The correspondence id (an attachment id for attachment events, a notification order id for notificationcreated)';
COMMENT ON COLUMN altinn_outbox.event.time IS 'When Altinn says it published the event (not when the status changed)';
COMMENT ON COLUMN altinn_outbox.event.received_at IS 'When it reached the daemon';
COMMENT ON COLUMN altinn_outbox.event.via IS 'push (to the receiver) or pull (read from the events API)';
COMMENT ON COLUMN altinn_outbox.event.first_of_kind IS 'Whether it was the first with its instance and type (only that one wakes deliveries and writes history)';

-- History gains the kind 'event': the event's type in new_value, how it came in detail.
ALTER TABLE altinn_outbox.history DROP CONSTRAINT history_kind_known;
ALTER TABLE altinn_outbox.history ADD CONSTRAINT history_kind_known CHECK (kind IN
    ('state', 'altinn_status', 'notification', 'event')) NOT VALID;
DO $$
BEGIN
    ALTER TABLE altinn_outbox.history VALIDATE CONSTRAINT history_kind_known;
EXCEPTION WHEN check_violation THEN
    RAISE WARNING 'history rows hold a kind outside the known ones; fix them, then VALIDATE CONSTRAINT history_kind_known';
END $$;

-- Stores one event and acts on it, in one transaction: the first event of its id is stored;
-- the first of its (instance, type) also records an 'event' history row on every delivery of
-- the correspondence it names, moves the next status read of those still followed to now, and
-- the next read of a file still being scanned (attachment events); then wakes the workers.
-- Only an event that can change what a read finds wakes anything (p_wakes, decided by the
-- daemon from the type): `correspondenceinitialized`, say, is recorded but reads nothing.
-- Runs as the owner: the worker may call it, but may not write events or history itself.
-- Returns whether the event was new, and how many deliveries and files it woke.
CREATE FUNCTION altinn_outbox.receive_event(p_id text, p_type text, p_resource text, p_instance text,
    p_time timestamptz, p_via text, p_wakes boolean, OUT stored boolean, OUT deliveries integer, OUT files integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_first boolean;
    v_instance uuid;
BEGIN
    deliveries := 0;
    files := 0;
    -- Two copies of one (instance, type) with different ids may come at once: one decides.
    PERFORM pg_advisory_xact_lock(hashtextextended(coalesce(p_instance, '') || '|' || p_type, 20261205));
    v_first := NOT EXISTS (SELECT 1 FROM altinn_outbox.event e
                           WHERE e.resource_instance IS NOT DISTINCT FROM p_instance AND e.type = p_type);
    INSERT INTO altinn_outbox.event (id, type, resource, resource_instance, time, via, first_of_kind)
    VALUES (p_id, p_type, p_resource, p_instance, p_time, p_via, v_first)
    ON CONFLICT (id) DO NOTHING;
    stored := FOUND;
    IF NOT stored OR NOT v_first THEN
        RETURN;
    END IF;
    IF p_instance ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        v_instance := p_instance::uuid;
        WITH named AS (
            SELECT d.id, d.next_poll_at IS NOT NULL AS followed
            FROM altinn_outbox.delivery d WHERE d.correspondence_id = v_instance
        ), woken AS (
            UPDATE altinn_outbox.delivery d SET next_poll_at = now()
            FROM named WHERE p_wakes AND d.id = named.id AND named.followed AND d.next_poll_at > now()
            RETURNING d.id
        ), recorded AS (
            INSERT INTO altinn_outbox.history (delivery_id, kind, new_value, detail)
            SELECT named.id, 'event', p_type, p_via FROM named
        )
        SELECT count(*) INTO deliveries FROM woken;
        UPDATE altinn_outbox.attachment a SET next_attempt_at = now()
        WHERE p_wakes AND a.altinn_attachment_id = v_instance AND a.upload_state = 'processing'
          AND a.next_attempt_at > now();
        GET DIAGNOSTICS files = ROW_COUNT;
    END IF;
    IF deliveries > 0 OR files > 0 THEN
        PERFORM pg_notify('altinn_outbox', '');
    END IF;
END $$;
REVOKE ALL ON FUNCTION altinn_outbox.receive_event(text, text, text, text, timestamptz, text, boolean) FROM PUBLIC;

-- Which instance manages the subscriptions and pulls now: a lease, taken by the instance that
-- finds it free or expired and renewed on each pass, so that one instance at a time talks to
-- the Events API for subscriptions (no HTTP call is made with a row locked).
ALTER TABLE altinn_outbox.event_receiver
    ADD COLUMN manager text CHECK (length(manager) <= 200),
    ADD COLUMN managed_until timestamptz;
COMMENT ON COLUMN altinn_outbox.event_receiver.manager IS 'The instance (worker.instance_name) that last took the lease on managing subscriptions and pulling events';
COMMENT ON COLUMN altinn_outbox.event_receiver.managed_until IS 'When that lease ends unless renewed; another instance may take it after';

-- The subscription the daemon made at Altinn Events for each resource (one per resource).
CREATE TABLE altinn_outbox.event_subscription (
    resource_id     text        PRIMARY KEY CHECK (length(resource_id) BETWEEN 1 AND 200),
    subscription_id bigint      NOT NULL,
    endpoint_sha256 text        NOT NULL CHECK (endpoint_sha256 ~ '^[0-9a-f]{64}$'),
    type_filter     text        CHECK (length(type_filter) BETWEEN 1 AND 200),
    validated       boolean     NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    posted_at       timestamptz NOT NULL DEFAULT now(),
    validated_at    timestamptz,
    checked_at      timestamptz NOT NULL DEFAULT now(),
    overdue_since   timestamptz,
    last_error      text        CHECK (length(last_error) <= 2000)
);
COMMENT ON TABLE altinn_outbox.event_subscription IS 'The Altinn Events subscription the daemon made for each resource, and whether Altinn has validated its endpoint';
COMMENT ON COLUMN altinn_outbox.event_subscription.resource_id IS 'The Altinn resource id (resourceFilter urn:altinn:resource:<id>)';
COMMENT ON COLUMN altinn_outbox.event_subscription.subscription_id IS 'Altinn''s id of the subscription (GET/DELETE /events/api/v1/subscriptions/<id>)';
COMMENT ON COLUMN altinn_outbox.event_subscription.endpoint_sha256 IS 'SHA-256 (hex) of the endpoint it pushes to: the endpoint holds the secret, so only its hash is kept; another hash means the endpoint changed';
COMMENT ON COLUMN altinn_outbox.event_subscription.type_filter IS 'The typeFilter it was made with (events.type_filter); NULL: every type';
COMMENT ON COLUMN altinn_outbox.event_subscription.validated IS 'Whether Altinn has validated the endpoint (its handshake got a 2xx); nothing is pushed before';
COMMENT ON COLUMN altinn_outbox.event_subscription.created_at IS 'When the daemon first recorded it';
COMMENT ON COLUMN altinn_outbox.event_subscription.posted_at IS 'When it was last POSTed (each POST sends a new handshake); the validation timeout counts from here';
COMMENT ON COLUMN altinn_outbox.event_subscription.validated_at IS 'When the daemon first saw it validated';
COMMENT ON COLUMN altinn_outbox.event_subscription.checked_at IS 'When the daemon last read it from Altinn';
COMMENT ON COLUMN altinn_outbox.event_subscription.overdue_since IS 'Set while it stays unvalidated past events.validation_timeout_ms (shown by /readyz); NULL otherwise';
COMMENT ON COLUMN altinn_outbox.event_subscription.last_error IS 'The last failure of a call about it (code: message), NULL after a success';

-- The pull API's cursor per resource: events registered after this one are yet to be read.
CREATE TABLE altinn_outbox.event_cursor (
    resource_id   text        PRIMARY KEY CHECK (length(resource_id) BETWEEN 1 AND 200),
    last_event_id text        CHECK (length(last_event_id) BETWEEN 1 AND 200),
    pulled_at     timestamptz,
    last_error    text        CHECK (length(last_error) <= 2000)
);
COMMENT ON TABLE altinn_outbox.event_cursor IS 'How far the pull of Altinn Events (GET /events/api/v1/events) has read, per resource';
COMMENT ON COLUMN altinn_outbox.event_cursor.resource_id IS 'The Altinn resource id pulled';
COMMENT ON COLUMN altinn_outbox.event_cursor.last_event_id IS 'The id of the last event read (the next pull''s after=); NULL: from the start (after=0)';
COMMENT ON COLUMN altinn_outbox.event_cursor.pulled_at IS 'When a pull of this resource last completed';
COMMENT ON COLUMN altinn_outbox.event_cursor.last_error IS 'The last pull failure (code: message), NULL after a success';
