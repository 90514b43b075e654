-- pgmart dashboards, lineage and trust (src/dashboards/): the dashboards people look at, the graph
-- from raw tables to them, and one answer per dashboard, metric and object to "can I trust this
-- number right now?".

CREATE TABLE pgmart.dashboard (
    dashboard_id  bigserial UNIQUE,
    name          text PRIMARY KEY CHECK (name OPERATOR(pg_catalog.<>) ''),
    owner         text NOT NULL,
    description   text NOT NULL,
    metrics       text[] NOT NULL DEFAULT '{}',
    sources       regclass[] NOT NULL DEFAULT '{}',
    caveats       text,
    url           text,
    -- A case-insensitive POSIX regular expression that finds the dashboard's statements in
    -- pg_stat_statements (pgmart.query_health).
    query_pattern text,
    anchor        regclass NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now(),
    changed_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE pgmart.dashboard IS 'pgmart dashboards (read them through pgmart.dashboards; change them with pgmart.register_dashboard and pgmart.drop_dashboard).';
SELECT pg_catalog.pg_extension_config_dump('pgmart.dashboard', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.dashboard_dashboard_id_seq', '');

-- The dashboards you may see: those of roles whose rights you have, and those whose every source you
-- may read and every metric you may use (a dashboard shows nothing you could not read yourself).
CREATE VIEW pgmart.dashboards WITH (security_barrier) AS
SELECT d.name, d.owner, d.description, d.metrics,
       ARRAY(SELECT pgmart._relation_name(s) FROM pg_catalog.unnest(d.sources) WITH ORDINALITY u(s, i) ORDER BY u.i) AS sources,
       d.caveats, d.url, d.query_pattern,
       pg_catalog.pg_get_userbyid(a.relowner) AS registered_by, d.created_at, d.changed_at
  FROM pgmart.dashboard d
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) d.anchor
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text)
    OR (NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(d.sources) s(rel)
                     WHERE NOT coalesce(pg_catalog.has_table_privilege(s.rel::pg_catalog.oid, 'SELECT'::pg_catalog.text), false))
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(d.metrics) m(name)
                         WHERE NOT EXISTS (SELECT 1 FROM pgmart.metrics v WHERE v.name OPERATOR(pg_catalog.=) m.name)));
COMMENT ON VIEW pgmart.dashboards IS 'Every dashboard you may see: owner, description, metrics, sources, caveats, URL, query pattern, who registered it.';
GRANT SELECT ON pgmart.dashboards TO PUBLIC;

-- A relation, or the root of the partition tree it is a partition of.
CREATE FUNCTION pgmart._root(rel oid) RETURNS oid
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT coalesce(pg_catalog.pg_partition_root(rel)::pg_catalog.oid, rel)
$$;

-- A relation's kind in the lineage graph, from the catalog (a rollup's table is a table here; the
-- views below say 'rollup').
CREATE FUNCTION pgmart._node_kind(rel oid) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog."char"[]) THEN 'table'
            WHEN c.relkind OPERATOR(pg_catalog.=) 'v' THEN 'view' WHEN c.relkind OPERATOR(pg_catalog.=) 'm' THEN 'materialized_view'
            WHEN c.relkind OPERATOR(pg_catalog.=) 'f' THEN 'foreign_table' ELSE 'relation' END
  FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) rel
$$;

-- Every edge of the lineage graph you may see. A node is `r<oid>` (a relation; partitions are their
-- root), `f<oid>` (a function: lineage is unknown beyond it unless its body is SQL-standard),
-- `m:<name>` (a metric) or `d:<name>` (a dashboard). Edges from the catalog: a view or materialized
-- view reads what its rewrite rule depends on; a SQL-standard function body reads its tables.
-- Edges from pgmart: a rollup reads its source, a metric its source, a dashboard its sources and
-- metrics. pgmart's own views (owners, metric views) are not nodes.
CREATE VIEW pgmart._lineage_edge WITH (security_barrier) AS
WITH own AS (
    SELECT n.oid FROM pg_catalog.pg_namespace n
     WHERE n.nspname OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog', 'information_schema', 'pg_toast', 'pgmart',
                                                       'pgmart_owners', 'pgmart_metrics', 'pgmart_metric_columns']::pg_catalog.name[])
), rule_dep AS (
    SELECT DISTINCT CASE WHEN d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                         THEN pgmart._root(d.refobjid) ELSE d.refobjid END AS up,
           d.refclassid, r.ev_class AS down
      FROM pg_catalog.pg_depend d
      JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
       AND d.refclassid OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog.pg_class'::pg_catalog.regclass, 'pg_catalog.pg_proc'::pg_catalog.regclass]::pg_catalog.oid[])
       AND d.deptype OPERATOR(pg_catalog.=) 'n'
       AND d.refobjid OPERATOR(pg_catalog.<>) r.ev_class
), rollup_key AS (
    SELECT 'r' OPERATOR(pg_catalog.||) ro.rel::pg_catalog.oid::pg_catalog.text AS key, 'rollup'::pg_catalog.text AS kind FROM pgmart.rollup ro
    UNION ALL
    SELECT 'r' OPERATOR(pg_catalog.||) sn.rel::pg_catalog.oid::pg_catalog.text, 'snapshot' FROM pgmart.snapshot sn
), edge AS (
SELECT 'r' OPERATOR(pg_catalog.||) e.up::pg_catalog.text AS up_key,
       pg_catalog.quote_ident(un.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(u.relname::pg_catalog.text) AS up_name,
       CASE WHEN u.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p']::pg_catalog."char"[]) THEN 'table'
            WHEN u.relkind OPERATOR(pg_catalog.=) 'v' THEN 'view' WHEN u.relkind OPERATOR(pg_catalog.=) 'm' THEN 'materialized_view'
            ELSE 'foreign_table' END AS up_kind,
       'r' OPERATOR(pg_catalog.||) e.down::pg_catalog.text AS down_key,
       pg_catalog.quote_ident(vn.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) pg_catalog.quote_ident(v.relname::pg_catalog.text) AS down_name,
       CASE WHEN v.relkind OPERATOR(pg_catalog.=) 'm' THEN 'materialized_view' ELSE 'view' END AS down_kind,
       'reads'::pg_catalog.text AS via
  FROM rule_dep e
  JOIN pg_catalog.pg_class u ON u.oid OPERATOR(pg_catalog.=) e.up
  JOIN pg_catalog.pg_namespace un ON un.oid OPERATOR(pg_catalog.=) u.relnamespace
  JOIN pg_catalog.pg_class v ON v.oid OPERATOR(pg_catalog.=) e.down
  JOIN pg_catalog.pg_namespace vn ON vn.oid OPERATOR(pg_catalog.=) v.relnamespace
 WHERE e.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
   AND u.relnamespace OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT oid FROM own))
   AND v.relnamespace OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT oid FROM own))
   AND u.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p', 'v', 'm', 'f']::pg_catalog."char"[])
UNION ALL
-- A view calling a function outside pg_catalog and pgmart: lineage goes through the function.
SELECT 'f' OPERATOR(pg_catalog.||) e.up::pg_catalog.text,
       pg_catalog.quote_ident(pn.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||)
           pg_catalog.quote_ident(p.proname::pg_catalog.text) OPERATOR(pg_catalog.||) '()',
       'function',
       'r' OPERATOR(pg_catalog.||) e.down::pg_catalog.text, pgmart._relation_name(e.down::pg_catalog.regclass),
       pgmart._node_kind(e.down), 'calls'
  FROM rule_dep e
  JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) e.up
  JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) p.pronamespace
  JOIN pg_catalog.pg_class v ON v.oid OPERATOR(pg_catalog.=) e.down
 WHERE e.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
   AND p.pronamespace OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT oid FROM own))
   AND v.relnamespace OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT oid FROM own))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend x WHERE x.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                      AND x.objid OPERATOR(pg_catalog.=) p.oid AND x.deptype OPERATOR(pg_catalog.=) 'e')
UNION ALL
-- A function with a SQL-standard body reads the tables it names.
SELECT DISTINCT 'r' OPERATOR(pg_catalog.||) pgmart._root(d.refobjid)::pg_catalog.text,
       pgmart._relation_name(pgmart._root(d.refobjid)::pg_catalog.regclass),
       pgmart._node_kind(pgmart._root(d.refobjid)),
       'f' OPERATOR(pg_catalog.||) p.oid::pg_catalog.text,
       pg_catalog.quote_ident(pn.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||)
           pg_catalog.quote_ident(p.proname::pg_catalog.text) OPERATOR(pg_catalog.||) '()',
       'function', 'reads'
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) d.objid
  JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) p.pronamespace
  JOIN pg_catalog.pg_class u ON u.oid OPERATOR(pg_catalog.=) d.refobjid
 WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
   AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
   AND d.deptype OPERATOR(pg_catalog.=) 'n'
   AND p.pronamespace OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT oid FROM own))
   AND u.relnamespace OPERATOR(pg_catalog.<>) ALL (ARRAY(SELECT oid FROM own))
UNION ALL
-- Rollups read their source (the ones you may see in pgmart.rollups).
SELECT 'r' OPERATOR(pg_catalog.||) ro.source::pg_catalog.oid::pg_catalog.text,
       CASE WHEN s.oid IS NULL THEN ro.source_name ELSE pgmart._relation_name(ro.source) END,
       coalesce(pgmart._node_kind(ro.source), 'dropped'),
       'r' OPERATOR(pg_catalog.||) ro.rel::pg_catalog.oid::pg_catalog.text, pgmart._relation_name(ro.rel), 'rollup', 'rollup'
  FROM pgmart.rollup ro
  JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) ro.job_id
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor
  LEFT JOIN pg_catalog.pg_class s ON s.oid OPERATOR(pg_catalog.=) ro.source
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text)
    OR coalesce(pg_catalog.has_table_privilege(ro.rel::pg_catalog.oid, 'SELECT'::pg_catalog.text), false)
UNION ALL
-- Snapshots read their source (the ones of roles whose rights you have, or whose table you may read).
SELECT 'r' OPERATOR(pg_catalog.||) pgmart._root(sn.source)::pg_catalog.text,
       CASE WHEN s.oid IS NULL THEN sn.source_name ELSE pgmart._relation_name(pgmart._root(sn.source)::pg_catalog.regclass) END,
       coalesce(pgmart._node_kind(pgmart._root(sn.source)), 'dropped'),
       'r' OPERATOR(pg_catalog.||) sn.rel::pg_catalog.oid::pg_catalog.text, pgmart._relation_name(sn.rel), 'snapshot', 'snapshot'
  FROM pgmart.snapshot sn
  JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) sn.job_id
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor
  LEFT JOIN pg_catalog.pg_class s ON s.oid OPERATOR(pg_catalog.=) sn.source
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text)
    OR coalesce(pg_catalog.has_table_privilege(sn.rel::pg_catalog.oid, 'SELECT'::pg_catalog.text), false)
UNION ALL
-- Metrics read their source (the ones you may use, as in pgmart.metrics).
SELECT 'r' OPERATOR(pg_catalog.||) pgmart._root(m.source)::pg_catalog.text,
       CASE WHEN s.oid IS NULL THEN coalesce(m.source_name, m.source::pg_catalog.oid::pg_catalog.text)
            ELSE pgmart._relation_name(pgmart._root(m.source)::pg_catalog.regclass) END,
       coalesce(pgmart._node_kind(m.source), 'dropped'),
       'm:' OPERATOR(pg_catalog.||) m.name, m.name, 'metric', 'metric'
  FROM pgmart.metric m
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) m.anchor
  LEFT JOIN pg_catalog.pg_class s ON s.oid OPERATOR(pg_catalog.=) m.source
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text)
    OR coalesce(pg_catalog.has_table_privilege(m.source::pg_catalog.oid, 'SELECT'::pg_catalog.text), false)
UNION ALL
-- Dashboards read their sources and metrics (the ones you may see in pgmart.dashboards).
SELECT 'r' OPERATOR(pg_catalog.||) pgmart._root(s.rel)::pg_catalog.text,
       pgmart._relation_name(pgmart._root(s.rel)::pg_catalog.regclass),
       coalesce(pgmart._node_kind(s.rel), 'dropped'),
       'd:' OPERATOR(pg_catalog.||) d.name, d.name, 'dashboard', 'dashboard'
  FROM pgmart.dashboards d
  JOIN pgmart.dashboard dd ON dd.name OPERATOR(pg_catalog.=) d.name
  CROSS JOIN LATERAL pg_catalog.unnest(dd.sources) s(rel)
UNION ALL
SELECT 'm:' OPERATOR(pg_catalog.||) mn.name, mn.name,
       CASE WHEN EXISTS (SELECT 1 FROM pgmart.metric m WHERE m.name OPERATOR(pg_catalog.=) mn.name) THEN 'metric' ELSE 'dropped' END,
       'd:' OPERATOR(pg_catalog.||) d.name, d.name, 'dashboard', 'dashboard'
  FROM pgmart.dashboards d
  CROSS JOIN LATERAL pg_catalog.unnest(d.metrics) mn(name)
)
SELECT e.up_key, e.up_name,
       coalesce(ru.kind, e.up_kind) AS up_kind,
       e.down_key, e.down_name,
       coalesce(rd.kind, e.down_kind) AS down_kind,
       e.via
  FROM edge e
  LEFT JOIN rollup_key ru ON ru.key OPERATOR(pg_catalog.=) e.up_key
  LEFT JOIN rollup_key rd ON rd.key OPERATOR(pg_catalog.=) e.down_key;
COMMENT ON VIEW pgmart._lineage_edge IS 'Internal: every edge of the lineage graph you may see (read it through pgmart.lineage()).';
GRANT SELECT ON pgmart._lineage_edge TO PUBLIC;


-- The graph node of a relation (a partition is its root).
CREATE FUNCTION pgmart._node_key(rel oid) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT 'r' OPERATOR(pg_catalog.||) pgmart._root(rel)::pg_catalog.text
$$;

-- An age as people say it: 40 s, 12 min, 5 h, 3 days.
CREATE FUNCTION pgmart._age_text(age interval) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
SELECT CASE WHEN age IS NULL THEN NULL
            WHEN pg_catalog.date_part('epoch', age) OPERATOR(pg_catalog.<) 60
                 THEN pg_catalog.round(pg_catalog.date_part('epoch', age))::pg_catalog.int8::pg_catalog.text OPERATOR(pg_catalog.||) ' s'
            WHEN pg_catalog.date_part('epoch', age) OPERATOR(pg_catalog.<) 3600
                 THEN pg_catalog.floor(pg_catalog.date_part('epoch', age) OPERATOR(pg_catalog./) 60)::pg_catalog.int8::pg_catalog.text OPERATOR(pg_catalog.||) ' min'
            WHEN pg_catalog.date_part('epoch', age) OPERATOR(pg_catalog.<) 172800
                 THEN pg_catalog.floor(pg_catalog.date_part('epoch', age) OPERATOR(pg_catalog./) 3600)::pg_catalog.int8::pg_catalog.text OPERATOR(pg_catalog.||) ' h'
            ELSE pg_catalog.floor(pg_catalog.date_part('epoch', age) OPERATOR(pg_catalog./) 86400)::pg_catalog.int8::pg_catalog.text OPERATOR(pg_catalog.||) ' days' END
$$;

-- What is wrong with each node right now, from pgmart's catalog: a stale or failing refresh or
-- rollup, a failing, warning or erroring check (its counts, never its sample), an open alert
-- (but a check's: the check says it), a deprecated or orphaned metric, a dashboard whose source
-- is gone. Statuses only; no data.
CREATE VIEW pgmart._node_issue WITH (security_barrier) AS
SELECT 'r' OPERATOR(pg_catalog.||) r.view::pg_catalog.oid::pg_catalog.text AS key, 'fail'::pg_catalog.text AS severity,
       'not refreshed for ' OPERATOR(pg_catalog.||) pgmart._age_text(pg_catalog.now() OPERATOR(pg_catalog.-) coalesce(r.last_refreshed_at, r.registered_at))
           OPERATOR(pg_catalog.||) ' (SLO ' OPERATOR(pg_catalog.||)
           pgmart._age_text(coalesce(r.freshness_slo, pg_catalog.make_interval(secs => 2 OPERATOR(pg_catalog.*) r.period_s))) OPERATOR(pg_catalog.||) ')' AS reason
  FROM pgmart.refresh_view r
 WHERE (pg_catalog.now() OPERATOR(pg_catalog.-) coalesce(r.last_refreshed_at, r.registered_at))
       OPERATOR(pg_catalog.>) coalesce(r.freshness_slo, pg_catalog.make_interval(secs => 2 OPERATOR(pg_catalog.*) r.period_s))
UNION ALL
SELECT 'r' OPERATOR(pg_catalog.||) r.view::pg_catalog.oid::pg_catalog.text, 'fail',
       CASE WHEN r.last_status OPERATOR(pg_catalog.=) 'dropped' THEN 'dropped' ELSE 'last refresh failed' END
  FROM pgmart.refresh_view r
 WHERE r.last_status OPERATOR(pg_catalog.=) ANY (ARRAY['failed', 'dropped']::pg_catalog.text[])
UNION ALL
SELECT 'r' OPERATOR(pg_catalog.||) ro.rel::pg_catalog.oid::pg_catalog.text, 'fail',
       'not refreshed for ' OPERATOR(pg_catalog.||) pgmart._age_text(pg_catalog.now() OPERATOR(pg_catalog.-) coalesce(ro.last_refresh_at, ro.created_at))
           OPERATOR(pg_catalog.||) ' (due every ' OPERATOR(pg_catalog.||) pgmart._age_text(pg_catalog.make_interval(secs => ro.period_s)) OPERATOR(pg_catalog.||) ')'
  FROM pgmart.rollup ro
 WHERE (pg_catalog.now() OPERATOR(pg_catalog.-) coalesce(ro.last_refresh_at, ro.created_at))
       OPERATOR(pg_catalog.>) pg_catalog.make_interval(secs => 2 OPERATOR(pg_catalog.*) ro.period_s)
UNION ALL
SELECT 'r' OPERATOR(pg_catalog.||) ro.rel::pg_catalog.oid::pg_catalog.text, 'fail', 'its source ' OPERATOR(pg_catalog.||) ro.source_name OPERATOR(pg_catalog.||) ' is gone'
  FROM pgmart.rollup ro
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) ro.source)
UNION ALL
SELECT 'r' OPERATOR(pg_catalog.||) sn.rel::pg_catalog.oid::pg_catalog.text, 'fail',
       'not taken for ' OPERATOR(pg_catalog.||) pgmart._age_text(pg_catalog.now() OPERATOR(pg_catalog.-) coalesce(sn.last_run_at, sn.created_at))
           OPERATOR(pg_catalog.||) ' (due every ' OPERATOR(pg_catalog.||) pgmart._age_text(pg_catalog.make_interval(secs => sn.period_s)) OPERATOR(pg_catalog.||) ')'
  FROM pgmart.snapshot sn
 WHERE (pg_catalog.now() OPERATOR(pg_catalog.-) coalesce(sn.last_run_at, sn.created_at))
       OPERATOR(pg_catalog.>) pg_catalog.make_interval(secs => 2 OPERATOR(pg_catalog.*) sn.period_s)
UNION ALL
SELECT 'r' OPERATOR(pg_catalog.||) sn.rel::pg_catalog.oid::pg_catalog.text, 'fail', 'its source ' OPERATOR(pg_catalog.||) sn.source_name OPERATOR(pg_catalog.||) ' is gone'
  FROM pgmart.snapshot sn
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) sn.source)
UNION ALL
SELECT pgmart._node_key(c.target::pg_catalog.oid),
       CASE WHEN lr.status OPERATOR(pg_catalog.=) 'warn' THEN 'warn' ELSE 'fail' END,
       'check ' OPERATOR(pg_catalog.||) c.name OPERATOR(pg_catalog.||) CASE
           WHEN lr.status OPERATOR(pg_catalog.=) 'error' THEN ' could not run'
           WHEN c.kind OPERATOR(pg_catalog.=) 'freshness' THEN
               CASE WHEN lr.sample OPERATOR(pg_catalog.->>) 'newest' IS NULL THEN ' found no rows'
                    ELSE ': newest row is ' OPERATOR(pg_catalog.||) pgmart._age_text(pg_catalog.now() OPERATOR(pg_catalog.-)
                         (lr.sample OPERATOR(pg_catalog.->>) 'newest')::pg_catalog.timestamptz) OPERATOR(pg_catalog.||) ' old' END
           WHEN lr.failing_rows IS NOT NULL THEN
               CASE WHEN lr.status OPERATOR(pg_catalog.=) 'warn' THEN ' warns: ' ELSE ' failed: ' END OPERATOR(pg_catalog.||) lr.failing_rows::pg_catalog.text
               OPERATOR(pg_catalog.||) CASE WHEN lr.failing_rows OPERATOR(pg_catalog.=) 1 THEN ' row' ELSE ' rows' END
           ELSE CASE WHEN lr.status OPERATOR(pg_catalog.=) 'warn' THEN ' warns' ELSE ' failed' END END
  FROM pgmart."check" c
  JOIN LATERAL (SELECT r.status, r.failing_rows, r.sample FROM pgmart.check_result r
                 WHERE r.check_id OPERATOR(pg_catalog.=) c.check_id ORDER BY r.run_at DESC LIMIT 1) lr ON true
 WHERE lr.status OPERATOR(pg_catalog.<>) 'pass'
UNION ALL
SELECT x.key, CASE WHEN x.health_high THEN 'fail' ELSE 'warn' END,
       x.n::pg_catalog.text OPERATOR(pg_catalog.||) CASE WHEN x.n OPERATOR(pg_catalog.=) 1 THEN ' open alert ' ELSE ' open alerts ' END
           OPERATOR(pg_catalog.||) x.source_name OPERATOR(pg_catalog.||) ' (' OPERATOR(pg_catalog.||) x.top OPERATOR(pg_catalog.||) ')'
  FROM (SELECT coalesce(pgmart._node_key(ru.relation::pg_catalog.oid),
                        'r' OPERATOR(pg_catalog.||) coalesce(rv.view, ro.rel, sn.rel)::pg_catalog.oid::pg_catalog.text) AS key,
               al.source_name, pg_catalog.count(*) AS n,
               -- An alert rule reports business events (a big refund): a warning. A refresh or
               -- rollup alerting high or critical is a failure of the pipeline.
               pg_catalog.bool_or(al.rule_id IS NULL AND al.severity OPERATOR(pg_catalog.=) ANY (ARRAY['high', 'critical']::pg_catalog.text[])) AS health_high,
               (ARRAY['info', 'low', 'medium', 'high', 'critical']::pg_catalog.text[])[pg_catalog.max(pg_catalog.array_position(
                    ARRAY['info', 'low', 'medium', 'high', 'critical']::pg_catalog.text[], al.severity))] AS top
          FROM pgmart.alert al
          LEFT JOIN pgmart.alert_rules ru ON ru.rule_id OPERATOR(pg_catalog.=) al.rule_id
          LEFT JOIN pgmart.refresh_view rv ON rv.job_id OPERATOR(pg_catalog.=) al.job_id
          LEFT JOIN pgmart.rollup ro ON ro.job_id OPERATOR(pg_catalog.=) al.job_id
          LEFT JOIN pgmart.snapshot sn ON sn.job_id OPERATOR(pg_catalog.=) al.job_id
         WHERE al.acked_at IS NULL AND al.resolved_at IS NULL AND al.check_id IS NULL
           AND coalesce(ru.relation, rv.view, ro.rel, sn.rel) IS NOT NULL
         GROUP BY 1, 2) x
UNION ALL
-- The health job's verdicts (pgmart.schedule_health): a table with stale statistics, never analyzed,
-- bloated or full of dead rows, and a dashboard whose statements regressed.
SELECT pgmart._node_key(pg_catalog.to_regclass(al.target)::pg_catalog.oid), 'warn',
       'table health: ' OPERATOR(pg_catalog.||) coalesce(al.payload OPERATOR(pg_catalog.->>) 'reason', al.source_name)
  FROM pgmart.alert al
 WHERE al.source_kind OPERATOR(pg_catalog.=) 'table_health' AND al.acked_at IS NULL AND al.resolved_at IS NULL
   AND coalesce(al.payload OPERATOR(pg_catalog.->>) 'kind', '') OPERATOR(pg_catalog.<>) 'index'
   AND (al.payload OPERATOR(pg_catalog.->) 'problems') OPERATOR(pg_catalog.?|)
       ARRAY['stale_statistics', 'never_analyzed', 'bloat', 'dead_tuples']::pg_catalog.text[]
   AND pg_catalog.to_regclass(al.target) IS NOT NULL
UNION ALL
SELECT 'd:' OPERATOR(pg_catalog.||) al.source_name, 'warn',
       'its statements got slower: ' OPERATOR(pg_catalog.||) coalesce(al.payload OPERATOR(pg_catalog.->>) 'reason', 'query regressed')
  FROM pgmart.alert al
 WHERE al.source_kind OPERATOR(pg_catalog.=) 'dashboard' AND al.acked_at IS NULL AND al.resolved_at IS NULL
   AND al.payload OPERATOR(pg_catalog.->>) 'problem' OPERATOR(pg_catalog.=) 'query regressed'
UNION ALL
SELECT 'm:' OPERATOR(pg_catalog.||) m.name, 'warn',
       'deprecated' OPERATOR(pg_catalog.||) coalesce(', replaced by ' OPERATOR(pg_catalog.||) m.replaced_by, '')
  FROM pgmart.metric m
 WHERE m.deprecated_at IS NOT NULL
UNION ALL
SELECT 'm:' OPERATOR(pg_catalog.||) m.name, 'fail', 'its source ' OPERATOR(pg_catalog.||) coalesce(m.source_name, m.source::pg_catalog.oid::pg_catalog.text) OPERATOR(pg_catalog.||) ' is gone'
  FROM pgmart.metric m
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) m.source)
UNION ALL
SELECT 'd:' OPERATOR(pg_catalog.||) d.name, 'fail', 'source ' OPERATOR(pg_catalog.||) s.rel::pg_catalog.oid::pg_catalog.text OPERATOR(pg_catalog.||) ' is gone'
  FROM pgmart.dashboard d CROSS JOIN LATERAL pg_catalog.unnest(d.sources) s(rel)
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) s.rel)
UNION ALL
SELECT 'd:' OPERATOR(pg_catalog.||) d.name, 'fail', 'metric ' OPERATOR(pg_catalog.||) mn.name OPERATOR(pg_catalog.||) ' is gone'
  FROM pgmart.dashboard d CROSS JOIN LATERAL pg_catalog.unnest(d.metrics) mn(name)
 WHERE NOT EXISTS (SELECT 1 FROM pgmart.metric m WHERE m.name OPERATOR(pg_catalog.=) mn.name);
COMMENT ON VIEW pgmart._node_issue IS 'Internal: what is wrong with each lineage node right now (read it through pgmart.trust).';

-- When each node was last refreshed (materialized views pgmart refreshes, rollups).
CREATE VIEW pgmart._node_refreshed WITH (security_barrier) AS
SELECT 'r' OPERATOR(pg_catalog.||) r.view::pg_catalog.oid::pg_catalog.text AS key, r.last_refreshed_at AS refreshed_at FROM pgmart.refresh_view r
UNION ALL
SELECT 'r' OPERATOR(pg_catalog.||) ro.rel::pg_catalog.oid::pg_catalog.text, ro.last_refresh_at FROM pgmart.rollup ro
UNION ALL
SELECT 'r' OPERATOR(pg_catalog.||) sn.rel::pg_catalog.oid::pg_catalog.text, sn.last_run_at FROM pgmart.snapshot sn;
COMMENT ON VIEW pgmart._node_refreshed IS 'Internal: when each lineage node was last refreshed (read it through pgmart.trust).';

-- One row per dashboard, metric and object in your lineage graph (and every object pgmart keeps
-- fresh or checks that you may read): ok, warn or fail, with the reasons, its own and those of
-- everything upstream (each named), and when the least recently refreshed thing upstream was
-- refreshed. Not granted to PUBLIC: like pgmart.freshness, it names upstream objects and their
-- statuses; pgmart.grant_access(role, 'reader') grants it to a BI role.
CREATE VIEW pgmart.trust WITH (security_barrier) AS
WITH RECURSIVE e AS MATERIALIZED (
    SELECT up_key, up_name, up_kind, down_key, down_name, down_kind FROM pgmart._lineage_edge
), registered AS (
    SELECT r.view::pg_catalog.oid AS rel FROM pgmart.refresh_view r
    UNION SELECT ro.rel::pg_catalog.oid FROM pgmart.rollup ro
    UNION SELECT sn.rel::pg_catalog.oid FROM pgmart.snapshot sn
    UNION SELECT c.target::pg_catalog.oid FROM pgmart."check" c
), nodes AS MATERIALIZED (
    SELECT e.down_key AS key, e.down_name AS name, e.down_kind AS kind FROM e
    UNION SELECT e.up_key, e.up_name, e.up_kind FROM e
    UNION SELECT pgmart._node_key(g.rel), pgmart._relation_name(pgmart._root(g.rel)::pg_catalog.regclass),
                 CASE WHEN EXISTS (SELECT 1 FROM pgmart.rollup ro WHERE ro.rel OPERATOR(pg_catalog.=) g.rel) THEN 'rollup'
                      WHEN EXISTS (SELECT 1 FROM pgmart.snapshot sn WHERE sn.rel OPERATOR(pg_catalog.=) g.rel) THEN 'snapshot'
                      ELSE pgmart._node_kind(pgmart._root(g.rel)) END
            FROM registered g JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) g.rel
           WHERE coalesce(pg_catalog.has_table_privilege(g.rel, 'SELECT'::pg_catalog.text), false)
              OR pg_catalog.pg_has_role(c.relowner, 'USAGE'::pg_catalog.text)
    UNION SELECT 'm:' OPERATOR(pg_catalog.||) m.name, m.name, 'metric' FROM pgmart.metrics m
    UNION SELECT 'd:' OPERATOR(pg_catalog.||) d.name, d.name, 'dashboard' FROM pgmart.dashboards d
), up(root, key) AS (
    SELECT n.key, n.key FROM nodes n
    UNION
    SELECT u.root, e.up_key FROM up u JOIN e ON e.down_key OPERATOR(pg_catalog.=) u.key
), issue AS MATERIALIZED (
    SELECT i.key, i.severity, i.reason FROM pgmart._node_issue i
), named AS (
    SELECT u.root, i.severity,
           CASE WHEN u.key OPERATOR(pg_catalog.=) u.root THEN i.reason
                ELSE coalesce(un.name, u.key) OPERATOR(pg_catalog.||) ': ' OPERATOR(pg_catalog.||) i.reason END AS reason,
           u.key OPERATOR(pg_catalog.=) u.root AS own
      FROM up u
      JOIN issue i ON i.key OPERATOR(pg_catalog.=) u.key
      LEFT JOIN (SELECT DISTINCT ON (n.key) n.key, n.name FROM nodes n ORDER BY n.key, n.name) un ON un.key OPERATOR(pg_catalog.=) u.key
), verdict AS (
    SELECT nm.root,
           pg_catalog.array_agg(nm.reason ORDER BY nm.severity OPERATOR(pg_catalog.=) 'fail' DESC, nm.own DESC, nm.reason) AS reasons,
           pg_catalog.count(*) FILTER (WHERE nm.severity OPERATOR(pg_catalog.=) 'fail') AS failures,
           pg_catalog.count(*) FILTER (WHERE nm.severity OPERATOR(pg_catalog.=) 'warn') AS warnings
      FROM named nm GROUP BY nm.root
), lag AS (
    -- On a standby past pgmart.replica_lag_slo: the replica, not the pipeline, is behind.
    SELECT pg_catalog.array_agg('this replica is ' OPERATOR(pg_catalog.||) pgmart._age_text(l.age) OPERATOR(pg_catalog.||)
               ' behind the primary (SLO ' OPERATOR(pg_catalog.||) pgmart._age_text(l.slo) OPERATOR(pg_catalog.||) ')'
               OPERATOR(pg_catalog.||) CASE WHEN l.paused THEN ', replay paused' ELSE '' END) AS reasons
      FROM pgmart._replica_lag() l
     WHERE l.age OPERATOR(pg_catalog.>) l.slo
), refreshed AS (
    SELECT u.root, pg_catalog.min(r.refreshed_at) AS refreshed_at, pg_catalog.bool_or(r.refreshed_at IS NULL) AS never
      FROM up u JOIN pgmart._node_refreshed r ON r.key OPERATOR(pg_catalog.=) u.key
     GROUP BY u.root
)
SELECT n.name AS object, n.kind,
       CASE WHEN coalesce(v.failures, 0) OPERATOR(pg_catalog.>) 0 THEN 'fail'
            WHEN coalesce(v.warnings, 0) OPERATOR(pg_catalog.>) 0 OR lag.reasons IS NOT NULL THEN 'warn' ELSE 'ok' END AS status,
       coalesce(lag.reasons, '{}'::pg_catalog.text[]) OPERATOR(pg_catalog.||) coalesce(v.reasons, '{}'::pg_catalog.text[]) AS reasons,
       coalesce(v.failures, 0)::pg_catalog.int4 AS failures,
       (coalesce(v.warnings, 0) OPERATOR(pg_catalog.+) coalesce(pg_catalog.cardinality(lag.reasons), 0))::pg_catalog.int4 AS warnings,
       CASE WHEN rf.never THEN NULL ELSE rf.refreshed_at END AS last_refreshed_at,
       pg_catalog.concat_ws(', ',
           CASE WHEN rf.never THEN 'never refreshed'
                WHEN rf.refreshed_at IS NOT NULL THEN 'last refreshed ' OPERATOR(pg_catalog.||)
                     pgmart._age_text(pg_catalog.now() OPERATOR(pg_catalog.-) rf.refreshed_at) OPERATOR(pg_catalog.||) ' ago' END,
           CASE WHEN coalesce(v.failures, 0) OPERATOR(pg_catalog.>) 0
                THEN v.failures::pg_catalog.text OPERATOR(pg_catalog.||) CASE WHEN v.failures OPERATOR(pg_catalog.=) 1 THEN ' failure' ELSE ' failures' END END,
           CASE WHEN coalesce(v.warnings, 0) OPERATOR(pg_catalog.+) coalesce(pg_catalog.cardinality(lag.reasons), 0) OPERATOR(pg_catalog.>) 0
                THEN (coalesce(v.warnings, 0) OPERATOR(pg_catalog.+) coalesce(pg_catalog.cardinality(lag.reasons), 0))::pg_catalog.text
                     OPERATOR(pg_catalog.||) CASE WHEN coalesce(v.warnings, 0) OPERATOR(pg_catalog.+) coalesce(pg_catalog.cardinality(lag.reasons), 0)
                                                       OPERATOR(pg_catalog.=) 1 THEN ' warning' ELSE ' warnings' END END)
       OPERATOR(pg_catalog.||) coalesce(': ' OPERATOR(pg_catalog.||) coalesce(lag.reasons[1], v.reasons[1]), '') AS summary,
       CASE WHEN n.kind OPERATOR(pg_catalog.=) 'metric' THEN (SELECT m.owner FROM pgmart.metric m WHERE ('m:' OPERATOR(pg_catalog.||) m.name) OPERATOR(pg_catalog.=) n.key)
                   WHEN n.kind OPERATOR(pg_catalog.=) 'dashboard' THEN (SELECT d.owner FROM pgmart.dashboard d WHERE ('d:' OPERATOR(pg_catalog.||) d.name) OPERATOR(pg_catalog.=) n.key)
                   ELSE (SELECT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c
                          WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.substr(n.key, 2)::pg_catalog.oid) END AS owner
  FROM nodes n
  CROSS JOIN lag
  LEFT JOIN verdict v ON v.root OPERATOR(pg_catalog.=) n.key
  LEFT JOIN refreshed rf ON rf.root OPERATOR(pg_catalog.=) n.key
 WHERE n.kind OPERATOR(pg_catalog.<>) ALL (ARRAY['function', 'dropped']::pg_catalog.text[]);
COMMENT ON VIEW pgmart.trust IS 'Can I trust this right now? One row per dashboard, metric and object in your lineage graph: ok, warn or fail, with the reasons (its own and everything upstream, each named), the oldest refresh upstream, a one-line summary, and its owner.';

-- The dashboards downstream of a relation, with their owners (for alert payloads; runs as the
-- caller, and alerts are raised as pgmart's owner, which sees every dashboard).
CREATE FUNCTION pgmart._dashboards_downstream(rel oid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
WITH RECURSIVE e AS MATERIALIZED (SELECT up_key, down_key, down_kind FROM pgmart._lineage_edge),
down(key) AS (SELECT pgmart._node_key(rel) UNION SELECT e.down_key FROM down d JOIN e ON e.up_key OPERATOR(pg_catalog.=) d.key)
SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('name', db.name, 'owner', db.owner, 'url', db.url) ORDER BY db.name)
  FROM pgmart.dashboard db
 WHERE ('d:' OPERATOR(pg_catalog.||) db.name) OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT d.key FROM down d))
$$;
