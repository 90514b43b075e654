//! `#[pg_test]`s for rollups: creation and its bad input, capture on the source and its
//! partitions (later ones included), incremental refresh equal to a full recomputation, the
//! real-time view, offsets and kept invalidations, backfill, drop.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::testing::{one, sqlstate_of};
    use pgrx::prelude::*;

    fn run(q: &str) {
        Spi::run(q).unwrap();
    }

    fn text(q: &str) -> String {
        one::<String>(q).unwrap_or_default()
    }

    /// The rollup equals the same aggregate computed from scratch over its materialized range.
    fn equal_to_full(rollup: &str, full: &str) -> bool {
        let q = format!(
            "SELECT NOT EXISTS ((SELECT * FROM {rollup} EXCEPT ALL SELECT * FROM ({full}) f \
                                  WHERE f.bucket < pgmart._rollup_watermark((SELECT job_id FROM pgmart.rollups WHERE name = '{rollup}'))) \
                                UNION ALL \
                                (SELECT * FROM ({full}) f WHERE f.bucket < pgmart._rollup_watermark((SELECT job_id FROM pgmart.rollups WHERE name = '{rollup}')) \
                                 EXCEPT ALL SELECT * FROM {rollup}))"
        );
        one::<bool>(&q).unwrap_or(false)
    }

    const FULL: &str = "SELECT date_bin('1 hour', at, '2000-01-01') AS bucket, region, sum(amount) AS revenue, count(*) AS orders, \
                               count(DISTINCT customer) AS buyers FROM ro_orders GROUP BY 1, 2";

    fn orders() {
        run("SET LOCAL TimeZone = 'UTC'");
        run("CREATE TABLE ro_orders (at timestamptz NOT NULL, region text, amount numeric, customer int) PARTITION BY RANGE (at)");
        run("CREATE TABLE ro_orders_1 PARTITION OF ro_orders FOR VALUES FROM ('2024-01-01') TO ('2024-01-02')");
        run("CREATE TABLE ro_orders_2 PARTITION OF ro_orders FOR VALUES FROM ('2024-01-02') TO ('2024-01-03')");
        run("INSERT INTO ro_orders SELECT '2024-01-01'::timestamptz + g * interval '7 minutes', \
                    (ARRAY['eu', 'us', NULL])[1 + g % 3], g % 50, g % 17 FROM generate_series(0, 400) g");
    }

    #[pg_test]
    fn a_rollup_is_filled_and_follows_every_kind_of_write() {
        orders();
        let id = one::<i64>(
            "SELECT pgmart.create_rollup('public.ro_hourly', 'ro_orders', 'at', '1 hour', '{region}', \
                    '{\"revenue\": \"sum(amount)\", \"orders\": \"count(*)\", \"buyers\": \"count(DISTINCT customer)\"}', \
                    schedule => '1 hour')",
        )
        .unwrap();
        assert!(id > 0);
        // Columns in jsonb's key order, after bucket and the dimensions; filled up to now.
        assert_eq!(
            text("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'ro_hourly'::regclass AND attnum > 0"),
            "bucket,region,buyers,orders,revenue"
        );
        let full = "SELECT bucket, region, buyers, orders, revenue FROM (".to_string() + FULL + ") x";
        assert!(equal_to_full("public.ro_hourly", &full));
        assert_eq!(one::<i64>("SELECT count(*) FROM ro_hourly"), one::<i64>(&format!("SELECT count(*) FROM ({FULL}) f")));
        // Every kind of write, through the parent and straight into a partition; a row moved to
        // another bucket and partition; a late row; a new partition made by hand.
        run("INSERT INTO ro_orders VALUES ('2024-01-01 05:10', 'eu', 1000, 999)");
        run("INSERT INTO ro_orders_2 VALUES ('2024-01-02 03:00', 'us', 7, 1)");
        run("UPDATE ro_orders SET at = at + interval '1 day' WHERE at = '2024-01-01 01:10'");
        run("UPDATE ro_orders_1 SET amount = amount + 1 WHERE region = 'eu' AND at < '2024-01-01 03:00'");
        run("DELETE FROM ro_orders WHERE customer = 3");
        run("DELETE FROM ro_orders_2 WHERE customer = 4");
        run("CREATE TABLE ro_orders_3 PARTITION OF ro_orders FOR VALUES FROM ('2024-01-03') TO ('2024-01-04')");
        run("INSERT INTO ro_orders_3 VALUES ('2024-01-03 10:00', NULL, 5, 5)");
        run("MERGE INTO ro_orders o USING (VALUES ('2024-01-01 06:00'::timestamptz, 'eu', 3)) v(at, region, c) \
               ON o.at = v.at AND o.region = v.region \
             WHEN MATCHED THEN UPDATE SET amount = 0 WHEN NOT MATCHED THEN INSERT VALUES (v.at, v.region, 1, v.c)");
        assert!(one::<i64>("SELECT pending_invalidations FROM pgmart.rollups WHERE name = 'public.ro_hourly'").unwrap() > 0);
        let out = text("SELECT pgmart.refresh_rollup('ro_hourly')::text");
        assert!(out.contains("recomputed"), "{out}");
        assert!(equal_to_full("public.ro_hourly", &full));
        assert_eq!(one::<i64>("SELECT pending_invalidations FROM pgmart.rollups WHERE name = 'public.ro_hourly'"), Some(0));
        // Only the changed buckets were recomputed: a second refresh has nothing to do.
        let again = text("SELECT pgmart.refresh_rollup('ro_hourly')->>'rows'");
        assert_eq!(again, "0");
        // TRUNCATE of one partition: its buckets are emptied, the others stay.
        run("TRUNCATE ro_orders_2");
        run("SELECT pgmart.refresh_rollup('ro_hourly')");
        assert!(equal_to_full("public.ro_hourly", &full));
        assert_eq!(one::<i64>("SELECT count(*) FROM ro_hourly WHERE bucket >= '2024-01-02' AND bucket < '2024-01-03'"), Some(0));
        // The real-time view: exact whenever read: the materialized buckets, those with changes
        // not refreshed yet computed live, and what is newer than the watermark.
        run("INSERT INTO ro_orders_3 VALUES ('2024-01-03 11:00', 'eu', 1, 1)");
        run("UPDATE ro_orders SET amount = amount * 2 WHERE at < '2024-01-01 02:00'");
        run("CREATE TABLE ro_orders_now PARTITION OF ro_orders FOR VALUES FROM (now() - interval '1 day') TO (now() + interval '1 day')");
        run("INSERT INTO ro_orders VALUES (now(), 'us', 3, 3), (now() - interval '2 hours', 'eu', 4, 4)");
        assert_eq!(
            one::<i64>(&format!("SELECT count(*) FROM ((SELECT bucket, region, buyers, orders, revenue FROM ro_hourly_rt) \
                                  EXCEPT ALL ({full})) d")),
            Some(0)
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM ro_hourly_rt"), one::<i64>(&format!("SELECT count(*) FROM ({FULL}) f")));
        // Listed, with its freshness.
        assert_eq!(
            text("SELECT source || ' ' || bucket::text || ' ' || array_to_string(measures, ',') FROM pgmart.rollups WHERE name = 'public.ro_hourly'"),
            "public.ro_orders 01:00:00 buyers,orders,revenue"
        );
        assert_eq!(one::<bool>("SELECT NOT stale FROM pgmart.freshness WHERE object = 'public.ro_hourly' AND kind = 'rollup'"), Some(true));
        // Drop: triggers, view, table, job and log go; keep_data keeps the table.
        run("SELECT pgmart.drop_rollup('ro_hourly')");
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgmart_rollup_%'"), Some(0));
        assert_eq!(one::<bool>("SELECT to_regclass('ro_hourly') IS NULL AND to_regclass('ro_hourly_rt') IS NULL"), Some(true));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.job WHERE job_id = {id}")), Some(0));
        run("INSERT INTO ro_orders VALUES ('2024-01-01 05:10', 'eu', 1, 1)");
    }

    #[pg_test]
    fn offsets_keep_old_changes_and_backfill_takes_them() {
        run("SET LOCAL TimeZone = 'UTC'");
        run("CREATE TABLE ro_ev (at timestamptz NOT NULL, v int)");
        run("INSERT INTO ro_ev SELECT now() - g * interval '1 hour', 1 FROM generate_series(1, 96) g");
        run("SELECT pgmart.create_rollup('ro_ev_daily', 'ro_ev', 'at', '1 day', measures => '{\"n\": \"count(*)\", \"s\": \"sum(v)\"}', \
                    start_offset => '2 days', realtime => false)");
        // Only the window was filled (the last two days, whole buckets).
        assert_eq!(one::<bool>("SELECT min(bucket) >= date_trunc('day', now() - interval '2 days') FROM ro_ev_daily"), Some(true));
        // A change older than the window is kept and shown, not refreshed, not lost.
        run("INSERT INTO ro_ev VALUES (now() - interval '5 days', 100)");
        run("SELECT pgmart.refresh_rollup('ro_ev_daily')");
        assert_eq!(one::<i64>("SELECT pending_invalidations FROM pgmart.rollups WHERE name = 'public.ro_ev_daily'"), Some(1));
        // A backfill takes it, and every bucket of its range.
        let out = text("SELECT pgmart.refresh_rollup('ro_ev_daily', now() - interval '6 days', now() - interval '2 days')::text");
        assert!(out.contains("recomputed"), "{out}");
        assert_eq!(one::<i64>("SELECT pending_invalidations FROM pgmart.rollups WHERE name = 'public.ro_ev_daily'"), Some(0));
        assert_eq!(
            one::<i64>("SELECT s FROM ro_ev_daily WHERE bucket = date_trunc('day', now() - interval '5 days')"),
            Some(100 + one::<i64>("SELECT count(*) FROM ro_ev WHERE date_trunc('day', at) = date_trunc('day', now() - interval '5 days') AND v = 1").unwrap())
        );
    }

    #[pg_test]
    fn rollup_bad_input_is_refused_and_changes_nothing() {
        run("CREATE TABLE ro_bad (at timestamptz, d date, v int, t text)");
        run("CREATE VIEW ro_bad_v AS SELECT * FROM ro_bad");
        let c = |args: &str| sqlstate_of(&format!("SELECT pgmart.create_rollup({args})"));
        let m = r#"'{"n": "count(*)"}'"#;
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 'at', '0 minutes', measures => {m}")), "22023");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 'at', '2 months', measures => {m}")), "22023");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 'at', '30 seconds', measures => {m}")), "22023");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 'at', '24 hours', measures => {m}")), "22023");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 'd', '1 hour', measures => {m}")), "22023");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 'nope', '1 hour', measures => {m}")), "42703");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 't', '1 hour', measures => {m}")), "22023");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad_v', 'at', '1 hour', measures => {m}")), "42809");
        assert_eq!(c("'ro_b1', 'ro_bad', 'at', '1 hour', measures => '{\"n\": \"v + 1\"}'"), "22023");
        assert_eq!(c("'ro_b1', 'ro_bad', 'at', '1 hour', measures => '{\"n\": \"sum(random())\"}'"), "22023");
        assert_eq!(c("'ro_b1', 'ro_bad', 'at', '1 hour', measures => '{\"n\": \"sum(nope)\"}'"), "42703");
        assert_eq!(c("'ro_b1', 'ro_bad', 'at', '1 hour', measures => '{}'"), "22023");
        assert_eq!(c("'ro_b1', 'ro_bad', 'at', '1 hour', measures => '[1]'"), "22023");
        assert_eq!(c("'ro_b1', 'ro_bad', 'at', '1 hour', measures => '{\"bucket\": \"count(*)\"}'"), "22023");
        assert_eq!(c("'ro_b1', 'ro_bad', 'at', '1 hour', '{t}', '{\"t\": \"count(*)\"}'"), "22023");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 'at', '1 hour', '{{nope}}', {m}")), "42703");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 'at', '1 hour', measures => {m}, filter => 'v'")), "22023");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 'at', '1 hour', measures => {m}, timezone => 'Mars/Base'")), "22023");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 'at', '1 hour', measures => {m}, schedule => '*/5 * * *'")), "22023");
        assert_eq!(c(&format!("'ro_b1', 'ro_bad', 'at', '1 hour', measures => {m}, start_offset => '-1 day'")), "22023");
        assert_eq!(c(&format!("'no_schema.ro_b1', 'ro_bad', 'at', '1 hour', measures => {m}")), "3F000");
        assert_eq!(c("'ro_b1', 'ro_bad', 'at', '1 hour'"), "22004");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.rollups"), Some(0));
        assert_eq!(one::<bool>("SELECT to_regclass('ro_b1') IS NULL"), Some(true));
        // A second rollup of that name.
        run(&format!("SELECT pgmart.create_rollup('ro_b2', 'ro_bad', 'at', '1 hour', measures => {m})"));
        assert_eq!(c(&format!("'ro_b2', 'ro_bad', 'at', '1 day', measures => {m}")), "42P07");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.rollups"), Some(1));
        assert_eq!(sqlstate_of("SELECT pgmart.refresh_rollup('nope')"), "42704");
        assert_eq!(sqlstate_of("SELECT pgmart.refresh_rollup('ro_b2', 'infinity')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.refresh_rollup('ro_b2', '2024-01-02', '2024-01-01')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.drop_rollup('nope')"), "42704");
        assert_eq!(sqlstate_of("SELECT pgmart.drop_job((SELECT job_id FROM pgmart.rollups WHERE name = 'public.ro_b2'))"), "55000");
    }

    #[pg_test]
    fn a_rollup_follows_its_source_rebuilt_by_dbt() {
        run("SET LOCAL TimeZone = 'UTC'");
        run("CREATE TABLE ro_model (at timestamptz NOT NULL, v int)");
        run("INSERT INTO ro_model VALUES ('2024-01-01 10:00', 1), ('2024-01-01 11:00', 2)");
        run("SELECT pgmart.create_rollup('ro_model_daily', 'ro_model', 'at', '1 day', measures => '{\"s\": \"sum(v)\"}')");
        assert_eq!(one::<i64>("SELECT s FROM ro_model_daily"), Some(3));
        // dbt: drop the model (its dependants with it) and build it again under its name.
        run("DROP TABLE ro_model CASCADE");
        run("CREATE TABLE ro_model (at timestamptz NOT NULL, v int)");
        run("INSERT INTO ro_model VALUES ('2024-01-01 10:00', 10), ('2024-01-02 10:00', 20)");
        assert_eq!(text("SELECT source FROM pgmart.rollups WHERE name = 'public.ro_model_daily'"), "public.ro_model");
        // Capture is on the new table, the real-time view is back, the next refresh recomputes.
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ro_model'::regclass AND tgname LIKE 'pgmart_rollup_%'"), Some(4));
        assert_eq!(one::<i64>("SELECT sum(s)::int8 FROM ro_model_daily_rt"), Some(30));
        run("SELECT pgmart.refresh_rollup('ro_model_daily')");
        assert_eq!(text("SELECT string_agg(s::text, ',' ORDER BY bucket) FROM ro_model_daily"), "10,20");
    }

    #[pg_test]
    fn buckets_of_days_and_months_start_at_local_midnight() {
        run("SET LOCAL TimeZone = 'UTC'");
        run("CREATE TABLE ro_cal (at timestamptz NOT NULL, d date NOT NULL, v int)");
        // Around Europe/Berlin's switch to summer time (2024-03-31) and a month end.
        run("INSERT INTO ro_cal VALUES ('2024-03-30 22:30+00', '2024-03-30', 1), ('2024-03-30 23:30+00', '2024-03-31', 2), \
                                       ('2024-03-31 21:59+00', '2024-03-31', 4), ('2024-03-31 22:00+00', '2024-04-01', 8)");
        run("SELECT pgmart.create_rollup('ro_cal_day', 'ro_cal', 'at', '1 day', measures => '{\"s\": \"sum(v)\"}', timezone => 'Europe/Berlin')");
        assert_eq!(
            text("SELECT string_agg(to_char(bucket AT TIME ZONE 'Europe/Berlin', 'MM-DD HH24') || '=' || s, ',' ORDER BY bucket) FROM ro_cal_day"),
            "03-30 00=1,03-31 00=6,04-01 00=8"
        );
        run("SELECT pgmart.create_rollup('ro_cal_month', 'ro_cal', 'at', '1 month', measures => '{\"s\": \"sum(v)\"}', timezone => 'Europe/Berlin')");
        assert_eq!(
            text("SELECT string_agg(to_char(bucket AT TIME ZONE 'Europe/Berlin', 'MM-DD HH24') || '=' || s, ',' ORDER BY bucket) FROM ro_cal_month"),
            "03-01 00=7,04-01 00=8"
        );
        assert_eq!(text("SELECT bucket::text FROM pgmart.rollups WHERE name = 'public.ro_cal_month'"), "1 mon");
        // A date column in day buckets, and weeks from Monday.
        run("SELECT pgmart.create_rollup('ro_cal_week', 'ro_cal', 'd', '7 days', measures => '{\"s\": \"sum(v)\"}', realtime => false)");
        assert_eq!(
            text("SELECT string_agg(to_char(bucket, 'YYYY-MM-DD Dy') || '=' || s, ',' ORDER BY bucket) FROM ro_cal_week"),
            "2024-03-25 Mon=7,2024-04-01 Mon=8"
        );
        // A late change to one month is recomputed there only.
        run("INSERT INTO ro_cal VALUES ('2024-03-10 12:00+00', '2024-03-10', 16)");
        run("SELECT pgmart.refresh_rollup('ro_cal_month')");
        assert_eq!(text("SELECT string_agg(s::text, ',' ORDER BY bucket) FROM ro_cal_month"), "23,8");
    }

    /// The rollup's (bucket, s, n) rows minus the same aggregate computed from scratch, and back.
    fn differences(rollup: &str, bucket: &str) -> i64 {
        let full = format!("SELECT {bucket} AS bucket, sum(v) AS s, count(*) AS n FROM ro_cap GROUP BY 1");
        one::<i64>(&format!(
            "SELECT (SELECT count(*) FROM (SELECT bucket, s, n FROM {rollup} EXCEPT ALL {full}) a) \
                  + (SELECT count(*) FROM ({full} EXCEPT ALL SELECT bucket, s, n FROM {rollup}) b)"
        ))
        .unwrap_or(-1)
    }

    #[pg_test]
    fn capture_logs_exactly_the_buckets_a_statement_changed_for_every_kind_of_time_column() {
        run("SET LOCAL TimeZone = 'UTC'");
        run("CREATE TABLE ro_cap (at timestamptz NOT NULL, lt timestamp NOT NULL, d date NOT NULL, v int)");
        run("INSERT INTO ro_cap SELECT t, t AT TIME ZONE 'UTC', (t AT TIME ZONE 'Asia/Kolkata')::date, 1 \
               FROM generate_series('2024-01-01'::timestamptz, '2024-02-29', '1 hour') t");
        let m = "measures => '{\"s\": \"sum(v)\", \"n\": \"count(*)\"}', realtime => false";
        // Hours on Kolkata's half-hour grid, hours of a timestamp column, days of a date column.
        run(&format!("SELECT pgmart.create_rollup('ro_cap_h', 'ro_cap', 'at', '1 hour', {m}, timezone => 'Asia/Kolkata')"));
        run(&format!("SELECT pgmart.create_rollup('ro_cap_l', 'ro_cap', 'lt', '1 hour', {m})"));
        run(&format!("SELECT pgmart.create_rollup('ro_cap_d', 'ro_cap', 'd', '1 day', {m}, timezone => 'Asia/Kolkata')"));
        let buckets = [
            ("ro_cap_h", "date_bin('1 hour', at, '2000-01-01 00:00'::timestamp AT TIME ZONE 'Asia/Kolkata')"),
            ("ro_cap_l", "date_bin('1 hour', lt AT TIME ZONE 'UTC', '2000-01-01 00:00+00')"),
            ("ro_cap_d", "(d::timestamp AT TIME ZONE 'Asia/Kolkata')"),
        ];
        let refreshed = |rollup: &str, key: &str| {
            one::<i64>(&format!("SELECT (pgmart.refresh_rollup('{rollup}') ->> '{key}')::int8")).unwrap_or(-1)
        };
        // Late rows scattered over two months, in one statement: each bucket they fall in is
        // recomputed, and no other (10:29:59 and 10:30 UTC are two Kolkata hours, one UTC hour).
        run("INSERT INTO ro_cap VALUES ('2024-01-05 10:29:59+00', '2024-01-05 10:29:59', '2024-01-05', 10), \
                                       ('2024-01-05 10:30+00', '2024-01-05 10:30', '2024-01-05', 20), \
                                       ('2024-01-20 00:00+00', '2024-01-20 00:00', '2024-01-20', 40), \
                                       ('2024-02-10 23:59+00', '2024-02-10 23:59', '2024-02-10', 80)");
        for ((rollup, bucket), recomputed) in buckets.iter().zip([4, 3, 3]) {
            assert_eq!(refreshed(rollup, "rows"), recomputed, "{rollup}");
            assert_eq!(differences(rollup, bucket), 0, "{rollup}");
        }
        // An update moves rows to another bucket: both are recomputed (the old one is now empty).
        run("UPDATE ro_cap SET at = at + interval '3 days', d = d + 3 WHERE v = 40");
        for (rollup, bucket) in buckets {
            assert_eq!(refreshed(rollup, "consumed"), if rollup == "ro_cap_l" { 1 } else { 2 }, "{rollup}");
            assert_eq!(differences(rollup, bucket), 0, "{rollup}");
        }
        // Deletes, and a TRUNCATE (everything).
        run("DELETE FROM ro_cap WHERE at < '2024-01-02' OR v = 80");
        for (rollup, bucket) in buckets {
            refreshed(rollup, "rows");
            assert_eq!(differences(rollup, bucket), 0, "{rollup}");
        }
        run("TRUNCATE ro_cap");
        run("INSERT INTO ro_cap VALUES ('2024-01-07 00:00+00', '2024-01-07 00:00', '2024-01-07', 1)");
        for (rollup, bucket) in buckets {
            refreshed(rollup, "rows");
            assert_eq!(differences(rollup, bucket), 0, "{rollup}");
            assert_eq!(one::<i64>(&format!("SELECT count(*) FROM {rollup}")), Some(1), "{rollup}");
        }
    }

    #[pg_test]
    fn metrics_are_answered_from_a_covering_rollup_with_identical_results() {
        run("SET LOCAL TimeZone = 'UTC'");
        run("CREATE TABLE ro_mx (at timestamptz NOT NULL, region text, amount numeric, customer int)");
        run("INSERT INTO ro_mx SELECT '2024-01-01'::timestamptz + g * interval '13 minutes', (ARRAY['eu','us'])[1 + g % 2], \
                    g % 37, g % 11 FROM generate_series(0, 600) g");
        run("SELECT pgmart.register_metric('mx_rev', 'ro_mx', 'sum(amount)', 'at', 't', 'revenue', dimensions => '{region}')");
        run("SELECT pgmart.register_metric('mx_avg', 'ro_mx', 'sum(amount) / nullif(count(*), 0)', 'at', 't', 'average', dimensions => '{region}')");
        run("SELECT pgmart.register_metric('mx_n', 'ro_mx', 'count(*)', 'at', 't', 'orders')");
        run("SELECT pgmart.register_metric('mx_buyers', 'ro_mx', 'count(DISTINCT customer)', 'at', 't', 'buyers')");
        let asks = [
            "'mx_rev', '2024-01-01', '2024-01-06', 'day', '{region}'",
            "'mx_avg', '2024-01-01', '2024-01-06', 'day', '{region}'",
            "'mx_avg', '2024-01-02 05:00+00', '2024-01-03 07:00+00', 'hour'",
            "'mx_n', '2024-01-01', '2024-02-01', 'week'",
            "'mx_n', '2023-12-31', '2024-01-08', 'day', '{}', 'Europe/Berlin'",
        ];
        let values = |a: &str| {
            text(&format!(
                "SELECT string_agg(concat_ws('|', bucket_start, bucket_local, is_partial, dimension_values, value, numerator, denominator), ';' \
                                   ORDER BY bucket_start, dimension_values) FROM pgmart.metric_values({a})"
            ))
        };
        let raw: Vec<String> = asks.iter().map(|a| values(a)).collect();
        run("SELECT pgmart.create_rollup('ro_mx_hourly', 'ro_mx', 'at', '1 hour', '{region}', \
                    '{\"revenue\": \"sum(amount)\", \"n\": \"count(*)\", \"buyers\": \"count(DISTINCT customer)\"}')");
        for (a, expected) in asks.iter().zip(&raw) {
            let q = text(&format!("SELECT pgmart.metric_sql({a})"));
            if a.contains("Europe/Berlin") {
                assert!(!q.contains("answered from rollup"), "another zone: {q}");
            } else {
                assert!(q.starts_with("-- pgmart: answered from rollup public.ro_mx_hourly"), "{a}: {q}");
            }
            assert_eq!(&values(a), expected, "{a}");
        }
        // A late row, not refreshed yet: the real-time view still answers exactly (the same
        // metrics with a filter the rollup has not are read from the source).
        run("INSERT INTO ro_mx VALUES ('2024-01-02 10:30+00', 'eu', 1000, 3)");
        for m in ["mx_rev", "mx_avg", "mx_n"] {
            run(&format!(
                "SELECT pgmart.register_metric('{m}_raw', 'ro_mx', (SELECT expression FROM pgmart.metrics WHERE name = '{m}'), 'at', 't', 'raw', \
                        dimensions => (SELECT dimensions FROM pgmart.metrics WHERE name = '{m}'), filter => 'true', allow_duplicate => true)"
            ));
        }
        for a in asks.iter().filter(|a| !a.contains("Berlin")) {
            let name = a.split('\'').nth(1).unwrap();
            let raw_ask = a.replacen(&format!("'{name}'"), &format!("'{name}_raw'"), 1);
            assert!(!text(&format!("SELECT pgmart.metric_sql({raw_ask})")).contains("answered from rollup"));
            assert_eq!(values(a), values(&raw_ask), "{a}");
        }
        assert_ne!(values(asks[0]), raw[0]);
        // Not from the rollup: count(DISTINCT), a bound inside a bucket, an unknown dimension.
        assert!(!text("SELECT pgmart.metric_sql('mx_buyers', '2024-01-01', '2024-01-03')").contains("answered from rollup"));
        assert!(!text("SELECT pgmart.metric_sql('mx_rev', '2024-01-01 00:30+00', '2024-01-03')").contains("answered from rollup"));
        run("SELECT pgmart.register_metric('mx_rev2', 'ro_mx', 'sum(amount)', 'at', 't', 'revenue by customer', dimensions => '{customer}', allow_duplicate => true)");
        assert!(!text("SELECT pgmart.metric_sql('mx_rev2', '2024-01-01', '2024-01-03', dimensions => '{customer}')").contains("answered from rollup"));
        assert!(text("SELECT pgmart.metric_sql('mx_rev2', '2024-01-01', '2024-01-03')").contains("answered from rollup"));
        // A metric may also be registered on the rollup's table itself.
        run("SELECT pgmart.register_metric('mx_on_rollup', 'ro_mx_hourly', 'sum(revenue)', 'bucket', 't', 'revenue from the rollup', dimensions => '{region}')");
        run("SELECT pgmart.refresh_rollup('ro_mx_hourly')");
        assert_eq!(
            values("'mx_on_rollup', '2024-01-01', '2024-01-06', 'day', '{region}'"),
            values("'mx_rev', '2024-01-01', '2024-01-06', 'day', '{region}'")
        );
    }

    #[pg_test]
    fn history_outlives_dropped_partitions_unless_the_rollup_has_a_retention() {
        run("SET LOCAL TimeZone = 'UTC'");
        run("CREATE TABLE ro_ret (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at)");
        run("CREATE TABLE ro_ret_old PARTITION OF ro_ret FOR VALUES FROM (now() - interval '30 days') TO (now() - interval '10 days')");
        run("CREATE TABLE ro_ret_new PARTITION OF ro_ret FOR VALUES FROM (now() - interval '10 days') TO (now() + interval '1 day')");
        run("INSERT INTO ro_ret SELECT now() - g * interval '1 day', 1 FROM generate_series(1, 25) g");
        run("SELECT pgmart.create_rollup('ro_ret_keep', 'ro_ret', 'at', '1 day', measures => '{\"n\": \"count(*)\"}', realtime => false)");
        run("SELECT pgmart.create_rollup('ro_ret_short', 'ro_ret', 'at', '1 day', measures => '{\"n\": \"count(*)\"}', realtime => false, \
                    retention => '5 days')");
        assert_eq!(one::<i64>("SELECT count(*) FROM ro_ret_keep"), Some(25));
        assert_eq!(one::<bool>("SELECT min(bucket) >= date_trunc('day', now() - interval '5 days') FROM ro_ret_short"), Some(true));
        // The source's old partition goes (as pgmart's retention does it): the rollup keeps its days.
        run("ALTER TABLE ro_ret DETACH PARTITION ro_ret_old");
        run("DROP TABLE ro_ret_old");
        run("INSERT INTO ro_ret VALUES (now() - interval '2 days', 1)");
        run("SELECT pgmart.refresh_rollup('ro_ret_keep')");
        run("SELECT pgmart.refresh_rollup('ro_ret_short')");
        assert_eq!(one::<i64>("SELECT sum(n)::int8 FROM ro_ret_keep"), Some(26));
        assert_eq!(one::<bool>("SELECT min(bucket) >= date_trunc('day', now() - interval '5 days') FROM ro_ret_short"), Some(true));
        assert_eq!(text("SELECT retention::text FROM pgmart.rollups WHERE name = 'public.ro_ret_short'"), "5 days");
    }
}
