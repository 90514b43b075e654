-- pgmart rollups: time-bucket aggregates on plain tables, kept fresh by recomputing only the
-- buckets that changed (src/rollups/).

CREATE TABLE pgmart.rollup (
    job_id          bigint PRIMARY KEY REFERENCES pgmart.job (job_id) ON DELETE CASCADE,
    -- The rollup table (owned by its registrant) and its qualified name as registered.
    rel             regclass NOT NULL UNIQUE,
    name            text NOT NULL,
    source          regclass NOT NULL,
    -- The source's qualified name: a source re-created under it takes the rollup back (src/follow.rs).
    source_name     text NOT NULL,
    time_column     name NOT NULL,
    time_kind       text NOT NULL CHECK (time_kind OPERATOR(pg_catalog.=) ANY (ARRAY['Timestamptz', 'Timestamp', 'Date']::pg_catalog.text[])),
    bucket          interval NOT NULL,
    timezone        text NOT NULL,
    dimensions      text[] NOT NULL,
    measure_names   text[] NOT NULL,
    -- Each measure as PostgreSQL deparses it after analysis.
    measures        text[] NOT NULL,
    filter          text,
    start_offset    interval,
    end_offset      interval,
    -- Buckets older than this go (NULL: kept, however old; history outlives raw data).
    retention       interval,
    realtime        boolean NOT NULL,
    -- The real-time view (NULL without one).
    rt_view         regclass,
    -- Buckets below it are materialized (NULL: never filled).
    watermark       timestamptz,
    period_s        float8 NOT NULL CHECK (period_s OPERATOR(pg_catalog.>) 0),
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_refresh_at timestamptz,
    last_refresh_ms float8,
    last_buckets    bigint
);
COMMENT ON TABLE pgmart.rollup IS 'pgmart rollups (read them through pgmart.rollups; change them through pgmart.create_rollup/drop_rollup).';
SELECT pg_catalog.pg_extension_config_dump('pgmart.rollup', '');

-- What statements changed, appended by the capture triggers in the writer's transaction (no key,
-- no upsert: writers never wait for each other), consumed by the refresh that recomputes. Each row
-- is the earliest and latest instant of one run of a statement's changed rows (both included);
-- the refresh and the real-time views widen them to whole buckets.
CREATE TABLE pgmart.rollup_invalidation (
    job_id    bigint NOT NULL,
    lo        timestamptz NOT NULL,
    hi        timestamptz NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX rollup_invalidation_job_idx ON pgmart.rollup_invalidation (job_id);
COMMENT ON TABLE pgmart.rollup_invalidation IS 'What changed in the sources of pgmart rollups since their last refresh (earliest and latest instant changed, per run of nearby rows and statement).';
SELECT pg_catalog.pg_extension_config_dump('pgmart.rollup_invalidation', '');

-- The capture trigger of every rollup (on its source and each partition): reads the time column
-- of the statement's transition tables and appends one row per run of nearby instants (a bulk
-- load over a week is one row; late rows scattered over a month about one per bucket), inserted
-- directly as pgmart's own rows (src/rollups/capture.rs). It logs nothing from a trigger on any
-- table but the rollup's source or one of its partitions, and no role may create a trigger that
-- calls it.
CREATE FUNCTION pgmart._rollup_capture() RETURNS trigger LANGUAGE c AS 'MODULE_PATHNAME', '_rollup_capture_wrapper';

-- pgmart._rollup_watermark(job_id) and pgmart._rollup_pending(job_id), which a rollup's real-time
-- view calls at each read, are Rust functions (src/rollups/api.rs): they answer only a reader who
-- may read the rollup.

-- The rollups you may use: those of roles whose rights you have, and those whose table you may read.
CREATE VIEW pgmart.rollups WITH (security_barrier) AS
SELECT r.name, r.job_id,
       CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_class s WHERE s.oid OPERATOR(pg_catalog.=) r.source)
            THEN pgmart._relation_name(r.source) ELSE r.source_name END AS source,
       r.time_column, r.bucket, r.timezone, r.dimensions, r.measure_names AS measures, r.filter,
       r.start_offset, r.end_offset, r.retention, r.realtime,
       CASE WHEN r.rt_view IS NULL THEN NULL ELSE pgmart._relation_name(r.rt_view) END AS realtime_view,
       r.watermark,
       (SELECT pg_catalog.count(*) FROM pgmart.rollup_invalidation i WHERE i.job_id OPERATOR(pg_catalog.=) r.job_id) AS pending_invalidations,
       pg_catalog.now() OPERATOR(pg_catalog.-) (SELECT pg_catalog.min(i.logged_at) FROM pgmart.rollup_invalidation i
                                                  WHERE i.job_id OPERATOR(pg_catalog.=) r.job_id) AS oldest_pending_age,
       r.last_refresh_at, r.last_refresh_ms, r.last_buckets,
       (SELECT c.reltuples::pg_catalog.int8 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) r.rel) AS rows_estimate,
       j.schedule, j.next_run_at, j.enabled,
       pg_catalog.pg_get_userbyid(a.relowner) AS owner
  FROM pgmart.rollup r
  JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) r.job_id
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text)
    OR coalesce(pg_catalog.has_table_privilege(r.rel::pg_catalog.oid, 'SELECT'::pg_catalog.text), false);
COMMENT ON VIEW pgmart.rollups IS 'Every rollup you may use: source, bucket, dimensions, measures, watermark, pending invalidations and their oldest age, last refresh, rows, schedule, owner.';
GRANT SELECT ON pgmart.rollups TO PUBLIC;
