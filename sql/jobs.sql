-- pgmart job catalog: every scheduled thing is a job. This file is the only place its DDL lives.
-- Every function below pins search_path; every view is a security barrier that shows each role
-- only what belongs to roles whose rights it has (USAGE); the tables are not readable by others.

-- The extension's own schema: created here (the control file names pg_catalog) so that it is a member
-- of the extension and DROP EXTENSION removes it.
CREATE SCHEMA pgmart;
COMMENT ON SCHEMA pgmart IS 'pgmart: metric contracts, partitions, refresh, checks, alerts and the jobs that run them';

-- Owners: one "anchor" per registration (job, check, alert rule, metric), a contentless materialized
-- view owned by the registering role. PostgreSQL's own dependency tracking then refuses DROP ROLE
-- while the role owns registrations (naming them), REASSIGN OWNED moves them, DROP OWNED drops them
-- (an event trigger then removes the registration), and pg_dump carries them with their owner. The
-- owner of a registration is always read from its anchor (pg_class.relowner). Nobody but the
-- extension's owner has any privilege on this schema.
CREATE SCHEMA pgmart_owners;
COMMENT ON SCHEMA pgmart_owners IS 'pgmart: one contentless materialized view per registration, owned by the role the registration belongs to (DROP ROLE refuses while it owns any; REASSIGN OWNED / DROP OWNED handle them).';

-- A relation's schema-qualified name, whatever the reader's search_path (its OID when it is gone).
CREATE FUNCTION pgmart._relation_name(rel regclass) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT coalesce((SELECT pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.'
                        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text)
                   FROM pg_catalog.pg_class c
                   JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                  WHERE c.oid OPERATOR(pg_catalog.=) rel), rel::pg_catalog.oid::pg_catalog.text)
$$;

CREATE TABLE pgmart.job (
    job_id               bigserial PRIMARY KEY,
    name                 text NOT NULL UNIQUE,
    kind                 text NOT NULL
                         CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['sql', 'partition_maintenance', 'refresh', 'check_suite', 'rollup', 'snapshot', 'health']::pg_catalog.text[])),
    target               text,
    schedule             text NOT NULL,
    timezone             text NOT NULL DEFAULT 'UTC',
    enabled              boolean NOT NULL DEFAULT true,
    max_retries          integer NOT NULL DEFAULT 3 CHECK (max_retries OPERATOR(pg_catalog.>=) 0 AND max_retries OPERATOR(pg_catalog.<=) 100),
    retry_backoff        interval NOT NULL DEFAULT '1 minute' CHECK (retry_backoff OPERATOR(pg_catalog.>=) '0'::interval),
    next_run_at          timestamptz CHECK (pg_catalog.isfinite(next_run_at)),
    last_run_at          timestamptz,
    last_status          text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    config               jsonb NOT NULL DEFAULT '{}',
    created_at           timestamptz NOT NULL DEFAULT pg_catalog.now(),
    running_pid          integer,
    running_since        timestamptz,
    anchor               regclass NOT NULL,
    -- Interval schedules: every slot is slot_origin + n * interval (in the job's zone), so a job
    -- keeps its wall-clock time across DST and never drifts.
    slot_origin          timestamptz CHECK (pg_catalog.isfinite(slot_origin)),
    -- How long one run may take (NULL: pgmart.job_timeout; 0: no limit).
    timeout              interval CHECK (timeout OPERATOR(pg_catalog.>=) '0'::interval)
);
CREATE INDEX job_due_idx ON pgmart.job (next_run_at) WHERE enabled;
CREATE INDEX job_anchor_idx ON pgmart.job (anchor);
COMMENT ON TABLE pgmart.job IS 'pgmart job catalog (read it through the pgmart.jobs view; change it through pgmart functions).';

CREATE TABLE pgmart.job_run (
    run_id      bigserial PRIMARY KEY,
    job_id      bigint NOT NULL REFERENCES pgmart.job (job_id) ON DELETE CASCADE,
    started_at  timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at timestamptz,
    status      text NOT NULL
                CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'running', 'succeeded', 'failed', 'retrying', 'interrupted', 'skipped']::pg_catalog.text[])),
    attempt     integer NOT NULL DEFAULT 1,
    sqlstate    text,
    message     text,
    details     jsonb NOT NULL DEFAULT '{}',
    run_by      text NOT NULL,
    pid         integer
);
CREATE INDEX job_run_job_idx ON pgmart.job_run (job_id, started_at DESC);
CREATE INDEX job_run_started_idx ON pgmart.job_run (started_at);
CREATE INDEX job_run_running_idx ON pgmart.job_run (job_id) WHERE status OPERATOR(pg_catalog.=) 'running';

-- Each role sees the jobs of the roles whose rights it has (a superuser sees all, also jobs whose
-- anchor is gone).
-- state: paused, running (a run is under way), queued (due, waiting for a runner or its turn) or
-- scheduled.
CREATE VIEW pgmart.jobs WITH (security_barrier) AS
SELECT j.job_id, j.name, j.kind, j.target, j.schedule, j.timezone,
       pg_catalog.pg_get_userbyid(a.relowner) AS owner, j.enabled, j.next_run_at,
       j.last_run_at, j.last_status, j.consecutive_failures, j.config, j.max_retries, j.retry_backoff,
       j.created_at, j.running_pid, j.timeout,
       CASE WHEN NOT j.enabled THEN 'paused'
            WHEN EXISTS (SELECT 1 FROM pgmart.job_run r WHERE r.job_id OPERATOR(pg_catalog.=) j.job_id
                            AND r.status OPERATOR(pg_catalog.=) 'running') THEN 'running'
            WHEN j.running_pid IS NOT NULL
              OR j.next_run_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() THEN 'queued'
            ELSE 'scheduled' END AS state
  FROM pgmart.job j
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text);
COMMENT ON VIEW pgmart.jobs IS 'Every pgmart job of a role whose rights you have: schedule, time zone, owner, next and last run, status.';

CREATE VIEW pgmart.job_runs WITH (security_barrier) AS
SELECT r.run_id, r.job_id, r.started_at, r.finished_at, r.status, r.attempt, r.sqlstate, r.message,
       r.details, r.run_by,
       pg_catalog.round((EXTRACT(epoch FROM (r.finished_at OPERATOR(pg_catalog.-) r.started_at))
                         OPERATOR(pg_catalog.*) 1000)::numeric, 3) AS duration_ms
  FROM pgmart.job_run r
  JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) r.job_id
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text);
COMMENT ON VIEW pgmart.job_runs IS 'History of the runs of your pgmart jobs (pruned after pgmart.history_retention).';

GRANT SELECT ON pgmart.jobs, pgmart.job_runs TO PUBLIC;

-- Configuration travels with pg_dump; history does not.
SELECT pg_catalog.pg_extension_config_dump('pgmart.job', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.job_job_id_seq', '');

-- Alerts: the one durable path every capability raises through (rules and health). Each alert
-- belongs to the registration that raised it (rule, job or check) and to its owner at the time.
CREATE TABLE pgmart.alert (
    alert_id     bigserial PRIMARY KEY,
    raised_at    timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    source_kind  text NOT NULL,
    source_name  text NOT NULL,
    severity     text NOT NULL CHECK (severity OPERATOR(pg_catalog.=) ANY (ARRAY['info', 'low', 'medium', 'high', 'critical']::pg_catalog.text[])),
    target       text,
    payload      jsonb NOT NULL DEFAULT '{}',
    dedup_key    text,
    acked_at     timestamptz,
    ack_note     text,
    acked_by     name,
    rule_id      bigint,
    job_id       bigint,
    check_id     bigint,
    owner        oid,
    -- A health alert resolves when its condition clears (a later failure is a new alert).
    resolved_at  timestamptz,
    -- While it is open, a changed failure (another value, a higher count) updates it in place.
    updated_at   timestamptz
);
CREATE INDEX alerts_raised_idx ON pgmart.alert (raised_at);
CREATE UNIQUE INDEX alerts_open_dedup_idx ON pgmart.alert (dedup_key)
    WHERE acked_at IS NULL AND resolved_at IS NULL AND dedup_key IS NOT NULL;
COMMENT ON TABLE pgmart.alert IS 'Every alert pgmart raised, written in the same transaction as its cause (read it through pgmart.alerts and pgmart.open_alerts; acknowledge with pgmart.ack_alert()).';
