-- When the upload into a file's current Altinn attachment finished: the wait for Altinn's
-- malware scan is counted from it, and after `status.max_scan_wait_ms` the file is given up
-- (`scan_timeout`) instead of being read for ever. No other column says it: `updated_at`
-- moves with every status read, and `next_attempt_at` is the next read.
ALTER TABLE altinn_outbox.attachment ADD COLUMN uploaded_at timestamptz;
COMMENT ON COLUMN altinn_outbox.attachment.uploaded_at IS 'When the upload into the current Altinn attachment finished (the malware scan''s wait is counted from it); set on entering processing, cleared when the file starts over with a new attachment';

-- Files already waiting for their scan when this version arrives get the whole wait, counted
-- from the upgrade: failing them at once for a wait nobody measured would be a surprise.
UPDATE altinn_outbox.attachment SET uploaded_at = now() WHERE upload_state = 'processing';

-- A file read for its scan always knows since when, so the wait always ends.
ALTER TABLE altinn_outbox.attachment ADD CONSTRAINT attachment_processing_since
    CHECK (upload_state <> 'processing' OR uploaded_at IS NOT NULL);
