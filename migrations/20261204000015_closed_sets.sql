-- The last two closed sets without a CHECK: a delivery's notification outcome and a history
-- row's kind. The daemon reads both into Rust enums, so a value outside them (written by
-- hand) would make reading its row fail; refused here instead, like every state.
-- NOT VALID, then validated where the rows allow it: a database holding such a value from a
-- hand-made change still upgrades (new writes are checked at once), and says so.
ALTER TABLE altinn_outbox.delivery ADD CONSTRAINT delivery_notification_known CHECK (notification IN
    ('none', 'pending', 'sent', 'delivered', 'unconfirmed', 'failed', 'no_recipients', 'not_needed', 'cancelled'))
    NOT VALID;
ALTER TABLE altinn_outbox.history ADD CONSTRAINT history_kind_known CHECK (kind IN
    ('state', 'altinn_status', 'notification')) NOT VALID;
DO $$
BEGIN
    ALTER TABLE altinn_outbox.delivery VALIDATE CONSTRAINT delivery_notification_known;
EXCEPTION WHEN check_violation THEN
    RAISE WARNING 'delivery rows hold a notification outcome outside the known ones; fix them, then VALIDATE CONSTRAINT delivery_notification_known';
END $$;
DO $$
BEGIN
    ALTER TABLE altinn_outbox.history VALIDATE CONSTRAINT history_kind_known;
EXCEPTION WHEN check_violation THEN
    RAISE WARNING 'history rows hold a kind outside the known ones; fix them, then VALIDATE CONSTRAINT history_kind_known';
END $$;
