-- Housekeeping schedules (worker.toml [schedules]) run once per scheduled time across all
-- instances: the instance whose UPDATE moves `last_slot` forward runs it; the others find the
-- row already moved (the row lock orders them). Only the latest due time is ever claimed, so a
-- host that was down for a week runs a daily schedule once, not seven times.
CREATE TABLE altinn_outbox.schedule (
    name       text        PRIMARY KEY,
    last_slot  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE altinn_outbox.schedule IS 'One row per housekeeping schedule: the latest scheduled time that an instance claimed';
COMMENT ON COLUMN altinn_outbox.schedule.name IS 'Schedule name: prune, sweep or summary';
COMMENT ON COLUMN altinn_outbox.schedule.last_slot IS 'The latest scheduled time claimed (or, before the first run, when the schedule was first seen)';
COMMENT ON COLUMN altinn_outbox.schedule.updated_at IS 'When the row last changed';

CREATE TABLE altinn_outbox.schedule_run (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL REFERENCES altinn_outbox.schedule (name) ON DELETE CASCADE,
    slot        timestamptz NOT NULL,
    instance    text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome     text,
    detail      text,
    CONSTRAINT schedule_run_once UNIQUE (name, slot),
    CONSTRAINT schedule_run_outcome_known CHECK (outcome IN ('ok', 'failed'))
);
COMMENT ON TABLE altinn_outbox.schedule_run IS 'Every housekeeping run: which instance ran which scheduled time, and how it went';
COMMENT ON COLUMN altinn_outbox.schedule_run.id IS 'Order of the runs';
COMMENT ON COLUMN altinn_outbox.schedule_run.name IS 'The schedule that ran';
COMMENT ON COLUMN altinn_outbox.schedule_run.started_at IS 'When the run started';
COMMENT ON COLUMN altinn_outbox.schedule_run.slot IS 'The scheduled time this run stands for';
COMMENT ON COLUMN altinn_outbox.schedule_run.instance IS 'The worker instance that ran it';
COMMENT ON COLUMN altinn_outbox.schedule_run.finished_at IS 'Null while running, or when the instance stopped mid-run';
COMMENT ON COLUMN altinn_outbox.schedule_run.outcome IS 'ok or failed';
COMMENT ON COLUMN altinn_outbox.schedule_run.detail IS 'What the run did (counts), or its error';

-- The stuck-row report (sweep schedule) finds deliveries waiting for files too long without
-- reading every delivery.
CREATE INDEX delivery_waiting_files_idx ON altinn_outbox.delivery (updated_at) WHERE state = 'waiting_files';

-- Pruning looks for old messages first; without this it would read every message.
CREATE INDEX message_created_idx ON altinn_outbox.message (created_at);
