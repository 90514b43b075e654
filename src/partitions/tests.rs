//! `#[pg_test]`s for every partition function and its errors.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::testing::{one, run, sqlstate_of};
    use pgrx::prelude::*;
    fn count_parts(t: &str) -> i64 {
        one::<i64>(&format!("SELECT count(*) FROM pgmart.partitions('{t}')")).unwrap()
    }

    #[pg_test]
    fn create_daily_set_makes_partitions_ahead_default_and_job() {
        run("CREATE TABLE pt_daily (id int, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
        let job = one::<i64>("SELECT pgmart.create_partition_set('pt_daily', 'ts', '1 day', premake => 3)").unwrap();
        assert!(job > 0);
        assert_eq!(one::<String>(&format!("SELECT kind FROM pgmart.jobs WHERE job_id = {job}")).as_deref(), Some("partition_maintenance"));
        // today + 3 ahead + default
        assert_eq!(count_parts("pt_daily"), 5);
        let name = one::<String>("SELECT partition_name FROM pgmart.partitions('pt_daily') LIMIT 1").unwrap();
        let today = one::<String>("SELECT 'pt_daily_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')").unwrap();
        assert_eq!(name, today);
        assert_eq!(one::<String>("SELECT partition_name FROM pgmart.partitions('pt_daily') WHERE is_default").as_deref(), Some("pt_daily_default"));
        assert_eq!(one::<i64>("SELECT partitions_ahead FROM pgmart.partition_sets WHERE parent = 'public.pt_daily'"), Some(3));
        assert_eq!(one::<i64>("SELECT rows_in_default FROM pgmart.partition_sets WHERE parent = 'public.pt_daily'"), Some(0));
        // rows route to the partitions, not the default
        run("INSERT INTO pt_daily SELECT g, now() + g * interval '1 hour' FROM generate_series(0, 50) g");
        assert_eq!(one::<i64>("SELECT count(*) FROM pt_daily_default"), Some(0));
        // Nothing more to do right away (but to ANALYZE the parent once, never analyzed yet).
        assert_eq!(
            one::<String>("SELECT message FROM pgmart.run_partition_maintenance('pt_daily')").as_deref(),
            Some("public.pt_daily: analyzed the parent")
        );
        assert_eq!(
            one::<String>("SELECT message FROM pgmart.run_partition_maintenance('pt_daily')").as_deref(),
            Some("public.pt_daily: nothing to do")
        );
        // The job runs and succeeds.
        assert_eq!(one::<String>(&format!("SELECT status FROM pgmart.run_job({job})")).as_deref(), Some("succeeded"));
    }

    #[pg_test]
    fn monthly_date_set_from_start_at_without_default() {
        run("CREATE TABLE pt_monthly (d date NOT NULL, v int) PARTITION BY RANGE (d)");
        run("SELECT pgmart.create_partition_set('pt_monthly', 'd', '1 month', premake => 2, \
             start_at => (date_trunc('month', now() AT TIME ZONE 'Europe/Berlin') - interval '3 months') AT TIME ZONE 'Europe/Berlin', \
             default_partition => false, timezone => 'Europe/Berlin')");
        assert_eq!(count_parts("pt_monthly"), 6);
        let first = one::<String>("SELECT partition_name || ' ' || lower_bound FROM pgmart.partitions('pt_monthly') LIMIT 1").unwrap();
        let want = one::<String>(
            "SELECT 'pt_monthly_p' || to_char(d, 'YYYYMM') || ' ' || to_char(d, 'YYYY-MM-DD') \
               FROM (SELECT (date_trunc('month', now() AT TIME ZONE 'Europe/Berlin') - interval '3 months')::date AS d) x",
        )
        .unwrap();
        assert_eq!(first, want);
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.partitions('pt_monthly') WHERE is_default"), Some(0));
    }

    #[pg_test]
    fn sub_daily_set_on_timestamp_column() {
        run("CREATE TABLE pt_hourly (ts timestamp NOT NULL) PARTITION BY RANGE (ts)");
        run("SELECT pgmart.create_partition_set('pt_hourly', 'ts', '15 minutes', premake => 4, timezone => 'America/New_York')");
        assert_eq!(count_parts("pt_hourly"), 6);
        let n = one::<String>("SELECT partition_name FROM pgmart.partitions('pt_hourly') LIMIT 1").unwrap();
        assert!(n.starts_with("pt_hourly_p") && n.len() == "pt_hourly_p20240101_0000".len(), "{n}");
        // a row at local now lands in a real partition
        run("INSERT INTO pt_hourly VALUES (now() AT TIME ZONE 'America/New_York')");
        assert_eq!(one::<i64>("SELECT count(*) FROM pt_hourly_default"), Some(0));
    }

    #[pg_test]
    fn bad_input_is_refused_and_changes_nothing() {
        run("CREATE TABLE pb_plain (ts timestamptz)");
        run("CREATE TABLE pb_list (ts timestamptz, k text) PARTITION BY LIST (k)");
        run("CREATE TABLE pb_hash (ts timestamptz, k int) PARTITION BY HASH (k)");
        run("CREATE TABLE pb_int (ts timestamptz, k int) PARTITION BY RANGE (k)");
        run("CREATE TABLE pb_ok (ts timestamptz, k int) PARTITION BY RANGE (ts)");
        run("CREATE TABLE pb_date (d date) PARTITION BY RANGE (d)");
        let cases = [
            ("SELECT pgmart.create_partition_set('pb_plain', 'ts', '1 day')", "55000"),
            ("SELECT pgmart.create_partition_set('pb_list', 'ts', '1 day')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_hash', 'ts', '1 day')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_int', 'k', '1 day')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_int', 'ts', '1 day')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'nope', '1 day')", "42703"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'ts', '0 days')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'ts', '-1 day')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'ts', '13 months')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'ts', '30 seconds')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'ts', '1 month 2 days')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'ts', '1 day', premake => 0)", "22023"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'ts', '1 day', retention_mode => 'archive')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'ts', '1 day', retention => '-1 day')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'ts', '1 day', timezone => 'Mars/Base')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'ts', '1 day', schedule => 'whenever')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_date', 'd', '1 hour')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_ok', 'ts', '1 minute', start_at => '2000-01-01')", "22023"),
            ("SELECT pgmart.create_partition_set('pb_missing', 'ts', '1 day')", "42P01"),
        ];
        for (q, want) in cases {
            assert_eq!(sqlstate_of(q), want, "{q}");
        }
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.partition_sets WHERE parent LIKE 'pb_%'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.jobs WHERE target LIKE 'pb_%'"), Some(0));
        assert_eq!(count_parts("pb_ok"), 0);
        // A second set on the same table.
        run("SELECT pgmart.create_partition_set('pb_ok', 'ts', '1 day')");
        assert_eq!(sqlstate_of("SELECT pgmart.create_partition_set('pb_ok', 'ts', '1 hour')"), "42710");
        // Functions on tables without a set.
        assert_eq!(sqlstate_of("SELECT pgmart.drop_partition_set('pb_date')"), "42704");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.run_partition_maintenance('pb_date')"), "42704");
    }

    #[pg_test]
    fn only_the_owner_may_manage_a_table() {
        run("CREATE ROLE pt_other_role");
        run("GRANT USAGE ON SCHEMA pgmart TO pt_other_role");
        run("CREATE TABLE pt_notmine (ts timestamptz) PARTITION BY RANGE (ts)");
        run("GRANT SELECT ON pt_notmine TO pt_other_role");
        run("SET LOCAL ROLE pt_other_role");
        let st = sqlstate_of("SELECT pgmart.create_partition_set('pt_notmine', 'ts', '1 day')");
        run("RESET ROLE");
        assert_eq!(st, "42501");
        run("SELECT pgmart.create_partition_set('pt_notmine', 'ts', '1 day')");
        run("SET LOCAL ROLE pt_other_role");
        let st2 = sqlstate_of("SELECT pgmart.drop_partition_set('pt_notmine')");
        let st3 = sqlstate_of("SELECT * FROM pgmart.run_partition_maintenance('pt_notmine')");
        run("RESET ROLE");
        assert_eq!(st2, "42501");
        assert_eq!(st3, "42501");
    }

    #[pg_test]
    fn existing_partitions_are_adopted_and_odd_ones_reported() {
        run("CREATE TABLE pt_adopt (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
        run("CREATE TABLE pt_adopt_today PARTITION OF pt_adopt FOR VALUES FROM (date_trunc('day', now(), 'UTC')) TO (date_trunc('day', now(), 'UTC') + interval '1 day')");
        run("CREATE TABLE pt_adopt_odd PARTITION OF pt_adopt FOR VALUES FROM (date_trunc('day', now(), 'UTC') + interval '36 hours') TO (date_trunc('day', now(), 'UTC') + interval '60 hours')");
        run("CREATE TABLE pt_adopt_def PARTITION OF pt_adopt DEFAULT");
        run("SELECT pgmart.create_partition_set('pt_adopt', 'ts', '1 day', premake => 3)");
        // today (adopted), tomorrow 00-12, odd (adopted), day+2 12-24, day+3, default (adopted)
        assert_eq!(count_parts("pt_adopt"), 6);
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.partitions('pt_adopt') WHERE partition_name LIKE 'pt_adopt_today'"), Some(1));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.partitions('pt_adopt') WHERE is_default"), Some(1));
        // coverage is contiguous from today to today + 4 days
        let gaps = one::<i64>(
            "SELECT count(*) FROM (SELECT upper_bound, lead(lower_bound) OVER (ORDER BY lower_bound::timestamptz) nxt \
               FROM pgmart.partitions('pt_adopt') WHERE NOT is_default) x WHERE nxt IS NOT NULL AND nxt::timestamptz <> upper_bound::timestamptz",
        );
        assert_eq!(gaps, Some(0));
        // Maintenance reports the odd partition in its notes, but succeeds.
        assert_eq!(one::<String>("SELECT status FROM pgmart.run_partition_maintenance('pt_adopt')").as_deref(), Some("succeeded"));
    }

    #[pg_test]
    fn maintenance_recreates_ahead_and_applies_retention() {
        run("CREATE TABLE pt_ret (d date NOT NULL) PARTITION BY RANGE (d)");
        run("SELECT pgmart.create_partition_set('pt_ret', 'd', '1 day', premake => 2, retention => '10 days')");
        let newest = one::<String>("SELECT partition_name FROM pgmart.partitions('pt_ret') WHERE NOT is_default ORDER BY lower_bound DESC LIMIT 1").unwrap();
        run(&format!("DROP TABLE {newest}"));
        run("CREATE TABLE pt_ret_old PARTITION OF pt_ret FOR VALUES FROM ('2001-01-01') TO ('2001-02-01')");
        let (created, dropped) = Spi::get_two::<Vec<String>, Vec<String>>(
            "SELECT created, dropped FROM pgmart.run_partition_maintenance('pt_ret')",
        )
        .unwrap();
        assert_eq!(created.unwrap(), vec![newest.clone()]);
        assert_eq!(dropped.unwrap(), vec!["pt_ret_old".to_string()]);
        assert_eq!(one::<bool>("SELECT to_regclass('pt_ret_old') IS NULL"), Some(true));
        assert_eq!(one::<String>("SELECT last_status FROM pgmart.partition_sets WHERE parent = 'public.pt_ret'").as_deref(), Some("succeeded"));
    }

    #[pg_test]
    fn detach_mode_keeps_the_table() {
        run("CREATE TABLE pt_det (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
        run("SELECT pgmart.create_partition_set('pt_det', 'ts', '1 day', retention => '30 days', retention_mode => 'detach')");
        run("CREATE TABLE pt_det_old PARTITION OF pt_det FOR VALUES FROM ('2001-01-01') TO ('2001-01-02')");
        run("INSERT INTO pt_det VALUES ('2001-01-01 10:00+00')");
        let det = one::<Vec<String>>("SELECT detached FROM pgmart.run_partition_maintenance('pt_det')").unwrap();
        assert_eq!(det, vec!["pt_det_old".to_string()]);
        assert_eq!(one::<i64>("SELECT count(*) FROM pt_det_old"), Some(1));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_inherits WHERE inhrelid = 'pt_det_old'::regclass"), Some(0));
    }

    #[pg_test]
    fn rows_in_the_default_partition_are_rescued_with_an_alert() {
        run("CREATE TABLE pt_rescue (id int, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
        run("CREATE INDEX ON pt_rescue (id)");
        run("SELECT pgmart.create_partition_set('pt_rescue', 'ts', '1 day', premake => 2)");
        let tomorrow = one::<String>("SELECT partition_name FROM pgmart.partitions('pt_rescue') WHERE NOT is_default ORDER BY lower_bound OFFSET 1 LIMIT 1").unwrap();
        run(&format!("DROP TABLE {tomorrow}"));
        run("INSERT INTO pt_rescue SELECT g, date_trunc('day', now(), 'UTC') + interval '1 day' + g * interval '1 minute' FROM generate_series(1, 100) g");
        assert_eq!(one::<i64>("SELECT count(*) FROM pt_rescue_default"), Some(100));
        let rescued = one::<i64>("SELECT rescued_rows FROM pgmart.run_partition_maintenance('pt_rescue')").unwrap();
        assert_eq!(rescued, 100);
        assert_eq!(one::<i64>("SELECT count(*) FROM pt_rescue_default"), Some(0));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM {tomorrow}")), Some(100));
        assert_eq!(one::<i64>("SELECT count(*) FROM pt_rescue"), Some(100));
        // the new partition has the parent's index
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pg_indexes WHERE tablename = '{tomorrow}'")), Some(1));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pgmart.alerts WHERE source_kind = 'partition_set' AND dedup_key = 'partition_default_rows:public.pt_rescue'"),
            Some(1)
        );
    }

    #[pg_test]
    fn late_and_future_rows_get_partitions_and_what_cannot_move_is_reported() {
        run("CREATE TABLE pt_late (id int, ts timestamptz) PARTITION BY RANGE (ts)");
        run("CREATE INDEX ON pt_late (ts)");
        run("SELECT pgmart.create_partition_set('pt_late', 'ts', '1 day', premake => 2, retention => '10 days')");
        let today = "date_trunc('day', now(), 'UTC')";
        // Late (6 days ago, before the oldest partition, inside retention), far ahead (100 days),
        // older than retention (30 days ago), and a NULL key: all land in the default.
        run(&format!(
            "INSERT INTO pt_late VALUES (1, {today} - interval '6 days' + interval '1 hour'), (2, {today} - interval '6 days' + interval '2 hours'), \
                                        (3, {today} + interval '100 days'), (4, {today} - interval '30 days'), (5, NULL)"
        ));
        assert_eq!(one::<i64>("SELECT count(*) FROM pt_late_default"), Some(5));
        let out = one::<String>(
            "SELECT status || ' ' || array_length(created, 1) || ' ' || rescued_rows || ' ' || message FROM pgmart.run_partition_maintenance('pt_late')",
        )
        .unwrap();
        assert!(out.starts_with("succeeded 2 3 "), "{out}");
        assert!(out.contains("1 rows older than retention (left there, not dropped)") && out.contains("1 rows with a NULL or infinite ts"), "{out}");
        // Nothing lost: the late and future rows are in partitions made for them, the others stay.
        assert_eq!(one::<i64>("SELECT count(*) FROM pt_late"), Some(5));
        assert_eq!(one::<String>("SELECT string_agg(id::text, ',' ORDER BY id) FROM pt_late_default").as_deref(), Some("4,5"));
        assert_eq!(
            one::<i64>(&format!("SELECT count(*) FROM pgmart.partitions('pt_late') WHERE lower_bound::timestamptz IN ({today} - interval '6 days', {today} + interval '100 days')")),
            Some(2)
        );
        let alert = "SELECT payload->>'rows_older_than_retention' || ' ' || (payload->>'rows_without_a_range') FROM pgmart.open_alerts \
                      WHERE source_kind = 'partition_set' AND source_name = 'public.pt_late' AND payload ? 'rows_without_a_range'";
        assert_eq!(one::<String>(alert).as_deref(), Some("1 1"));
        // Cleared by hand: the next pass resolves the alert.
        run("DELETE FROM pt_late_default");
        run("SELECT * FROM pgmart.run_partition_maintenance('pt_late')");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'public.pt_late'"), Some(0));
    }

    #[pg_test]
    fn the_parent_is_analyzed_once_after_its_partitions_change() {
        run("CREATE TABLE pt_an (id int, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
        run("SELECT pgmart.create_partition_set('pt_an', 'ts', '1 day', premake => 2)");
        run("INSERT INTO pt_an SELECT g, now() FROM generate_series(1, 1000) g");
        let stats = "SELECT count(*) FROM pg_statistic WHERE starelid = 'pt_an'::regclass";
        assert_eq!(one::<i64>(stats), Some(0));
        let msg = "SELECT message FROM pgmart.run_partition_maintenance('pt_an')";
        assert_eq!(one::<String>(msg).as_deref(), Some("public.pt_an: analyzed the parent"));
        assert_eq!(one::<i64>(stats), Some(2));
        // Nothing changed since: not again.
        assert_eq!(one::<String>(msg).as_deref(), Some("public.pt_an: nothing to do"));
    }

    #[pg_test]
    fn new_partitions_get_owner_grants_and_reloptions() {
        run("CREATE ROLE pt_reader");
        run("CREATE ROLE pt_owner");
        run("GRANT CREATE ON SCHEMA public TO pt_owner");
        run("CREATE TABLE pt_acl (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
        run("CREATE TABLE pt_acl_first PARTITION OF pt_acl FOR VALUES FROM (date_trunc('day', now(), 'UTC') - interval '1 day') TO (date_trunc('day', now(), 'UTC')) WITH (fillfactor = 70)");
        run("ALTER TABLE pt_acl OWNER TO pt_owner");
        run("ALTER TABLE pt_acl_first OWNER TO pt_owner");
        run("GRANT SELECT, INSERT ON pt_acl TO pt_reader");
        run("SELECT pgmart.create_partition_set('pt_acl', 'ts', '1 day', premake => 1)");
        let today = one::<String>("SELECT 'pt_acl_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')").unwrap();
        assert_eq!(one::<String>(&format!("SELECT relowner::regrole::text FROM pg_class WHERE oid = '{today}'::regclass")).as_deref(), Some("pt_owner"));
        assert_eq!(one::<bool>(&format!("SELECT has_table_privilege('pt_reader', '{today}', 'SELECT') AND has_table_privilege('pt_reader', '{today}', 'INSERT') AND NOT has_table_privilege('pt_reader', '{today}', 'DELETE')")), Some(true));
        assert_eq!(one::<String>(&format!("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE oid = '{today}'::regclass")).as_deref(), Some("fillfactor=70"));
        assert_eq!(one::<String>("SELECT owner::text FROM pgmart.partition_sets WHERE parent = 'public.pt_acl'").as_deref(), Some("pt_owner"));
    }

    #[pg_test]
    fn drop_partition_set_keeps_data_and_deletes_the_job() {
        run("CREATE TABLE pt_drop (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
        let job = one::<i64>("SELECT pgmart.create_partition_set('pt_drop', 'ts', '1 day')").unwrap();
        run("INSERT INTO pt_drop VALUES (now())");
        assert_eq!(one::<bool>("SELECT pgmart.drop_partition_set('pt_drop')"), Some(true));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.jobs WHERE job_id = {job}")), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.partition_sets WHERE parent = 'public.pt_drop'"), Some(0));
        assert_eq!(count_parts("pt_drop"), 6);
        assert_eq!(one::<i64>("SELECT count(*) FROM pt_drop"), Some(1));
        assert_eq!(sqlstate_of("SELECT pgmart.drop_partition_set('pt_drop')"), "42704");
        // drop_job refuses partition jobs (they belong to a set).
        let job2 = one::<i64>("SELECT pgmart.create_partition_set('pt_drop', 'ts', '1 day')").unwrap();
        assert_eq!(sqlstate_of(&format!("SELECT pgmart.drop_job({job2})")), "55000");
    }

    #[pg_test]
    fn a_dropped_parent_disables_its_job_and_drop_job_cleans_up() {
        run("CREATE TABLE pt_gone (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
        let job = one::<i64>("SELECT pgmart.create_partition_set('pt_gone', 'ts', '1 day')").unwrap();
        run("DROP TABLE pt_gone");
        assert_eq!(one::<String>(&format!("SELECT last_status FROM pgmart.partition_sets WHERE job_id = {job}")).as_deref(),
                   Some("dropped"));
        let out = one::<String>(&format!("SELECT status FROM pgmart.run_job({job})"));
        assert_eq!(out.as_deref(), Some("succeeded"));
        assert_eq!(one::<bool>(&format!("SELECT enabled FROM pgmart.jobs WHERE job_id = {job}")), Some(false));
        assert_eq!(
            one::<i64>(&format!("SELECT count(*) FROM pgmart.alerts WHERE dedup_key = 'partition_set_dropped:{job}'")),
            Some(1)
        );
        // The name no longer resolves, so drop_partition_set cannot name it; drop_job can.
        run(&format!("SELECT pgmart.drop_job({job})"));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.partition_set WHERE job_id = {job}")), Some(0));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.jobs WHERE job_id = {job}")), Some(0));
    }

    #[pg_test]
    fn long_names_are_truncated_and_unique() {
        let parent = "pt_".to_string() + &"x".repeat(58);
        run(&format!("CREATE TABLE {parent} (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)"));
        run(&format!("SELECT pgmart.create_partition_set('{parent}', 'ts', '1 hour', premake => 2)"));
        let bad = one::<i64>(&format!(
            "SELECT count(*) FROM pgmart.partitions('{parent}') WHERE octet_length(partition_name) > 63"
        ));
        assert_eq!(bad, Some(0));
        assert_eq!(count_parts(&parent), 4);
    }

    #[pg_test]
    fn run_partition_maintenance_without_argument_covers_every_set() {
        run("CREATE TABLE pt_all_a (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
        run("CREATE TABLE pt_all_b (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
        run("SELECT pgmart.create_partition_set('pt_all_a', 'ts', '1 day')");
        run("SELECT pgmart.create_partition_set('pt_all_b', 'ts', '1 day')");
        let n = one::<i64>("SELECT count(*) FROM pgmart.run_partition_maintenance() WHERE parent IN ('public.pt_all_a', 'public.pt_all_b') AND status = 'succeeded'");
        assert_eq!(n, Some(2));
    }

    #[pg_test]
    fn relations_that_do_not_exist_are_42p01_and_null_is_22004() {
        for q in [
            "SELECT pgmart.create_partition_set(999999, 'ts', '1 day')",
            "SELECT pgmart.drop_partition_set(999999)",
            "SELECT * FROM pgmart.run_partition_maintenance(999999)",
            "SELECT * FROM pgmart.partitions(999999)",
        ] {
            assert_eq!(sqlstate_of(q), "42P01", "{q}");
        }
        for q in [
            "SELECT pgmart.create_partition_set(NULL, 'ts', '1 day')",
            "SELECT pgmart.drop_partition_set(NULL)",
            "SELECT * FROM pgmart.partitions(NULL)",
        ] {
            assert_eq!(sqlstate_of(q), "22004", "{q}");
        }
        run("CREATE TABLE pn_ok (ts timestamptz NOT NULL) PARTITION BY RANGE (ts)");
        run("CREATE VIEW pn_view AS SELECT 1 AS ts");
        assert_eq!(sqlstate_of("SELECT pgmart.create_partition_set('pn_ok', NULL, '1 day')"), "22004");
        assert_eq!(sqlstate_of("SELECT pgmart.create_partition_set('pn_ok', 'ts', NULL)"), "22004");
        assert_eq!(sqlstate_of("SELECT pgmart.create_partition_set('pn_view', 'ts', '1 day')"), "42809");
        assert_eq!(sqlstate_of("SELECT pgmart.create_partition_set('pn_ok', 'ts', '1 day', retention => '100000000 days')"), "22023");
        // NULL for an argument with a default is that default.
        run("SELECT pgmart.create_partition_set('pn_ok', 'ts', '1 day', premake => NULL, timezone => NULL, schedule => NULL)");
        assert_eq!(one::<i32>("SELECT premake FROM pgmart.partition_set WHERE parent = 'pn_ok'::regclass"), Some(4));
    }
}
