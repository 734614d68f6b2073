-- What a producer inserts is bounded and well-formed before any worker reads it. The worker
-- still checks every rule of Altinn's (a row that breaks one fails alone, with the field in
-- its error code); what is refused here is what could hurt more than its own row:
--
-- * A recipient that two producers can write two ways. Uniqueness (delivery_reference) and
--   Altinn's idempotency key both stand on recipient_key(); a recipient with white space, a
--   control character or anything outside printable ASCII would let `'991825827'` and
--   `E'991825827\t'` be two references here and one key at Altinn (the worker's parser trims
--   and lower-cases), so the second letter would be taken for the first. Every recipient is
--   therefore refused unless it is already printable ASCII without white space; for those,
--   recipient_key() is the one normalisation (letter case, the bare and `0192:` forms of an
--   organisation number, the bare national identity number), and the worker derives the key
--   from it, never from its own reading.
-- * Texts of unbounded size and JSON of unbounded depth: a 200-deep array made every claim
--   fail to decode (blocking every producer's letters), and a body of hundreds of megabytes
--   multiplied memory by the recipient count. Lengths are Altinn's own limits, counted in
--   UTF-16 units as .NET counts them; JSON columns get their shape (what Altinn binds), a
--   nesting depth and a size.
--
-- Errors are raised by a trigger rather than CHECK constraints: a CHECK violation's DETAIL
-- repeats the whole failing row (bodies, national identity numbers) to the client and to the
-- server log; these name the table and column (also in the error's COLUMN field, for
-- programs), say what is wrong and echo nothing of the value.
-- Existing rows are not re-checked: the trigger fires on INSERT and UPDATE only.

-- Length as Altinn (.NET) counts it: UTF-16 code units, so a character outside the Basic
-- Multilingual Plane (an emoji) counts two.
CREATE FUNCTION altinn_outbox.utf16_length(s text) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT char_length(s) + char_length(regexp_replace(s, '[^\U00010000-\U0010FFFF]', '', 'g'))
$$;
COMMENT ON FUNCTION altinn_outbox.utf16_length(text) IS 'Length in UTF-16 code units, as Altinn''s limits count it';

-- Nesting depth of a JSON value: 0 for a scalar, 1 for an object or array of scalars (a
-- value's depth is the containers around it, plus one if it is a container itself).
CREATE FUNCTION altinn_outbox.jsonb_depth(j jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  WITH RECURSIVE walk(v, depth) AS (
      SELECT j, 0
      UNION ALL
      SELECT c.v, w.depth + 1
      FROM walk w CROSS JOIN LATERAL (
          SELECT value FROM jsonb_each(CASE WHEN jsonb_typeof(w.v) = 'object' THEN w.v END)
          UNION ALL
          SELECT value FROM jsonb_array_elements(CASE WHEN jsonb_typeof(w.v) = 'array' THEN w.v END)
      ) AS c(v)
  )
  SELECT max(depth + CASE WHEN jsonb_typeof(v) IN ('object', 'array') THEN 1 ELSE 0 END) FROM walk
$$;
COMMENT ON FUNCTION altinn_outbox.jsonb_depth(jsonb) IS 'Nesting depth of a JSON value (0 for a scalar)';

-- Raises the refusal of one column, in the form every check below shares.
CREATE FUNCTION altinn_outbox.refuse(tab text, col text, problem text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'altinn_outbox.%.%: %', tab, col, problem
        USING ERRCODE = 'check_violation', SCHEMA = 'altinn_outbox', TABLE = tab, COLUMN = col;
END $$;

-- The problem with a JSON column's value, or NULL: its kind ('object' or 'array'), how
-- many entries and how deep it may be, and how large. SQL null and JSON null both mean "none".
CREATE FUNCTION altinn_outbox.json_problem(j jsonb, kind text, max_entries integer, max_depth integer,
    max_bytes integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN j IS NULL OR jsonb_typeof(j) = 'null' THEN NULL
    WHEN jsonb_typeof(j) <> kind THEN format('must be a JSON %s, not %s', kind, jsonb_typeof(j))
    WHEN octet_length(j::text) > max_bytes THEN format('is larger than %s bytes as JSON', max_bytes)
    WHEN altinn_outbox.jsonb_depth(j) > max_depth THEN format('is nested deeper than %s levels', max_depth)
    WHEN (CASE kind WHEN 'array' THEN jsonb_array_length(j)
                    ELSE (SELECT count(*)::integer FROM jsonb_object_keys(j)) END) > max_entries
      THEN format('has more than %s entries', max_entries)
  END
$$;

-- The problem with one recipient as written, or NULL.
CREATE FUNCTION altinn_outbox.recipient_problem(r text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN r IS NULL OR r = '' THEN 'is empty'
    WHEN r !~ '^[!-~]+$' THEN
      'contains white space, a control character or a character outside printable ASCII; '
      || 'write it exactly: an organisation number, 0192:<number>, a national identity number or an Altinn URN'
    WHEN char_length(r) > 255 THEN 'is longer than 255 characters'
  END
$$;
COMMENT ON FUNCTION altinn_outbox.recipient_problem(text) IS
  'Why a recipient is refused at INSERT (NULL when it is accepted): only printable ASCII without white space, so that recipient_key() is the one normalisation';

CREATE FUNCTION altinn_outbox.check_message() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    problem text;
    bad record;
BEGIN
    FOR i IN 1 .. coalesce(cardinality(NEW.recipients), 0) LOOP
        problem := altinn_outbox.recipient_problem(NEW.recipients[i]);
        IF problem IS NOT NULL THEN
            PERFORM altinn_outbox.refuse('message', 'recipients',
                format('recipient %s of %s %s', i, cardinality(NEW.recipients), problem));
        END IF;
    END LOOP;
    -- Text limits: Altinn's, in UTF-16 units. Lower bounds (an empty title) are the worker's
    -- to report on the row, as insert_request() relies on.
    PERFORM altinn_outbox.refuse('message', t.col, format('is longer than %s characters', t.max))
    FROM (VALUES ('resource_id', NEW.resource_id, 255), ('senders_reference', NEW.senders_reference, 4096),
                 ('language', NEW.language, 16), ('title', NEW.title, 255), ('summary', NEW.summary, 255),
                 ('body', NEW.body, 30000), ('message_sender', NEW.message_sender, 255)) AS t(col, val, max)
    WHERE altinn_outbox.utf16_length(t.val) > t.max;
    IF cardinality(NEW.existing_attachments) > 100 THEN
        PERFORM altinn_outbox.refuse('message', 'existing_attachments', 'has more than 100 entries');
    END IF;
    -- JSON: what Altinn binds (external references and reply options are arrays of flat
    -- objects, the property list a flat object of strings, the notification an object whose
    -- custom recipients are flat objects), with room for nothing deeper.
    SELECT t.col, t.p INTO bad FROM (VALUES
        ('external_references', altinn_outbox.json_problem(NEW.external_references, 'array', 10, 2, 65536)),
        ('property_list', altinn_outbox.json_problem(NEW.property_list, 'object', 10, 1, 65536)),
        ('reply_options', altinn_outbox.json_problem(NEW.reply_options, 'array', 100, 2, 65536)),
        ('notification', altinn_outbox.json_problem(NEW.notification, 'object', 50, 3, 131072))
    ) AS t(col, p) WHERE t.p IS NOT NULL LIMIT 1;
    IF FOUND THEN
        PERFORM altinn_outbox.refuse('message', bad.col, bad.p);
    END IF;
    IF jsonb_typeof(NEW.property_list) = 'object' THEN
        PERFORM altinn_outbox.refuse('message', 'property_list',
            'values must be strings; keys at most 50 and values at most 300 characters')
        FROM jsonb_each(NEW.property_list) AS e(k, v)
        WHERE jsonb_typeof(e.v) <> 'string' OR altinn_outbox.utf16_length(e.k) > 50
           OR altinn_outbox.utf16_length(e.v #>> '{}') > 300;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER message_check BEFORE INSERT OR UPDATE ON altinn_outbox.message
    FOR EACH ROW EXECUTE FUNCTION altinn_outbox.check_message();

-- Files: the names' limits per row; the count per message once per statement (a message may
-- get its files in several statements).
CREATE FUNCTION altinn_outbox.check_attachment() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM altinn_outbox.refuse('attachment', t.col, format('is longer than %s characters', t.max))
    FROM (VALUES ('file_name', NEW.file_name, 255), ('display_name', NEW.display_name, 255),
                 ('senders_reference', NEW.senders_reference, 4096)) AS t(col, val, max)
    WHERE altinn_outbox.utf16_length(t.val) > t.max;
    RETURN NEW;
END $$;
CREATE TRIGGER attachment_check BEFORE INSERT OR UPDATE OF file_name, display_name, senders_reference
    ON altinn_outbox.attachment FOR EACH ROW EXECUTE FUNCTION altinn_outbox.check_attachment();

-- Runs as its owner: the count must see every file of the message, whoever may read them.
CREATE FUNCTION altinn_outbox.count_attachments() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, altinn_outbox, pg_temp AS $$
DECLARE
    over bigint;
BEGIN
    SELECT n.message_id INTO over FROM (SELECT DISTINCT message_id FROM new_files) n
    WHERE (SELECT count(*) FROM altinn_outbox.attachment a WHERE a.message_id = n.message_id) > 100
    LIMIT 1;
    IF FOUND THEN
        PERFORM altinn_outbox.refuse('attachment', 'message_id',
            format('message %s would have more than 100 files (Altinn''s limit per correspondence)', over));
    END IF;
    RETURN NULL;
END $$;
REVOKE EXECUTE ON FUNCTION altinn_outbox.count_attachments() FROM PUBLIC;
CREATE TRIGGER attachment_count AFTER INSERT ON altinn_outbox.attachment
    REFERENCING NEW TABLE AS new_files FOR EACH STATEMENT EXECUTE FUNCTION altinn_outbox.count_attachments();
