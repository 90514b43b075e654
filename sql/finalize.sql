-- Runs last in CREATE EXTENSION: triggers and comments that need the Rust functions to exist.
-- (Extension scripts run with client_min_messages raised to WARNING, hence a WARNING below.)

CREATE FUNCTION pgmart._job_changed() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pgmart._wake_scheduler();
    RETURN NULL;
END $$;
CREATE TRIGGER job_changed AFTER INSERT OR UPDATE OF schedule, timezone, enabled, next_run_at ON pgmart.job
    FOR EACH STATEMENT EXECUTE FUNCTION pgmart._job_changed();

COMMENT ON FUNCTION pgmart.schedule_sql IS
  'Schedule a SQL statement to run as its owner (the caller, or run_as) on an interval or cron schedule in a time zone; returns the job id.';
COMMENT ON FUNCTION pgmart.refresh_due IS
  'Run every due pgmart job the caller may act as, each in a subtransaction with lock_timeout; one row per job run.';
COMMENT ON FUNCTION pgmart.run_job(bigint) IS 'Run one job now, whatever its schedule, and record the run.';
COMMENT ON FUNCTION pgmart.run_job(text) IS 'Run the job of this name now, whatever its schedule, and record the run.';
COMMENT ON FUNCTION pgmart.pause_job(bigint) IS 'Disable a job; it keeps its history and can be resumed.';
COMMENT ON FUNCTION pgmart.pause_job(text) IS 'Disable the job of this name; it keeps its history and can be resumed.';
COMMENT ON FUNCTION pgmart.resume_job(bigint) IS 'Enable a paused job; it next runs at its next scheduled time.';
COMMENT ON FUNCTION pgmart.resume_job(text) IS 'Enable the paused job of this name; it next runs at its next scheduled time.';
COMMENT ON FUNCTION pgmart.alter_job(bigint, text, text, integer, text, boolean, text, text, interval) IS
  'Change a job''s schedule, time zone, retries, backoff, enabled flag, name, time limit or (sql jobs) command.';
COMMENT ON FUNCTION pgmart.alter_job(text, text, text, integer, text, boolean, text, text, interval) IS
  'Change the schedule, time zone, retries, backoff, enabled flag, name, time limit or (sql jobs) command of the job of this name.';
COMMENT ON FUNCTION pgmart.drop_job(bigint) IS 'Delete a sql job and its history.';
COMMENT ON FUNCTION pgmart.drop_job(text) IS 'Delete the sql job of this name and its history.';
COMMENT ON FUNCTION pgmart.schedule(text, text, text) IS
  'pg_cron''s cron.schedule(job_name, schedule, command): make a sql job of that name, or give the caller''s job of that name this schedule and command; returns the job id.';
COMMENT ON FUNCTION pgmart.schedule(text, text) IS
  'pg_cron''s cron.schedule(schedule, command): make a sql job named after its command; returns the job id.';
COMMENT ON FUNCTION pgmart.unschedule(text) IS 'pg_cron''s cron.unschedule(job_name): drop the caller''s job of that name.';
COMMENT ON FUNCTION pgmart.unschedule(bigint) IS 'pg_cron''s cron.unschedule(job_id): drop a job.';
COMMENT ON FUNCTION pgmart.worker_status IS
  'The background workers of each database as the launcher sees them: scheduler, running and waiting jobs, the parallel-job limit, and any problem (for example, no worker slots left).';
COMMENT ON FUNCTION pgmart._wake_scheduler IS 'Internal: wake this database''s pgmart scheduler when the transaction commits.';
COMMENT ON FUNCTION pgmart._wake_launcher IS 'Internal: wake the pgmart launcher when the transaction commits.';
COMMENT ON FUNCTION pgmart._job_changed IS 'Internal: trigger that wakes the scheduler after a job change.';

-- metrics
COMMENT ON FUNCTION pgmart.register_metric IS
  'Register (or re-register as a new version) a metric: an aggregate over a source the caller owns, with owner, description, time column, dimensions, filter and default grain (left NULL on a registered metric: unchanged); returns the version.';
COMMENT ON FUNCTION pgmart.deprecate_metric IS 'Mark a metric deprecated, optionally naming the metric that replaces it; it keeps working with a NOTICE.';
COMMENT ON FUNCTION pgmart.drop_metric IS 'Remove a metric and its views (its version history is kept).';
COMMENT ON FUNCTION pgmart.metric_sql(text, timestamptz, timestamptz, text, text[], text) IS
  'The exact SQL pgmart.metric_values runs for these arguments, with every value a quoted literal, for a BI tool or dbt model to embed.';
COMMENT ON FUNCTION pgmart.metric_sql(text[], timestamptz, timestamptz, text, text[], text) IS
  'The exact SQL pgmart.metric_values runs for several metrics over the same buckets, with every value a quoted literal.';
COMMENT ON FUNCTION pgmart.metric_values(text, timestamptz, timestamptz, text, text[], text) IS
  'A metric''s series as the caller: one row per time bucket (aligned in the time zone) and dimension combination, empty buckets included: bucket_start, bucket_local, is_partial, dimension_values, value, and a ratio''s numerator and denominator.';
COMMENT ON FUNCTION pgmart.metric_values(text[], timestamptz, timestamptz, text, text[], text) IS
  'Several metrics over the same buckets, as the caller: one row per metric, time bucket and dimension combination (the columns of the one-metric form, after metric).';

DO $$
BEGIN
    IF pg_catalog.current_setting('shared_preload_libraries') OPERATOR(pg_catalog.!~) '(^|[ ,])pgmart($|[ ,])' THEN
        RAISE WARNING 'pgmart is not in shared_preload_libraries, so nothing runs on its own: call SELECT pgmart.refresh_due() from cron or your BI tool, or add pgmart to shared_preload_libraries and restart';
    END IF;
END $$;


-- refresh
COMMENT ON FUNCTION pgmart.schedule_refresh IS
  'Refresh a materialized view on an interval or cron schedule (in a time zone) as a job, after its scheduled upstream views; concurrently NULL picks CONCURRENTLY when possible; registering a view again updates it. Returns the job id.';
COMMENT ON FUNCTION pgmart.unschedule_refresh IS 'Stop refreshing a materialized view on a schedule (its refresh history is kept).';
COMMENT ON FUNCTION pgmart.refresh_now IS
  'Refresh a materialized view now, then its scheduled downstream views in dependency order, each once; records every refresh and returns one row per view.';
-- alerts
COMMENT ON FUNCTION pgmart.add_alert_rule IS
  'Raise an alert (a row in pgmart.alerts, then NOTIFY channel) for every row inserted (or, with on_update, updated to match) into target that satisfies condition; returns the rule id.';
COMMENT ON FUNCTION pgmart.drop_alert_rule IS 'Drop an alert rule and its triggers; its alerts stay in pgmart.alerts.';
COMMENT ON FUNCTION pgmart.ack_alert IS 'Acknowledge an open alert with an optional note; false if it was already acknowledged.';
-- The alert triggers' C functions (declared here so they live in schema pgmart).
CREATE FUNCTION pgmart._alert_fire() RETURNS trigger LANGUAGE c AS 'MODULE_PATHNAME', '_alert_fire_wrapper';
CREATE FUNCTION pgmart._alert_flush() RETURNS trigger LANGUAGE c AS 'MODULE_PATHNAME', '_alert_flush_wrapper';
COMMENT ON FUNCTION pgmart._alert_fire IS 'Internal: row trigger of alert rules (runs only for rows matching the rule''s WHEN condition).';
COMMENT ON FUNCTION pgmart._alert_flush IS 'Internal: statement trigger of alert rules; sends the summary of alerts over pgmart.alert_notify_limit.';

-- Alerts: each role sees those of the roles whose rights it has. An alert belongs to the current
-- owner of the rule, job or check that raised it, or, when that is gone, to its owner at the time.
CREATE VIEW pgmart.alerts WITH (security_barrier) AS
SELECT al.alert_id, al.raised_at, al.source_kind, al.source_name, al.severity, al.target, al.payload,
       al.dedup_key, al.acked_at, al.ack_note, al.acked_by, al.rule_id, al.job_id, al.check_id, al.resolved_at,
       al.updated_at
  FROM pgmart.alert al
  LEFT JOIN pgmart.alert_rules r ON r.rule_id OPERATOR(pg_catalog.=) al.rule_id
  LEFT JOIN pgmart.job j ON j.job_id OPERATOR(pg_catalog.=) al.job_id
  LEFT JOIN pgmart."check" c ON c.check_id OPERATOR(pg_catalog.=) al.check_id
  LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) coalesce(r.anchor, c.anchor, j.anchor)
 WHERE pg_catalog.pg_has_role(coalesce(a.relowner, al.owner, 10::pg_catalog.oid), 'USAGE'::pg_catalog.text);
COMMENT ON VIEW pgmart.alerts IS 'Every alert of your rules, jobs and checks, open, resolved or acknowledged (closed ones are pruned after pgmart.history_retention).';

CREATE VIEW pgmart.open_alerts WITH (security_barrier) AS
SELECT a.alert_id, a.raised_at, a.source_kind, a.source_name, a.severity, a.target, a.payload, a.rule_id
  FROM pgmart.alerts a
 WHERE a.acked_at IS NULL AND a.resolved_at IS NULL;
COMMENT ON VIEW pgmart.open_alerts IS 'Your alerts not yet acknowledged (rule and health alerts), newest last; acknowledge with pgmart.ack_alert().';
GRANT SELECT ON pgmart.alerts, pgmart.open_alerts TO PUBLIC;
-- checks
COMMENT ON FUNCTION pgmart.add_check IS
  'Register a data-quality check (unique, not_null, accepted_values, relationships, expression, range, row_count, freshness, schema, access) on a table, optionally on a schedule; returns the check id.';
COMMENT ON FUNCTION pgmart.drop_check IS 'Delete a check by name (its suite job goes with its last check); its results stay in pgmart.check_results.';
COMMENT ON FUNCTION pgmart.run_checks IS
  'Run all checks (or one table''s) now, each table''s checks fused into one statement on one snapshot; one row per check, stored in pgmart.check_results.';
-- The aggregates that compute unique and relationships checks inside the fused row scan (src/checks/agg.rs).
CREATE FUNCTION pgmart._dup_trans(internal, bigint) RETURNS internal LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_dup_trans';
CREATE FUNCTION pgmart._dup_combine(internal, internal) RETURNS internal LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_dup_combine';
CREATE FUNCTION pgmart._dup_serial(internal) RETURNS bytea LANGUAGE c STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_dup_serial';
CREATE FUNCTION pgmart._dup_deserial(bytea, internal) RETURNS internal LANGUAGE c STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_dup_deserial';
CREATE FUNCTION pgmart._dup_final(internal) RETURNS jsonb LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_dup_final';
CREATE AGGREGATE pgmart.duplicate_keys(bigint) (
  SFUNC = pgmart._dup_trans, STYPE = internal, FINALFUNC = pgmart._dup_final, FINALFUNC_MODIFY = READ_WRITE,
  COMBINEFUNC = pgmart._dup_combine, SERIALFUNC = pgmart._dup_serial, DESERIALFUNC = pgmart._dup_deserial,
  PARALLEL = SAFE);
CREATE FUNCTION pgmart._orphan_trans(internal, bigint, bigint[]) RETURNS internal LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_orphan_trans';
CREATE FUNCTION pgmart._orphan_combine(internal, internal) RETURNS internal LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_orphan_combine';
CREATE FUNCTION pgmart._orphan_serial(internal) RETURNS bytea LANGUAGE c STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_orphan_serial';
CREATE FUNCTION pgmart._orphan_deserial(bytea, internal) RETURNS internal LANGUAGE c STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_orphan_deserial';
CREATE FUNCTION pgmart._orphan_final(internal) RETURNS jsonb LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_orphan_final';
CREATE AGGREGATE pgmart.orphan_keys(bigint, bigint[]) (
  SFUNC = pgmart._orphan_trans, STYPE = internal, FINALFUNC = pgmart._orphan_final,
  COMBINEFUNC = pgmart._orphan_combine, SERIALFUNC = pgmart._orphan_serial, DESERIALFUNC = pgmart._orphan_deserial,
  PARALLEL = SAFE);
CREATE FUNCTION pgmart._smallest_trans(internal, bigint) RETURNS internal LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_trans';
CREATE FUNCTION pgmart._smallest_tid_trans(internal, tid) RETURNS internal LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_tid_trans';
CREATE FUNCTION pgmart._smallest_combine(internal, internal) RETURNS internal LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_combine';
CREATE FUNCTION pgmart._smallest_serial(internal) RETURNS bytea LANGUAGE c STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_serial';
CREATE FUNCTION pgmart._smallest_deserial(bytea, internal) RETURNS internal LANGUAGE c STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_deserial';
CREATE FUNCTION pgmart._smallest_final(internal) RETURNS jsonb LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_final';
CREATE FUNCTION pgmart._smallest_tid_final(internal) RETURNS jsonb LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_tid_final';
CREATE AGGREGATE pgmart.smallest_keys(bigint) (
  SFUNC = pgmart._smallest_trans, STYPE = internal, FINALFUNC = pgmart._smallest_final,
  COMBINEFUNC = pgmart._smallest_combine, SERIALFUNC = pgmart._smallest_serial, DESERIALFUNC = pgmart._smallest_deserial,
  PARALLEL = SAFE);
CREATE AGGREGATE pgmart.smallest_keys(tid) (
  SFUNC = pgmart._smallest_tid_trans, STYPE = internal, FINALFUNC = pgmart._smallest_tid_final,
  COMBINEFUNC = pgmart._smallest_combine, SERIALFUNC = pgmart._smallest_serial, DESERIALFUNC = pgmart._smallest_deserial,
  PARALLEL = SAFE);
CREATE FUNCTION pgmart._smallest_text_trans(internal, text) RETURNS internal LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_text_trans';
CREATE FUNCTION pgmart._smallest_text_combine(internal, internal) RETURNS internal LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_text_combine';
CREATE FUNCTION pgmart._smallest_text_serial(internal) RETURNS bytea LANGUAGE c STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_text_serial';
CREATE FUNCTION pgmart._smallest_text_deserial(bytea, internal) RETURNS internal LANGUAGE c STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_text_deserial';
CREATE FUNCTION pgmart._smallest_text_final(internal) RETURNS jsonb LANGUAGE c PARALLEL SAFE AS 'MODULE_PATHNAME', 'pgmart_smallest_text_final';
CREATE AGGREGATE pgmart.smallest_values(text) (
  SFUNC = pgmart._smallest_text_trans, STYPE = internal, FINALFUNC = pgmart._smallest_text_final,
  COMBINEFUNC = pgmart._smallest_text_combine, SERIALFUNC = pgmart._smallest_text_serial,
  DESERIALFUNC = pgmart._smallest_text_deserial, PARALLEL = SAFE);
COMMENT ON AGGREGATE pgmart.smallest_values(text) IS
  'The 5 smallest distinct non-null values in byte order, as a jsonb array (parallel safe; as cheap as min). Samples of accepted_values and range checks.';
COMMENT ON FUNCTION pgmart._smallest_text_trans IS 'Internal: transition function of pgmart.smallest_values.';
COMMENT ON FUNCTION pgmart._smallest_text_combine IS 'Internal: combine function of pgmart.smallest_values (parallel query).';
COMMENT ON FUNCTION pgmart._smallest_text_serial IS 'Internal: serialize function of pgmart.smallest_values (parallel query).';
COMMENT ON FUNCTION pgmart._smallest_text_deserial IS 'Internal: deserialize function of pgmart.smallest_values (parallel query).';
COMMENT ON FUNCTION pgmart._smallest_text_final IS 'Internal: final function of pgmart.smallest_values.';
COMMENT ON AGGREGATE pgmart.smallest_keys(bigint) IS
  'The 5 smallest distinct non-null keys, as a jsonb array (parallel safe; as cheap as min). Samples of row-level checks.';
COMMENT ON AGGREGATE pgmart.smallest_keys(tid) IS
  'The 5 smallest distinct ctids, as a jsonb array of ''(block,offset)'' texts (parallel safe; as cheap as min). Samples of row-level checks on tables without a primary key.';
COMMENT ON FUNCTION pgmart._smallest_trans IS 'Internal: transition function of pgmart.smallest_keys(bigint).';
COMMENT ON FUNCTION pgmart._smallest_tid_trans IS 'Internal: transition function of pgmart.smallest_keys(tid).';
COMMENT ON FUNCTION pgmart._smallest_combine IS 'Internal: combine function of pgmart.smallest_keys (parallel query).';
COMMENT ON FUNCTION pgmart._smallest_serial IS 'Internal: serialize function of pgmart.smallest_keys (parallel query).';
COMMENT ON FUNCTION pgmart._smallest_deserial IS 'Internal: deserialize function of pgmart.smallest_keys (parallel query).';
COMMENT ON FUNCTION pgmart._smallest_final IS 'Internal: final function of pgmart.smallest_keys(bigint).';
COMMENT ON FUNCTION pgmart._smallest_tid_final IS 'Internal: final function of pgmart.smallest_keys(tid).';
COMMENT ON AGGREGATE pgmart.duplicate_keys(bigint) IS
  'Integer keys that occur more than once: {"rows": non-null keys, "duplicates": rows beyond the first of each key, "sample": up to 5 duplicated keys}. One sort in memory at the end; parallel safe. Used by unique checks.';
COMMENT ON AGGREGATE pgmart.orphan_keys(bigint, bigint[]) IS
  'Integer keys missing from a set of parent keys (the second argument, read once): {"rows": non-null keys, "orphans": rows whose key is missing, "sample": up to 5 such keys}. Parallel safe. Used by relationships checks.';
COMMENT ON FUNCTION pgmart._dup_trans IS 'Internal: transition function of pgmart.duplicate_keys.';
COMMENT ON FUNCTION pgmart._dup_combine IS 'Internal: combine function of pgmart.duplicate_keys (parallel query).';
COMMENT ON FUNCTION pgmart._dup_serial IS 'Internal: serialize function of pgmart.duplicate_keys (parallel query).';
COMMENT ON FUNCTION pgmart._dup_deserial IS 'Internal: deserialize function of pgmart.duplicate_keys (parallel query).';
COMMENT ON FUNCTION pgmart._dup_final IS 'Internal: final function of pgmart.duplicate_keys.';
COMMENT ON FUNCTION pgmart._orphan_trans IS 'Internal: transition function of pgmart.orphan_keys.';
COMMENT ON FUNCTION pgmart._orphan_combine IS 'Internal: combine function of pgmart.orphan_keys (parallel query).';
COMMENT ON FUNCTION pgmart._orphan_serial IS 'Internal: serialize function of pgmart.orphan_keys (parallel query).';
COMMENT ON FUNCTION pgmart._orphan_deserial IS 'Internal: deserialize function of pgmart.orphan_keys (parallel query).';
COMMENT ON FUNCTION pgmart._orphan_final IS 'Internal: final function of pgmart.orphan_keys.';
-- partitions
COMMENT ON FUNCTION pgmart.create_partition_set IS
  'Manage a table partitioned by range on a date/timestamp/timestamptz column: create partitions aligned in the set''s time zone from start_at (or now) up to premake periods ahead of now, a default partition, and a maintenance job (returned) that keeps it rolling and applies retention.';
COMMENT ON FUNCTION pgmart.run_partition_maintenance IS
  'Maintain one partition set (or every set you may act as) now: create missing partitions ahead, rescue rows from the default partition, apply retention; each set in its own subtransaction with lock_timeout.';
CREATE PROCEDURE pgmart.run_partition_maintenance_proc() LANGUAGE plpgsql AS $proc$
DECLARE
  p pg_catalog.text;
BEGIN
  -- One set per transaction: a set's lock is released as soon as it is done (CALL it outside a
  -- transaction block; inside one, COMMIT is refused and the run stops with an error).
  -- (A procedure that commits cannot pin search_path with SET: everything here is qualified.)
  FOR p IN SELECT s.parent FROM pgmart.partition_sets s
            WHERE s.last_status IS NULL OR s.last_status OPERATOR(pg_catalog.<>) 'dropped' ORDER BY s.parent LOOP
    PERFORM pgmart.run_partition_maintenance(p::pg_catalog.regclass);
    COMMIT;
  END LOOP;
END
$proc$;
COMMENT ON PROCEDURE pgmart.run_partition_maintenance_proc IS
  'Maintain every partition set the caller may act as, committing after each set so that no set''s lock is held while the others run (pg_partman''s run_maintenance_proc). Results are in pgmart.partition_sets.';
COMMENT ON FUNCTION pgmart.drop_partition_set IS 'Stop managing a table''s partitions (its partitions and data stay) and delete its maintenance job.';
COMMENT ON FUNCTION pgmart.partitions IS 'The partitions of a table in time order, with their catalog bounds, size and estimated rows.';
COMMENT ON FUNCTION pgmart._bound_epoch IS 'Internal: a range partition bound as epoch seconds of the column type.';
COMMENT ON FUNCTION pgmart._partition_bounds IS 'Internal: every partition of a table with its catalog bounds.';
COMMENT ON FUNCTION pgmart._now_epoch IS 'Internal: now as epoch seconds of the column type in a time zone.';

-- health
COMMENT ON FUNCTION pgmart.schedule_health IS
  'Schedule the health job (one per name; again with the same name changes it): alerts on tables and indexes at alert_level (fail or warn), ANALYZE of partitioned tables whose partitions changed, maintenance of the tables registered with pgmart.maintain_table, and pg_stat_statements samples for pgmart.query_health. Returns the job id.';
COMMENT ON FUNCTION pgmart.maintain_table IS
  'Ask the health job to maintain a table you own: VACUUM (ANALYZE) it when its dead rows pass pgmart.health_dead_ratio, REINDEX INDEX CONCURRENTLY its bloated B-tree indexes, and (autovacuum_tuning) apply the autovacuum settings pgmart.table_health suggests, recording the previous values. Calling it again changes the choices.';
COMMENT ON FUNCTION pgmart.unmaintain_table IS 'Stop maintaining a table; the storage parameters the health job set on it are put back (unless changed since).';
COMMENT ON FUNCTION pgmart._health_settings IS 'Internal: the thresholds pgmart.table_health judges by (its GUCs), as one row.';
COMMENT ON FUNCTION pgmart._table_health IS 'Internal: the rows of pgmart.table_health, read without JIT.';
COMMENT ON FUNCTION pgmart._query_health IS 'Internal: the rows of pgmart.query_health, as the caller sees pg_stat_statements.';
-- layers
COMMENT ON FUNCTION pgmart.create_layers IS
  'Create or adopt the raw, staging and mart schemas and the ingest, transform and BI group roles (NOLOGIN), and make every privilege least: ingest writes raw, transform reads raw and staging and writes staging and mart, BI reads mart (not its PII columns) and pgmart''s BI surface, PUBLIC nothing; default privileges for objects made later. Idempotent; runs as the caller; one row per change.';
COMMENT ON FUNCTION pgmart.drop_layers IS 'Forget a layer set (by its mart schema); its schemas, roles and privileges stay as they are.';
COMMENT ON FUNCTION pgmart.access_report IS
  'One row per role, layer schema or object and privilege that matters, with a violation flag and its reason (BI reading raw or staging, a role other than transform writing mart, a PII column the BI role can read, a client-facing table without forced row-level security); only rows about roles or objects whose rights you have.';
COMMENT ON FUNCTION pgmart.label_pii IS 'Label columns of a relation you own as PII (the BI role may not read them); returns how many labels were added.';
COMMENT ON FUNCTION pgmart.unlabel_pii IS 'Remove the PII label from columns of a relation you own; returns how many labels were removed.';
COMMENT ON FUNCTION pgmart.label_client_facing IS 'Label a relation you own client-facing (or not, with false): access_report then requires forced row-level security on it. True when the label changed.';
COMMENT ON FUNCTION pgmart.isolate_tenants IS
  'Enable and force row-level security on a table you own, with a policy letting the BI role read only the rows whose tenant column equals current_setting(setting) (none when unset) and one letting its owner (and transform) read and write all; labels it client-facing. Idempotent; one row per change.';

-- Owners: when a registration's anchor goes (DROP OWNED BY, or by hand), so does the registration.
CREATE FUNCTION pgmart._on_sql_drop() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    names text[];
BEGIN
    SELECT pg_catalog.array_agg(d.object_name) INTO names
      FROM pg_catalog.pg_event_trigger_dropped_objects() d
     WHERE d.schema_name OPERATOR(pg_catalog.=) 'pgmart_owners'
       AND d.object_type OPERATOR(pg_catalog.=) 'materialized view';
    IF names IS NOT NULL THEN
        PERFORM pgmart._anchors_dropped(names);
    END IF;
END $$;
COMMENT ON FUNCTION pgmart._on_sql_drop IS 'Internal: event trigger that removes a registration whose owner anchor was dropped (DROP OWNED BY).';
CREATE EVENT TRIGGER pgmart_anchor_dropped ON sql_drop EXECUTE FUNCTION pgmart._on_sql_drop();

-- Registrations follow their relation by name (src/follow.rs): after every command that creates or
-- alters a table, view or materialized view, its relations are handed over (partitions too: a
-- rollup's capture goes on every partition of its source, src/rollups/exec.rs).
CREATE FUNCTION pgmart._on_ddl_end() RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rels oid[];
BEGIN
    SELECT pg_catalog.array_agg(DISTINCT d.objid) INTO rels
      FROM pg_catalog.pg_event_trigger_ddl_commands() d
      JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.objid
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p', 'v', 'm', 'f']::pg_catalog."char"[])
       AND d.schema_name OPERATOR(pg_catalog.<>) ALL (ARRAY['pgmart', 'pgmart_owners', 'pgmart_metrics', 'pgmart_metric_columns']);
    IF rels IS NOT NULL THEN
        PERFORM pgmart._relations_changed(rels);
    END IF;
END $$;
COMMENT ON FUNCTION pgmart._on_ddl_end IS 'Internal: event trigger that lets registrations follow a table or view re-created or renamed under their name.';
COMMENT ON FUNCTION pgmart._install_metric_views IS 'Internal: make the browsable view of each metric that has none (the upgrade from 0.1.0 calls it).';
COMMENT ON FUNCTION pgmart._rollup_capture IS 'Internal: the capture trigger of a rollup: logs the buckets a statement changed (src/rollups/).';
COMMENT ON FUNCTION pgmart._rollup_watermark IS 'Internal: the watermark of a rollup, read by its real-time view.';
COMMENT ON FUNCTION pgmart._rollup_pending IS 'Internal: the bucket ranges of a rollup with changes not refreshed yet, read by its real-time view.';
COMMENT ON FUNCTION pgmart.create_rollup IS
  'Create a rollup: a table of time buckets (in the time zone) by dimensions with the given aggregate measures over a source table, filled now and kept fresh by recomputing only the buckets that changed; with realtime, a view <name>_rt adds the newest rows live. Returns its job id.';
COMMENT ON FUNCTION pgmart.refresh_rollup IS
  'Refresh a rollup now (what its schedule would do), or, given from_ts and/or to_ts, recompute every bucket of that range in batches (a backfill), whatever its offsets; returns what it did.';
COMMENT ON FUNCTION pgmart.drop_rollup IS 'Drop a rollup: its capture triggers, real-time view, job and log, and its table unless keep_data.';
COMMENT ON FUNCTION pgmart._snapshot_guard IS 'Internal: the guard trigger of a periodic snapshot''s table and partitions: refuses every write but pgmart''s own run (src/snapshots/).';
COMMENT ON FUNCTION pgmart.create_snapshot IS
  'Create a snapshot of a table or view: periodic (a frozen copy once per day, week or month in the time zone, in a table partitioned by period whose rows cannot be changed) or timestamp/check (a type-2 history with valid_from/valid_to/is_current, or dbt''s dbt_scd_id/dbt_updated_at/dbt_valid_from/dbt_valid_to with preset => ''dbt''), taken now and then on schedule, one statement per run, as its owner. Returns its job id.';
COMMENT ON FUNCTION pgmart.run_snapshot IS
  'Take a snapshot now (a periodic one only when its current period is not frozen yet), in this transaction, as its owner; returns what it did. A unique key that is not unique in the source fails the run, naming the duplicate keys, and writes nothing.';
COMMENT ON FUNCTION pgmart.drop_snapshot IS 'Drop a snapshot: its job, catalog and partition set, and its table unless keep_data (then a plain table, its guards removed).';
COMMENT ON FUNCTION pgmart._relations_changed IS 'Internal: move registrations to the relations a DDL command created or renamed (src/follow.rs).';
CREATE EVENT TRIGGER pgmart_relations_changed ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE VIEW', 'CREATE MATERIALIZED VIEW',
                 'CREATE FOREIGN TABLE', 'ALTER TABLE', 'ALTER VIEW', 'ALTER MATERIALIZED VIEW', 'ALTER FOREIGN TABLE')
    EXECUTE FUNCTION pgmart._on_ddl_end();

-- Privileges: nobody but the extension's owner may call pgmart's internal functions (their names
-- start with an underscore), except the read-only catalog helpers the views call. Every public
-- function checks who its caller is and what that role may act as.
REVOKE ALL ON ALL ROUTINES IN SCHEMA pgmart FROM PUBLIC;
DO $$
DECLARE
    f pg_catalog.regprocedure;
BEGIN
    FOR f IN SELECT p.oid::pg_catalog.regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pgmart'::pg_catalog.regnamespace
                AND (p.proname OPERATOR(pg_catalog.!~) '^_'
                     OR p.proname OPERATOR(pg_catalog.=) ANY ('{_bound_epoch,_partition_bounds,_now_epoch,_relation_name,_rollup_watermark,_rollup_pending,_node_kind,_node_key,_age_text,_root,_replica_lag,_health_settings,_query_health,_table_health}'::pg_catalog.name[]))
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON ROUTINE %s TO PUBLIC', f);
    END LOOP;
END $$;
REVOKE ALL ON SCHEMA pgmart_owners FROM PUBLIC;

-- dashboards, lineage and trust
COMMENT ON FUNCTION pgmart.register_dashboard IS
  'Register (or change) a dashboard: its owner, what it shows, the metrics and sources it reads, caveats, URL and a pattern that finds its statements in pg_stat_statements; pgmart.trust and pgmart.impact then know it.';
COMMENT ON FUNCTION pgmart.drop_dashboard IS 'Forget a dashboard (only the role that registered it, or one that may act as it).';
COMMENT ON FUNCTION pgmart.lineage IS
  'The lineage graph you may see, as edges (upstream, downstream, kinds, via): all of it, or everything upstream and downstream of one object with its distance; through views, materialized views, functions, rollups, metrics and dashboards.';
COMMENT ON FUNCTION pgmart.impact IS
  'Everything downstream of an object (views, rollups, metrics, dashboards), nearest first, with owners and dashboard URLs: who a change to it would affect.';
COMMENT ON FUNCTION pgmart.lineage_mermaid IS
  'The lineage of an object (or all of it) as a Mermaid flowchart, each node coloured and labelled with its status in pgmart.trust.';
COMMENT ON FUNCTION pgmart._replica_lag IS 'Internal: on a standby, how far replay is behind, its SLO and whether replay is paused.';
COMMENT ON FUNCTION pgmart._root IS 'Internal: a relation, or the root of its partition tree.';
COMMENT ON FUNCTION pgmart._node_kind IS 'Internal: a relation''s kind in the lineage graph.';
COMMENT ON FUNCTION pgmart._node_key IS 'Internal: a relation''s node in the lineage graph (a partition is its root).';
COMMENT ON FUNCTION pgmart._age_text IS 'Internal: an age as people say it (12 min).';
COMMENT ON FUNCTION pgmart._dashboards_downstream IS 'Internal: the dashboards downstream of a relation, for alert payloads.';

SELECT pgmart._wake_launcher();
COMMENT ON FUNCTION pgmart.grant_access IS
  'Give a role the access one kind of role needs: user (registers and manages its own jobs, sets, checks, metrics and rules), reader (BI: freshness, metrics, check status) or none; returns the statements run. For the extension''s owner or a superuser.';
