-- pgmart time partitions: one row per managed partition set; maintenance is a job of kind
-- 'partition_maintenance'. Bounds are always read from the catalog (pg_class.relpartbound).

CREATE TABLE pgmart.partition_set (
    set_id             bigserial PRIMARY KEY,
    parent             regclass NOT NULL UNIQUE,
    control_column     name NOT NULL,
    column_type        text NOT NULL CHECK (column_type OPERATOR(pg_catalog.=) ANY (ARRAY['date', 'timestamp', 'timestamptz']::pg_catalog.text[])),
    partition_interval interval NOT NULL,
    premake            integer NOT NULL CHECK (premake OPERATOR(pg_catalog.>=) 1),
    retention          interval,
    retention_mode     text NOT NULL DEFAULT 'drop' CHECK (retention_mode OPERATOR(pg_catalog.=) ANY (ARRAY['drop', 'detach']::pg_catalog.text[])),
    start_at           timestamptz,
    anchor_key         bigint,
    default_partition  boolean NOT NULL DEFAULT true,
    timezone           text NOT NULL DEFAULT 'UTC',
    job_id             bigint REFERENCES pgmart.job (job_id) ON DELETE CASCADE,
    created_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_run_at        timestamptz,
    last_status        text,
    last_message       text,
    -- No-op fast path: the partitions' fingerprint when a pass last found nothing to do, and until
    -- when that stays true. Anything else about the partitions is always read from the catalog.
    fingerprint        bigint,
    quiet_until        timestamptz,
    -- The partitions' fingerprint when maintenance last ANALYZEd the parent (autovacuum never
    -- analyzes a partitioned table): it does again after its partitions change.
    analyzed_fingerprint bigint
);
COMMENT ON TABLE pgmart.partition_set IS 'pgmart partition sets (read them through pgmart.partition_sets; change them through pgmart functions).';
SELECT pg_catalog.pg_extension_config_dump('pgmart.partition_set', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.partition_set_set_id_seq', '');

-- A range bound as pg_get_expr prints it ('...', MINVALUE, MAXVALUE) → epoch seconds of the
-- column type (local wall time for timestamp and date), ±Infinity for MINVALUE / MAXVALUE.
CREATE FUNCTION pgmart._bound_epoch(b text, coltype text) RETURNS double precision
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN b IS NULL THEN NULL
            WHEN b OPERATOR(pg_catalog.=) 'MINVALUE' THEN '-Infinity'::double precision
            WHEN b OPERATOR(pg_catalog.=) 'MAXVALUE' THEN 'Infinity'::double precision
            WHEN coltype OPERATOR(pg_catalog.=) 'date'
                 THEN EXTRACT(epoch FROM pg_catalog.btrim(b, '''')::pg_catalog.date)::double precision
            WHEN coltype OPERATOR(pg_catalog.=) 'timestamp'
                 THEN EXTRACT(epoch FROM pg_catalog.btrim(b, '''')::timestamp without time zone)::double precision
            ELSE EXTRACT(epoch FROM pg_catalog.btrim(b, '''')::timestamp with time zone)::double precision END
$$;

-- Every partition of a table with its bounds (text as in the catalog, and as epoch keys).
CREATE FUNCTION pgmart._partition_bounds(parent regclass, coltype text DEFAULT 'timestamptz')
RETURNS TABLE (child oid, child_name text, is_default boolean, lower_bound text, upper_bound text,
               lower_key double precision, upper_key double precision)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
SELECT c.oid,
       CASE WHEN c.relnamespace OPERATOR(pg_catalog.=) (SELECT p.relnamespace FROM pg_catalog.pg_class p
                                                          WHERE p.oid OPERATOR(pg_catalog.=) parent)
            THEN pg_catalog.quote_ident(c.relname::pg_catalog.text)
            ELSE c.oid::pg_catalog.regclass::pg_catalog.text END,
       m IS NULL,
       pg_catalog.btrim(m[1], ''''), pg_catalog.btrim(m[2], ''''),
       pgmart._bound_epoch(m[1], coltype), pgmart._bound_epoch(m[2], coltype)
  FROM pg_catalog.pg_inherits i
  JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) i.inhrelid
  LEFT JOIN LATERAL pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                            '^FOR VALUES FROM \((.*)\) TO \((.*)\)$') m ON true
 WHERE i.inhparent OPERATOR(pg_catalog.=) parent
$$;

CREATE FUNCTION pgmart._now_epoch(tz text, coltype text) RETURNS double precision
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN coltype OPERATOR(pg_catalog.=) 'timestamptz' THEN EXTRACT(epoch FROM pg_catalog.now())::double precision
            ELSE EXTRACT(epoch FROM (pg_catalog.timezone(tz, pg_catalog.now())))::double precision END
$$;

-- The partitions of a table: for whoever has its owner's rights or may read it.
CREATE FUNCTION pgmart.partitions(parent regclass)
RETURNS TABLE (partition_name text, lower_bound text, upper_bound text, is_default boolean,
               size_bytes bigint, rows_estimate bigint)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    coltype text;
BEGIN
    IF parent IS NULL THEN
        RAISE EXCEPTION 'argument "parent" must not be NULL' USING ERRCODE = '22004',
            HINT = 'Give parent a value. Only arguments that have a default may be NULL, and NULL there means the default.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) parent) THEN
        RAISE EXCEPTION 'relation with OID % does not exist', parent::pg_catalog.oid USING ERRCODE = '42P01',
            HINT = 'Argument "parent" names a table or view that was dropped, or an OID that is not a relation''s.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) parent
                      AND (pg_catalog.pg_has_role(c.relowner, 'USAGE'::pg_catalog.text)
                           OR pg_catalog.has_table_privilege(c.oid, 'SELECT'::pg_catalog.text))) THEN
        RAISE EXCEPTION 'table % does not exist or you may not read it', parent USING ERRCODE = '42501';
    END IF;
    -- The type of the partition key (a set's control column is its partition key).
    coltype := coalesce(
         (SELECT CASE t.typname WHEN 'date' THEN 'date' WHEN 'timestamp' THEN 'timestamp' ELSE 'timestamptz' END
            FROM pg_catalog.pg_partitioned_table p
            JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) p.partrelid
                                         AND a.attnum OPERATOR(pg_catalog.=) p.partattrs[0]
            JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
           WHERE p.partrelid OPERATOR(pg_catalog.=) partitions.parent));
    RETURN QUERY
    SELECT b.child_name, b.lower_bound, b.upper_bound, b.is_default,
           pg_catalog.pg_total_relation_size(b.child::pg_catalog.regclass),
           pg_catalog.int8(GREATEST(c.reltuples, 0::real))
      FROM pgmart._partition_bounds(parent, coltype) b
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) b.child
     ORDER BY b.is_default, b.lower_key NULLS LAST, b.child_name;
END
$$;

CREATE VIEW pgmart.partition_sets WITH (security_barrier) AS
SELECT pgmart._relation_name(s.parent) AS parent, s.control_column, s.partition_interval, s.premake, s.retention,
       s.retention_mode, s.timezone, s.job_id,
       st.partitions_ahead, st.oldest_bound, st.newest_bound,
       (SELECT pg_catalog.int8(GREATEST(coalesce(n.n_live_tup, 0)::real, c.reltuples, 0::real))
          FROM pgmart._partition_bounds(s.parent, s.column_type) d
          JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.child
          LEFT JOIN pg_catalog.pg_stat_user_tables n ON n.relid OPERATOR(pg_catalog.=) d.child
         WHERE d.is_default) AS rows_in_default,
       CASE WHEN NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) s.parent) THEN 'dropped'
            WHEN j.last_run_at IS NOT NULL AND (s.last_run_at IS NULL OR j.last_run_at OPERATOR(pg_catalog.>) s.last_run_at)
            THEN j.last_status ELSE s.last_status END AS last_status,
       GREATEST(s.last_run_at, j.last_run_at) AS last_run_at,
       s.last_message, s.default_partition, s.start_at, pg_catalog.pg_get_userbyid(a.relowner) AS owner
  FROM pgmart.partition_set s
  LEFT JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) s.job_id
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor
  LEFT JOIN LATERAL (
        SELECT pg_catalog.count(*) FILTER (WHERE b.lower_key OPERATOR(pg_catalog.>) pgmart._now_epoch(s.timezone, s.column_type)) AS partitions_ahead,
               (pg_catalog.array_agg(b.lower_bound ORDER BY b.lower_key) FILTER (WHERE NOT b.is_default))[1] AS oldest_bound,
               (pg_catalog.array_agg(b.upper_bound ORDER BY b.upper_key DESC) FILTER (WHERE NOT b.is_default))[1] AS newest_bound
          FROM pgmart._partition_bounds(s.parent, s.column_type) b) st ON true
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text);
COMMENT ON VIEW pgmart.partition_sets IS 'pgmart partition sets: interval, premake, retention, partitions ahead, oldest and newest bound, rows in the default partition, last maintenance.';
GRANT SELECT ON pgmart.partition_sets TO PUBLIC;
