-- Producers that already build Altinn's initialize request as JSON can insert it as it is.
-- The document lands in the ordinary columns, so the worker checks it exactly like any other
-- message; missing texts become empty strings so that the row fails with a message naming the
-- field rather than the INSERT failing on NOT NULL. `idempotentKey` is ignored: the outbox
-- derives its own from the reference (see `resend` for a deliberate re-send).
CREATE FUNCTION altinn_outbox.insert_request(request jsonb, resend integer DEFAULT 0) RETURNS bigint
LANGUAGE sql AS $$
  INSERT INTO altinn_outbox.message (
      resource_id, senders_reference, resend, recipients, language, title, summary, body, message_sender,
      requested_publish_time, due_date_time, external_references, property_list, reply_options, notification,
      ignore_reservation, is_confirmation_needed, is_confidential, allow_forwarding, existing_attachments)
  SELECT coalesce(c->>'resourceId', ''),
         coalesce(c->>'sendersReference', ''),
         resend,
         coalesce(ARRAY(SELECT jsonb_array_elements_text(request->'recipients')), '{}'),
         coalesce(c->'content'->>'language', 'nb'),
         coalesce(c->'content'->>'messageTitle', ''),
         c->'content'->>'messageSummary',
         coalesce(c->'content'->>'messageBody', ''),
         c->>'messageSender',
         (c->>'requestedPublishTime')::timestamptz,
         (c->>'dueDateTime')::timestamptz,
         c->'externalReferences',
         c->'propertyList',
         c->'replyOptions',
         c->'notification',
         (c->>'ignoreReservation')::boolean,
         coalesce((c->>'isConfirmationNeeded')::boolean, false),
         coalesce((c->>'isConfidential')::boolean, false),
         coalesce((c->>'allowForwarding')::boolean, false),
         coalesce(ARRAY(SELECT jsonb_array_elements_text(request->'existingAttachments')::uuid), '{}')
  FROM (SELECT request->'correspondence' AS c) AS doc
  RETURNING id
$$;
COMMENT ON FUNCTION altinn_outbox.insert_request(jsonb, integer) IS
  'Inserts a message given as Altinn''s initialize request JSON (camelCase names); returns the message id';
