-- Personal data out of stored texts. Altinn's error texts quote the recipient (1030 names the
-- reserved person's national identity number, 1029 lists recipients as URNs), and earlier
-- versions stored them as they came: in delivery.error_message and attachment.error_message,
-- and through the history trigger in history.detail. The daemon now scrubs every text where it
-- enters (identifiers::scrub); this migration applies the same rule to what is already stored.
--
-- The rule, in the order the passes must run (URNs before bare numbers, so that a URN's number
-- is hidden with its prefix): a person URN (any letter case) with an 11-digit number becomes
-- nine stars and the number's last two digits, and with a number of any other length eleven
-- stars; the address of an ID-porten e-mail URN and the user name of a self-identified URN
-- become ***, up to white space or one of ,;"'<>()[]{}; any other run of exactly 11 ASCII
-- digits (not part of a longer run) becomes nine stars and its last two digits. Organisation
-- numbers (9 digits) stay. A test compares this function with the daemon's on sample texts.
--
-- The function stays: an operator can scrub rows written by hand with it, and the test above
-- calls it. It reads nothing and runs as its caller, so EXECUTE for everyone is harmless.
CREATE OR REPLACE FUNCTION altinn_outbox.scrub_personal_data(text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
SELECT pg_catalog.regexp_replace(
    pg_catalog.regexp_replace(
        pg_catalog.regexp_replace(
            pg_catalog.regexp_replace(
                pg_catalog.regexp_replace($1,
                    'urn:altinn:person:identifier-no:[0-9]{9}([0-9]{2})(?![0-9])', '*********\1', 'gi'),
                'urn:altinn:person:identifier-no:[0-9]+', '***********', 'gi'),
            'urn:altinn:person:idporten-email:[^][ \t\n\r\v\f,;"''<>(){}]*', 'urn:altinn:person:idporten-email:***', 'gi'),
        'urn:altinn:person:legacy-selfidentified:[^][ \t\n\r\v\f,;"''<>(){}]*',
        'urn:altinn:person:legacy-selfidentified:***', 'gi'),
    '(?<![0-9])[0-9]{9}([0-9]{2})(?![0-9])', '*********\1', 'g')
$$;
COMMENT ON FUNCTION altinn_outbox.scrub_personal_data(text) IS
    'Masks national identity numbers and person URNs in a text, as the daemon does before storing Altinn''s texts';

-- Only rows that may hold something to hide are rewritten: the cheap test (one expression)
-- first, then whether scrubbing changes the text at all. Scrubbing delivery.error_message
-- fires the history trigger, which records nothing: no state, status or notification changes.
UPDATE altinn_outbox.delivery SET error_message = altinn_outbox.scrub_personal_data(error_message)
WHERE error_message ~* '[0-9]{11}|urn:altinn:person:'
  AND error_message <> altinn_outbox.scrub_personal_data(error_message);

UPDATE altinn_outbox.attachment SET error_message = altinn_outbox.scrub_personal_data(error_message)
WHERE error_message ~* '[0-9]{11}|urn:altinn:person:'
  AND error_message <> altinn_outbox.scrub_personal_data(error_message);

-- History is append-only, and its trigger refuses every UPDATE, this one included. Hiding
-- personal data is the one change an audit trail must take: the trigger is disabled for this
-- statement only. A migration runs in one transaction and ALTER TABLE is transactional, so no
-- other session ever sees history without its guard, and the table lock it takes holds back
-- concurrent writers of history (the worker's write-backs) until the migration commits.
ALTER TABLE altinn_outbox.history DISABLE TRIGGER history_append_only;
UPDATE altinn_outbox.history SET detail = altinn_outbox.scrub_personal_data(detail)
WHERE detail ~* '[0-9]{11}|urn:altinn:person:'
  AND detail <> altinn_outbox.scrub_personal_data(detail);
ALTER TABLE altinn_outbox.history ENABLE TRIGGER history_append_only;
