-- pgmart snapshots: a periodic (frozen) copy of a table or view once per period, or a type-2
-- history with dbt's timestamp and check strategies (src/snapshots/).

CREATE TABLE pgmart.snapshot (
    job_id                  bigint PRIMARY KEY REFERENCES pgmart.job (job_id) ON DELETE CASCADE,
    -- The snapshot table (owned by its registrant) and its qualified name as registered.
    rel                     regclass NOT NULL UNIQUE,
    name                    text NOT NULL,
    source                  regclass NOT NULL,
    -- The source's qualified name: a source re-created under it takes the snapshot back (src/follow.rs).
    source_name             text NOT NULL,
    strategy                text NOT NULL CHECK (strategy OPERATOR(pg_catalog.=) ANY (ARRAY['periodic', 'timestamp', 'check']::pg_catalog.text[])),
    -- The source columns copied (those it had at creation), in order.
    columns                 text[] NOT NULL,
    unique_key              text[] NOT NULL DEFAULT '{}',
    updated_at              name,
    updated_kind            text CHECK (updated_kind OPERATOR(pg_catalog.=) ANY (ARRAY['Timestamptz', 'Timestamp', 'Date']::pg_catalog.text[])),
    check_columns           text[] NOT NULL DEFAULT '{}',
    preset                  text NOT NULL CHECK (preset OPERATOR(pg_catalog.=) ANY (ARRAY['pgmart', 'dbt']::pg_catalog.text[])),
    -- The columns the snapshot adds: role -> name (valid_from, valid_to, is_current, scd_id, updated_at, snapshot_period, snapshot_at).
    meta                    jsonb NOT NULL,
    period                  text CHECK (period OPERATOR(pg_catalog.=) ANY (ARRAY['day', 'week', 'month']::pg_catalog.text[])),
    timezone                text NOT NULL,
    invalidate_hard_deletes boolean NOT NULL,
    retention               interval,
    period_s                float8 NOT NULL CHECK (period_s OPERATOR(pg_catalog.>) 0),
    created_at              timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- The last successful run (a periodic run finding its period frozen included).
    last_run_at             timestamptz,
    last_run_ms             float8,
    last_period             date,
    last_inserted           bigint,
    last_closed             bigint,
    last_deleted            bigint,
    total_rows              bigint NOT NULL DEFAULT 0,
    current_rows            bigint
);
COMMENT ON TABLE pgmart.snapshot IS 'pgmart snapshots (read them through pgmart.snapshots; change them through pgmart.create_snapshot/drop_snapshot).';
SELECT pg_catalog.pg_extension_config_dump('pgmart.snapshot', '');

-- The frozen periods of periodic snapshots: one row per period written (a period is written once).
CREATE TABLE pgmart.snapshot_period (
    job_id   bigint NOT NULL REFERENCES pgmart.snapshot (job_id) ON DELETE CASCADE,
    period   date NOT NULL,
    rows     bigint NOT NULL,
    taken_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, period)
);
COMMENT ON TABLE pgmart.snapshot_period IS 'Periods frozen by pgmart periodic snapshots: rows and when they were taken.';
SELECT pg_catalog.pg_extension_config_dump('pgmart.snapshot_period', '');

-- The guard of every periodic snapshot table and partition (src/snapshots/api.rs): refuses every
-- write but pgmart's own run; no role but the extension's owner may create a trigger calling it.
CREATE FUNCTION pgmart._snapshot_guard() RETURNS trigger LANGUAGE c AS 'MODULE_PATHNAME', '_snapshot_guard_wrapper';

-- The snapshots you may use: those of roles whose rights you have, and those whose table you may read.
CREATE VIEW pgmart.snapshots WITH (security_barrier) AS
SELECT s.name, s.job_id,
       CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) s.source)
            THEN pgmart._relation_name(s.source) ELSE s.source_name END AS source,
       s.strategy, s.preset, s.unique_key, s.updated_at, s.check_columns, s.period, s.timezone,
       s.invalidate_hard_deletes, s.retention, s.meta AS meta_columns,
       s.last_run_at, s.last_run_ms, s.last_period,
       (SELECT pg_catalog.count(*) FROM pgmart.snapshot_period p WHERE p.job_id OPERATOR(pg_catalog.=) s.job_id) AS frozen_periods,
       s.total_rows AS rows, s.current_rows,
       s.last_inserted AS last_new_versions, s.last_closed AS last_closed_versions, s.last_deleted AS last_deleted_versions,
       coalesce(s.last_inserted, 0) OPERATOR(pg_catalog.+) coalesce(s.last_closed, 0) OPERATOR(pg_catalog.+) coalesce(s.last_deleted, 0)
           AS versions_changed_last_run,
       coalesce((SELECT jr.status FROM pgmart.job_run jr WHERE jr.job_id OPERATOR(pg_catalog.=) s.job_id
                  ORDER BY jr.started_at DESC LIMIT 1),
                CASE WHEN s.last_run_at IS NOT NULL THEN 'succeeded' END) AS last_status,
       j.schedule, j.next_run_at, j.enabled,
       pg_catalog.pg_get_userbyid(a.relowner) AS owner
  FROM pgmart.snapshot s
  JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) s.job_id
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text)
    OR coalesce(pg_catalog.has_table_privilege(s.rel::pg_catalog.oid, 'SELECT'::pg_catalog.text), false);
COMMENT ON VIEW pgmart.snapshots IS 'Every snapshot you may use: source, strategy, key, columns added, last run (or frozen period), rows, versions changed by the last run (new, closed by a change, closed by a delete), last status, schedule, owner.';
GRANT SELECT ON pgmart.snapshots TO PUBLIC;
