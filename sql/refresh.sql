-- pgmart scheduled refresh catalog: which materialized views refresh on a schedule, their
-- history, and the freshness every BI tool can read.

CREATE TABLE pgmart.refresh_view (
    job_id            bigint PRIMARY KEY REFERENCES pgmart.job (job_id) ON DELETE CASCADE,
    view              regclass NOT NULL UNIQUE,
    view_name         text NOT NULL,
    use_concurrently  boolean,  -- NULL: CONCURRENTLY when possible
    freshness_slo     interval CHECK (freshness_slo OPERATOR(pg_catalog.>) '0'::interval),
    period_s          float8 NOT NULL CHECK (period_s OPERATOR(pg_catalog.>) 0),
    registered_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_refreshed_at timestamptz,
    last_status       text,
    last_method       text,
    -- Refreshed right after a scheduled upstream view (false: only on its own schedule).
    after_upstream    boolean NOT NULL DEFAULT true
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
    method       text CHECK (method OPERATOR(pg_catalog.=) ANY (ARRAY['concurrent', 'plain']::pg_catalog.text[])),
    status       text NOT NULL CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['succeeded', 'failed', 'skipped']::pg_catalog.text[])),
    sqlstate     text,
    error        text,
    run_by       name NOT NULL DEFAULT CURRENT_USER,
    owner        oid
);
CREATE INDEX refresh_history_view_idx ON pgmart.refresh_history (view_oid, started_at DESC);
CREATE INDEX refresh_history_started_idx ON pgmart.refresh_history (started_at);
COMMENT ON TABLE pgmart.refresh_history IS 'One row per materialized-view refresh pgmart ran (pruned after pgmart.history_retention).';

-- On a hot standby: how far replay is behind the primary (zero once it has replayed all the WAL it
-- received), its SLO (pgmart.replica_lag_slo) and whether replay is paused. No row on a primary.
CREATE FUNCTION pgmart._replica_lag(OUT age interval, OUT slo interval, OUT paused boolean, OUT replayed_at timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN pg_catalog.pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_catalog.pg_last_wal_replay_lsn()
            THEN '0'::pg_catalog.interval
            ELSE GREATEST(pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.pg_last_xact_replay_timestamp(), '0'::pg_catalog.interval) END,
       coalesce(pg_catalog.current_setting('pgmart.replica_lag_slo', true)::pg_catalog.interval, '5 min'::pg_catalog.interval),
       pg_catalog.pg_is_wal_replay_paused(),
       pg_catalog.pg_last_xact_replay_timestamp()
 WHERE pg_catalog.pg_is_in_recovery()
$$;

-- Freshness of everything pgmart tracks. Reads only pgmart's catalog and pg_class; not granted to
-- PUBLIC: an administrator grants SELECT on it (and USAGE on schema pgmart) to BI roles, for example
-- with pgmart.grant_access(role, 'reader').
CREATE VIEW pgmart.freshness WITH (security_barrier) AS
SELECT CASE WHEN c.oid IS NULL THEN r.view_name
            ELSE pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.'
                 OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text) END AS object,
       'materialized_view'::pg_catalog.text AS kind,
       r.last_refreshed_at,
       pg_catalog.now() OPERATOR(pg_catalog.-) r.last_refreshed_at AS age,
       r.freshness_slo AS slo,
       (pg_catalog.now() OPERATOR(pg_catalog.-) coalesce(r.last_refreshed_at, r.registered_at))
           OPERATOR(pg_catalog.>) coalesce(r.freshness_slo, pg_catalog.make_interval(secs => 2 OPERATOR(pg_catalog.*) r.period_s)) AS stale,
       CASE WHEN c.oid IS NULL THEN 'dropped' ELSE r.last_status END AS last_status,
       pg_catalog.pg_get_userbyid(a.relowner) AS owner,
       j.schedule,
       j.next_run_at AS next_refresh_at
  FROM pgmart.refresh_view r
  JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) r.job_id
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor
  LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.view
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
UNION ALL
-- Rollups: last refresh, stale after two periods of their schedule.
SELECT ro.name, 'rollup'::pg_catalog.text,
       ro.last_refresh_at,
       pg_catalog.now() OPERATOR(pg_catalog.-) ro.last_refresh_at,
       NULL::pg_catalog.interval,
       (pg_catalog.now() OPERATOR(pg_catalog.-) coalesce(ro.last_refresh_at, ro.created_at))
           OPERATOR(pg_catalog.>) pg_catalog.make_interval(secs => 2 OPERATOR(pg_catalog.*) ro.period_s),
       CASE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) ro.source) THEN 'dropped'
            ELSE (SELECT jr.status FROM pgmart.job_run jr WHERE jr.job_id OPERATOR(pg_catalog.=) ro.job_id
                   ORDER BY jr.started_at DESC LIMIT 1) END,
       pg_catalog.pg_get_userbyid(a.relowner),
       j.schedule,
       j.next_run_at
  FROM pgmart.rollup ro
  JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) ro.job_id
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor
UNION ALL
-- Snapshots: last successful run (a periodic run finding its period frozen counts), stale after two
-- periods of their schedule.
SELECT sn.name, 'snapshot'::pg_catalog.text,
       sn.last_run_at,
       pg_catalog.now() OPERATOR(pg_catalog.-) sn.last_run_at,
       NULL::pg_catalog.interval,
       (pg_catalog.now() OPERATOR(pg_catalog.-) coalesce(sn.last_run_at, sn.created_at))
           OPERATOR(pg_catalog.>) pg_catalog.make_interval(secs => 2 OPERATOR(pg_catalog.*) sn.period_s),
       CASE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) sn.source) THEN 'dropped'
            ELSE coalesce((SELECT jr.status FROM pgmart.job_run jr WHERE jr.job_id OPERATOR(pg_catalog.=) sn.job_id
                            ORDER BY jr.started_at DESC LIMIT 1),
                          CASE WHEN sn.last_run_at IS NOT NULL THEN 'succeeded' END) END,
       pg_catalog.pg_get_userbyid(a.relowner),
       j.schedule,
       j.next_run_at
  FROM pgmart.snapshot sn
  JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) sn.job_id
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor
UNION ALL
-- Source freshness (dbt's `source freshness`): each freshness check's newest value as of its last
-- run, shown to roles that may read the table or act as the check's owner (it is the table's data).
SELECT ck.target_name, 'source'::pg_catalog.text,
       lr.newest,
       pg_catalog.now() OPERATOR(pg_catalog.-) lr.newest,
       coalesce(ck.params OPERATOR(pg_catalog.->>) 'error_after', ck.params OPERATOR(pg_catalog.->>) 'warn_after')::pg_catalog.interval,
       lr.newest IS NULL OR pg_catalog.now() OPERATOR(pg_catalog.-) lr.newest OPERATOR(pg_catalog.>)
           coalesce(ck.params OPERATOR(pg_catalog.->>) 'error_after', ck.params OPERATOR(pg_catalog.->>) 'warn_after')::pg_catalog.interval,
       lr.status,
       pg_catalog.pg_get_userbyid(a.relowner),
       ck.schedule,
       j.next_run_at
  FROM pgmart."check" ck
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) ck.anchor
  LEFT JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) ck.job_id
  LEFT JOIN LATERAL (SELECT r.status, (r.sample OPERATOR(pg_catalog.->>) 'newest')::pg_catalog.timestamptz AS newest
                       FROM pgmart.check_result r WHERE r.check_id OPERATOR(pg_catalog.=) ck.check_id
                      ORDER BY r.run_at DESC LIMIT 1) lr ON true
 WHERE ck.kind OPERATOR(pg_catalog.=) 'freshness'
   AND (pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text)
        OR (EXISTS (SELECT 1 FROM pg_catalog.pg_class t WHERE t.oid OPERATOR(pg_catalog.=) ck.target)
            AND pg_catalog.has_table_privilege(ck.target::pg_catalog.oid, 'SELECT'::pg_catalog.text)))
UNION ALL
-- On a standby, every age above is measured from replicated refresh times against this server's
-- clock, so replay lag is already inside them; this row shows the lag itself, so whoever looks
-- knows when the replica, not the pipeline, is the reason.
SELECT 'replication lag', 'replication',
       l.replayed_at,
       l.age,
       l.slo,
       l.age OPERATOR(pg_catalog.>) l.slo,
       CASE WHEN l.paused THEN 'replay paused' ELSE 'replaying' END,
       NULL::pg_catalog.name,
       NULL::pg_catalog.text,
       NULL::pg_catalog.timestamptz
  FROM pgmart._replica_lag() l;
COMMENT ON VIEW pgmart.freshness IS 'Every object pgmart keeps fresh: materialized views (last successful refresh, age, SLO, stale, last status, owner), rollups and snapshots (last refresh or run, stale after two periods of their schedule) and sources with a freshness check (newest value, age, error_after, stale, last status), and on a standby its replication lag.';

-- Refresh history of the views of the roles whose rights you have (like pgmart.job_runs).
CREATE VIEW pgmart.refresh_runs WITH (security_barrier) AS
SELECT h.refresh_id, h.view_name, h.job_id, h.triggered_by, h.started_at, h.finished_at, h.duration_ms,
       h.rows_after, h.method, h.status, h.sqlstate, h.error, h.run_by
  FROM pgmart.refresh_history h
  LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) h.view_oid
 WHERE pg_catalog.pg_has_role(coalesce(h.owner, c.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text);
COMMENT ON VIEW pgmart.refresh_runs IS 'Refresh history of your materialized views (pruned after pgmart.history_retention).';
GRANT SELECT ON pgmart.refresh_runs TO PUBLIC;
