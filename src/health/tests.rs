//! Tests of the health capability: the pure planning (tuning and its undo, regression verdicts)
//! and, in `#[pg_test]`s, the SQL functions, their bad input and what `pgmart.table_health` says
//! of objects the catalog alone describes (duplicate indexes, a never-analyzed partitioned table).

#[cfg(test)]
mod plan_tests {
    use crate::health::plan::*;
    use serde_json::{json, Map, Value};

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn settings_are_filtered_to_known_numbers() {
        let s = parse_settings(&[
            "autovacuum_vacuum_scale_factor=0.01".into(),
            "autovacuum_analyze_scale_factor=abc".into(),
            "fillfactor=10".into(),
            "autovacuum_analyze_scale_factor=0.005".into(),
        ]);
        assert_eq!(s, vec![("autovacuum_vacuum_scale_factor".to_string(), 0.01), ("autovacuum_analyze_scale_factor".to_string(), 0.005)]);
        assert_eq!(format_value(0.01), "0.01");
        assert_eq!(format_value(0.2), "0.2");
        assert_eq!(format_value(1.0), "1");
    }

    #[test]
    fn statements_name_only_tunable_parameters() {
        let q = "public.\"t; DROP TABLE x\"";
        assert_eq!(
            alter_set(q, &[("autovacuum_vacuum_scale_factor".into(), "0.01".into()), ("fillfactor; DROP".into(), "1".into())]).unwrap(),
            format!("ALTER TABLE {q} SET (autovacuum_vacuum_scale_factor = 0.01)")
        );
        assert_eq!(alter_set(q, &[("autovacuum_vacuum_scale_factor".into(), "1); DROP".into())]), None);
        assert_eq!(alter_reset(q, &["autovacuum_analyze_scale_factor".into()]).unwrap(), format!("ALTER TABLE {q} RESET (autovacuum_analyze_scale_factor)"));
    }

    #[test]
    fn tuning_records_the_users_value_once_and_undo_puts_it_back() {
        let suggested = vec![("autovacuum_vacuum_scale_factor".to_string(), 0.01), ("autovacuum_analyze_scale_factor".to_string(), 0.005)];
        let (set, rec) = tune(&suggested, &obj(json!({"autovacuum_vacuum_scale_factor": "0.1"})), &Map::new());
        assert_eq!(set.len(), 2);
        assert_eq!(rec["autovacuum_vacuum_scale_factor"], json!({"before": "0.1", "after": "0.01"}));
        assert_eq!(rec["autovacuum_analyze_scale_factor"], json!({"before": null, "after": "0.005"}));
        // Run again after it was applied: nothing to set, the record is unchanged.
        let now = obj(json!({"autovacuum_vacuum_scale_factor": "0.01", "autovacuum_analyze_scale_factor": "0.005"}));
        let (set2, rec2) = tune(&suggested, &now, &rec);
        assert!(set2.is_empty());
        assert_eq!(rec2, rec);
        let u = undo(&rec, &now);
        assert_eq!(u.set, vec![("autovacuum_vacuum_scale_factor".to_string(), "0.1".to_string())]);
        assert_eq!(u.reset, vec!["autovacuum_analyze_scale_factor".to_string()]);
        assert!(u.kept.is_empty());
        // Someone changed one since: it is kept.
        let changed = obj(json!({"autovacuum_vacuum_scale_factor": "0.05", "autovacuum_analyze_scale_factor": "0.005"}));
        let u = undo(&rec, &changed);
        assert_eq!(u.kept, vec!["autovacuum_vacuum_scale_factor".to_string()]);
        assert_eq!(u.reset, vec!["autovacuum_analyze_scale_factor".to_string()]);
    }

    fn s(at: f64, calls: i64, total_ms: f64) -> Sample {
        Sample { at, calls, total_ms }
    }

    const RULES: Rules = Rules { ratio: 1.5, min_ms: 1.0, min_calls: 10, spread_k: 3.0 };

    #[test]
    fn a_slower_last_interval_is_a_regression() {
        // Baseline 2 ms per call over two intervals, then 20 ms per call.
        let v = judge(&[s(0.0, 0, 0.0), s(1.0, 20, 40.0), s(2.0, 40, 82.0), s(3.0, 60, 482.0)], &RULES);
        assert!(v.regressed, "{v:?}");
        assert_eq!(v.recent_calls, Some(20));
        assert!((v.recent_mean_ms.unwrap() - 20.0).abs() < 1e-9);
        assert!((v.baseline_mean_ms.unwrap() - 2.05).abs() < 1e-9);
        assert!(v.reason.unwrap().contains("slower"));
    }

    #[test]
    fn noise_few_calls_and_resets_are_not_regressions() {
        // Sub-millisecond slowdown.
        assert!(!judge(&[s(0.0, 0, 0.0), s(1.0, 100, 10.0), s(2.0, 200, 30.0)], &RULES).regressed);
        // Too few calls in the last interval.
        assert!(!judge(&[s(0.0, 0, 0.0), s(1.0, 20, 40.0), s(2.0, 25, 400.0)], &RULES).regressed);
        // Counters reset: the series starts again, no baseline.
        let v = judge(&[s(0.0, 0, 0.0), s(1.0, 100, 100.0), s(2.0, 5, 500.0), s(3.0, 30, 3000.0)], &RULES);
        assert!(!v.regressed);
        assert_eq!(v.baseline_mean_ms, None);
        assert_eq!(v.reason.as_deref(), Some("no baseline yet"));
        assert!(!judge(&[], &RULES).regressed);
        // A slowdown within the baseline's own spread.
        let noisy = [s(0.0, 0, 0.0), s(1.0, 10, 10.0), s(2.0, 20, 110.0), s(3.0, 30, 120.0), s(4.0, 40, 240.0)];
        assert!(!judge(&noisy, &RULES).regressed);
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::testing::{one, run, sqlstate_of};
    use pgrx::prelude::*;

    #[pg_test]
    fn table_health_reports_duplicates_and_partitioned_tables_and_writes_nothing() {
        run("CREATE TABLE th_t (id int PRIMARY KEY, v int)");
        run("CREATE INDEX th_v1 ON th_t (v)");
        run("CREATE INDEX th_v2 ON th_t (v)");
        run("CREATE TABLE th_p (at date, x int) PARTITION BY RANGE (at)");
        run("CREATE TABLE th_p1 PARTITION OF th_p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')");
        run("INSERT INTO th_p VALUES ('2024-02-01', 1)");
        run("ANALYZE th_p1");
        assert_eq!(one::<String>("SELECT status FROM pgmart.table_health WHERE index = 'th_v2'::regclass").as_deref(), Some("warn"));
        assert_eq!(
            one::<String>("SELECT suggestion FROM pgmart.table_health WHERE index = 'th_v2'::regclass").as_deref(),
            Some("DROP INDEX CONCURRENTLY public.th_v2;")
        );
        assert_eq!(one::<bool>("SELECT 'duplicate_index' = ANY (problems) FROM pgmart.table_health WHERE index = 'th_v1'::regclass"), Some(false));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.table_health WHERE relid = 'th_t'::regclass"), Some(4));
        assert_eq!(
            one::<String>("SELECT kind || ' ' || array_to_string(problems, ',') FROM pgmart.table_health WHERE relid = 'th_p'::regclass").as_deref(),
            Some("partitioned table never_analyzed")
        );
        // A read-only transaction reads it (it writes nothing: no temp tables, sequences or catalog rows).
        run("SET LOCAL transaction_read_only = on");
        assert!(one::<i64>("SELECT count(*) FROM pgmart.table_health").unwrap() >= 5);
    }

    #[pg_test]
    fn hostile_names_are_quoted_in_suggestions() {
        run(r#"CREATE SCHEMA "th s""#);
        run(r#"CREATE TABLE "th s"."t; DROP TABLE x --" (v int)"#);
        run(r#"CREATE INDEX "i""1" ON "th s"."t; DROP TABLE x --" (v)"#);
        run(r#"CREATE INDEX "i""2" ON "th s"."t; DROP TABLE x --" (v)"#);
        assert_eq!(
            one::<String>(r#"SELECT suggestion FROM pgmart.table_health WHERE index = '"th s"."i""2"'::regclass"#).as_deref(),
            Some(r#"DROP INDEX CONCURRENTLY "th s"."i""2";"#)
        );
    }

    #[pg_test]
    fn maintain_table_checks_its_input_and_records_the_table() {
        run("CREATE TABLE th_m (id int)");
        run("CREATE VIEW th_view AS SELECT 1 AS x");
        run("CREATE TABLE th_mp (at date) PARTITION BY RANGE (at)");
        assert_eq!(sqlstate_of("SELECT pgmart.maintain_table(NULL)"), "22004");
        assert_eq!(sqlstate_of("SELECT pgmart.maintain_table('th_view')"), "42809");
        assert_eq!(sqlstate_of("SELECT pgmart.maintain_table('th_mp')"), "42809");
        assert_eq!(sqlstate_of("SELECT pgmart.maintain_table(999999::regclass)"), "42P01");
        assert_eq!(sqlstate_of("SELECT pgmart.unmaintain_table('th_m')"), "42704");
        run("SELECT pgmart.maintain_table('th_m', autovacuum_tuning => true)");
        assert_eq!(
            one::<String>("SELECT vacuum || ' ' || reindex_bloated || ' ' || autovacuum_tuning FROM pgmart.maintained_tables WHERE relid = 'th_m'::regclass").as_deref(),
            Some("true true true")
        );
        run("SELECT pgmart.maintain_table('th_m', vacuum => false)");
        assert_eq!(one::<bool>("SELECT vacuum FROM pgmart.maintained_tables WHERE relid = 'th_m'::regclass"), Some(false));
        // A role that is not the owner may not register it.
        run("CREATE ROLE th_other");
        run("GRANT USAGE ON SCHEMA pgmart TO th_other");
        run("SET LOCAL ROLE th_other");
        assert_eq!(sqlstate_of("SELECT pgmart.maintain_table('th_m')"), "42501");
        assert_eq!(sqlstate_of("SELECT pgmart.unmaintain_table('th_m')"), "42704");
        run("RESET ROLE");
        run("SELECT pgmart.unmaintain_table('th_m')");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.maintained_tables WHERE relid = 'th_m'::regclass"), Some(0));
    }

    #[pg_test]
    fn schedule_health_makes_one_job_per_name() {
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_health(alert_level => 'loud')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_health('every now and then')"), "22023");
        let a = one::<i64>("SELECT pgmart.schedule_health('@daily', name => 'th job')").unwrap();
        let b = one::<i64>("SELECT pgmart.schedule_health('1 hour', alert_level => 'warn', name => 'th job')").unwrap();
        assert_eq!(a, b);
        assert_eq!(
            one::<String>("SELECT kind || ' ' || schedule || ' ' || (config->>'alert_level') FROM pgmart.jobs WHERE job_id = (SELECT job_id FROM pgmart.jobs WHERE name = 'th job')").as_deref(),
            Some("health 1 hour warn")
        );
        run("SELECT pgmart.schedule_sql('th taken', 'SELECT 1', '1 hour')");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_health(name => 'th taken')"), "42710");
    }

    #[pg_test]
    fn health_settings_follow_the_gucs() {
        run("SET LOCAL pgmart.health_min_pages = 7");
        run("SET LOCAL pgmart.health_unused_index_min_size = '2MB'");
        assert_eq!(one::<i32>("SELECT min_pages FROM pgmart._health_settings()"), Some(7));
        assert_eq!(one::<i64>("SELECT unused_index_min_bytes FROM pgmart._health_settings()"), Some(2 * 1024 * 1024));
    }

    #[pg_test]
    fn query_health_is_empty_without_pg_stat_statements() {
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.query_health"), Some(0));
    }
}
