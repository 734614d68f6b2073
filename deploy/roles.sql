-- altinn-outbox: least-privilege roles for the producers and the worker.
--
-- Run it after `altinn-outbox migrate`, at install and again after every upgrade, as a
-- superuser (it creates roles and grants on the owner's objects and on the database),
-- connected to the outbox's database:
--
--     sudo -u postgres psql -d app -v ON_ERROR_STOP=1 -f deploy/roles.sql
--
-- It is idempotent and converges: the two roles end up with exactly the privileges below,
-- whatever they had before (everything is revoked and granted again in one transaction, so
-- no session ever sees them half-granted).
--
-- Three kinds of role use the outbox:
--   * the owner (e.g. altinn_outbox_owner) owns the schema and runs `altinn-outbox migrate`;
--     nothing else logs in with it. It needs CREATE on the database and on schema public
--     (the migration ledger _sqlx_migrations lives there); owning the database gives both.
--     It (like a superuser) is not bound by row-level security, and it alone manages the
--     allow list altinn_outbox.producer_resource.
--   * altinn_outbox_producer (NOLOGIN): what an application that sends letters may do.
--   * altinn_outbox_worker (NOLOGIN): what the daemon (and its admin commands) may do.
-- Log in with roles that are members of these, one per application, e.g.:
--     CREATE ROLE billing_app LOGIN PASSWORD '...' IN ROLE altinn_outbox_producer;
--     CREATE ROLE altinn_outbox_daemon LOGIN PASSWORD '...' IN ROLE altinn_outbox_worker;
-- Producers are told apart by their login role: applications that share one share their
-- letters.
--
-- A producer (a login member of altinn_outbox_producer)
--   can: insert messages (the letter's columns only, or through insert_request) and files for
--     its own messages, in the same transaction as the message or later while no delivery of
--     the message has been claimed; read its own messages, files, deliveries and history,
--     directly or through the views delivery_status and message_status;
--   cannot: see or touch another producer's rows; choose a message's id, created_at or
--     producer, or any delivery or upload state; send on a resource the allow list
--     (altinn_outbox.producer_resource, when it has rows) does not give one of its roles;
--     update or delete anything.
-- The worker (a login member of altinn_outbox_worker)
--   can: read every row; claim and write back deliveries and file uploads (the bookkeeping
--     columns only); prune finished messages through altinn_outbox.prune_messages, which keeps
--     the prune rule; run the housekeeping schedules;
--   cannot: insert or change a letter, its recipients or its files; delete a message,
--     delivery or history row; change a delivery's idempotency key or correspondence id, or a
--     file's Altinn attachment id, once set (a trigger refuses it, for every role); read the
--     allow list.
--
-- Writes that a role is not granted still happen through triggers that run as the owner
-- (migration 20261121000006): a producer's INSERT creates the deliveries and routes the
-- files; the worker's UPDATE of a delivery records its history.

BEGIN;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'altinn_outbox_producer') THEN
        CREATE ROLE altinn_outbox_producer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'altinn_outbox_worker') THEN
        CREATE ROLE altinn_outbox_worker NOLOGIN;
    END IF;
    -- Harmless where CONNECT is left to PUBLIC (the default); needed where it was revoked.
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO altinn_outbox_producer, altinn_outbox_worker',
                   current_database());
END $$;

-- Start from nothing, so a privilege dropped from this file is dropped from the database.
REVOKE ALL ON ALL TABLES IN SCHEMA altinn_outbox FROM altinn_outbox_producer, altinn_outbox_worker;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA altinn_outbox FROM altinn_outbox_producer, altinn_outbox_worker;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA altinn_outbox FROM altinn_outbox_producer, altinn_outbox_worker;
REVOKE ALL ON SCHEMA altinn_outbox FROM altinn_outbox_producer, altinn_outbox_worker;
GRANT USAGE ON SCHEMA altinn_outbox TO altinn_outbox_producer, altinn_outbox_worker;

-- Producer: insert letters, read its own results. No UPDATE, DELETE or TRUNCATE anywhere.
-- Messages: only the letter's columns. Not id (so OVERRIDING SYSTEM VALUE fails), created_at
-- (a future one would keep a row from ever being pruned), producer (the database records the
-- inserting role), nor the generated columns.
GRANT SELECT ON altinn_outbox.message TO altinn_outbox_producer;
GRANT INSERT (resource_id, senders_reference, resend, recipients, language, title, summary, body, message_sender,
    requested_publish_time, due_date_time, external_references, property_list, reply_options, notification,
    ignore_reservation, is_confirmation_needed, is_confidential, allow_forwarding, existing_attachments)
    ON altinn_outbox.message TO altinn_outbox_producer;
-- Files: only the columns a producer writes; the upload bookkeeping and the producer keep
-- their defaults.
GRANT INSERT (message_id, file_name, display_name, senders_reference, content) ON altinn_outbox.attachment
    TO altinn_outbox_producer;
GRANT SELECT ON altinn_outbox.attachment, altinn_outbox.delivery, altinn_outbox.history,
    altinn_outbox.delivery_status, altinn_outbox.message_status TO altinn_outbox_producer;
-- insert_request runs with the caller's privileges: it is an INSERT into message. The
-- generated columns' functions are PUBLIC by default; granted here in case PUBLIC lost them.
GRANT EXECUTE ON FUNCTION altinn_outbox.insert_request(jsonb, integer), altinn_outbox.recipient_key(text),
    altinn_outbox.recipient_keys(text[]), altinn_outbox.content_hash(text, text, text, text, text, timestamptz,
    timestamptz, jsonb, jsonb, jsonb, jsonb) TO altinn_outbox_producer;

-- Worker: read everything (the admin commands run with the daemon's settings and show history
-- and the views), claim and write back deliveries and file uploads, run the housekeeping.
GRANT SELECT ON altinn_outbox.message, altinn_outbox.attachment, altinn_outbox.delivery, altinn_outbox.history,
    altinn_outbox.delivery_status, altinn_outbox.message_status TO altinn_outbox_worker;
-- Every column the worker writes, and none that says what is sent to whom (message_id,
-- recipient, recipient_key, resource_id, senders_reference, resend stay as the trigger made them).
GRANT UPDATE (state, attempts, next_attempt_at, lease_no, locked_by, locked_until, idempotency_key,
    correspondence_id, sent_at, altinn_status, altinn_status_at, status_seen_at, polls, next_poll_at,
    published_at, read_at, confirmed_at, notification, notification_detail, finished_at, error_code,
    error_message, updated_at) ON altinn_outbox.delivery TO altinn_outbox_worker;
-- The shared upload's bookkeeping; never the file or its names.
GRANT UPDATE (upload_state, altinn_attachment_id, upload_attempts, next_attempt_at, lease_no, locked_by,
    locked_until, error_code, error_message, updated_at, uploaded_at) ON altinn_outbox.attachment
    TO altinn_outbox_worker;
-- A claim looks a new idempotency key up before storing it (a trigger records it, as the owner).
GRANT SELECT ON altinn_outbox.delivery_key TO altinn_outbox_worker;
-- Pruning finished messages (the prune schedule, `altinn-outbox prune`) goes through a function
-- that runs as the owner and deletes only what the prune rule allows; the worker has no DELETE
-- on message, so it cannot remove a letter that is not finished, nor its history.
GRANT EXECUTE ON FUNCTION altinn_outbox.prune_messages(timestamptz, integer) TO altinn_outbox_worker;

-- Altinn Events ([events]): the receiver's secret, made once by the first instance; events are
-- stored, and their deliveries woken, only through receive_event (which runs as the owner).
GRANT SELECT, INSERT ON altinn_outbox.event_receiver TO altinn_outbox_worker;
GRANT SELECT ON altinn_outbox.event TO altinn_outbox_worker;
GRANT EXECUTE ON FUNCTION altinn_outbox.receive_event(text, text, text, text, timestamptz, text, boolean)
    TO altinn_outbox_worker;
-- Managing the subscriptions (one instance at a time, by the lease on event_receiver), the
-- pull's cursors, and `altinn-outbox events delete`.
GRANT UPDATE (manager, managed_until) ON altinn_outbox.event_receiver TO altinn_outbox_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON altinn_outbox.event_subscription TO altinn_outbox_worker;
GRANT SELECT, INSERT, UPDATE ON altinn_outbox.event_cursor TO altinn_outbox_worker;

-- Housekeeping ([schedules]): claiming a scheduled time, recording and pruning its runs.
GRANT SELECT ON altinn_outbox.schedule, altinn_outbox.schedule_run TO altinn_outbox_worker;
GRANT INSERT (name, last_slot), UPDATE (last_slot, updated_at) ON altinn_outbox.schedule TO altinn_outbox_worker;
GRANT INSERT (name, slot, instance), UPDATE (finished_at, outcome, detail), DELETE ON altinn_outbox.schedule_run
    TO altinn_outbox_worker;

-- Row-level security (enabled by migration 20261204000011; enabled again here in case it was
-- turned off by hand): a role sees and touches only the rows a policy below gives it. Policies
-- apply to the members of the roles they name, i.e. to the login roles. Every policy naming one
-- of the two roles is dropped first, so a policy dropped from this file, or added by hand, is
-- gone after a run.
ALTER TABLE altinn_outbox.message ENABLE ROW LEVEL SECURITY;
ALTER TABLE altinn_outbox.attachment ENABLE ROW LEVEL SECURITY;
ALTER TABLE altinn_outbox.delivery ENABLE ROW LEVEL SECURITY;
ALTER TABLE altinn_outbox.history ENABLE ROW LEVEL SECURITY;
ALTER TABLE altinn_outbox.delivery_reference ENABLE ROW LEVEL SECURITY;

DO $$
DECLARE
    p record;
BEGIN
    FOR p IN
        SELECT pol.polname, c.relname FROM pg_policy pol
        JOIN pg_class c ON c.oid = pol.polrelid
        WHERE c.relnamespace = 'altinn_outbox'::regnamespace
          AND pol.polroles && ARRAY(SELECT oid FROM pg_roles
                                    WHERE rolname IN ('altinn_outbox_producer', 'altinn_outbox_worker'))
    LOOP
        EXECUTE format('DROP POLICY %I ON altinn_outbox.%I', p.polname, p.relname);
    END LOOP;
END $$;

-- A producer: its own messages and files (the producer column is the inserting login role),
-- and the deliveries and history of its own messages. Its INSERTs must carry its own name,
-- which they always do (the column's default; producers have no INSERT on it). That a file
-- joins only its own, unclaimed message is checked by a trigger, with an error that says why.
CREATE POLICY producer_own_rows ON altinn_outbox.message TO altinn_outbox_producer
    USING (producer = current_user) WITH CHECK (producer = current_user);
CREATE POLICY producer_own_rows ON altinn_outbox.attachment TO altinn_outbox_producer
    USING (producer = current_user) WITH CHECK (producer = current_user);
CREATE POLICY producer_own_rows ON altinn_outbox.delivery FOR SELECT TO altinn_outbox_producer
    USING (EXISTS (SELECT 1 FROM altinn_outbox.message m
                   WHERE m.id = delivery.message_id AND m.producer = current_user));
CREATE POLICY producer_own_rows ON altinn_outbox.history FOR SELECT TO altinn_outbox_producer
    USING (EXISTS (SELECT 1 FROM altinn_outbox.delivery d JOIN altinn_outbox.message m ON m.id = d.message_id
                   WHERE d.id = history.delivery_id AND m.producer = current_user));
-- The worker (and the admin commands, which run as it): every row, through a constant policy
-- that the planner drops, so that claims and write-backs pay nothing for row-level security.
-- What it may do with the rows is what the grants above say.
CREATE POLICY worker_all_rows ON altinn_outbox.message TO altinn_outbox_worker USING (true) WITH CHECK (true);
CREATE POLICY worker_all_rows ON altinn_outbox.attachment TO altinn_outbox_worker USING (true) WITH CHECK (true);
CREATE POLICY worker_all_rows ON altinn_outbox.delivery TO altinn_outbox_worker USING (true) WITH CHECK (true);
CREATE POLICY worker_all_rows ON altinn_outbox.history TO altinn_outbox_worker USING (true) WITH CHECK (true);

DO $$
DECLARE
    ledger regclass := to_regclass('_sqlx_migrations');
BEGIN
    IF ledger IS NULL THEN
        RAISE EXCEPTION 'no _sqlx_migrations on the search_path: run `altinn-outbox migrate` as the owner first';
    END IF;
    -- The daemon starts only when every migration it knows is applied.
    EXECUTE format('REVOKE ALL ON %s FROM altinn_outbox_producer, altinn_outbox_worker', ledger);
    EXECUTE format('GRANT SELECT ON %s TO altinn_outbox_worker', ledger);
END $$;

COMMIT;
