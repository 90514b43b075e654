CREATE VIEW pgmart._table_health_v WITH (security_barrier) AS
WITH RECURSIVE
s AS (
    SELECT h.*,
           current_setting('block_size')::double precision AS bs,
           current_setting('autovacuum') = 'on' AND current_setting('track_counts') = 'on' AS av_on,
           current_setting('autovacuum_vacuum_threshold')::double precision AS g_vt,
           current_setting('autovacuum_vacuum_scale_factor')::double precision AS g_vs,
           current_setting('autovacuum_analyze_threshold')::double precision AS g_at,
           current_setting('autovacuum_analyze_scale_factor')::double precision AS g_as,
           CASE WHEN current_setting('autovacuum_vacuum_max_threshold', true) <> '' THEN current_setting('autovacuum_vacuum_max_threshold', true)::double precision END AS g_vmax,
           current_setting('server_version_num')::integer >= 180000 AS has_analyze_only,
           pg_has_role('pg_read_all_stats', 'USAGE') AS see_all,
           pg_stat_get_db_stat_reset_time(d.oid) AS stats_reset
      FROM (SELECT h0.* FROM pgmart._health_settings() h0 LIMIT 1) h
      CROSS JOIN pg_database d
     WHERE d.datname = current_database()
),
rel AS (
    SELECT c.oid, c.relkind, c.relowner, c.relpages, c.reltuples, c.reloptions, c.reltoastrelid,
           c.relrowsecurity, n.nspname,
           quote_ident(n.nspname::text) || '.' || quote_ident(c.relname::text) AS qname
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = ANY ('{r,m,p}'::"char"[])
       AND n.nspname <> ALL ('{pg_catalog,information_schema}'::name[])
       AND n.nspname !~ '^pg_(toast|temp_)'
       AND ((SELECT s.see_all FROM s) OR pg_has_role(c.relowner, 'USAGE')
            OR has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER'))
),
-- Autovacuum's trigger points for each table, its own storage parameters first.
tbl AS (
    SELECT r.*, o.*,
           coalesce(o.o_vt, s.g_vt) + (coalesce(o.o_vs, s.g_vs) * greatest(r.reltuples, 0)) AS vac_raw,
           coalesce(o.o_at, s.g_at) + (coalesce(o.o_as, s.g_as) * greatest(r.reltuples, 0)) AS analyze_at,
           coalesce(o.o_vs, s.g_vs) AS eff_vs, coalesce(o.o_as, s.g_as) AS eff_as,
           coalesce(o.o_vmax, s.g_vmax) AS eff_vmax,
           pg_stat_get_live_tuples(r.oid) AS live, pg_stat_get_dead_tuples(r.oid) AS dead,
           pg_stat_get_mod_since_analyze(r.oid) AS mods,
           pg_stat_get_last_vacuum_time(r.oid) AS last_vacuum,
           pg_stat_get_last_autovacuum_time(r.oid) AS last_autovacuum,
           pg_stat_get_last_analyze_time(r.oid) AS last_analyze,
           pg_stat_get_last_autoanalyze_time(r.oid) AS last_autoanalyze,
           (SELECT tc.relpages FROM pg_class tc WHERE tc.oid = r.reltoastrelid) AS toast_pages
      FROM rel r
      CROSS JOIN s
      LEFT JOIN LATERAL (
          SELECT max(x.option_value) FILTER (WHERE x.option_name = 'autovacuum_enabled') AS o_enabled,
                 max(x.option_value) FILTER (WHERE x.option_name = 'autovacuum_vacuum_threshold')::double precision AS o_vt,
                 max(x.option_value) FILTER (WHERE x.option_name = 'autovacuum_vacuum_scale_factor')::double precision AS o_vs,
                 max(x.option_value) FILTER (WHERE x.option_name = 'autovacuum_analyze_threshold')::double precision AS o_at,
                 max(x.option_value) FILTER (WHERE x.option_name = 'autovacuum_analyze_scale_factor')::double precision AS o_as,
                 max(x.option_value) FILTER (WHERE x.option_name = 'autovacuum_vacuum_max_threshold')::double precision AS o_vmax,
                 max(x.option_value) FILTER (WHERE x.option_name = 'fillfactor')::double precision AS o_ff
            FROM pg_options_to_table(r.reloptions) x
           WHERE r.reloptions IS NOT NULL
      ) o ON true
),
-- Average row width from the column statistics (the caller's view of them: columns it may read),
-- for the tables big enough to be worth an estimate (ioguix/pgsql-bloat-estimation).
tw AS (
    SELECT t.oid, w.*
      FROM tbl t
      CROSS JOIN s
      CROSS JOIN LATERAL (
          SELECT 23 + CASE WHEN max(coalesce(st.stanullfrac, 0)) > 0 THEN (7 + count(*)) / 8 ELSE 0 END AS hdr,
                 sum((1 - coalesce(st.stanullfrac, 0)) * coalesce(st.stawidth, 0)) AS width,
                 bool_or(a.atttypid = 'pg_catalog.name'::regtype) OR count(*) <> count(st.starelid) AS is_na,
                 bool_or(st.stawidth > 1000) AS wide
            FROM pg_attribute a
            LEFT JOIN pg_statistic st
                   ON st.starelid = a.attrelid AND st.staattnum = a.attnum AND NOT st.stainherit
                  AND has_column_privilege(a.attrelid, a.attnum, 'SELECT')
                  AND NOT (t.relrowsecurity AND row_security_active(t.oid))
           WHERE a.attrelid = t.oid AND a.attnum > 0 AND NOT a.attisdropped
      ) w
     WHERE t.relkind <> 'p' AND t.relpages >= s.min_pages
),
tb AS (
    SELECT t.oid, w.is_na OR t.reltuples < 0 AS is_na, w.wide,
           t.relpages + coalesce(tc.relpages, 0) AS pages,
           ceil(greatest(t.reltuples, 0) / ((s.bs - 24) * coalesce(t.o_ff, 100)
                / ((4 + w.hdr + w.width + 16
                    - CASE WHEN (w.hdr % 8) = 0 THEN 8 ELSE (w.hdr % 8) END
                    - CASE WHEN (ceil(w.width)::integer % 8) = 0 THEN 8 ELSE (ceil(w.width)::integer % 8) END) * 100)))
             + ceil(greatest(coalesce(tc.reltuples, 0), 0) / 4) AS expected
      FROM tbl t
      CROSS JOIN s
      JOIN tw w ON w.oid = t.oid
      LEFT JOIN pg_class tc ON tc.oid = t.reltoastrelid
),
-- Partitioned parents: their leaf partitions hold the rows and the statistics counters.
tree AS (
    SELECT t.oid AS root, t.oid AS relid, t.last_analyze AS root_analyzed FROM (
        SELECT x.oid, greatest(x.last_analyze, x.last_autoanalyze) AS last_analyze FROM tbl x WHERE x.relkind = 'p') t
    UNION ALL
    SELECT tr.root, h.inhrelid, tr.root_analyzed
      FROM tree tr JOIN pg_inherits h ON h.inhparent = tr.relid
),
leaf AS (
    SELECT tr.root,
           count(*) AS partitions,
           sum(greatest(c.reltuples, 0)) AS rows,
           sum(pg_stat_get_live_tuples(c.oid)) AS live,
           sum(pg_stat_get_dead_tuples(c.oid)) AS dead,
           sum(c.relpages + coalesce(tc.relpages, 0)) * max(s.bs) AS size,
           -- Rows changed since the parent was analyzed (a lower bound): what the partitions
           -- have not analyzed yet, plus at least a trigger point's worth for each partition
           -- autovacuum analyzed since.
           sum(pg_stat_get_mod_since_analyze(c.oid)
               + CASE WHEN pg_stat_get_last_autoanalyze_time(c.oid) > coalesce(tr.root_analyzed, '-infinity')
                      THEN s.g_at + (s.g_as * greatest(c.reltuples, 0)) ELSE 0 END) AS changed
      FROM tree tr
      CROSS JOIN s
      JOIN pg_class c ON c.oid = tr.relid AND c.relkind = 'r'
      LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
     GROUP BY tr.root
),
idx AS (
    SELECT i.indexrelid, i.indrelid, t.qname AS table_qname, t.nspname, ic.relname, ic.relpages, ic.reltuples,
           ic.reloptions, ic.relam = 403 AS btree, i.indnatts, i.indkey, i.indisunique, i.indisprimary,
           i.indisexclusion, i.indisreplident, i.indisvalid, t.relrowsecurity,
           quote_ident(t.nspname::text) || '.' || quote_ident(ic.relname::text) AS qname,
           pg_stat_get_numscans(i.indexrelid) AS scans,
           ic.relpages * s.bs AS size,
           i.indrelid = ANY (SELECT k.conrelid FROM pg_constraint k WHERE k.contype = 'f')
           AND EXISTS (SELECT 1 FROM pg_constraint k
                    WHERE k.conrelid = i.indrelid AND k.contype = 'f'
                      AND k.conkey <@ (i.indkey::smallint[])[0:cardinality(k.conkey) - 1]) AS for_fk,
           EXISTS (SELECT 1 FROM pg_constraint k
                    WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid
                      AND k.contype = ANY ('{p,u,x}'::"char"[])) AS for_constraint,
           count(*) OVER w AS copies,
           first_value(i.indexrelid) OVER (w ORDER BY i.indisprimary DESC, i.indisunique DESC, i.indisreplident DESC,
                                                      i.indexrelid) AS kept,
           NOT i.indisvalid AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                                             WHERE p.index_relid = i.indexrelid) AS invalid
      FROM pg_index i
      CROSS JOIN s
      JOIN tbl t ON t.oid = i.indrelid AND t.relkind <> 'p'
      JOIN pg_class ic ON ic.oid = i.indexrelid AND ic.relkind = 'i'
    WINDOW w AS (PARTITION BY i.indrelid, i.indkey::text, i.indclass::text, i.indcollation::text, i.indoption::text,
                              CASE WHEN i.indexprs IS NULL THEN '' ELSE pg_get_expr(i.indexprs, i.indrelid) END,
                              CASE WHEN i.indpred IS NULL THEN '' ELSE pg_get_expr(i.indpred, i.indrelid) END)
),
-- Average B-tree entry width, from the statistics of the table's columns (or of the index's own
-- expression columns).
iw AS (
    SELECT x.indexrelid, w.*
      FROM idx x
      CROSS JOIN s
      CROSS JOIN LATERAL (
          SELECT CASE WHEN max(coalesce(st.stanullfrac, 0)) = 0 THEN 8 ELSE 12 END AS hdr,
                 sum((1 - coalesce(st.stanullfrac, 0)) * coalesce(st.stawidth, 1024)) AS width,
                 count(*) <> count(st.starelid) OR bool_or(a.atttypid = 'pg_catalog.name'::regtype) AS is_na
            FROM generate_series(1, x.indnatts) AS k(pos)
            CROSS JOIN LATERAL (SELECT x.indkey[k.pos - 1] AS attnum) key
            JOIN pg_attribute a
              ON a.attrelid = CASE WHEN key.attnum = 0 THEN x.indexrelid ELSE x.indrelid END
             AND a.attnum = CASE WHEN key.attnum = 0 THEN k.pos ELSE key.attnum END
            LEFT JOIN pg_statistic st
                   ON st.starelid = a.attrelid AND st.staattnum = a.attnum AND NOT st.stainherit
                  AND CASE WHEN key.attnum = 0 THEN has_table_privilege(x.indrelid, 'SELECT')
                           ELSE has_column_privilege(x.indrelid, key.attnum, 'SELECT') END
                  AND NOT (x.relrowsecurity AND row_security_active(x.indrelid))
      ) w
     WHERE x.btree AND x.relpages >= s.min_pages AND x.indisvalid
),
ib AS (
    SELECT x.indexrelid, w.is_na OR x.reltuples < 0 AS is_na, x.relpages AS pages,
           1 + ceil(greatest(x.reltuples, 0)
                    / floor((s.bs - 16 - 24)
                            * coalesce(substring(array_to_string(x.reloptions, ' '), 'fillfactor=([0-9]+)')::double precision, 90)
                            / (100 * (4 + w.hdr + 8 - CASE WHEN (w.hdr % 8) = 0 THEN 8 ELSE (w.hdr % 8) END
                                      + w.width + 8
                                      - CASE WHEN w.width = 0 THEN 8 WHEN (w.width::integer % 8) = 0 THEN 8
                                             ELSE (w.width::integer % 8) END)))) AS expected
      FROM idx x
      CROSS JOIN s
      JOIN iw w ON w.indexrelid = x.indexrelid
),
-- One row per table, partitioned parent and index, with what is wrong with it.
obj AS (
    SELECT t.oid AS relid, NULL::oid AS indexrelid,
           CASE WHEN t.relkind = 'r' THEN 'table' WHEN t.relkind = 'm' THEN 'materialized view' ELSE 'partitioned table' END AS kind,
           t.relowner, t.qname,
           CASE WHEN t.relkind = 'p' THEN l.size ELSE (t.relpages + coalesce(t.toast_pages, 0)) * s.bs END AS size_bytes,
           CASE WHEN t.relkind = 'p' THEN l.live ELSE t.live END AS live,
           CASE WHEN t.relkind = 'p' THEN l.dead ELSE t.dead END AS dead,
           CASE WHEN t.relkind = 'p' THEN l.changed ELSE t.mods END AS mods,
           CASE WHEN t.relkind = 'p' THEN NULL ELSE least(t.vac_raw, CASE WHEN t.eff_vmax >= 0 THEN t.eff_vmax ELSE t.vac_raw END) END AS vacuum_at,
           CASE WHEN t.relkind = 'p' THEN s.g_at + (s.g_as * coalesce(l.rows, 0)) ELSE t.analyze_at END AS analyze_at,
           t.last_vacuum, t.last_autovacuum, t.last_analyze, t.last_autoanalyze,
           NULL::bigint AS scans,
           CASE WHEN NOT b.is_na AND b.pages > 0 THEN greatest(b.pages - b.expected, 0) / b.pages END AS bloat_ratio,
           CASE WHEN NOT b.is_na THEN (greatest(b.pages - b.expected, 0) * s.bs)::bigint END AS bloat_bytes,
           b.is_na AS bloat_is_na,
           b.wide,
           t.relkind, t.relpages, t.reltuples, t.o_enabled, t.eff_vs, t.eff_as,
           l.partitions,
           coalesce(l.rows, 0) AS part_rows,
           NULL::boolean AS unused, NULL::oid AS dup_of, NULL::boolean AS invalid
      FROM tbl t
      CROSS JOIN s
      LEFT JOIN tb b ON b.oid = t.oid
      LEFT JOIN leaf l ON l.root = t.oid
    UNION ALL
    SELECT x.indrelid, x.indexrelid, 'index', NULL, x.qname, x.size,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           x.scans,
           CASE WHEN NOT b.is_na AND b.pages > 0 THEN greatest(b.pages - b.expected, 0) / b.pages END,
           CASE WHEN NOT b.is_na THEN (greatest(b.pages - b.expected, 0) * s.bs)::bigint END,
           b.is_na, NULL,
           'i', x.relpages, x.reltuples, NULL, NULL, NULL, NULL, NULL,
           x.scans = 0 AND NOT (x.indisunique OR x.indisprimary OR x.indisexclusion OR x.indisreplident OR x.for_fk)
               AND x.indisvalid AND x.size >= s.unused_index_min_bytes,
           CASE WHEN x.copies > 1 AND x.kept <> x.indexrelid AND NOT x.for_constraint THEN x.kept END,
           x.invalid
      FROM idx x
      CROSS JOIN s
      LEFT JOIN ib b ON b.indexrelid = x.indexrelid
),
graded AS (
    SELECT o.*,
           CASE WHEN (o.live + o.dead) > 0 THEN o.dead::double precision / (o.live + o.dead) END AS dead_ratio,
           CASE WHEN o.o_enabled = 'false' THEN 'autovacuum is disabled for this table'
                WHEN NOT s.av_on THEN 'autovacuum (or track_counts) is off'
           END AS av_off,
           o.relkind <> 'i' AND o.reltuples >= s.tuning_min_rows AND (o.eff_vs > 0.01 OR o.eff_as > 0.005) AS f_tune,
           o.relkind = ANY ('{r,m}'::"char"[]) AND o.last_analyze IS NULL AND o.last_autoanalyze IS NULL
               AND o.reltuples < 0 AND (o.relpages > 0 OR o.live > 0) AS f_never,
           o.relkind = ANY ('{r,m}'::"char"[]) AND (o.last_analyze IS NOT NULL OR o.last_autoanalyze IS NOT NULL)
               AND o.mods > (s.stale_factor * o.analyze_at) AS f_stale,
           o.relkind = 'p' AND o.last_analyze IS NULL AND o.last_autoanalyze IS NULL AND o.part_rows > 0 AS f_pnever,
           o.relkind = 'p' AND (o.last_analyze IS NOT NULL OR o.last_autoanalyze IS NOT NULL)
               AND o.mods > o.analyze_at AS f_pstale,
           CASE WHEN o.relkind = 'i' AND NOT coalesce(o.invalid, false) AND o.bloat_ratio >= s.bloat_ratio_fail THEN 2
                WHEN o.relkind = 'i' AND NOT coalesce(o.invalid, false) AND o.bloat_ratio >= s.bloat_ratio THEN 1
                ELSE 0 END AS f_ibloat,
           CASE WHEN o.relkind = ANY ('{r,m}'::"char"[]) AND o.bloat_ratio >= s.bloat_ratio_fail THEN 2
                WHEN o.relkind = ANY ('{r,m}'::"char"[]) AND o.bloat_ratio >= s.bloat_ratio THEN 1
                ELSE 0 END AS f_bloat
      FROM obj o CROSS JOIN s
),
flagged AS (
    SELECT g.*,
           CASE WHEN g.relkind = ANY ('{r,m}'::"char"[]) AND g.relpages >= s.min_pages AND g.dead_ratio >= s.dead_ratio_fail THEN 2
                WHEN g.relkind = ANY ('{r,m}'::"char"[]) AND g.relpages >= s.min_pages AND g.dead_ratio >= s.dead_ratio THEN 1
                ELSE 0 END AS f_dead,
           coalesce(g.unused AND g.dup_of IS NULL, false) AS f_unused,
           coalesce(g.invalid, false) AS f_invalid
      FROM graded g CROSS JOIN s
),
ranked AS (
    SELECT f.*,
           greatest(f.f_dead, f.f_bloat, f.f_ibloat,
                    CASE WHEN f.f_invalid THEN 2 WHEN f.f_never OR f.f_stale OR f.f_pnever OR f.f_pstale OR f.f_unused
                              OR f.dup_of IS NOT NULL THEN 1 ELSE 0 END) AS worst
      FROM flagged f
),
-- Text only for the rows that need it.
worded AS (
    SELECT coalesce(r.indexrelid, r.relid) AS key,
           array_remove(ARRAY[
               CASE WHEN r.f_invalid THEN 'invalid_index' END,
               CASE WHEN r.f_never OR r.f_pnever THEN 'never_analyzed' END,
               CASE WHEN r.f_stale OR r.f_pstale THEN 'stale_statistics' END,
               CASE WHEN r.f_dead > 0 THEN 'dead_tuples' END,
               CASE WHEN r.f_bloat > 0 THEN 'bloat' END,
               CASE WHEN r.f_ibloat > 0 THEN 'index_bloat' END,
               CASE WHEN r.dup_of IS NOT NULL THEN 'duplicate_index' END,
               CASE WHEN r.f_unused THEN 'unused_index' END,
               CASE WHEN r.f_tune THEN 'autovacuum_tuning' END], NULL) AS problems,
           array_to_string(ARRAY[
               CASE WHEN r.f_invalid THEN 'invalid index (a CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY that failed): it slows writes and is never used' END,
               CASE WHEN r.f_never THEN 'never analyzed, so the planner guesses its row counts'
                    || coalesce(' (' || r.av_off || ')', ' (autovacuum analyzes it after ' || r.analyze_at::bigint || ' changed rows)') END,
               CASE WHEN r.f_pnever THEN 'partitioned table never analyzed (autovacuum analyzes only its partitions, never the partitioned table)' END,
               CASE WHEN r.f_stale THEN 'stale statistics: ' || r.mods::bigint || ' rows changed since the last analyze at '
                    || greatest(r.last_analyze, r.last_autoanalyze)::text || ' (autoanalyze is due at '
                    || r.analyze_at::bigint || coalesce('; ' || r.av_off, '') || ')' END,
               CASE WHEN r.f_pstale THEN 'stale statistics: at least ' || r.mods::bigint || ' rows of its ' || r.partitions
                    || ' partitions changed since it was last analyzed at ' || greatest(r.last_analyze, r.last_autoanalyze)::text
                    || ' (autovacuum never analyzes a partitioned table)' END,
               CASE WHEN r.f_dead > 0 THEN round((100 * r.dead_ratio)::numeric, 1) || '% of its rows are dead (' || r.dead::bigint
                    || ' dead; autovacuum vacuums at ' || r.vacuum_at::bigint
                    || coalesce('; ' || r.av_off, '; last vacuum ' || greatest(r.last_vacuum, r.last_autovacuum)::text, '; never vacuumed')
                    || ')' END,
               CASE WHEN r.f_bloat > 0 OR r.f_ibloat > 0 THEN 'estimated ' || round((100 * r.bloat_ratio)::numeric) || '% bloat ('
                    || pg_size_pretty(r.bloat_bytes) || ' of ' || pg_size_pretty(r.size_bytes::bigint) || ')' END,
               CASE WHEN r.dup_of IS NOT NULL THEN 'duplicate of index ' || r.dup_of::regclass::text
                    || ' (same columns, operator classes and predicate)' END,
               CASE WHEN r.f_unused THEN 'never scanned since statistics were reset' || coalesce(' at ' || s.stats_reset::text, '')
                    || ' (' || pg_size_pretty(r.size_bytes::bigint) || '; a standby counts its own scans: check there first)' END,
               CASE WHEN r.f_tune THEN 'large table (' || r.reltuples::bigint || ' rows) on autovacuum settings that wait for '
                    || r.vacuum_at::bigint || ' dead rows and ' || r.analyze_at::bigint || ' changed rows' END], '; ') AS reason,
           array_to_string(ARRAY[
               CASE WHEN r.f_invalid OR (r.f_ibloat > 0 AND r.dup_of IS NULL AND NOT r.f_unused) THEN 'REINDEX INDEX CONCURRENTLY ' || r.qname || ';' END,
               CASE WHEN (r.f_never OR r.f_stale OR r.f_pnever OR r.f_pstale) AND r.f_dead = 0 THEN r.analyze_cmd END,
               CASE WHEN r.f_dead > 0 THEN 'VACUUM (ANALYZE) ' || r.qname || ';' END,
               CASE WHEN r.f_bloat > 0 AND r.f_dead = 0 THEN 'VACUUM (FULL, ANALYZE) ' || r.qname
                    || ';  -- rewrites the table under an ACCESS EXCLUSIVE lock (pg_repack does it online)' END,
               CASE WHEN (r.dup_of IS NOT NULL OR r.f_unused) AND NOT r.f_invalid THEN 'DROP INDEX CONCURRENTLY ' || r.qname || ';' END,
               CASE WHEN r.f_tune THEN 'ALTER TABLE ' || r.qname || ' SET (' || r.tune_list || ');' END], E'\n') AS suggestion,
           CASE WHEN r.f_tune THEN string_to_array(replace(r.tune_list, ' = ', '='), ', ') ELSE '{}' END AS suggested_settings
      FROM (
          SELECT r.*,
                 CASE WHEN s.has_analyze_only AND r.relkind = 'p' THEN 'ANALYZE ONLY ' ELSE 'ANALYZE ' END || r.qname || ';' AS analyze_cmd,
                 array_to_string(array_remove(ARRAY[
                     CASE WHEN r.eff_vs > 0.01 THEN 'autovacuum_vacuum_scale_factor = 0.01' END,
                     CASE WHEN r.eff_as > 0.005 THEN 'autovacuum_analyze_scale_factor = 0.005' END], NULL), ', ') AS tune_list
            FROM ranked r CROSS JOIN s
           WHERE r.worst > 0 OR r.f_tune
      ) r
      CROSS JOIN s
)
SELECT r.relid::regclass AS relid,
       r.indexrelid::regclass AS index,
       r.kind,
       pg_get_userbyid(r.relowner) AS owner,
       r.size_bytes::bigint AS size_bytes,
       r.live::bigint AS live_tuples,
       r.dead::bigint AS dead_tuples,
       round(r.dead_ratio::numeric, 4)::double precision AS dead_ratio,
       r.mods::bigint AS mod_since_analyze,
       r.vacuum_at::bigint AS autovacuum_at,
       r.analyze_at::bigint AS autoanalyze_at,
       r.last_vacuum, r.last_autovacuum, r.last_analyze, r.last_autoanalyze,
       r.scans AS index_scans,
       round(r.bloat_ratio::numeric, 4)::double precision AS bloat_ratio,
       r.bloat_bytes,
       r.bloat_is_na,
       CASE WHEN r.bloat_is_na THEN 'no estimate: statistics are missing (never analyzed, or columns you may not read)'
            WHEN r.wide THEN 'wide or TOASTed values are not modelled: the estimate may be off'
            WHEN r.bloat_ratio IS NOT NULL AND r.relkind = 'i' THEN 'statistics-based estimate (B-tree deduplication is not modelled)'
            WHEN r.bloat_ratio IS NOT NULL THEN 'statistics-based estimate (alignment padding counts as bloat)'
       END AS bloat_caveat,
       coalesce(wd.problems, '{}') AS problems,
       CASE WHEN r.worst = 2 THEN 'fail' WHEN r.worst = 1 THEN 'warn' ELSE 'ok' END AS status,
       CASE WHEN wd.reason <> '' THEN wd.reason END AS reason,
       CASE WHEN wd.suggestion <> '' THEN wd.suggestion END AS suggestion,
       coalesce(wd.suggested_settings, '{}') AS suggested_settings,
       s.stats_reset
  FROM ranked r
  CROSS JOIN s
  LEFT JOIN worded wd ON wd.key = coalesce(r.indexrelid, r.relid);
