//! `#[pg_test]`s for every check kind (pass, fail, NULL handling, thresholds, errors) and for
//! add_check / drop_check / run_checks.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::sql;
    use pgrx::prelude::*;
    use crate::testing::{sqlstate_of, one, run};

    /// (status, failing_rows, checked_rows) of one check after run_checks(table).
    fn outcome(table: &str, name: &str) -> (String, Option<i64>, Option<i64>) {
        #[derive(serde::Deserialize)]
        struct R {
            status: String,
            failing_rows: Option<i64>,
            checked_rows: Option<i64>,
        }
        let r = sql::caller_path(|| {
            sql::row::<R>(
                &format!("SELECT status, failing_rows, checked_rows FROM pgmart.run_checks('{table}') WHERE name = '{name}'"),
                &[],
            )
        })
        .unwrap_or_else(|| panic!("no result for {name}"));
        (r.status, r.failing_rows, r.checked_rows)
    }

    fn sample(table: &str, name: &str) -> serde_json::Value {
        one::<pgrx::JsonB>(&format!("SELECT sample FROM pgmart.run_checks('{table}') WHERE name = '{name}'")).unwrap().0
    }

    #[pg_test]
    fn unique_pass_fail_nulls_threshold_and_constraint() {
        run("CREATE TABLE ck_u (id int, a int, b int, t text); \
             INSERT INTO ck_u SELECT g, g % 3, g, 'k' || g FROM generate_series(1, 100) g");
        let id = one::<i64>("SELECT pgmart.add_check('ck_u', 'unique', ARRAY['id'])").unwrap();
        assert!(id > 0);
        assert_eq!(one::<String>(&format!("SELECT name FROM pgmart.\"check\" WHERE check_id = {id}")).as_deref(), Some("unique_ck_u_id"));
        assert_eq!(outcome("ck_u", "unique_ck_u_id"), ("pass".into(), Some(0), Some(100)));
        // NULL keys are not duplicates (like a unique constraint).
        run("INSERT INTO ck_u VALUES (NULL, 1, 1), (NULL, 1, 1)");
        assert_eq!(outcome("ck_u", "unique_ck_u_id").0, "pass");
        run("INSERT INTO ck_u VALUES (7, 1, 1), (7, 1, 1), (8, 1, 1)");
        // Surplus rows: 2 extra copies of 7, 1 of 8.
        assert_eq!(outcome("ck_u", "unique_ck_u_id"), ("fail".into(), Some(3), Some(103)));
        // Integer keys are checked inside the row scan (pgmart.duplicate_keys): up to 5 keys.
        assert_eq!(sample("ck_u", "unique_ck_u_id"), serde_json::json!([7, 8]));
        run("DELETE FROM ck_u WHERE id = 7");
        assert_eq!(sample("ck_u", "unique_ck_u_id"), serde_json::json!([8]));
        run("INSERT INTO ck_u VALUES (7, 1, 1), (7, 1, 1), (7, 1, 1)");
        assert_eq!(outcome("ck_u", "unique_ck_u_id"), ("fail".into(), Some(3), Some(103)));
        // Other keys take one sorted pass; its sample is a duplicated key, re-counted in the same
        // pass while it stays duplicated, and the next one once it is fixed.
        run("SELECT pgmart.add_check('ck_u', 'unique', ARRAY['t'])");
        assert_eq!(outcome("ck_u", "unique_ck_u_t"), ("pass".into(), Some(0), Some(99)));
        run("INSERT INTO ck_u (t) VALUES ('k5'), ('k9'), ('k9')");
        assert_eq!(outcome("ck_u", "unique_ck_u_t"), ("fail".into(), Some(3), Some(102)));
        assert_eq!(sample("ck_u", "unique_ck_u_t"), serde_json::json!(["k9"]));
        assert_eq!(sample("ck_u", "unique_ck_u_t"), serde_json::json!(["k9"]));
        run("DELETE FROM ck_u WHERE t = 'k9'");
        assert_eq!(sample("ck_u", "unique_ck_u_t"), serde_json::json!(["k5"]));
        // Compound keys.
        run("SELECT pgmart.add_check('ck_u', 'unique', ARRAY['a', 'b'])");
        assert_eq!(outcome("ck_u", "unique_ck_u_a_b").0, "fail");
        // Thresholds: 3 of 103 rows is under 5%.
        run("SELECT pgmart.add_check('ck_u', 'unique', ARRAY['id'], '{\"error_if\": \">5%\", \"warn_if\": \">2\"}', name => 'u_thr')");
        assert_eq!(outcome("ck_u", "u_thr").0, "warn");
        // A primary key proves it: no scan, a note.
        run("CREATE TABLE ck_u2 (id int PRIMARY KEY)");
        run("SELECT pgmart.add_check('ck_u2', 'unique', ARRAY['id'])");
        assert_eq!(outcome("ck_u2", "unique_ck_u2_id").0, "pass");
        assert!(sample("ck_u2", "unique_ck_u2_id")["note"].as_str().unwrap().contains("proven"));
        // Errors.
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_u', 'unique')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_u', 'unique', ARRAY['nope'])"), "42703");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_u', 'unique', ARRAY['id'])"), "42710");
    }

    #[pg_test]
    fn not_null_pass_fail_threshold_constraint() {
        run("CREATE TABLE ck_nn (id int PRIMARY KEY, a int, b int NOT NULL); INSERT INTO ck_nn SELECT g, g, g FROM generate_series(1, 50) g");
        run("SELECT pgmart.add_check('ck_nn', 'not_null', ARRAY['a'])");
        run("SELECT pgmart.add_check('ck_nn', 'not_null', ARRAY['b'])");
        run("SELECT pgmart.add_check('ck_nn', 'not_null', ARRAY['a'], '{\"error_if\": \">10%\"}', name => 'nn_pct')");
        run("SELECT pgmart.add_check('ck_nn', 'not_null', ARRAY['a'], severity => 'warn', name => 'nn_warn')");
        assert_eq!(outcome("ck_nn", "not_null_ck_nn_a"), ("pass".into(), Some(0), Some(50)));
        run("UPDATE ck_nn SET a = NULL WHERE id IN (3, 4)");
        assert_eq!(outcome("ck_nn", "not_null_ck_nn_a"), ("fail".into(), Some(2), Some(50)));
        assert_eq!(sample("ck_nn", "not_null_ck_nn_a"), serde_json::json!([{"id": 3}, {"id": 4}]));
        assert_eq!(outcome("ck_nn", "nn_pct").0, "warn"); // 4% is under 10%, over the default warn_if
        assert_eq!(outcome("ck_nn", "nn_warn").0, "warn");
        // NOT NULL proves b.
        assert!(sample("ck_nn", "not_null_ck_nn_b")["note"].as_str().unwrap().contains("NOT NULL"));
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_nn', 'not_null', ARRAY['a'], severity => 'fatal', name => 'x')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_nn', 'not_null', ARRAY['a'], '{\"error_if\": \"lots\"}', name => 'x')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_nn', 'nonsense', ARRAY['a'])"), "22023");
    }

    #[pg_test]
    fn accepted_values_counts_nulls_unless_allowed() {
        run("CREATE TABLE ck_av (id int, status text); INSERT INTO ck_av VALUES (1, 'placed'), (2, 'shipped'), (3, NULL)");
        run("SELECT pgmart.add_check('ck_av', 'accepted_values', ARRAY['status'], '{\"values\": [\"placed\", \"shipped\"]}')");
        run("SELECT pgmart.add_check('ck_av', 'accepted_values', ARRAY['status'], '{\"values\": [\"placed\", \"shipped\"], \"allow_null\": true}', name => 'av_nulls_ok')");
        // dbt would pass here: NULL NOT IN (...) is NULL. pgmart counts it.
        assert_eq!(outcome("ck_av", "accepted_values_ck_av_status"), ("fail".into(), Some(1), Some(3)));
        assert_eq!(outcome("ck_av", "av_nulls_ok").0, "pass");
        run("INSERT INTO ck_av VALUES (4, 'lost')");
        assert_eq!(outcome("ck_av", "av_nulls_ok"), ("fail".into(), Some(1), Some(4)));
        assert_eq!(sample("ck_av", "av_nulls_ok"), serde_json::json!(["lost"]));
        // Up to five failing values, the smallest (NULLs are counted, not listed).
        run("INSERT INTO ck_av VALUES (5, 'gone'), (6, 'lost'), (7, 'stolen'), (8, 'broken'), (9, 'eaten'), (10, 'void')");
        assert_eq!(sample("ck_av", "accepted_values_ck_av_status"), serde_json::json!(["broken", "eaten", "gone", "lost", "stolen"]));
        assert_eq!(outcome("ck_av", "accepted_values_ck_av_status").1, Some(8));
        // Numbers are compared in the column's type; a value that is not of that type is refused.
        run("CREATE TABLE ck_av2 (n int); INSERT INTO ck_av2 VALUES (1), (2)");
        run("SELECT pgmart.add_check('ck_av2', 'accepted_values', ARRAY['n'], '{\"values\": [1, 2]}')");
        assert_eq!(outcome("ck_av2", "accepted_values_ck_av2_n").0, "pass");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_av2', 'accepted_values', ARRAY['n'], '{\"values\": [\"x\"]}', name => 'bad')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_av', 'accepted_values', ARRAY['status'], '{}', name => 'bad')"), "22023");
    }

    #[pg_test]
    fn relationships_ignores_null_keys_and_trusts_fks() {
        run("CREATE TABLE ck_parent (id int PRIMARY KEY); INSERT INTO ck_parent VALUES (1), (2)");
        run("CREATE TABLE ck_child (id int, pid int); INSERT INTO ck_child VALUES (1, 1), (2, 2), (3, NULL)");
        run("SELECT pgmart.add_check('ck_child', 'relationships', ARRAY['pid'], '{\"to\": \"ck_parent\", \"field\": \"id\"}')");
        assert_eq!(outcome("ck_child", "relationships_ck_child_pid").0, "pass");
        run("INSERT INTO ck_child VALUES (4, 9), (5, 9)");
        assert_eq!(outcome("ck_child", "relationships_ck_child_pid"), ("fail".into(), Some(2), Some(5)));
        assert_eq!(sample("ck_child", "relationships_ck_child_pid"), serde_json::json!([9]));
        run("INSERT INTO ck_child VALUES (6, 12)");
        assert_eq!(sample("ck_child", "relationships_ck_child_pid"), serde_json::json!([9, 12]));
        // Keys that are not integers take an anti-join pass (NULL keys are not orphans there either).
        run("CREATE TABLE ck_tparent (code text PRIMARY KEY); INSERT INTO ck_tparent VALUES ('a'); \
             CREATE TABLE ck_tchild (code text); INSERT INTO ck_tchild VALUES ('a'), ('b'), ('b'), (NULL)");
        run("SELECT pgmart.add_check('ck_tchild', 'relationships', ARRAY['code'], '{\"to\": \"ck_tparent\", \"field\": \"code\"}')");
        assert_eq!(outcome("ck_tchild", "relationships_ck_tchild_code"), ("fail".into(), Some(2), Some(4)));
        assert_eq!(sample("ck_tchild", "relationships_ck_tchild_code"), serde_json::json!(["b"]));
        run("CREATE TABLE ck_child2 (pid int REFERENCES ck_parent (id))");
        run("SELECT pgmart.add_check('ck_child2', 'relationships', ARRAY['pid'], '{\"to\": \"ck_parent\", \"field\": \"id\"}')");
        assert!(sample("ck_child2", "relationships_ck_child2_pid")["note"].as_str().unwrap().contains("foreign key"));
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_child', 'relationships', ARRAY['pid'], '{\"to\": \"no_such\", \"field\": \"id\"}', name => 'r1')"), "42P01");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_child', 'relationships', ARRAY['pid'], '{\"to\": \"ck_parent\", \"field\": \"nope\"}', name => 'r2')"), "42703");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_child', 'relationships', ARRAY['pid'], '{\"to\": \"ck_parent\"}', name => 'r3')"), "22023");
    }

    #[pg_test]
    fn key_aggregates_agree_with_sql_serial_and_parallel() {
        // Dense ids with planted duplicates, and sparse keys (bitmap, then list), plus NULLs.
        run("CREATE TABLE ck_keys AS SELECT g AS dense, CASE WHEN g % 1000 = 0 THEN g - 1 END AS gaps, \
                    (g::int8 * 2654435761) % 1000000007 * (CASE WHEN g % 2 = 0 THEN 1 ELSE -1 END) * 1000003 AS sparse, \
                    (g % 5000) AS ref \
               FROM generate_series(1, 200000) g; \
             INSERT INTO ck_keys VALUES (5, NULL, 0, 99999), (5, NULL, 0, NULL), (77, 1, 0, 123456); ANALYZE ck_keys");
        run("CREATE TABLE ck_refs AS SELECT g AS id FROM generate_series(1, 4999) g");
        let want = |col: &str| {
            one::<pgrx::JsonB>(&format!(
                "SELECT jsonb_build_object('rows', count({col}), 'duplicates', count({col}) - count(DISTINCT {col}), \
                        'sample', coalesce((SELECT jsonb_agg(k ORDER BY k) FROM (SELECT {col} AS k FROM ck_keys \
                          WHERE {col} IS NOT NULL GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 5) d), '[]')) FROM ck_keys"
            ))
            .unwrap()
            .0
        };
        let orphans_want = serde_json::json!({"rows": 200002, "orphans": 40 + 2, "sample": [0, 99999, 123456]});
        for parallel in [false, true] {
            if parallel {
                run("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; \
                     SET max_parallel_workers_per_gather = 2");
                let plan = Spi::connect(|c| {
                    c.select("EXPLAIN SELECT pgmart.duplicate_keys(dense), pgmart.orphan_keys(ref, NULL) FROM ck_keys", None, &[])
                        .unwrap()
                        .map(|r| r.get::<String>(1).unwrap().unwrap_or_default())
                        .collect::<Vec<_>>()
                        .join("\n")
                });
                assert!(plan.contains("Partial Aggregate"), "{plan}");
            }
            for col in ["dense", "gaps", "sparse"] {
                let got = one::<pgrx::JsonB>(&format!("SELECT pgmart.duplicate_keys({col}) FROM ck_keys")).unwrap().0;
                assert_eq!(got, want(col), "{col}, parallel={parallel}");
            }
            let got = one::<pgrx::JsonB>(
                "SELECT pgmart.orphan_keys(ref, (SELECT array_agg(id::int8) FROM ck_refs)) FROM ck_keys",
            )
            .unwrap()
            .0;
            assert_eq!(got["rows"], orphans_want["rows"], "parallel={parallel}");
            assert_eq!(got["orphans"], orphans_want["orphans"], "parallel={parallel}");
            assert_eq!(got["sample"], orphans_want["sample"], "parallel={parallel}");
        }
        // No rows: zeros, not NULL; no parent keys: every key is an orphan.
        assert_eq!(
            one::<pgrx::JsonB>("SELECT pgmart.duplicate_keys(dense) FROM ck_keys WHERE false").unwrap().0,
            serde_json::json!({"rows": 0, "duplicates": 0, "sample": []})
        );
        assert_eq!(
            one::<pgrx::JsonB>("SELECT pgmart.orphan_keys(ref, NULL) FROM ck_keys WHERE dense <= 3").unwrap().0["orphans"],
            serde_json::json!(3)
        );
    }

    #[pg_test]
    fn expression_null_result_fails_and_is_validated() {
        run("CREATE TABLE ck_ex (id int, amount numeric); INSERT INTO ck_ex VALUES (1, 5), (2, 0)");
        run("SELECT pgmart.add_check('ck_ex', 'expression', params => '{\"expression\": \"amount >= 0\"}')");
        assert_eq!(outcome("ck_ex", "expression_ck_ex_amount_0"), ("pass".into(), Some(0), Some(2)));
        run("INSERT INTO ck_ex VALUES (3, -1), (4, NULL)");
        assert_eq!(outcome("ck_ex", "expression_ck_ex_amount_0"), ("fail".into(), Some(2), Some(4)));
        run("SELECT pgmart.add_check('ck_ex', 'expression', params => '{\"expression\": \"amount >= 0\", \"error_if\": \">60%\"}', name => 'ex_thr')");
        assert_eq!(outcome("ck_ex", "ex_thr").0, "warn");
        // Not boolean, a subquery, another table, a second statement, an unknown column: refused.
        for (e, code) in [
            ("amount + 1", "22023"),
            ("amount > (SELECT 0)", "22023"),
            ("EXISTS (SELECT 1 FROM pg_class)", "22023"),
            ("true; DROP TABLE ck_ex", "22023"),
            ("true) FROM pg_class WHERE (true", "22023"),
            ("nope > 0", "42703"),
            ("count(*) > 0", "22023"),
        ] {
            let q = format!("SELECT pgmart.add_check('ck_ex', 'expression', params => jsonb_build_object('expression', {}), name => 'ex_bad')", sql::quote_literal(e));
            assert_eq!(sqlstate_of(&q), code, "{e}");
        }
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.\"check\" WHERE name = 'ex_bad'"), Some(0));
    }

    #[pg_test]
    fn range_bounds_nulls_and_where_clause() {
        run("CREATE TABLE ck_rg (id int, v int, day date); INSERT INTO ck_rg SELECT g, g, current_date - (g % 2) FROM generate_series(1, 10) g");
        run("SELECT pgmart.add_check('ck_rg', 'range', ARRAY['v'], '{\"min\": 1, \"max\": 10}')");
        run("SELECT pgmart.add_check('ck_rg', 'range', ARRAY['v'], '{\"max\": 5}', name => 'rg_today', where_clause => 'day = current_date')");
        assert_eq!(outcome("ck_rg", "range_ck_rg_v"), ("pass".into(), Some(0), Some(10)));
        // Only today's rows (even v) are checked: 6, 8, 10 exceed 5.
        assert_eq!(outcome("ck_rg", "rg_today"), ("fail".into(), Some(3), Some(5)));
        run("INSERT INTO ck_rg VALUES (11, NULL, current_date - 1), (12, 11, current_date - 1)");
        assert_eq!(outcome("ck_rg", "range_ck_rg_v"), ("fail".into(), Some(2), Some(12)));
        run("SELECT pgmart.add_check('ck_rg', 'range', ARRAY['v'], '{\"min\": 1, \"max\": 10, \"allow_null\": true}', name => 'rg_null_ok')");
        assert_eq!(outcome("ck_rg", "rg_null_ok").1, Some(1));
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_rg', 'range', ARRAY['v'], '{}', name => 'x')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_rg', 'range', ARRAY['v'], '{\"min\": \"abc\"}', name => 'x')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_rg', 'range', ARRAY['v'], '{\"min\": 1}', name => 'x', where_clause => 'v')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_rg', 'range', ARRAY['v'], '{\"min\": 1}', name => 'x', where_clause => 'id IN (SELECT 1)')"), "22023");
    }

    #[pg_test]
    fn row_count_bounds() {
        run("CREATE TABLE ck_rc (id int); INSERT INTO ck_rc SELECT generate_series(1, 3)");
        run("SELECT pgmart.add_check('ck_rc', 'row_count', params => '{\"min\": 1, \"max\": 5}')");
        run("SELECT pgmart.add_check('ck_rc', 'row_count', params => '{\"min\": 10}', severity => 'warn', name => 'rc_warn')");
        assert_eq!(outcome("ck_rc", "row_count_ck_rc"), ("pass".into(), None, Some(3)));
        assert_eq!(outcome("ck_rc", "rc_warn").0, "warn");
        run("DELETE FROM ck_rc");
        assert_eq!(outcome("ck_rc", "row_count_ck_rc"), ("fail".into(), None, Some(0)));
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_rc', 'row_count', params => '{\"min\": -1}', name => 'x')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_rc', 'row_count', ARRAY['id'], '{\"min\": 1}', name => 'x')"), "22023");
    }

    #[pg_test]
    fn freshness_warn_and_error_after() {
        run("CREATE TABLE ck_fr (loaded_at timestamptz, n int)");
        run("SELECT pgmart.add_check('ck_fr', 'freshness', ARRAY['loaded_at'], '{\"warn_after\": \"1 hour\", \"error_after\": \"1 day\"}')");
        // No rows at all: as stale as it gets.
        assert_eq!(outcome("ck_fr", "freshness_ck_fr_loaded_at").0, "fail");
        run("INSERT INTO ck_fr VALUES (now() - interval '2 hours', 1), (NULL, 2)");
        assert_eq!(outcome("ck_fr", "freshness_ck_fr_loaded_at").0, "warn");
        run("INSERT INTO ck_fr VALUES (now() - interval '1 minute', 3)");
        assert_eq!(outcome("ck_fr", "freshness_ck_fr_loaded_at").0, "pass");
        assert!(sample("ck_fr", "freshness_ck_fr_loaded_at")["age_seconds"].as_f64().unwrap() < 3600.0);
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_fr', 'freshness', ARRAY['n'], '{\"warn_after\": \"1 hour\"}', name => 'x')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_fr', 'freshness', ARRAY['loaded_at'], '{\"warn_after\": \"soon\"}', name => 'x')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_fr', 'freshness', ARRAY['loaded_at'], '{}', name => 'x')"), "22023");
    }

    #[pg_test]
    fn schema_reports_missing_extra_changed() {
        run("CREATE TABLE ck_sc (id bigint, name text, amount numeric(10,2))");
        run("SELECT pgmart.add_check('ck_sc', 'schema', params => '{\"columns\": {\"id\": \"int8\", \"name\": \"text\", \"amount\": \"numeric\"}}')");
        assert_eq!(outcome("ck_sc", "schema_ck_sc"), ("pass".into(), Some(0), Some(3)));
        run("ALTER TABLE ck_sc DROP COLUMN name, ALTER COLUMN id TYPE int, ADD COLUMN note text");
        assert_eq!(outcome("ck_sc", "schema_ck_sc"), ("fail".into(), Some(3), Some(3)));
        let s = sample("ck_sc", "schema_ck_sc");
        assert_eq!(s["missing"], serde_json::json!(["name"]));
        assert_eq!(s["extra"], serde_json::json!(["note"]));
        assert_eq!(s["changed"][0]["actual"], serde_json::json!("integer"));
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_sc', 'schema', params => '{\"columns\": {\"id\": \"nosuchtype\"}}', name => 'x')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_sc', 'schema', params => '{}', name => 'x')"), "22023");
    }

    #[pg_test]
    fn a_broken_check_is_an_error_and_the_rest_still_run() {
        run("CREATE TABLE ck_br (id int, a int, b int); INSERT INTO ck_br VALUES (1, 1, NULL)");
        run("SELECT pgmart.add_check('ck_br', 'not_null', ARRAY['a'])");
        run("SELECT pgmart.add_check('ck_br', 'not_null', ARRAY['b'])");
        run("SELECT pgmart.add_check('ck_br', 'unique', ARRAY['id'])");
        run("ALTER TABLE ck_br DROP COLUMN a");
        assert_eq!(outcome("ck_br", "not_null_ck_br_a").0, "error");
        assert_eq!(outcome("ck_br", "not_null_ck_br_b"), ("fail".into(), Some(1), Some(1)));
        assert_eq!(outcome("ck_br", "unique_ck_br_id").0, "pass");
        let msg = one::<String>("SELECT message FROM pgmart.check_results WHERE name = 'not_null_ck_br_a' ORDER BY result_id DESC LIMIT 1");
        assert!(msg.unwrap().contains("does not exist"));
    }

    #[pg_test]
    fn results_are_stored_and_failures_alert() {
        run("CREATE TABLE ck_al (id int); INSERT INTO ck_al VALUES (1), (1)");
        run("SELECT pgmart.add_check('ck_al', 'unique', ARRAY['id'])");
        run("SELECT pgmart.add_check('ck_al', 'unique', ARRAY['id'], severity => 'warn', name => 'ck_al_warn')");
        run("SELECT * FROM pgmart.run_checks('ck_al')");
        run("SELECT * FROM pgmart.run_checks('ck_al')");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.check_results WHERE target = 'public.ck_al'"), Some(4));
        // One open alert for the error-severity check (de-duplicated), none for the warning.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pgmart.alerts WHERE source_kind = 'check' AND source_name = 'unique_ck_al_id'"),
            Some(1)
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'ck_al_warn'"), Some(0));
        assert_eq!(
            one::<i64>("SELECT (payload->>'failing_rows')::bigint FROM pgmart.alerts WHERE source_name = 'unique_ck_al_id'"),
            Some(1)
        );
        let open = "SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'unique_ck_al_id'";
        assert_eq!(one::<bool>("SELECT updated_at IS NULL FROM pgmart.alerts WHERE source_name = 'unique_ck_al_id'"), Some(true));
        // A changed failure (another duplicate) updates the open alert instead of being swallowed.
        run("INSERT INTO ck_al VALUES (2), (2)");
        run("SELECT * FROM pgmart.run_checks('ck_al')");
        assert_eq!(one::<i64>(open), Some(1));
        assert_eq!(
            one::<String>("SELECT (payload->>'failing_rows') || ' ' || (updated_at IS NOT NULL) FROM pgmart.alerts \
                           WHERE source_name = 'unique_ck_al_id' AND resolved_at IS NULL AND acked_at IS NULL").as_deref(),
            Some("2 true")
        );
        // Cleared: resolved; failing again: a new alert.
        run("DELETE FROM ck_al; INSERT INTO ck_al VALUES (1), (2)");
        run("SELECT * FROM pgmart.run_checks('ck_al')");
        assert_eq!(one::<i64>(open), Some(0));
        assert_eq!(one::<bool>("SELECT resolved_at IS NOT NULL FROM pgmart.alerts WHERE source_name = 'unique_ck_al_id'"), Some(true));
        run("INSERT INTO ck_al VALUES (1)");
        run("SELECT * FROM pgmart.run_checks('ck_al')");
        assert_eq!(one::<i64>(open), Some(1));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'unique_ck_al_id'"), Some(2));
    }

    #[pg_test]
    fn a_freshness_check_reads_the_index_and_shows_as_source_freshness() {
        run("CREATE TABLE ck_fr (id int, loaded_at timestamptz)");
        run("INSERT INTO ck_fr SELECT g, now() - g * interval '1 minute' FROM generate_series(1, 20000) g");
        run("CREATE INDEX ON ck_fr (loaded_at)");
        run("ANALYZE ck_fr");
        run("SELECT pgmart.add_check('ck_fr', 'freshness', ARRAY['loaded_at'], '{\"warn_after\": \"1 hour\", \"error_after\": \"1 day\"}')");
        let scans = "SELECT coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables WHERE relid = 'ck_fr'::regclass";
        let before = one::<i64>(scans);
        assert_eq!(one::<String>("SELECT status FROM pgmart.run_checks('ck_fr')").as_deref(), Some("pass"));
        // The newest value came from the end of the index: no scan of the table.
        assert_eq!(one::<i64>(scans), before);
        assert_eq!(
            one::<String>("SELECT kind || ' ' || stale || ' ' || last_status || ' ' || (age < interval '5 minutes') || ' ' || slo \
                             FROM pgmart.freshness WHERE object = 'public.ck_fr'").as_deref(),
            Some("source false pass true 1 day")
        );
        // Old data: warn, then fail past error_after; stale in pgmart.freshness.
        run("UPDATE ck_fr SET loaded_at = loaded_at - interval '2 days'");
        assert_eq!(one::<String>("SELECT status FROM pgmart.run_checks('ck_fr')").as_deref(), Some("fail"));
        assert_eq!(one::<bool>("SELECT stale FROM pgmart.freshness WHERE object = 'public.ck_fr'"), Some(true));
        // Without an index it is computed in the table's shared scan, with the same result.
        run("DROP INDEX ck_fr_loaded_at_idx");
        assert_eq!(one::<String>("SELECT status FROM pgmart.run_checks('ck_fr')").as_deref(), Some("fail"));
    }

    #[pg_test]
    fn scheduled_checks_share_one_suite_job_and_drop_check_cleans_up() {
        run("CREATE TABLE ck_sj (id int)");
        run("SELECT pgmart.add_check('ck_sj', 'unique', ARRAY['id'], schedule => '1 hour')");
        run("SELECT pgmart.add_check('ck_sj', 'not_null', ARRAY['id'], schedule => '1 hour')");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.jobs WHERE kind = 'check_suite' AND target = 'public.ck_sj'"), Some(1));
        let job = one::<i64>("SELECT job_id FROM pgmart.jobs WHERE kind = 'check_suite' AND target = 'public.ck_sj'").unwrap();
        let st = one::<String>(&format!("SELECT status FROM pgmart.run_job({job})"));
        assert_eq!(st.as_deref(), Some("succeeded"));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.check_results WHERE target = 'public.ck_sj'"), Some(2));
        run("SELECT pgmart.drop_check('unique_ck_sj_id')");
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.jobs WHERE job_id = {job}")), Some(1));
        run("SELECT pgmart.drop_check('not_null_ck_sj_id')");
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.jobs WHERE job_id = {job}")), Some(0));
        assert_eq!(sqlstate_of("SELECT pgmart.drop_check('not_null_ck_sj_id')"), "42704");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_sj', 'unique', ARRAY['id'], schedule => 'whenever')"), "22023");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.\"check\" WHERE target = 'ck_sj'::regclass"), Some(0));
    }

    #[pg_test]
    fn each_schedule_has_its_own_suite_job() {
        run("CREATE TABLE ck_ss (id int, v int)");
        run("SELECT pgmart.add_check('ck_ss', 'unique', ARRAY['id'], schedule => '1 hour', name => 'ck_ss_u')");
        // The same schedule, however spaced or cased, joins the same job.
        run("SELECT pgmart.add_check('ck_ss', 'not_null', ARRAY['id'], schedule => ' 1  Hour ', name => 'ck_ss_n')");
        let suites = "SELECT count(*) FROM pgmart.jobs WHERE kind = 'check_suite' AND target = 'public.ck_ss'";
        assert_eq!(one::<i64>(suites), Some(1));
        let hourly = one::<i64>("SELECT job_id FROM pgmart.checks WHERE name = 'ck_ss_u'").unwrap();
        assert_eq!(one::<i64>("SELECT job_id FROM pgmart.checks WHERE name = 'ck_ss_n'"), Some(hourly));
        // Another schedule: a job of its own; the hourly job keeps its schedule.
        run("SELECT pgmart.add_check('ck_ss', 'not_null', ARRAY['v'], schedule => '2 seconds', name => 'ck_ss_v')");
        assert_eq!(one::<i64>(suites), Some(2));
        let fast = one::<i64>("SELECT job_id FROM pgmart.checks WHERE name = 'ck_ss_v'").unwrap();
        assert_ne!(fast, hourly);
        assert_eq!(one::<String>(&format!("SELECT schedule FROM pgmart.jobs WHERE job_id = {hourly}")).as_deref(), Some("1 hour"));
        assert_eq!(one::<String>(&format!("SELECT schedule FROM pgmart.jobs WHERE job_id = {fast}")).as_deref(), Some("2 seconds"));
        assert_eq!(
            one::<String>(&format!("SELECT name FROM pgmart.jobs WHERE job_id = {hourly}")),
            one::<String>("SELECT 'checks public.ck_ss (' || current_user || ')'")
        );
        assert_eq!(
            one::<String>(&format!("SELECT name FROM pgmart.jobs WHERE job_id = {fast}")),
            one::<String>("SELECT 'checks public.ck_ss (' || current_user || ', 2 seconds)'")
        );
        // Running one job runs its own checks only (the other is not due).
        run(&format!("SELECT * FROM pgmart.run_job({fast})"));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.check_results WHERE target = 'public.ck_ss'"), Some(1));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.check_results WHERE name = 'ck_ss_v'"), Some(1));
        // The last check of a schedule takes its job along, and only its job.
        run("SELECT pgmart.drop_check('ck_ss_v')");
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.jobs WHERE job_id = {fast}")), Some(0));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.jobs WHERE job_id = {hourly}")), Some(1));
        run("SELECT pgmart.drop_check('ck_ss_u')");
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.jobs WHERE job_id = {hourly}")), Some(1));
        run("SELECT pgmart.drop_check('ck_ss_n')");
        assert_eq!(one::<i64>(suites), Some(0));
    }

    #[pg_test]
    fn suites_due_together_share_one_scan() {
        run("CREATE TABLE ck_sh (id int, v int); INSERT INTO ck_sh SELECT g, g FROM generate_series(1, 1000) g");
        run("SELECT pgmart.add_check('ck_sh', 'not_null', ARRAY['id'], schedule => '1 hour', name => 'ck_sh_a')");
        run("SELECT pgmart.add_check('ck_sh', 'not_null', ARRAY['v'], schedule => '2 hours', name => 'ck_sh_b')");
        run("SELECT pgmart.add_check('ck_sh', 'row_count', params => '{\"min\": 1}', schedule => '3 hours', name => 'ck_sh_c')");
        let job = |n: &str| one::<i64>(&format!("SELECT job_id FROM pgmart.checks WHERE name = '{n}'")).unwrap();
        let (a, b, c) = (job("ck_sh_a"), job("ck_sh_b"), job("ck_sh_c"));
        assert!(a != b && b != c && a != c);
        // c is paused: it is never run by another job. a and b fall due together.
        run(&format!("SELECT pgmart.pause_job({c})"));
        run(&format!("UPDATE pgmart.job SET next_run_at = now() - interval '1 second' WHERE job_id IN ({a}, {b}, {c})"));
        let scans = "SELECT coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables WHERE relid = 'ck_sh'::regclass";
        let before = one::<i64>(scans).unwrap();
        let msg = one::<String>(&format!("SELECT message FROM pgmart.run_job({a})")).unwrap();
        assert!(msg.contains(&format!("in the same scan, 1 checks of job {b} (due too)")), "{msg}");
        assert_eq!(one::<i64>(scans), Some(before + 1));
        // One statement computed both: same run, same duration; nothing of the paused job.
        assert_eq!(
            one::<i64>(&format!(
                "SELECT count(DISTINCT (run_by, duration_ms)) FROM pgmart.check_results \
                  WHERE name IN ('ck_sh_a', 'ck_sh_b') AND run_by = 'job {a}'"
            )),
            Some(1)
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.check_results WHERE name = 'ck_sh_b'"), Some(1));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.check_results WHERE name = 'ck_sh_c'"), Some(0));
        // b's own run finds its check done after it fell due: no scan, a success that says so,
        // and b is scheduled on.
        let (st, msg) = {
            let r = Spi::get_two::<String, String>(&format!("SELECT status, message FROM pgmart.run_job({b})")).unwrap();
            (r.0.unwrap(), r.1.unwrap())
        };
        assert_eq!(st, "succeeded");
        assert_eq!(msg, format!("all 1 checks already ran after this run fell due (job {a}); not run again"));
        assert_eq!(one::<i64>(scans), Some(before + 1));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.check_results WHERE name = 'ck_sh_b'"), Some(1));
        assert_eq!(one::<bool>(&format!("SELECT next_run_at > now() FROM pgmart.jobs WHERE job_id = {b}")), Some(true));
        // Run by hand when not due, a job runs all its checks.
        run(&format!("SELECT * FROM pgmart.run_job({b})"));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.check_results WHERE name = 'ck_sh_b'"), Some(2));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.check_results WHERE name = 'ck_sh_c'"), Some(0));
    }

    #[pg_test]
    fn a_suite_whose_table_is_gone_skips_its_runs() {
        run("CREATE TABLE ck_gone (id int); INSERT INTO ck_gone VALUES (1)");
        run("SELECT pgmart.add_check('ck_gone', 'not_null', ARRAY['id'], schedule => '1 second', name => 'ck_gone_id')");
        let job = one::<i64>("SELECT job_id FROM pgmart.checks WHERE name = 'ck_gone_id'").unwrap();
        run("DROP TABLE ck_gone");
        let r = Spi::get_two::<String, String>(&format!("SELECT status, message FROM pgmart.run_job({job})")).unwrap();
        assert_eq!(r.0.as_deref(), Some("skipped"));
        assert_eq!(
            r.1.as_deref(),
            Some("table public.ck_gone does not exist; its checks run again when one of that name is created")
        );
        // No result is written for it, by the job or by run_checks(); the job stays scheduled.
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.run_checks() WHERE name = 'ck_gone_id'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.check_results WHERE name = 'ck_gone_id'"), Some(0));
        assert_eq!(
            one::<String>(&format!("SELECT enabled || ' ' || last_status FROM pgmart.jobs WHERE job_id = {job}")).as_deref(),
            Some("true skipped")
        );
        // Missing for longer than two periods: an alert says so (once).
        let alert = format!("SELECT count(*) FROM pgmart.open_alerts WHERE source_kind = 'check' AND payload->>'problem' = 'table missing' \
                               AND (payload->>'job_id')::bigint = {job}");
        assert_eq!(one::<i64>(&alert), Some(0));
        run("SELECT pg_sleep(2.2)");
        run(&format!("SELECT * FROM pgmart.run_job({job})"));
        run(&format!("SELECT * FROM pgmart.run_job({job})"));
        assert_eq!(one::<i64>(&alert), Some(1));
        // A table of that name takes the check back; the job runs it again (the alert resolved).
        run("CREATE TABLE ck_gone (id int)");
        let r = Spi::get_two::<String, String>(&format!("SELECT status, message FROM pgmart.run_job({job})")).unwrap();
        assert_eq!(r.0.as_deref(), Some("succeeded"));
        assert_eq!(
            one::<String>("SELECT status FROM pgmart.check_results WHERE name = 'ck_gone_id' ORDER BY result_id DESC LIMIT 1").as_deref(),
            Some("pass")
        );
        assert_eq!(one::<i64>(&alert), Some(0));
    }

    #[pg_test]
    fn samples_are_found_whether_or_not_the_last_run_failed() {
        run("CREATE TABLE ck_lz (id int PRIMARY KEY, a int, s text); INSERT INTO ck_lz SELECT g, g, 'ok' FROM generate_series(1, 10) g");
        run("SELECT pgmart.add_check('ck_lz', 'not_null', ARRAY['a'])");
        run("SELECT pgmart.add_check('ck_lz', 'accepted_values', ARRAY['s'], '{\"values\": [\"ok\"]}')");
        assert_eq!(sample("ck_lz", "not_null_ck_lz_a"), serde_json::json!([]));
        run("UPDATE ck_lz SET a = NULL, s = 'bad' WHERE id IN (5, 7)");
        // First failing run: the samples come from the extra pass; then from the shared scan.
        for _ in 0..2 {
            assert_eq!(sample("ck_lz", "not_null_ck_lz_a"), serde_json::json!([{"id": 5}, {"id": 7}]));
            assert_eq!(sample("ck_lz", "accepted_values_ck_lz_s"), serde_json::json!(["bad"]));
        }
        // Up to five keys, the smallest; without a primary key, ctids.
        run("UPDATE ck_lz SET a = NULL WHERE id > 1");
        assert_eq!(sample("ck_lz", "not_null_ck_lz_a"), serde_json::json!([{"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}, {"id": 6}]));
        run("CREATE TABLE ck_nopk (a int); INSERT INTO ck_nopk VALUES (1), (NULL), (NULL)");
        run("SELECT pgmart.add_check('ck_nopk', 'not_null', ARRAY['a'])");
        assert_eq!(sample("ck_nopk", "not_null_ck_nopk_a"), serde_json::json!([{"ctid": "(0,2)"}, {"ctid": "(0,3)"}]));
        assert_eq!(
            one::<pgrx::JsonB>("SELECT pgmart.smallest_keys(k) FROM (VALUES (9::int8), (NULL), (1), (9), (4)) v(k)").unwrap().0,
            serde_json::json!([1, 4, 9])
        );
    }

    #[pg_test]
    fn callers_need_select_on_the_table() {
        run("CREATE TABLE ck_priv (id int)");
        run("CREATE ROLE ck_nobody");
        run("GRANT USAGE ON SCHEMA pgmart TO ck_nobody");
        run("SET LOCAL ROLE ck_nobody");
        let code = sqlstate_of("SELECT pgmart.add_check('ck_priv', 'unique', ARRAY['id'])");
        run("RESET ROLE");
        assert_eq!(code, "42501");
    }

    #[pg_test]
    fn impossible_checks_are_refused() {
        run("CREATE TABLE ck_imp (id int, v numeric)");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_imp', 'range', ARRAY['v'], params => '{\"min\": 5, \"max\": 1}')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_imp', 'range', ARRAY['v'], params => '{\"min\": \"10\", \"max\": \"9\"}')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_imp', 'not_null', ARRAY[NULL]::text[])"), "22004");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check(NULL, 'not_null', ARRAY['id'])"), "22004");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check('ck_imp', NULL, ARRAY['id'])"), "22004");
        assert_eq!(sqlstate_of("SELECT pgmart.add_check(999999, 'not_null', ARRAY['id'])"), "42P01");
        assert_eq!(sqlstate_of("SELECT pgmart.drop_check(NULL)"), "22004");
        // Compared as numbers, not as text: '9' is below '10'.
        run("SELECT pgmart.add_check('ck_imp', 'range', ARRAY['v'], params => '{\"min\": \"9\", \"max\": \"10\"}', name => 'ck_imp_r')");
    }
}
