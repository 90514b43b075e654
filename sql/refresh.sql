-- pgmart scheduled refresh catalog: which materialized views refresh on a schedule, their
-- history, and the freshness every BI tool can read.

CREATE TABLE pgmart.refresh_view (
    job_id            bigint PRIMARY KEY REFERENCES pgmart.job (job_id) ON DELETE CASCADE,
    view              regclass NOT NULL UNIQUE,
    view_name         text NOT NULL,
    use_concurrently  boolean,  -- NULL: CONCURRENTLY when possible
    freshness_slo     interval CHECK (freshness_slo > '0'::interval),
    period_s          float8 NOT NULL CHECK (period_s > 0),
    owner             name NOT NULL,
    registered_at     timestamptz NOT NULL DEFAULT now(),
    last_refreshed_at timestamptz,
    last_status       text,
    last_method       text
);
COMMENT ON TABLE pgmart.refresh_view IS 'Materialized views pgmart refreshes on a schedule (change it through pgmart.schedule_refresh/unschedule_refresh).';
SELECT pg_catalog.pg_extension_config_dump('pgmart.refresh_view', '');

CREATE TABLE pgmart.refresh_history (
    refresh_id   bigserial PRIMARY KEY,
    view_oid     oid NOT NULL,
    view_name    text NOT NULL,
    job_id       bigint,
    triggered_by text NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    duration_ms  numeric,
    rows_after   bigint,
    method       text CHECK (method IN ('concurrent', 'plain')),
    status       text NOT NULL CHECK (status IN ('succeeded', 'failed', 'skipped')),
    sqlstate     text,
    error        text,
    run_by       name NOT NULL DEFAULT current_user
);
CREATE INDEX refresh_history_view_idx ON pgmart.refresh_history (view_oid, started_at DESC);
CREATE INDEX refresh_history_started_idx ON pgmart.refresh_history (started_at);
COMMENT ON TABLE pgmart.refresh_history IS 'One row per materialized-view refresh pgmart ran (pruned after pgmart.history_retention).';

-- Freshness of everything pgmart tracks. Reads only pgmart's catalog and pg_class; not granted to
-- PUBLIC: an administrator grants SELECT on it (and USAGE on schema pgmart) to BI roles.
CREATE VIEW pgmart.freshness AS
SELECT CASE WHEN c.oid IS NULL THEN r.view_name ELSE pg_catalog.format('%I.%I', n.nspname, c.relname) END AS object,
       'materialized_view'::text AS kind,
       r.last_refreshed_at,
       now() - r.last_refreshed_at AS age,
       r.freshness_slo AS slo,
       (now() - coalesce(r.last_refreshed_at, r.registered_at))
           > coalesce(r.freshness_slo, pg_catalog.make_interval(secs => 2 * r.period_s)) AS stale,
       CASE WHEN c.oid IS NULL THEN 'dropped' ELSE r.last_status END AS last_status,
       r.owner,
       j.schedule,
       j.next_run_at AS next_refresh_at
  FROM pgmart.refresh_view r
  JOIN pgmart.job j USING (job_id)
  LEFT JOIN pg_catalog.pg_class c ON c.oid = r.view
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;
COMMENT ON VIEW pgmart.freshness IS 'Every object pgmart keeps fresh: last successful refresh, age, SLO, stale flag, last status, owner.';

-- Refresh history for the owners of the views (like pgmart.job_runs: each role sees its own).
CREATE VIEW pgmart.refresh_runs AS
SELECT h.refresh_id, h.view_name, h.job_id, h.triggered_by, h.started_at, h.finished_at, h.duration_ms,
       h.rows_after, h.method, h.status, h.sqlstate, h.error, h.run_by
  FROM pgmart.refresh_history h
  JOIN pg_catalog.pg_class c ON c.oid = h.view_oid
 WHERE pg_catalog.pg_has_role(c.relowner, 'MEMBER');
COMMENT ON VIEW pgmart.refresh_runs IS 'Refresh history of the materialized views you own (pruned after pgmart.history_retention).';
GRANT SELECT ON pgmart.refresh_runs TO PUBLIC;
