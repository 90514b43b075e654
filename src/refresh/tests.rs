//! `#[pg_test]`s for every refresh function, including its error cases.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::sql;
    use pgrx::prelude::*;
    use crate::testing::{sqlstate_of, one, run};

    /// r_src -> mv <p>_a -> plain view <p>_va -> mv <p>_b -> mv <p>_c
    fn chain(p: &str) {
        run(&format!("CREATE TABLE {p}_src (id int PRIMARY KEY, v int)"));
        run(&format!("INSERT INTO {p}_src VALUES (1, 10), (2, 20)"));
        run(&format!("CREATE MATERIALIZED VIEW {p}_a AS SELECT id, v FROM {p}_src"));
        run(&format!("CREATE UNIQUE INDEX ON {p}_a (id)"));
        run(&format!("CREATE VIEW {p}_va AS SELECT id, v * 2 AS v2 FROM {p}_a"));
        run(&format!("CREATE MATERIALIZED VIEW {p}_b AS SELECT sum(v2) AS total FROM {p}_va"));
        run(&format!("CREATE MATERIALIZED VIEW {p}_c AS SELECT total + 1 AS total1 FROM {p}_b"));
    }

    fn make_due(view: &str, seconds_ago: i32) {
        run(&format!(
            "UPDATE pgmart.job SET next_run_at = clock_timestamp() - make_interval(secs => {seconds_ago}) \
              WHERE job_id = (SELECT job_id FROM pgmart.refresh_view WHERE view = '{view}'::regclass)"
        ));
    }

    #[pg_test]
    fn schedule_refresh_registers_a_refresh_job() {
        chain("sr");
        let id = one::<i64>("SELECT pgmart.schedule_refresh('sr_a', '15 minutes', freshness_slo => '1 hour')").unwrap();
        let ok = one::<bool>(&format!(
            "SELECT kind = 'refresh' AND target = 'public.sr_a' AND owner = current_user AND enabled \
                    AND next_run_at > clock_timestamp() + interval '14 minutes' \
               FROM pgmart.jobs WHERE job_id = {id}"
        ));
        assert_eq!(ok, Some(true));
        assert_eq!(one::<f64>("SELECT period_s FROM pgmart.refresh_view WHERE view = 'sr_a'::regclass"), Some(900.0));
        let f = one::<String>(
            "SELECT object || ' ' || kind || ' ' || slo::text || ' ' || stale::text || ' ' || owner || ' ' \
                    || coalesce(last_status, '-') FROM pgmart.freshness WHERE object = 'public.sr_a'",
        );
        assert_eq!(f.as_deref(), Some(&*format!("public.sr_a materialized_view 01:00:00 false {} -", sql::role_name(sql::caller()))));
        // Cron: the period is the gap between the next two matches.
        run("SELECT pgmart.schedule_refresh('sr_b', '0 3 * * *', timezone => 'Europe/Berlin')");
        assert_eq!(one::<f64>("SELECT period_s FROM pgmart.refresh_view WHERE view = 'sr_b'::regclass").map(|p| (p / 3600.0).round()), Some(24.0));
    }

    #[pg_test]
    fn scheduling_the_same_view_again_updates_it() {
        chain("su");
        let id1 = one::<i64>("SELECT pgmart.schedule_refresh('su_a', '15 minutes')").unwrap();
        let id2 = one::<i64>("SELECT pgmart.schedule_refresh('su_a', '1 hour', concurrently => false, freshness_slo => '2 hours')").unwrap();
        assert_eq!(id1, id2);
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.refresh_view WHERE view = 'su_a'::regclass"), Some(1));
        assert_eq!(one::<String>(&format!("SELECT schedule FROM pgmart.jobs WHERE job_id = {id1}")).as_deref(), Some("1 hour"));
        assert_eq!(
            one::<String>("SELECT use_concurrently::text || ' ' || freshness_slo::text || ' ' || period_s FROM pgmart.refresh_view WHERE view = 'su_a'::regclass").as_deref(),
            Some("false 02:00:00 3600")
        );
        // Again with only a schedule: the SLO, method and retries given before stay.
        run(&format!("SELECT pgmart.alter_job({id1}, max_retries => 7)"));
        run("SELECT pgmart.schedule_refresh('su_a', '2 hours')");
        assert_eq!(
            one::<String>(&format!(
                "SELECT use_concurrently::text || ' ' || freshness_slo::text || ' ' || period_s || ' ' || j.max_retries || ' ' || j.timezone \
                   FROM pgmart.refresh_view r JOIN pgmart.jobs j USING (job_id) WHERE j.job_id = {id1}"
            ))
            .as_deref(),
            Some("false 02:00:00 7200 7 UTC")
        );
    }

    #[pg_test]
    fn a_view_with_cascade_off_refreshes_on_its_own_schedule_only() {
        chain("sc");
        run("SELECT pgmart.schedule_refresh('sc_a', '1 hour')");
        run("SELECT pgmart.schedule_refresh('sc_b', '1 hour', cascade => false)");
        run("SELECT pgmart.schedule_refresh('sc_c', '1 hour')");
        run("INSERT INTO sc_src VALUES (3, 30)");
        // refresh_now of the upstream refreshes sc_a only: sc_b opted out, and sc_c is below sc_b.
        let chain = one::<String>("SELECT string_agg(view_name, ',' ORDER BY view_name) FROM pgmart.refresh_now('sc_a')");
        assert_eq!(chain.as_deref(), Some("public.sc_a"));
        assert_eq!(one::<i64>("SELECT total FROM sc_b"), Some(60));
        // Due together, sc_b does not defer to sc_a: it refreshes on its own run.
        make_due("sc_a", 1);
        make_due("sc_b", 2);
        let ran = one::<String>("SELECT string_agg(message, ' | ') FROM pgmart.refresh_due() WHERE target = 'public.sc_b'");
        assert!(!ran.clone().unwrap_or_default().contains("deferred"), "{ran:?}");
        assert_eq!(one::<i64>("SELECT total FROM sc_b"), Some(120));
        // Scheduled again with cascade => true, it joins the chain again.
        run("SELECT pgmart.schedule_refresh('sc_b', '1 hour', cascade => true)");
        run("INSERT INTO sc_src VALUES (4, 40)");
        let chain = one::<String>("SELECT string_agg(view_name, ',' ORDER BY view_name) FROM pgmart.refresh_now('sc_a')");
        assert_eq!(chain.as_deref(), Some("public.sc_a,public.sc_b,public.sc_c"));
    }

    #[pg_test]
    fn schedule_refresh_rejects_bad_input() {
        chain("sb");
        run("CREATE MATERIALIZED VIEW sb_nodata AS SELECT id FROM sb_src WITH NO DATA");
        run("CREATE UNIQUE INDEX ON sb_nodata (id)");
        run("CREATE MATERIALIZED VIEW sb_partial AS SELECT id FROM sb_src");
        run("CREATE UNIQUE INDEX ON sb_partial (id) WHERE id > 0");
        run("CREATE MATERIALIZED VIEW sb_expr AS SELECT id FROM sb_src");
        run("CREATE UNIQUE INDEX ON sb_expr ((id + 1))");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_src', '1 hour')"), "42809");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_va', '1 hour')"), "42809");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_missing', '1 hour')"), "42P01");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_a', 'every tuesday')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_a', '61 * * * *')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_a', '1 hour', timezone => 'Mars/Olympus')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_a', '1 hour', freshness_slo => '-1 hour')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_a', '1 hour', max_retries => -1)"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_a', '1 hour', retry_backoff => 'soon')"), "22023");
        // CONCURRENTLY that cannot work: no unique index, a partial one, an expression one, no data.
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_b', '1 hour', concurrently => true)"), "55000");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_partial', '1 hour', concurrently => true)"), "55000");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_expr', '1 hour', concurrently => true)"), "55000");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_refresh('sb_nodata', '1 hour', concurrently => true)"), "55000");
        // Not the owner.
        run("CREATE ROLE sb_stranger");
        run("GRANT USAGE ON SCHEMA pgmart TO sb_stranger");
        run("SET ROLE sb_stranger");
        let s = sqlstate_of("SELECT pgmart.schedule_refresh('sb_a', '1 hour')");
        run("RESET ROLE");
        assert_eq!(s, "42501");
        // Nothing was stored by any of them.
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.jobs WHERE name LIKE 'refresh public.sb_%'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.refresh_view WHERE view_name LIKE 'public.sb_%'"), Some(0));
        // With a usable unique index, concurrently => true is accepted.
        run("SELECT pgmart.schedule_refresh('sb_a', '1 hour', concurrently => true)");
    }

    #[pg_test]
    fn refresh_now_refreshes_downstream_in_order_once() {
        chain("rn");
        for v in ["rn_c", "rn_b", "rn_a"] {
            run(&format!("SELECT pgmart.schedule_refresh('{v}', '1 hour')"));
        }
        run("INSERT INTO rn_src VALUES (3, 30)");
        let got = one::<String>(
            "SELECT string_agg(view_name || ':' || status || ':' || coalesce(method, '-') || ':' || rows_after, ',') \
               FROM pgmart.refresh_now('rn_a')",
        );
        assert_eq!(got.as_deref(), Some("public.rn_a:succeeded:concurrent:3,public.rn_b:succeeded:plain:1,public.rn_c:succeeded:plain:1"));
        assert_eq!(one::<i64>("SELECT total1 FROM rn_c"), Some(121));
        let hist = one::<String>(
            "SELECT string_agg(view_name || ':' || triggered_by, ',' ORDER BY refresh_id) FROM pgmart.refresh_history \
              WHERE view_name LIKE 'public.rn_%'",
        );
        assert_eq!(hist.as_deref(), Some("public.rn_a:refresh_now,public.rn_b:after public.rn_a,public.rn_c:after public.rn_a"));
        let ordered = one::<bool>(
            "SELECT bool_and(finished_at <= next_start) FROM ( \
               SELECT finished_at, lead(started_at) OVER (ORDER BY refresh_id) AS next_start \
                 FROM pgmart.refresh_history WHERE view_name LIKE 'public.rn_%') s WHERE next_start IS NOT NULL",
        );
        assert_eq!(ordered, Some(true));
        let fresh = one::<String>(
            "SELECT string_agg(last_status || ':' || (age < interval '1 minute')::text || ':' || stale::text, ',' ORDER BY object) \
               FROM pgmart.freshness WHERE object LIKE 'public.rn_%'",
        );
        assert_eq!(fresh.as_deref(), Some("succeeded:true:false,succeeded:true:false,succeeded:true:false"));
        // A view in the middle refreshes only what is downstream of it.
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.refresh_now('rn_b')"), Some(2));
        // An unscheduled view can be refreshed too; only the caller's own views.
        run("CREATE MATERIALIZED VIEW rn_solo AS SELECT 1 AS x");
        assert_eq!(one::<String>("SELECT status FROM pgmart.refresh_now('rn_solo')").as_deref(), Some("succeeded"));
        // Names that need quoting.
        run(r#"CREATE SCHEMA "Rn Schema""#);
        run(r#"CREATE MATERIALIZED VIEW "Rn Schema"."Odd ""View""" AS SELECT 1 AS x"#);
        run(r#"CREATE UNIQUE INDEX ON "Rn Schema"."Odd ""View""" (x)"#);
        run(r#"SELECT pgmart.schedule_refresh('"Rn Schema"."Odd ""View"""', '1 hour')"#);
        assert_eq!(
            one::<String>(r#"SELECT view_name || ':' || status || ':' || method FROM pgmart.refresh_now('"Rn Schema"."Odd ""View"""')"#).as_deref(),
            Some(r#""Rn Schema"."Odd ""View""":succeeded:concurrent"#)
        );
    }

    #[pg_test]
    fn refresh_now_rejects_bad_input() {
        chain("rb");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.refresh_now('rb_src')"), "42809");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.refresh_now('rb_missing')"), "42P01");
        run("CREATE ROLE rb_stranger");
        run("GRANT USAGE ON SCHEMA pgmart TO rb_stranger");
        run("SET ROLE rb_stranger");
        let s = sqlstate_of("SELECT * FROM pgmart.refresh_now('rb_a')");
        run("RESET ROLE");
        assert_eq!(s, "42501");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.refresh_history WHERE view_name LIKE 'public.rb_%'"), Some(0));
    }

    #[pg_test]
    fn a_failing_refresh_is_recorded_and_alerted() {
        run("CREATE TABLE rf_src (d int)");
        run("INSERT INTO rf_src VALUES (1)");
        run("CREATE MATERIALIZED VIEW rf_v AS SELECT 10 / d AS q FROM rf_src");
        run("SELECT pgmart.schedule_refresh('rf_v', '1 hour', max_retries => 1)");
        run("INSERT INTO rf_src VALUES (0)");
        // By refresh_now: a failed row, a warning, no error.
        assert_eq!(one::<String>("SELECT status || ':' || error FROM pgmart.refresh_now('rf_v')").as_deref(), Some("failed:division by zero"));
        // By the job: the run fails (and is retried), the history and the alert survive the rollback.
        make_due("rf_v", 1);
        let r = one::<String>("SELECT status FROM pgmart.refresh_due() WHERE kind = 'refresh' AND target = 'public.rf_v'");
        assert_eq!(r.as_deref(), Some("retrying"));
        assert_eq!(
            one::<String>("SELECT r.sqlstate FROM pgmart.job_runs r JOIN pgmart.refresh_view v USING (job_id) WHERE v.view = 'rf_v'::regclass").as_deref(),
            Some("22012")
        );
        assert_eq!(
            one::<String>("SELECT string_agg(triggered_by || ':' || status || ':' || sqlstate, ',' ORDER BY refresh_id) FROM pgmart.refresh_history WHERE view_name = 'public.rf_v'").as_deref(),
            Some("refresh_now:failed:22012,schedule:failed:22012")
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pgmart.alerts WHERE source_kind = 'refresh' AND dedup_key = 'refresh_failed:' || 'rf_v'::regclass::oid"),
            Some(1)
        );
        assert_eq!(one::<String>("SELECT last_status FROM pgmart.freshness WHERE object = 'public.rf_v'").as_deref(), Some("failed"));
        // Fixed: the next refresh succeeds and resolves the alert.
        run("DELETE FROM rf_src WHERE d = 0");
        assert_eq!(one::<String>("SELECT status FROM pgmart.refresh_now('rf_v')").as_deref(), Some("succeeded"));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.open_alerts WHERE source_kind = 'refresh'"), Some(0));
        assert_eq!(
            one::<bool>("SELECT resolved_at IS NOT NULL FROM pgmart.alerts WHERE dedup_key = 'refresh_failed:' || 'rf_v'::regclass::oid"),
            Some(true)
        );
    }

    #[pg_test]
    fn due_jobs_refresh_upstream_first_and_nothing_twice() {
        chain("rd");
        for v in ["rd_a", "rd_b", "rd_c"] {
            run(&format!("SELECT pgmart.schedule_refresh('{v}', '1 hour')"));
        }
        run("INSERT INTO rd_src VALUES (3, 30)");
        // The downstream jobs fell due first: they still run after their upstream.
        make_due("rd_c", 30);
        make_due("rd_b", 20);
        make_due("rd_a", 10);
        let ran = one::<String>(
            "SELECT string_agg(target || ':' || status, ',') FROM pgmart.refresh_due() WHERE kind = 'refresh' AND target LIKE 'public.rd_%'",
        );
        assert_eq!(ran.as_deref(), Some("public.rd_c:succeeded,public.rd_b:succeeded,public.rd_a:succeeded"));
        let hist = one::<String>(
            "SELECT string_agg(view_name, ',' ORDER BY refresh_id) FROM pgmart.refresh_history WHERE view_name LIKE 'public.rd_%'",
        );
        assert_eq!(hist.as_deref(), Some("public.rd_a,public.rd_b,public.rd_c"));
        assert_eq!(one::<i64>("SELECT total1 FROM rd_c"), Some(121));
        // Every job moved on to its next slot.
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pgmart.jobs WHERE target LIKE 'public.rd_%' AND next_run_at > clock_timestamp() + interval '50 minutes'"),
            Some(3)
        );
    }

    #[pg_test]
    fn a_job_whose_view_is_missing_skips_and_alerts_after_its_allowance() {
        run("CREATE MATERIALIZED VIEW rx_v AS SELECT 1 AS x");
        let id = one::<i64>("SELECT pgmart.schedule_refresh('rx_v', '1 hour', freshness_slo => '2 hours')").unwrap();
        run("DROP MATERIALIZED VIEW rx_v");
        let alerts = format!("SELECT count(*) FROM pgmart.alerts WHERE source_kind = 'refresh' AND dedup_key = 'refresh_dropped:{id}'");
        run(&format!("UPDATE pgmart.job SET next_run_at = clock_timestamp() - interval '1 second' WHERE job_id = {id}"));
        // Skipped, still scheduled, no alert yet (a rebuild takes seconds).
        let r = one::<String>(&format!("SELECT status || ': ' || message FROM pgmart.refresh_due() WHERE job_id = {id}"));
        assert_eq!(r.as_deref(), Some("skipped: materialized view public.rx_v does not exist; the job runs again when one of that name is created"));
        assert_eq!(one::<bool>(&format!("SELECT enabled AND next_run_at > clock_timestamp() FROM pgmart.jobs WHERE job_id = {id}")), Some(true));
        assert_eq!(one::<i64>(&alerts), Some(0));
        assert_eq!(one::<String>("SELECT last_status FROM pgmart.freshness WHERE object = 'public.rx_v'").as_deref(), Some("dropped"));
        // Missing for longer than its SLO: an alert.
        run(&format!("UPDATE pgmart.job_run SET started_at = started_at - interval '3 hours' WHERE job_id = {id}"));
        run(&format!("UPDATE pgmart.job SET next_run_at = clock_timestamp() - interval '1 second' WHERE job_id = {id}"));
        assert_eq!(one::<String>(&format!("SELECT status FROM pgmart.refresh_due() WHERE job_id = {id}")).as_deref(), Some("skipped"));
        assert_eq!(one::<i64>(&alerts), Some(1));
        // A new view of the same name takes the registration back (src/follow.rs): the same job,
        // its alert resolved; scheduling it again finds it.
        run("CREATE MATERIALIZED VIEW rx_v AS SELECT 2 AS x");
        assert_eq!(one::<String>("SELECT coalesce(last_status, '-') FROM pgmart.freshness WHERE object = 'public.rx_v'").as_deref(), Some("-"));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.open_alerts WHERE source_kind = 'refresh'"), Some(0));
        let id2 = one::<i64>("SELECT pgmart.schedule_refresh('rx_v', '1 hour')").unwrap();
        assert_eq!(id, id2);
        assert_eq!(one::<String>(&format!("SELECT status FROM pgmart.run_job({id})")).as_deref(), Some("succeeded"));
        // While the view exists its job cannot be dropped on its own; once it is gone, it can.
        assert_eq!(sqlstate_of(&format!("SELECT pgmart.drop_job({id2})")), "55000");
        run("DROP MATERIALIZED VIEW rx_v");
        run(&format!("SELECT pgmart.drop_job({id2})"));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.refresh_view WHERE job_id = {id2}")), Some(0));
    }

    #[pg_test]
    fn stale_views_are_flagged_and_alerted() {
        run("CREATE MATERIALIZED VIEW rs_v AS SELECT 1 AS x");
        run("CREATE MATERIALIZED VIEW rs_w AS SELECT 1 AS x");
        run("SELECT pgmart.schedule_refresh('rs_v', '1 hour', freshness_slo => '10 minutes')");
        run("SELECT pgmart.schedule_refresh('rs_w', '1 hour')");
        run("UPDATE pgmart.refresh_view SET last_refreshed_at = now() - interval '11 minutes' WHERE view = 'rs_v'::regclass");
        run("UPDATE pgmart.refresh_view SET last_refreshed_at = now() - interval '119 minutes' WHERE view = 'rs_w'::regclass");
        assert_eq!(
            one::<String>("SELECT string_agg(object || ':' || stale, ',' ORDER BY object) FROM pgmart.freshness WHERE object LIKE 'public.rs_%'").as_deref(),
            Some("public.rs_v:true,public.rs_w:false")
        );
        run("UPDATE pgmart.refresh_view SET last_refreshed_at = now() - interval '121 minutes' WHERE view = 'rs_w'::regclass");
        assert_eq!(one::<bool>("SELECT stale FROM pgmart.freshness WHERE object = 'public.rs_w'"), Some(true));
        make_due("rs_v", 1);
        run("SELECT * FROM pgmart.refresh_due()");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pgmart.alerts WHERE source_kind = 'refresh' AND dedup_key = 'refresh_stale:' || 'rs_v'::regclass::oid"),
            Some(1)
        );
        assert_eq!(one::<bool>("SELECT stale FROM pgmart.freshness WHERE object = 'public.rs_v'"), Some(false));
    }

    #[pg_test]
    fn unschedule_refresh_removes_the_job() {
        chain("ru");
        let id = one::<i64>("SELECT pgmart.schedule_refresh('ru_a', '1 hour')").unwrap();
        assert_eq!(sqlstate_of(&format!("SELECT pgmart.drop_job({id})")), "55000");
        run("SELECT pgmart.unschedule_refresh('ru_a')");
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.job WHERE job_id = {id}")), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.freshness WHERE object = 'public.ru_a'"), Some(0));
        assert_eq!(sqlstate_of("SELECT pgmart.unschedule_refresh('ru_a')"), "42704");
        assert_eq!(sqlstate_of("SELECT pgmart.unschedule_refresh('ru_src')"), "42704");
        assert_eq!(sqlstate_of("SELECT pgmart.unschedule_refresh('ru_missing')"), "42P01");
        run("SELECT pgmart.schedule_refresh('ru_b', '1 hour')");
        run("CREATE ROLE ru_stranger");
        run("GRANT USAGE ON SCHEMA pgmart TO ru_stranger");
        run("SET ROLE ru_stranger");
        let s = sqlstate_of("SELECT pgmart.unschedule_refresh('ru_b')");
        run("RESET ROLE");
        assert_eq!(s, "42501");
    }

    #[pg_test]
    fn dependency_edges_go_through_plain_views() {
        chain("re");
        let e = crate::refresh::exec::edges();
        let oid = |n: &str| one::<i64>(&format!("SELECT '{n}'::regclass::oid::int8")).unwrap();
        assert!(e.contains(&(oid("re_a"), oid("re_b"))), "{e:?}");
        assert!(e.contains(&(oid("re_b"), oid("re_c"))));
        assert!(!e.contains(&(oid("re_a"), oid("re_c"))));
    }
}
