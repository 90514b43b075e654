-- pgmart 0.1.0 -> 0.2.0, first part: the tables. Owners move from role names to anchors, three
-- tables get singular names (the plural names become the filtered views readers use), and alerts,
-- results and refresh history learn whose they are. Nothing is deleted but columns that are
-- carried over into anchors first.

-- Every registration must have an owner that still exists: 0.1.0 kept role names, so a role
-- dropped or renamed since left registrations that would otherwise run as nobody knows whom.
-- Refuse (nothing has changed yet) and say which, rather than guess.
DO $upgrade$
DECLARE
    missing text;
BEGIN
    SELECT pg_catalog.string_agg(what, '; ' ORDER BY what) INTO missing FROM (
        SELECT pg_catalog.format('job %s %L (owner %I)', j.job_id, j.name, j.owner) AS what
          FROM pgmart.job j
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) j.owner)
        UNION ALL
        SELECT pg_catalog.format('check %s %L (owner %I)', c.check_id, c.name, c.owner)
          FROM pgmart."check" c
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) c.owner)
        UNION ALL
        SELECT pg_catalog.format('alert rule %s %L (owner %I)', a.rule_id, a.name, a.owner)
          FROM pgmart.alert_rules a
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) a.owner)
        UNION ALL
        SELECT pg_catalog.format('metric %L (registered by %I)', m.name, m.registered_by)
          FROM pgmart.metric m
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) m.registered_by)
    ) orphans;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'object_not_in_prerequisite_state',
            MESSAGE = 'pgmart cannot update: some registrations belong to roles that no longer exist',
            DETAIL = missing,
            HINT = 'Create those roles again (CREATE ROLE ... NOLOGIN), or as a superuser give the registrations '
                   'to an existing role (for example UPDATE pgmart.job SET owner = ''etl'' WHERE job_id = 3), '
                   'then run ALTER EXTENSION pgmart UPDATE again.';
    END IF;
END
$upgrade$;

-- Singular table names; their constraints, keys and sequences follow.
ALTER TABLE pgmart.alerts RENAME TO alert;
ALTER SEQUENCE pgmart.alerts_alert_id_seq RENAME TO alert_alert_id_seq;
ALTER INDEX pgmart.alerts_pkey RENAME TO alert_pkey;
ALTER TABLE pgmart.alert RENAME CONSTRAINT alerts_severity_check TO alert_severity_check;
ALTER TABLE pgmart.check_results RENAME TO check_result;
ALTER SEQUENCE pgmart.check_results_result_id_seq RENAME TO check_result_result_id_seq;
ALTER INDEX pgmart.check_results_pkey RENAME TO check_result_pkey;
ALTER TABLE pgmart.check_result RENAME CONSTRAINT check_results_status_check TO check_result_status_check;
ALTER TABLE pgmart.metric_versions RENAME TO metric_version;
ALTER INDEX pgmart.metric_versions_pkey RENAME TO metric_version_pkey;

-- New columns (in the order a fresh install has them).
ALTER TABLE pgmart.job
    ADD COLUMN anchor regclass,
    ADD COLUMN slot_origin timestamptz CHECK (pg_catalog.isfinite(slot_origin)),
    ADD COLUMN timeout interval CHECK (timeout OPERATOR(pg_catalog.>=) '0'::interval);
ALTER TABLE pgmart.alert
    ADD COLUMN rule_id bigint,
    ADD COLUMN job_id bigint,
    ADD COLUMN check_id bigint,
    ADD COLUMN owner oid,
    ADD COLUMN resolved_at timestamptz,
    ADD COLUMN updated_at timestamptz;
ALTER TABLE pgmart.refresh_history ADD COLUMN owner oid;
ALTER TABLE pgmart.refresh_view ADD COLUMN after_upstream boolean NOT NULL DEFAULT true;
ALTER TABLE pgmart.alert_rules ADD COLUMN anchor regclass, ADD COLUMN relation regclass;
ALTER TABLE pgmart.metric ADD COLUMN anchor regclass, ADD COLUMN source_name text;
ALTER TABLE pgmart."check" ADD COLUMN anchor regclass, ADD COLUMN target_name text;
-- The qualified names registrations follow (a relation re-created under one takes them back).
UPDATE pgmart.metric m SET source_name = pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.'
       OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE c.oid OPERATOR(pg_catalog.=) m.source;
UPDATE pgmart."check" k SET target_name = pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.'
       OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
 WHERE c.oid OPERATOR(pg_catalog.=) k.target;
ALTER TABLE pgmart.check_result ADD COLUMN owner oid;

-- Anchors: one contentless materialized view per registration, owned by its registrant (see
-- src/owners.rs), made here exactly as pgmart 0.2.0 makes them.
CREATE SCHEMA pgmart_owners;

-- Metrics: each protection view moves to its own schema under the metric's name, leaving
-- pgmart_metrics to the browsable views (made in the last part, by pgmart._install_metric_views).
CREATE SCHEMA pgmart_metric_columns;
DO $upgrade$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT m.name FROM pgmart.metric m
              WHERE pg_catalog.to_regclass(pg_catalog.format('%I.%I', 'pgmart_metrics', 'metric_' OPERATOR(pg_catalog.||) m.name)) IS NOT NULL
    LOOP
        EXECUTE pg_catalog.format('ALTER VIEW %I.%I SET SCHEMA pgmart_metric_columns', 'pgmart_metrics', 'metric_' OPERATOR(pg_catalog.||) r.name);
        EXECUTE pg_catalog.format('ALTER VIEW %I.%I RENAME TO %I', 'pgmart_metric_columns', 'metric_' OPERATOR(pg_catalog.||) r.name, r.name);
    END LOOP;
END
$upgrade$;

DO $upgrade$
DECLARE
    r record;
    anchor_name text;
BEGIN
    FOR r IN
        SELECT 'job' AS prefix, j.job_id::pg_catalog.text AS id, j.owner::pg_catalog.text AS owner,
               pg_catalog.format('pgmart job %s: %s', j.job_id, j.name) AS note
          FROM pgmart.job j
        UNION ALL
        SELECT 'check', c.check_id::pg_catalog.text, c.owner::pg_catalog.text, pg_catalog.format('pgmart check %s', c.name)
          FROM pgmart."check" c
        UNION ALL
        SELECT 'rule', a.rule_id::pg_catalog.text, a.owner::pg_catalog.text, pg_catalog.format('pgmart alert rule %s', a.name)
          FROM pgmart.alert_rules a
        UNION ALL
        SELECT 'metric', m.name, m.registered_by::pg_catalog.text, pg_catalog.format('pgmart metric %s', m.name)
          FROM pgmart.metric m
    LOOP
        anchor_name := pg_catalog.format('%I.%I', 'pgmart_owners', r.prefix OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) r.id);
        EXECUTE pg_catalog.format('CREATE MATERIALIZED VIEW %s AS SELECT WITH NO DATA', anchor_name);
        EXECUTE pg_catalog.format('ALTER MATERIALIZED VIEW %s OWNER TO %I', anchor_name, r.owner);
        -- Made inside the update script, the anchor would be a member of the extension: it is not
        -- one (pg_dump carries it, with its owner), it only goes with the extension.
        EXECUTE pg_catalog.format('ALTER EXTENSION pgmart DROP MATERIALIZED VIEW %s', anchor_name);
        EXECUTE pg_catalog.format('ALTER MATERIALIZED VIEW %s DEPENDS ON EXTENSION pgmart', anchor_name);
        EXECUTE pg_catalog.format('COMMENT ON MATERIALIZED VIEW %s IS %L', anchor_name, r.note);
        IF r.prefix OPERATOR(pg_catalog.=) 'job' THEN
            UPDATE pgmart.job SET anchor = anchor_name::pg_catalog.regclass WHERE job_id OPERATOR(pg_catalog.=) r.id::pg_catalog.int8;
        ELSIF r.prefix OPERATOR(pg_catalog.=) 'check' THEN
            UPDATE pgmart."check" SET anchor = anchor_name::pg_catalog.regclass WHERE check_id OPERATOR(pg_catalog.=) r.id::pg_catalog.int8;
        ELSIF r.prefix OPERATOR(pg_catalog.=) 'rule' THEN
            UPDATE pgmart.alert_rules SET anchor = anchor_name::pg_catalog.regclass WHERE rule_id OPERATOR(pg_catalog.=) r.id::pg_catalog.int8;
        ELSE
            UPDATE pgmart.metric SET anchor = anchor_name::pg_catalog.regclass WHERE name OPERATOR(pg_catalog.=) r.id;
        END IF;
    END LOOP;
END
$upgrade$;
ALTER TABLE pgmart.job ALTER COLUMN anchor SET NOT NULL;
ALTER TABLE pgmart.alert_rules ALTER COLUMN anchor SET NOT NULL;
ALTER TABLE pgmart.metric ALTER COLUMN anchor SET NOT NULL;
ALTER TABLE pgmart."check" ALTER COLUMN anchor SET NOT NULL;
CREATE INDEX job_anchor_idx ON pgmart.job (anchor);

-- Jobs: a next run at ±infinity (0.1.0 let one through) becomes now, or a pause; interval slots
-- count from the next run, so a job keeps its time of day.
UPDATE pgmart.job SET enabled = false, next_run_at = pg_catalog.now()
 WHERE next_run_at OPERATOR(pg_catalog.=) 'infinity'::pg_catalog.timestamptz;
UPDATE pgmart.job SET next_run_at = pg_catalog.now() WHERE NOT pg_catalog.isfinite(next_run_at);
UPDATE pgmart.job SET slot_origin = coalesce(next_run_at, created_at);
-- A schedule 0.1.0 read as an interval but 0.2.0 reads as cron (a bare number, a cron typo such as
-- '*/15 * * *', which 0.1.0 ran every 15 seconds) is written as the interval it has been running on.
UPDATE pgmart.job SET schedule = schedule::pg_catalog.interval::pg_catalog.text
 WHERE schedule OPERATOR(pg_catalog.!~) '^\s*@'
   AND NOT (pg_catalog.btrim(schedule) OPERATOR(pg_catalog.~) '^\S+\s+\S+\s+\S+\s+\S+\s+\S+$'
            AND pg_catalog.split_part(pg_catalog.btrim(schedule), ' ', 1) OPERATOR(pg_catalog.~) '^[0-9*,/-]+$'
            AND pg_catalog.split_part(pg_catalog.regexp_replace(pg_catalog.btrim(schedule), '\s+', ' ', 'g'), ' ', 2)
                OPERATOR(pg_catalog.~) '^[0-9*,/-]+$')
   AND (schedule OPERATOR(pg_catalog.~) '[*/,]' OR schedule OPERATOR(pg_catalog.~) '[0-9]-[0-9]'
        OR pg_catalog.btrim(schedule) OPERATOR(pg_catalog.~) '^[0-9-]+(\s+[0-9-]+){1,6}$'
        OR pg_catalog.btrim(schedule) OPERATOR(pg_catalog.~) '^[0-9.]+$');
ALTER TABLE pgmart.job ADD CONSTRAINT job_next_run_at_check CHECK (pg_catalog.isfinite(next_run_at));
ALTER TABLE pgmart.job_run DROP CONSTRAINT job_run_status_check,
    ADD CONSTRAINT job_run_status_check
        CHECK (status OPERATOR(pg_catalog.=) ANY (ARRAY['queued', 'running', 'succeeded', 'failed', 'retrying', 'interrupted', 'skipped']::pg_catalog.text[]));
-- A partition set goes with its job.
ALTER TABLE pgmart.partition_set ADD COLUMN analyzed_fingerprint bigint;
ALTER TABLE pgmart.partition_set DROP CONSTRAINT partition_set_job_id_fkey,
    ADD CONSTRAINT partition_set_job_id_fkey FOREIGN KEY (job_id) REFERENCES pgmart.job (job_id) ON DELETE CASCADE;

-- Alert rules: the table their triggers are on (where the triggers are, else the name they gave).
UPDATE pgmart.alert_rules a
   SET relation = coalesce(
         (SELECT t.tgrelid::pg_catalog.regclass FROM pg_catalog.pg_trigger t
           WHERE t.tgname OPERATOR(pg_catalog.=) ('pgmart_alert_' OPERATOR(pg_catalog.||) a.rule_id)::pg_catalog.name
             AND t.tgfoid OPERATOR(pg_catalog.=) 'pgmart._alert_fire()'::pg_catalog.regprocedure
             AND t.tgparentid OPERATOR(pg_catalog.=) 0::pg_catalog.oid
           LIMIT 1),
         pg_catalog.to_regclass(a.target));

-- Whose each alert, result and refresh is (readers see their own through the views).
UPDATE pgmart.alert al SET rule_id = r.rule_id, owner = (SELECT o.oid FROM pg_catalog.pg_roles o WHERE o.rolname OPERATOR(pg_catalog.=) r.owner)
  FROM pgmart.alert_rules r
 WHERE al.source_kind OPERATOR(pg_catalog.=) 'rule' AND r.name OPERATOR(pg_catalog.=) al.source_name;
UPDATE pgmart.alert al SET check_id = c.check_id, owner = (SELECT o.oid FROM pg_catalog.pg_roles o WHERE o.rolname OPERATOR(pg_catalog.=) c.owner)
  FROM pgmart."check" c
 WHERE al.source_kind OPERATOR(pg_catalog.=) 'check'
   AND c.check_id OPERATOR(pg_catalog.=) pg_catalog.jsonb_extract_path_text(al.payload, 'check_id')::pg_catalog.int8;
UPDATE pgmart.alert al SET job_id = j.job_id, owner = (SELECT o.oid FROM pg_catalog.pg_roles o WHERE o.rolname OPERATOR(pg_catalog.=) j.owner)
  FROM pgmart.job j
 WHERE al.source_kind OPERATOR(pg_catalog.<>) 'rule' AND al.check_id IS NULL
   AND (j.job_id OPERATOR(pg_catalog.=) pg_catalog.jsonb_extract_path_text(al.payload, 'job_id')::pg_catalog.int8
        OR (al.source_kind OPERATOR(pg_catalog.=) 'refresh' AND pg_catalog.jsonb_extract_path_text(al.payload, 'job_id') IS NULL
            AND j.job_id OPERATOR(pg_catalog.=) (SELECT v.job_id FROM pgmart.refresh_view v WHERE v.view_name OPERATOR(pg_catalog.=) al.source_name))
        OR (al.source_kind OPERATOR(pg_catalog.=) 'partition_set' AND pg_catalog.jsonb_extract_path_text(al.payload, 'job_id') IS NULL
            AND j.job_id OPERATOR(pg_catalog.=) (SELECT s.job_id FROM pgmart.partition_set s
                                                    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.parent
                                                   WHERE al.source_name OPERATOR(pg_catalog.=) ANY (ARRAY[s.parent::pg_catalog.text, c.relname::pg_catalog.text])
                                                   LIMIT 1)));
UPDATE pgmart.check_result cr SET owner = (SELECT o.oid FROM pg_catalog.pg_roles o WHERE o.rolname OPERATOR(pg_catalog.=) c.owner)
  FROM pgmart."check" c
 WHERE c.check_id OPERATOR(pg_catalog.=) cr.check_id;
UPDATE pgmart.refresh_history h SET owner = (SELECT o.oid FROM pg_catalog.pg_roles o WHERE o.rolname OPERATOR(pg_catalog.=) v.owner)
  FROM pgmart.refresh_view v
 WHERE v.view OPERATOR(pg_catalog.=) h.view_oid::pg_catalog.regclass;

-- Open alerts are those neither acknowledged nor resolved.
DROP INDEX pgmart.alerts_open_dedup_idx;
CREATE UNIQUE INDEX alerts_open_dedup_idx ON pgmart.alert (dedup_key)
    WHERE acked_at IS NULL AND resolved_at IS NULL AND dedup_key IS NOT NULL;
DROP INDEX pgmart.alerts_open_idx;
CREATE INDEX alerts_open_idx ON pgmart.alert (raised_at) WHERE acked_at IS NULL AND resolved_at IS NULL;

-- 0.1.0 asked teams to grant themselves access to pgmart's tables; from 0.2.0 they read the
-- filtered views, and nobody but the extension's owner has any privilege on a table of pgmart's.
DO $upgrade$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT c.oid::pg_catalog.regclass AS rel, c.relkind, x.grantee
          FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) x
         WHERE c.relnamespace OPERATOR(pg_catalog.=) 'pgmart'::pg_catalog.regnamespace
           AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'S']::pg_catalog."char"[])
           AND x.grantee OPERATOR(pg_catalog.<>) c.relowner
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %s %s FROM %s',
                                  CASE WHEN r.relkind OPERATOR(pg_catalog.=) 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, r.rel,
                                  CASE WHEN r.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid THEN 'PUBLIC'
                                       ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(r.grantee)::pg_catalog.text) END);
    END LOOP;
END
$upgrade$;

-- Routines: a grant to a role on an internal function goes (0.2.0 runs none of them for anyone);
-- and what a DBA took from PUBLIC on 0.1.0 (say, schedule_sql) stays taken after the update
-- re-grants PUBLIC what a fresh install grants it (remembered here, revoked again at the end).
DO $upgrade$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.oid::pg_catalog.regprocedure AS fn, x.grantee
          FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) x
         WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pgmart'::pg_catalog.regnamespace
           AND p.proname OPERATOR(pg_catalog.~) '^_'
           AND x.grantee OPERATOR(pg_catalog.<>) p.proowner AND x.grantee OPERATOR(pg_catalog.<>) 0::pg_catalog.oid
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON ROUTINE %s FROM %I', r.fn, pg_catalog.pg_get_userbyid(r.grantee));
    END LOOP;
    PERFORM pg_catalog.set_config('pgmart_upgrade.not_public', coalesce(pg_catalog.string_agg(o.what, ','), ''), true)
       FROM (SELECT DISTINCT 'routine:' OPERATOR(pg_catalog.||) p.proname::pg_catalog.text AS what
               FROM pg_catalog.pg_proc p
              WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pgmart'::pg_catalog.regnamespace
                AND p.proname OPERATOR(pg_catalog.!~) '^_'
                AND NOT pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE')
             UNION ALL
             SELECT 'view:' OPERATOR(pg_catalog.||) c.relname::pg_catalog.text
               FROM pg_catalog.pg_class c
              WHERE c.relnamespace OPERATOR(pg_catalog.=) 'pgmart'::pg_catalog.regnamespace
                AND c.relname OPERATOR(pg_catalog.=) ANY (ARRAY['jobs', 'job_runs', 'refresh_runs', 'metrics']::pg_catalog.name[])
                AND NOT pg_catalog.has_table_privilege('public', c.oid, 'SELECT')) o;
END
$upgrade$;

-- Rollups (new in 0.2.0): their catalog and invalidation log, as sql/rollups.sql makes them.
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
CREATE TABLE pgmart.rollup_invalidation (
    job_id    bigint NOT NULL,
    lo        timestamptz NOT NULL,
    hi        timestamptz NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX rollup_invalidation_job_idx ON pgmart.rollup_invalidation (job_id);

-- Health (new in 0.2.0): the health job kind, tables registered for maintenance and the
-- pg_stat_statements samples, as sql/jobs.sql and sql/health.sql make them.
ALTER TABLE pgmart.job DROP CONSTRAINT job_kind_check,
    ADD CONSTRAINT job_kind_check
        CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['sql', 'partition_maintenance', 'refresh', 'check_suite', 'rollup', 'snapshot', 'health']::pg_catalog.text[]));
CREATE TABLE pgmart.maintained_table (
    relid             regclass PRIMARY KEY,
    vacuum            boolean NOT NULL,
    reindex_bloated   boolean NOT NULL,
    autovacuum_tuning boolean NOT NULL,
    tuned             jsonb NOT NULL DEFAULT '{}'::pg_catalog.jsonb,
    registered_by     oid NOT NULL,
    registered_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_maintained_at timestamptz,
    last_actions      jsonb
);
COMMENT ON TABLE pgmart.maintained_table IS 'Tables the health job maintains (read them through pgmart.maintained_tables; change them through pgmart.maintain_table/unmaintain_table).';
SELECT pg_catalog.pg_extension_config_dump('pgmart.maintained_table', '');
CREATE TABLE pgmart.query_sample (
    sampled_at  timestamptz NOT NULL,
    userid      oid NOT NULL,
    queryid     bigint NOT NULL,
    toplevel    boolean NOT NULL,
    calls       bigint NOT NULL,
    total_ms    double precision NOT NULL,
    rows        bigint NOT NULL,
    blks_read   bigint NOT NULL,
    dashboard   text
);
CREATE INDEX query_sample_key_idx ON pgmart.query_sample (userid, queryid, toplevel, sampled_at);
COMMENT ON TABLE pgmart.query_sample IS 'pg_stat_statements counters sampled by the health job, pruned after pgmart.history_retention (read through pgmart.query_health).';
-- Dashboards (new in 0.2.0): their catalog, as sql/dashboards.sql makes it.
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
-- Layers (new in 0.2.0): their catalog, as sql/layers.sql makes it.
CREATE TABLE pgmart.layer_set (
    mart_schema    text PRIMARY KEY,
    raw_schema     text NOT NULL UNIQUE,
    staging_schema text NOT NULL UNIQUE,
    ingest_role    text NOT NULL,
    transform_role text NOT NULL,
    bi_role        text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    checked_at     timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE pgmart.layer_set IS 'pgmart layer sets (read them through pgmart.layers; change them with pgmart.create_layers() and pgmart.drop_layers()).';

-- Labels on relations: 'pii' on a column, 'client_facing' on a table (column_name '').
CREATE TABLE pgmart.access_label (
    label_id      bigserial PRIMARY KEY,
    relation      regclass NOT NULL,
    column_name   text NOT NULL DEFAULT '',
    label         text NOT NULL CHECK (label OPERATOR(pg_catalog.=) ANY (ARRAY['pii', 'client_facing']::pg_catalog.text[])),
    -- The relation's owner when it was labelled: a relation re-created under the label's name by a
    -- role with that owner's rights takes the label back (src/follow.rs).
    owner         oid NOT NULL,
    labelled_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- The relation's qualified name.
    relation_name text NOT NULL,
    UNIQUE (relation, column_name, label),
    CHECK ((label OPERATOR(pg_catalog.=) 'pii') OPERATOR(pg_catalog.=) (column_name OPERATOR(pg_catalog.<>) ''))
);
COMMENT ON TABLE pgmart.access_label IS 'pgmart access labels (read them through pgmart.access_labels; change them with pgmart.label_pii() and pgmart.label_client_facing()).';

-- Tables kept per tenant by isolate_tenants: the policy's deparsed text, to tell a policy edited
-- by hand from pgmart's own.
CREATE TABLE pgmart.tenant_table (
    relation      regclass PRIMARY KEY,
    tenant_column name NOT NULL,
    setting       text NOT NULL,
    bi_role       text NOT NULL,
    policy_qual   text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE pgmart.tenant_table IS 'pgmart tenant-isolated tables (read them through pgmart.access_labels; change them with pgmart.isolate_tenants()).';

SELECT pg_catalog.pg_extension_config_dump('pgmart.layer_set', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.access_label', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.access_label_label_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgmart.tenant_table', '');

-- The access check kind (new in 0.2.0).
ALTER TABLE pgmart."check" DROP CONSTRAINT check_kind_check,
    ADD CONSTRAINT check_kind_check
        CHECK (kind OPERATOR(pg_catalog.=) ANY (ARRAY['unique', 'not_null', 'accepted_values', 'relationships', 'expression',
                                 'range', 'row_count', 'freshness', 'schema', 'access']::pg_catalog.text[]));
-- Snapshots (new in 0.2.0): their catalog and frozen periods, as sql/snapshots.sql makes them.
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
CREATE TABLE pgmart.snapshot_period (
    job_id   bigint NOT NULL REFERENCES pgmart.snapshot (job_id) ON DELETE CASCADE,
    period   date NOT NULL,
    rows     bigint NOT NULL,
    taken_at timestamptz NOT NULL,
    PRIMARY KEY (job_id, period)
);
