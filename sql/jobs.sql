-- pgmart job catalog: every scheduled thing is a job. This file is the only place its DDL lives.

-- The extension's own schema: created here (the control file names pg_catalog) so that it is a member
-- of the extension and DROP EXTENSION removes it.
CREATE SCHEMA pgmart;
COMMENT ON SCHEMA pgmart IS 'pgmart: metric contracts, partitions, refresh, checks, alerts and the jobs that run them';

CREATE TABLE pgmart.job (
    job_id               bigserial PRIMARY KEY,
    name                 text NOT NULL UNIQUE,
    kind                 text NOT NULL
                         CHECK (kind IN ('sql', 'partition_maintenance', 'refresh', 'check_suite', 'rollup', 'snapshot')),
    target               text,
    schedule             text NOT NULL,
    timezone             text NOT NULL DEFAULT 'UTC',
    owner                name NOT NULL,
    enabled              boolean NOT NULL DEFAULT true,
    max_retries          integer NOT NULL DEFAULT 3 CHECK (max_retries BETWEEN 0 AND 100),
    retry_backoff        interval NOT NULL DEFAULT '1 minute' CHECK (retry_backoff >= '0'::interval),
    next_run_at          timestamptz,
    last_run_at          timestamptz,
    last_status          text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    config               jsonb NOT NULL DEFAULT '{}',
    created_at           timestamptz NOT NULL DEFAULT now(),
    running_pid          integer,
    running_since        timestamptz
);
CREATE INDEX job_due_idx ON pgmart.job (next_run_at) WHERE enabled;
COMMENT ON TABLE pgmart.job IS 'pgmart job catalog (read it through the pgmart.jobs view; change it through pgmart functions).';

CREATE TABLE pgmart.job_run (
    run_id      bigserial PRIMARY KEY,
    job_id      bigint NOT NULL REFERENCES pgmart.job (job_id) ON DELETE CASCADE,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    status      text NOT NULL
                CHECK (status IN ('running', 'succeeded', 'failed', 'retrying', 'interrupted', 'skipped')),
    attempt     integer NOT NULL DEFAULT 1,
    sqlstate    text,
    message     text,
    details     jsonb NOT NULL DEFAULT '{}',
    run_by      text NOT NULL,
    pid         integer
);
CREATE INDEX job_run_job_idx ON pgmart.job_run (job_id, started_at DESC);
CREATE INDEX job_run_started_idx ON pgmart.job_run (started_at);
CREATE INDEX job_run_running_idx ON pgmart.job_run (job_id) WHERE status = 'running';

-- Users see the jobs of the roles they belong to (a superuser sees all).
CREATE VIEW pgmart.jobs AS
SELECT j.job_id, j.name, j.kind, j.target, j.schedule, j.timezone, j.owner, j.enabled, j.next_run_at,
       j.last_run_at, j.last_status, j.consecutive_failures, j.config, j.max_retries, j.retry_backoff,
       j.created_at, j.running_pid
  FROM pgmart.job j
 WHERE pg_catalog.pg_has_role(j.owner, 'MEMBER');
COMMENT ON VIEW pgmart.jobs IS 'Every pgmart job you may act as: schedule, time zone, owner, next and last run, status.';

CREATE VIEW pgmart.job_runs AS
SELECT r.run_id, r.job_id, r.started_at, r.finished_at, r.status, r.attempt, r.sqlstate, r.message,
       r.details, r.run_by,
       round((extract(epoch FROM (r.finished_at - r.started_at)) * 1000)::numeric, 3) AS duration_ms
  FROM pgmart.job_run r
  JOIN pgmart.job j USING (job_id)
 WHERE pg_catalog.pg_has_role(j.owner, 'MEMBER');
COMMENT ON VIEW pgmart.job_runs IS 'History of pgmart job runs (pruned after pgmart.history_retention).';

GRANT SELECT ON pgmart.jobs, pgmart.job_runs TO PUBLIC;

-- Configuration travels with pg_dump; history does not.
SELECT pg_catalog.pg_extension_config_dump('pgmart.job', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.job_job_id_seq', '');

-- Alerts: the one durable path every capability raises through (rules and health).
CREATE TABLE pgmart.alerts (
    alert_id     bigserial PRIMARY KEY,
    raised_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    source_kind  text NOT NULL,
    source_name  text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('info', 'low', 'medium', 'high', 'critical')),
    target       text,
    payload      jsonb NOT NULL DEFAULT '{}',
    dedup_key    text,
    acked_at     timestamptz,
    ack_note     text,
    acked_by     name
);
CREATE INDEX alerts_raised_idx ON pgmart.alerts (raised_at);
CREATE UNIQUE INDEX alerts_open_dedup_idx ON pgmart.alerts (dedup_key) WHERE acked_at IS NULL AND dedup_key IS NOT NULL;
COMMENT ON TABLE pgmart.alerts IS 'Every alert pgmart raised, written in the same transaction as its cause; acknowledged with pgmart.ack_alert().';
