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
--   * altinn_outbox_producer (NOLOGIN): what an application that sends letters may do.
--   * altinn_outbox_worker (NOLOGIN): what the daemon (and its admin commands) may do.
-- Log in with roles that are members of these, one per application, e.g.:
--     CREATE ROLE billing_app LOGIN PASSWORD '...' IN ROLE altinn_outbox_producer;
--     CREATE ROLE altinn_outbox_daemon LOGIN PASSWORD '...' IN ROLE altinn_outbox_worker;
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

-- Producer: insert letters, read results. No UPDATE, DELETE or TRUNCATE anywhere.
GRANT SELECT, INSERT ON altinn_outbox.message TO altinn_outbox_producer;
-- Files: only the columns a producer writes; the upload bookkeeping keeps its defaults.
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
    locked_until, error_code, error_message, updated_at) ON altinn_outbox.attachment TO altinn_outbox_worker;
-- A claim looks a new idempotency key up before storing it (a trigger records it, as the owner).
GRANT SELECT ON altinn_outbox.delivery_key TO altinn_outbox_worker;
-- Pruning finished messages (the prune schedule, `altinn-outbox prune`): their deliveries and
-- files go with them (ON DELETE CASCADE runs as the tables' owner), and so do the deliveries'
-- history and references (a trigger that runs as its owner).
GRANT DELETE ON altinn_outbox.message TO altinn_outbox_worker;

-- Housekeeping ([schedules]): claiming a scheduled time, recording and pruning its runs.
GRANT SELECT ON altinn_outbox.schedule, altinn_outbox.schedule_run TO altinn_outbox_worker;
GRANT INSERT (name, last_slot), UPDATE (last_slot, updated_at) ON altinn_outbox.schedule TO altinn_outbox_worker;
GRANT INSERT (name, slot, instance), UPDATE (finished_at, outcome, detail), DELETE ON altinn_outbox.schedule_run
    TO altinn_outbox_worker;

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
