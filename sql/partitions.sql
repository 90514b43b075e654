-- pgmart time partitions: one row per managed partition set; maintenance is a job of kind
-- 'partition_maintenance'. Bounds are always read from the catalog (pg_class.relpartbound).

CREATE TABLE pgmart.partition_set (
    set_id             bigserial PRIMARY KEY,
    parent             regclass NOT NULL UNIQUE,
    control_column     name NOT NULL,
    column_type        text NOT NULL CHECK (column_type IN ('date', 'timestamp', 'timestamptz')),
    partition_interval interval NOT NULL,
    premake            integer NOT NULL CHECK (premake >= 1),
    retention          interval,
    retention_mode     text NOT NULL DEFAULT 'drop' CHECK (retention_mode IN ('drop', 'detach')),
    start_at           timestamptz,
    anchor_key         bigint,
    default_partition  boolean NOT NULL DEFAULT true,
    timezone           text NOT NULL DEFAULT 'UTC',
    job_id             bigint REFERENCES pgmart.job (job_id) ON DELETE SET NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    last_run_at        timestamptz,
    last_status        text,
    last_message       text,
    -- No-op fast path: the partitions' fingerprint when a pass last found nothing to do, and until
    -- when that stays true. Anything else about the partitions is always read from the catalog.
    fingerprint        bigint,
    quiet_until        timestamptz
);
COMMENT ON TABLE pgmart.partition_set IS 'pgmart partition sets (read them through pgmart.partition_sets; change them through pgmart functions).';
SELECT pg_catalog.pg_extension_config_dump('pgmart.partition_set', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.partition_set_set_id_seq', '');

-- A range bound as pg_get_expr prints it ('...', MINVALUE, MAXVALUE) → epoch seconds of the
-- column type (local wall time for timestamp and date), ±Infinity for MINVALUE / MAXVALUE.
CREATE FUNCTION pgmart._bound_epoch(b text, coltype text) RETURNS float8
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT CASE WHEN b IS NULL THEN NULL
            WHEN b = 'MINVALUE' THEN '-Infinity'::float8
            WHEN b = 'MAXVALUE' THEN 'Infinity'::float8
            WHEN coltype = 'date' THEN extract(epoch FROM pg_catalog.btrim(b, '''')::date)::float8
            WHEN coltype = 'timestamp' THEN extract(epoch FROM pg_catalog.btrim(b, '''')::timestamp)::float8
            ELSE extract(epoch FROM pg_catalog.btrim(b, '''')::timestamptz)::float8 END
$$;

-- Every partition of a table with its bounds (text as in the catalog, and as epoch keys).
CREATE FUNCTION pgmart._partition_bounds(parent regclass, coltype text DEFAULT 'timestamptz')
RETURNS TABLE (child oid, child_name text, is_default boolean, lower_bound text, upper_bound text,
               lower_key float8, upper_key float8)
LANGUAGE sql STABLE AS $$
SELECT c.oid, c.oid::regclass::text, m IS NULL, pg_catalog.btrim(m[1], ''''), pg_catalog.btrim(m[2], ''''),
       pgmart._bound_epoch(m[1], coltype), pgmart._bound_epoch(m[2], coltype)
  FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
  LEFT JOIN LATERAL pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                            '^FOR VALUES FROM \((.*)\) TO \((.*)\)$') m ON true
 WHERE i.inhparent = parent
$$;

CREATE FUNCTION pgmart._now_epoch(tz text, coltype text) RETURNS float8
LANGUAGE sql STABLE AS $$
SELECT CASE coltype WHEN 'timestamptz' THEN extract(epoch FROM now())::float8
                    ELSE extract(epoch FROM (now() AT TIME ZONE tz))::float8 END
$$;

CREATE FUNCTION pgmart.partitions(parent regclass)
RETURNS TABLE (partition_name text, lower_bound text, upper_bound text, is_default boolean,
               size_bytes bigint, rows_estimate bigint)
LANGUAGE sql STABLE AS $$
SELECT b.child_name, b.lower_bound, b.upper_bound, b.is_default,
       pg_catalog.pg_total_relation_size(b.child),
       greatest(c.reltuples, 0)::bigint
  FROM pgmart._partition_bounds(parent, coalesce(
         (SELECT s.column_type FROM pgmart.partition_set s WHERE s.parent = $1),
         (SELECT CASE t.typname WHEN 'date' THEN 'date' WHEN 'timestamp' THEN 'timestamp' ELSE 'timestamptz' END
            FROM pg_catalog.pg_partitioned_table p
            JOIN pg_catalog.pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
            JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
           WHERE p.partrelid = $1))) b
  JOIN pg_catalog.pg_class c ON c.oid = b.child
 ORDER BY b.is_default, b.lower_key NULLS LAST, b.child_name
$$;

CREATE VIEW pgmart.partition_sets AS
SELECT s.parent::text AS parent, s.control_column, s.partition_interval, s.premake, s.retention,
       s.retention_mode, s.timezone, s.job_id,
       st.partitions_ahead, st.oldest_bound, st.newest_bound,
       (SELECT greatest(coalesce(n.n_live_tup, 0), c.reltuples, 0)::bigint
          FROM pgmart._partition_bounds(s.parent, s.column_type) d
          JOIN pg_catalog.pg_class c ON c.oid = d.child
          LEFT JOIN pg_catalog.pg_stat_user_tables n ON n.relid = d.child
         WHERE d.is_default) AS rows_in_default,
       CASE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = s.parent) THEN 'dropped'
            WHEN j.last_run_at IS NOT NULL AND (s.last_run_at IS NULL OR j.last_run_at > s.last_run_at)
            THEN j.last_status ELSE s.last_status END AS last_status,
       greatest(s.last_run_at, j.last_run_at) AS last_run_at,
       s.last_message, s.default_partition, s.start_at, j.owner
  FROM pgmart.partition_set s
  LEFT JOIN pgmart.job j ON j.job_id = s.job_id
  LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE b.lower_key > pgmart._now_epoch(s.timezone, s.column_type)) AS partitions_ahead,
               (array_agg(b.lower_bound ORDER BY b.lower_key) FILTER (WHERE NOT b.is_default))[1] AS oldest_bound,
               (array_agg(b.upper_bound ORDER BY b.upper_key DESC) FILTER (WHERE NOT b.is_default))[1] AS newest_bound
          FROM pgmart._partition_bounds(s.parent, s.column_type) b) st ON true
 WHERE j.owner IS NULL OR pg_catalog.pg_has_role(j.owner, 'MEMBER');
COMMENT ON VIEW pgmart.partition_sets IS 'pgmart partition sets: interval, premake, retention, partitions ahead, oldest and newest bound, rows in the default partition, last maintenance.';
