-- Producers isolated from each other, and a record the worker cannot destroy.
--
-- Before this migration every producer read every other producer's letters, history and
-- files, could add a file to another producer's unsent message, choose message ids and
-- creation times, and send on any resource; the worker could delete any message with its
-- history and overwrite the ids that tie a delivery to Altinn. This migration adds what does
-- not depend on role names; deploy/roles.sql, run after it as after every migration, grants
-- the columns and creates the policies that name the producer and worker roles:
--
--   * every message and file records its producer (the role that inserted it);
--   * row-level security on message, attachment, delivery, history and delivery_reference:
--     a role other than the owner (and superusers) sees only the rows a policy of
--     deploy/roles.sql gives it, so without one it sees nothing;
--   * the two views check the caller's policies rather than their owner's;
--   * a file joins only its producer's own message, and only while no delivery of it has
--     been claimed;
--   * an optional allow list of resources per producer role (producer_resource);
--   * pruning through one function that holds the prune rule (the worker loses DELETE);
--   * a delivery's idempotency key and correspondence id, and a file's Altinn attachment id,
--     cannot be changed once set.
--
-- Between `altinn-outbox migrate` and deploy/roles.sql, producers and the worker see no rows
-- and producers cannot insert: the security is on before its policies are. Run the two back
-- to back, as the upgrade steps say.

-- 1. The producer of every message and file. The default is evaluated in the inserting
-- session, and deploy/roles.sql grants producers no INSERT on the column, so it is always the
-- role that inserted the row (a login role, e.g. billing_app, not the group it belongs to).
-- text, not name: a name takes 64 bytes in every row and index entry. Rows from before this
-- migration are attributed to the role that runs `migrate`, the schema's owner, which is no
-- producer: ADD COLUMN evaluates a non-volatile default once and stores it for the existing
-- rows, without rewriting the table. So no producer sees
-- them any more; the owner may hand them to a producer with
--     UPDATE altinn_outbox.message SET producer = 'billing_app' WHERE ...;
--     UPDATE altinn_outbox.attachment a SET producer = m.producer FROM altinn_outbox.message m
--     WHERE m.id = a.message_id;
-- A renamed producer role keeps its rows only after the same UPDATE with its new name.
ALTER TABLE altinn_outbox.message ADD COLUMN producer text NOT NULL DEFAULT current_user;
ALTER TABLE altinn_outbox.attachment ADD COLUMN producer text NOT NULL DEFAULT current_user;
COMMENT ON COLUMN altinn_outbox.message.producer IS
    'The role that inserted the message (set by the database; producers see only their own messages)';
COMMENT ON COLUMN altinn_outbox.attachment.producer IS
    'The role that inserted the file; always the producer of its message';

-- A retried INSERT ... ON CONFLICT DO NOTHING absorbs a repeat of the producer's own letter
-- only. Without the producer in the key, the same letter from a second producer was silently
-- dropped (its INSERT did nothing, and that producer cannot see the first one's row). Now it
-- is inserted and fails on delivery_reference_unique, or on the allow list below, as any
-- reused reference does. The index is built anew inside the migration's transaction, so
-- inserts wait for the build (seconds per million messages).
DROP INDEX altinn_outbox.message_reference_unique;
CREATE UNIQUE INDEX message_reference_unique ON altinn_outbox.message
    (resource_id, senders_reference, resend, recipient_keys, content_hash, producer);

-- 2. Row-level security. Not FORCEd: the owner (migrations, the trigger functions, which
-- run as the owner, and the prune function) and superusers see every row. The policies are
-- in deploy/roles.sql because they name its roles (which tests rename). delivery_reference
-- has none: only the owner's triggers read or write it.
ALTER TABLE altinn_outbox.message ENABLE ROW LEVEL SECURITY;
ALTER TABLE altinn_outbox.attachment ENABLE ROW LEVEL SECURITY;
ALTER TABLE altinn_outbox.delivery ENABLE ROW LEVEL SECURITY;
ALTER TABLE altinn_outbox.history ENABLE ROW LEVEL SECURITY;
ALTER TABLE altinn_outbox.delivery_reference ENABLE ROW LEVEL SECURITY;

-- A view reads its tables with its owner's rights unless told otherwise, and the owner sees
-- every row: without this, any producer would read every producer's deliveries through them.
-- A migration that replaces these views must restate the option (CREATE OR REPLACE VIEW
-- resets it).
ALTER VIEW altinn_outbox.delivery_status SET (security_invoker = true);
ALTER VIEW altinn_outbox.message_status SET (security_invoker = true);

-- 3. A file joins its producer's own message, and only while that message is untouched by
-- the worker: every delivery still pending or waiting for files, never claimed (attempts and
-- lease_no both 0; a claim raises both, and a release after shutdown lowers only attempts).
-- A file added later would go to some recipients and not to others. Inserting the files in
-- the same transaction as the message remains the documented way; this makes the other way
-- safe.
--
-- Race-free against a claim: the deliveries are locked before they are read, and claims lock
-- with SKIP LOCKED, so a claim that comes after skips them until this transaction ends, and a
-- claim that came first (committed, or holding its lock, which this waits for) is seen. The
-- lock is FOR NO KEY UPDATE rather than FOR SHARE: route_files then updates the same rows, and
-- two transactions adding files to one message would each hold a share lock the other's
-- update waits for (a deadlock); with the stronger lock the second simply waits.
--
-- Runs as the owner: a producer may neither lock nor (for another producer's message) read
-- these rows. Its name sorts before attachment_route_files, so it fires first.
CREATE FUNCTION altinn_outbox.check_file_message() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
DECLARE
    refused record;
BEGIN
    SELECT n.message_id, n.producer INTO refused
    FROM new_files n JOIN altinn_outbox.message m ON m.id = n.message_id
    WHERE m.producer <> n.producer LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'message % is not a message of role %: a file may be added only to the producer''s own message',
            refused.message_id, refused.producer
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    PERFORM 1 FROM altinn_outbox.delivery d
    WHERE d.message_id IN (SELECT n.message_id FROM new_files n)
    ORDER BY d.id FOR NO KEY UPDATE OF d;
    -- A new statement, so a new snapshot (READ COMMITTED): it sees what a claim committed
    -- while the lock above waited for it.
    SELECT d.message_id, d.id, d.state INTO refused FROM altinn_outbox.delivery d
    WHERE d.message_id IN (SELECT n.message_id FROM new_files n)
      AND NOT (d.state IN ('pending', 'waiting_files') AND d.attempts = 0 AND d.lease_no = 0)
    ORDER BY d.id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'message % has a delivery the worker has already taken up (delivery %, state %): files must be added before that, best in the same transaction as the message',
            refused.message_id, refused.id, refused.state
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION altinn_outbox.check_file_message() FROM PUBLIC;
CREATE TRIGGER attachment_check_message AFTER INSERT ON altinn_outbox.attachment
    REFERENCING NEW TABLE AS new_files FOR EACH STATEMENT EXECUTE FUNCTION altinn_outbox.check_file_message();

-- 4. Which producer role may send on which resource. Managed by the owner (or a superuser);
-- no other role may read or change it. Semantics, checked for every inserted message:
--   * the table is empty: any role may send on any resource (as before this migration);
--   * the table has rows: a message on resource R is accepted only if its producer (the
--     inserting role) is a member, directly or through other roles, of a role listed with R.
--     A resource with no row is then refused to every role. Membership is pg_has_role(...,
--     'MEMBER'): list the group (altinn_outbox_producer) to allow every producer, or a login
--     role to allow only it. Superusers count as members of every role, so they may send on
--     any listed resource, but not on an unlisted one. A row naming a role that does not exist
--     allows nobody.
-- Since each resource then belongs to the roles listed with it, no other producer can take a
-- reference on it first (references are unique per resource, as Altinn's idempotency keys
-- are).
CREATE TABLE altinn_outbox.producer_resource (
    resource_id text NOT NULL,
    role        text NOT NULL,
    CONSTRAINT producer_resource_pkey PRIMARY KEY (resource_id, role)
);
COMMENT ON TABLE altinn_outbox.producer_resource IS
    'Allow list: when it has rows, a message on a resource is accepted only from members of a role listed with that resource; empty, every resource is allowed';
COMMENT ON COLUMN altinn_outbox.producer_resource.resource_id IS 'Altinn resource id (message.resource_id)';
COMMENT ON COLUMN altinn_outbox.producer_resource.role IS 'A role whose members (itself included) may send on the resource';

-- Runs as the owner, to read the list; the inserting role is the rows' producer column. Its
-- name sorts before message_create_deliveries, so a refused message is refused for its
-- resource, not for a reference that is taken on a resource it may not use.
CREATE FUNCTION altinn_outbox.check_producer_resource() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
DECLARE
    refused record;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM altinn_outbox.producer_resource) THEN
        RETURN NULL;
    END IF;
    SELECT m.resource_id, m.producer INTO refused FROM new_messages m
    WHERE NOT EXISTS (
        SELECT 1 FROM altinn_outbox.producer_resource p
        JOIN pg_catalog.pg_roles listed ON listed.rolname = p.role
        JOIN pg_catalog.pg_roles inserting ON inserting.rolname = m.producer
        WHERE p.resource_id = m.resource_id AND pg_has_role(inserting.oid, listed.oid, 'MEMBER'))
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'resource % is not allowed for role %', quote_literal(refused.resource_id), refused.producer
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'altinn_outbox.producer_resource lists the roles that may send on each resource';
    END IF;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION altinn_outbox.check_producer_resource() FROM PUBLIC;
CREATE TRIGGER message_allowed_resource AFTER INSERT ON altinn_outbox.message
    REFERENCING NEW TABLE AS new_messages FOR EACH STATEMENT EXECUTE FUNCTION altinn_outbox.check_producer_resource();

-- 5. Pruning: the rule of `altinn-outbox prune` and the prune schedule, held by the database,
-- so that the worker, which no longer may DELETE a message, can remove only what the rule
-- allows. One batch per call, so each batch is its own short transaction: messages created
-- before the cutoff all of whose deliveries are finished (delivered, failed, cancelled)
-- before it and no longer followed (next_poll_at IS NULL). The deliveries are locked and the
-- rule checked again on the locked rows, so a delivery put back by `retry` meanwhile keeps its
-- message. Deliveries and files go by ON DELETE CASCADE; history and references with their
-- deliveries (forget_deliveries). Returns what it removed; history is counted before it goes.
-- The batch is bounded so that a call stays a short transaction.
CREATE FUNCTION altinn_outbox.prune_messages(cutoff timestamptz, batch integer,
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
              AND NOT (d.state IN ('delivered', 'failed', 'cancelled') AND d.finished_at < cutoff
                       AND d.next_poll_at IS NULL))
        ORDER BY m.id LIMIT batch
    ), held AS (
        SELECT d.id, d.message_id FROM altinn_outbox.delivery d
        WHERE d.message_id IN (SELECT c.id FROM candidate c)
          AND d.state IN ('delivered', 'failed', 'cancelled') AND d.finished_at < cutoff AND d.next_poll_at IS NULL
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
REVOKE EXECUTE ON FUNCTION altinn_outbox.prune_messages(timestamptz, integer) FROM PUBLIC;
COMMENT ON FUNCTION altinn_outbox.prune_messages(timestamptz, integer) IS
    'Deletes up to batch messages all of whose deliveries finished before cutoff and are no longer followed; returns the counts removed';

-- 6. The ids that tie a row to Altinn are its record: the idempotency key (Altinn answers a
-- repeat with the same correspondence), the correspondence id (status reads, cancel) and the
-- attachment id (what the sent correspondences refer to). Setting one from NULL is how the
-- worker records it; changing or clearing it would lose or forge the record, and no path of
-- the daemon does: a claim stores a key only where there is none (coalesce), a write-back or
-- a purge keeps a correspondence id already there (a delivery that has one is never sent
-- again: retry puts it back to awaiting_status), status reads never write it. These checks
-- hold for every role, so that no one changes the record by accident; the owner can still
-- disable a trigger for a deliberate repair.
--
-- Delivery is updated by every claim and every write-back, so the check is one statement
-- trigger over the transition tables the history trigger already has captured (one join per
-- statement), not a per-row call.
CREATE FUNCTION altinn_outbox.keep_delivery_ids() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
DECLARE
    changed record;
BEGIN
    SELECT n.id, CASE WHEN o.idempotency_key IS NOT NULL AND n.idempotency_key IS DISTINCT FROM o.idempotency_key
                      THEN 'idempotency_key' ELSE 'correspondence_id' END AS col
    INTO changed
    FROM new_rows n JOIN old_rows o USING (id)
    WHERE (o.idempotency_key IS NOT NULL AND n.idempotency_key IS DISTINCT FROM o.idempotency_key)
       OR (o.correspondence_id IS NOT NULL AND n.correspondence_id IS DISTINCT FROM o.correspondence_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'delivery %: % cannot be changed or cleared once set (it ties the delivery to its correspondence at Altinn)',
            changed.id, changed.col
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION altinn_outbox.keep_delivery_ids() FROM PUBLIC;
CREATE TRIGGER delivery_keep_ids AFTER UPDATE ON altinn_outbox.delivery
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION altinn_outbox.keep_delivery_ids();

-- A file's Altinn id may be cleared in one case: the file starts over (upload_state back to
-- pending) from an upload that spent its one-shot attachment (uploading: the upload failed,
-- or its worker died, reclaim_dead_uploads) or from a failed file that `retry` puts back.
-- Neither id was ever sent in a correspondence: deliveries are sent only once all their
-- files are published, and a published file's id is never cleared. An id is never replaced
-- by another directly: a new one is set from NULL. Few statements update files (a handful of
-- steps per upload), and a statement trigger would copy each updated row, file content
-- included, into its transition tables; so this is a row trigger whose WHEN condition, which
-- the executor evaluates without calling the function, is true only for a forbidden change.
CREATE FUNCTION altinn_outbox.refuse_attachment_id_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'attachment %: altinn_attachment_id cannot be changed once set, only cleared when the file starts over (upload_state from uploading or failed to pending); it was %, state %, now %',
        OLD.id, OLD.altinn_attachment_id, OLD.upload_state, NEW.upload_state
        USING ERRCODE = 'check_violation';
END $$;
REVOKE EXECUTE ON FUNCTION altinn_outbox.refuse_attachment_id_change() FROM PUBLIC;
CREATE TRIGGER attachment_keep_id AFTER UPDATE OF altinn_attachment_id ON altinn_outbox.attachment FOR EACH ROW
    WHEN (OLD.altinn_attachment_id IS NOT NULL AND NEW.altinn_attachment_id IS DISTINCT FROM OLD.altinn_attachment_id
          AND NOT (NEW.altinn_attachment_id IS NULL AND NEW.upload_state = 'pending'
                   AND OLD.upload_state IN ('uploading', 'failed')))
    EXECUTE FUNCTION altinn_outbox.refuse_attachment_id_change();
