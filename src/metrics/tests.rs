//! `#[pg_test]`s for metric contracts: registration, every validation error, versioning,
//! duplicates, protection, bucket alignment across DST, empty buckets.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::sql;
    use pgrx::prelude::*;
    use crate::testing::{sqlstate_of, one};

    fn text(q: &str) -> String {
        one::<String>(q).unwrap_or_default()
    }

    /// A small orders table named `t`.
    fn orders(t: &str) {
        Spi::run(&format!(
            "CREATE TABLE {t} (id int, created_at timestamptz, amount numeric, status text, region text, \
                               customer_id int, note text, day date, local_ts timestamp)"
        ))
        .unwrap();
        Spi::run(&format!(
            "INSERT INTO {t} VALUES \
               (1, '2024-01-01 10:00+00', 10, 'paid', 'eu', 1, 'x', '2024-01-01', '2024-01-01 10:00'), \
               (2, '2024-01-01 12:00+00', 20, 'paid', 'us', 2, 'x', '2024-01-01', '2024-01-01 12:00'), \
               (3, '2024-01-03 09:00+00', 5, 'refunded', 'eu', 1, 'x', '2024-01-03', '2024-01-03 09:00')"
        ))
        .unwrap();
    }

    #[pg_test]
    fn register_metric_stores_a_versioned_protected_contract() {
        orders("m_reg");
        let v = one::<i32>(
            "SELECT pgmart.register_metric('reg_revenue', 'm_reg', 'sum(amount)', 'created_at', 'finance', \
                    'Paid revenue', dimensions => '{region}', filter => 'status = ''paid''')",
        );
        assert_eq!(v, Some(1));
        let row = text(
            "SELECT concat_ws('|', version, owner, description, source, expression, filter, dimensions::text, grain, deprecated) \
               FROM pgmart.metrics WHERE name = 'reg_revenue'",
        );
        // The definition is stored as PostgreSQL deparses it after analysis.
        assert_eq!(row, "1|finance|Paid revenue|public.m_reg|sum(amount)|(status = 'paid'::text)|{region}|day|f");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.metric_versions WHERE name = 'reg_revenue'"), Some(1));
        // The protection view has exactly the columns the metric uses, and names the metric.
        let cols = text(
            "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
              WHERE attrelid = 'pgmart_metric_columns.reg_revenue'::regclass AND attnum > 0",
        );
        assert_eq!(cols, "created_at,region,amount,status");
        assert!(text("SELECT obj_description('pgmart_metric_columns.reg_revenue'::regclass)").contains("reg_revenue"));
        // PostgreSQL itself refuses to drop a column or the table it uses; others may go.
        assert_eq!(sqlstate_of("ALTER TABLE m_reg DROP COLUMN amount"), "2BP01");
        assert_eq!(sqlstate_of("DROP TABLE m_reg"), "2BP01");
        Spi::run("ALTER TABLE m_reg DROP COLUMN note").unwrap();
        // metric_sql is what metric_values runs.
        let sql_text = text("SELECT pgmart.metric_sql('reg_revenue', '2024-01-01', '2024-01-04')");
        assert!(sql_text.contains("pgmart_metric_columns"), "{sql_text}");
        let total = one::<pgrx::AnyNumeric>(&format!("SELECT sum(value) FROM ({sql_text}) q"));
        assert_eq!(total.map(|n| n.to_string()), Some("30".into()));
    }

    #[pg_test]
    fn register_metric_rejects_bad_input_and_changes_nothing() {
        orders("m_bad");
        Spi::run("CREATE TABLE m_other (id int)").unwrap();
        let reg = |name: &str, expr: &str, time: &str, extra: &str| {
            format!(
                "SELECT pgmart.register_metric('{name}', 'm_bad', $${expr}$$, '{time}', 'team', 'desc'{extra})"
            )
        };
        // Unknown columns.
        assert_eq!(sqlstate_of(&reg("b1", "sum(nope)", "created_at", "")), "42703");
        assert_eq!(sqlstate_of(&reg("b2", "count(*)", "nope", "")), "42703");
        assert_eq!(sqlstate_of(&reg("b3", "count(*)", "created_at", ", dimensions => '{nope}'")), "42703");
        assert_eq!(sqlstate_of(&reg("b4", "count(*)", "created_at", ", filter => 'nope > 1'")), "42703");
        // Not an aggregate.
        assert_eq!(sqlstate_of(&reg("b5", "amount", "created_at", "")), "22023");
        assert_eq!(sqlstate_of(&reg("b6", "amount + count(*)", "created_at", "")), "22023");
        assert_eq!(sqlstate_of(&reg("b7", "1", "created_at", "")), "22023");
        assert_eq!(sqlstate_of(&reg("b8", "count(*) OVER ()", "created_at", "")), "22023");
        assert_eq!(sqlstate_of(&reg("b9", "string_agg(status, ',')", "created_at", "")), "22023");
        // Filter not boolean, or an aggregate.
        assert_eq!(sqlstate_of(&reg("b10", "count(*)", "created_at", ", filter => 'amount'")), "22023");
        assert_eq!(sqlstate_of(&reg("b11", "count(*)", "created_at", ", filter => 'count(*) > 1'")), "22023");
        // Time column not a date/time.
        assert_eq!(sqlstate_of(&reg("b12", "count(*)", "amount", "")), "22023");
        // Empty owner / description.
        assert_eq!(sqlstate_of("SELECT pgmart.register_metric('b13', 'm_bad', 'count(*)', 'created_at', ' ', 'd')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.register_metric('b14', 'm_bad', 'count(*)', 'created_at', 'o', '')"), "22023");
        // Names.
        for bad in ["Revenue", "2x", "a-b", "", "a b"] {
            assert_eq!(sqlstate_of(&reg(bad, "count(*)", "created_at", "")), "22023", "{bad}");
        }
        // Grain.
        assert_eq!(sqlstate_of(&reg("b15", "count(*)", "created_at", ", grain => 'minute'")), "22023");
        assert_eq!(sqlstate_of(&reg("b16", "count(*)", "day", ", grain => 'hour'")), "22023");
        // Source missing.
        assert_eq!(sqlstate_of("SELECT pgmart.register_metric('b17', 'no_such_table', 'count(*)', 'created_at', 'o', 'd')"), "42P01");
        // Injection and other tables.
        assert_eq!(sqlstate_of(&reg("b18", "count(*); DROP TABLE m_bad", "created_at", "")), "22023");
        // A trailing comment cannot swallow what pgmart puts after the fragment.
        assert_eq!(sqlstate_of(&reg("b19", "count(*)) FROM m_other --", "created_at", "")), "22023");
        assert_eq!(sqlstate_of(&reg("b20", "count(*)) FROM m_other WHERE ((true", "created_at", "")), "22023");
        assert_eq!(sqlstate_of(&reg("b21", "count(*) + (SELECT count(*) FROM m_other)", "created_at", "")), "22023");
        assert_eq!(sqlstate_of(&reg("b22", "count(*)", "created_at", ", filter => 'id IN (SELECT id FROM m_other)'")), "22023");
        // Division by zero on no rows would break empty buckets.
        assert_eq!(sqlstate_of(&reg("b23", "count(*) / count(*)", "created_at", "")), "22023");
        // Duplicate dimension.
        assert_eq!(sqlstate_of(&reg("b24", "count(*)", "created_at", ", dimensions => '{region,region}'")), "22023");
        // Nothing was stored, no view was left behind.
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.metrics WHERE name ~ '^b[0-9]+$'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.metric_versions WHERE name ~ '^b[0-9]+$'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_class WHERE relnamespace IN ('pgmart_metrics'::regnamespace, 'pgmart_metric_columns'::regnamespace) AND relname ~ 'b[0-9]+$'"), Some(0));
        // A subquery, even over the source itself, is refused (a fragment reads only its row or
        // aggregates); a ratio of aggregates and FILTER are fine.
        assert_eq!(sqlstate_of(&reg("b25", "count(DISTINCT customer_id)", "day", ", filter => 'id IN (SELECT id FROM m_bad WHERE amount > 1)'")), "22023");
        Spi::run(&reg("ok_ratio", "sum(amount) FILTER (WHERE status = 'paid') / nullif(count(*), 0)", "created_at", "")).unwrap();
        Spi::run(&reg("ok_distinct", "count(DISTINCT customer_id)", "day", ", filter => 'amount > 1'")).unwrap();
    }

    #[pg_test]
    fn re_registering_versions_and_same_definition_is_a_no_op() {
        orders("m_ver");
        let reg = |expr: &str, grain: &str| {
            one::<i32>(&format!(
                "SELECT pgmart.register_metric('ver_metric', 'm_ver', '{expr}', 'created_at', 'team', 'd', grain => '{grain}')"
            ))
        };
        assert_eq!(reg("sum(amount)", "day"), Some(1));
        assert_eq!(reg("sum(amount)", "day"), Some(1));
        // Whitespace and case are not a change.
        assert_eq!(reg("SUM( amount )", "day"), Some(1));
        assert_eq!(reg("sum(amount * 2)", "day"), Some(2));
        assert_eq!(reg("sum(amount * 2)", "week"), Some(3));
        assert_eq!(one::<i32>("SELECT version FROM pgmart.metrics WHERE name = 'ver_metric'"), Some(3));
        assert_eq!(
            text("SELECT string_agg(version || ':' || (definition->>'expression') || ':' || (definition->>'grain'), ',' ORDER BY version) FROM pgmart.metric_versions WHERE name = 'ver_metric'"),
            "1:sum(amount):day,2:sum((amount * (2)::numeric)):day,3:sum((amount * (2)::numeric)):week"
        );
        let summary = text("SELECT change_summary FROM pgmart.metric_versions WHERE name = 'ver_metric' AND version = 2");
        assert!(summary.contains("expression: sum(amount) -> sum((amount * (2)::numeric))"), "{summary}");
        assert_eq!(text("SELECT changed_by::text FROM pgmart.metric_versions WHERE name = 'ver_metric' AND version = 3"), sql::role_name(sql::caller()));
        assert_eq!(one::<String>("SELECT change_summary FROM pgmart.metric_versions WHERE name = 'ver_metric' AND version = 3").as_deref(), Some("grain: day -> week"));
        // Registering again changes only what is given: what is left out (NULL) keeps its value.
        Spi::run("SELECT pgmart.register_metric('ver_dims', 'm_ver', 'sum(amount)', 'created_at', 'team', 'd', \
                         dimensions => '{region}', filter => 'status = ''paid''', grain => 'week')").unwrap();
        assert_eq!(one::<i32>("SELECT pgmart.register_metric('ver_dims', 'm_ver', 'sum(amount)', 'created_at', 'team', 'd')"), Some(1));
        assert_eq!(text("SELECT dimensions::text || ' ' || filter || ' ' || grain FROM pgmart.metrics WHERE name = 'ver_dims'"), "{region} (status = 'paid'::text) week");
        assert_eq!(one::<i32>("SELECT pgmart.register_metric('ver_dims', 'm_ver', 'sum(amount)', 'created_at', 'team', 'd', grain => 'month')"), Some(2));
        assert_eq!(text("SELECT dimensions::text || ' ' || filter || ' ' || grain FROM pgmart.metrics WHERE name = 'ver_dims'"), "{region} (status = 'paid'::text) month");
        // An empty filter or dimension list says "none".
        assert_eq!(one::<i32>("SELECT pgmart.register_metric('ver_dims', 'm_ver', 'sum(amount)', 'created_at', 'team', 'd', filter => '', dimensions => '{}')"), Some(3));
        assert_eq!(text("SELECT dimensions::text || ' ' || coalesce(filter, '-') || ' ' || grain FROM pgmart.metrics WHERE name = 'ver_dims'"), "{} - month");
    }

    #[pg_test]
    fn duplicate_definitions_are_refused_naming_the_existing_metric() {
        orders("m_dup");
        Spi::run("SELECT pgmart.register_metric('dup_a', 'm_dup', 'sum(amount)', 'created_at', 'team', 'd', filter => 'status = ''paid''')").unwrap();
        let dup = "SELECT pgmart.register_metric('dup_b', 'm_dup', 'SUM(  Amount)', 'created_at', 'other', 'other', filter => '(status=''paid'')')";
        assert_eq!(sqlstate_of(dup), "42710");
        let msg = match sql::subtransaction(|| Spi::run(dup)) {
            Err(c) => c.message,
            Ok(_) => unreachable!(),
        };
        assert!(msg.contains("dup_a"), "{msg}");
        // A different time column is a different metric.
        Spi::run("SELECT pgmart.register_metric('dup_c', 'm_dup', 'sum(amount)', 'local_ts', 'team', 'd', filter => 'status = ''paid''')").unwrap();
        Spi::run(&format!("{}", dup.replace("'(status=''paid'')')", "'(status=''paid'')', allow_duplicate => true)"))).unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.metrics WHERE name IN ('dup_a', 'dup_b', 'dup_c')"), Some(3));
    }

    #[pg_test]
    fn day_buckets_align_to_local_midnight_across_dst() {
        Spi::run("CREATE TABLE m_dst (ts timestamptz, amount numeric)").unwrap();
        // Europe/Berlin switches to summer time on 2024-03-31 (02:00 -> 03:00).
        Spi::run(
            "INSERT INTO m_dst VALUES ('2024-03-30 23:30+01', 1), ('2024-03-31 00:30+01', 2), \
                                      ('2024-03-31 23:30+02', 4), ('2024-04-01 00:30+02', 8)",
        )
        .unwrap();
        Spi::run("SELECT pgmart.register_metric('dst_amount', 'm_dst', 'sum(amount)', 'ts', 'team', 'd')").unwrap();
        let got = text(
            "SELECT string_agg(to_char(bucket_start AT TIME ZONE 'UTC', 'MM-DD HH24:MI') || '=' || coalesce(value::text, 'null'), ' ' ORDER BY bucket_start) \
               FROM pgmart.metric_values('dst_amount', '2024-03-30 00:00+01', '2024-04-02 00:00+02', timezone => 'Europe/Berlin')",
        );
        // Local midnights: 03-30 and 03-31 at 23:00 UTC the day before (+01), 04-01 at 22:00 UTC (+02).
        assert_eq!(got, "03-29 23:00=1 03-30 23:00=6 03-31 22:00=8");
        // Hour buckets keep both sides of the gap as real hours: 02:00 local never exists.
        let hours = text(
            "SELECT string_agg(to_char(bucket_start AT TIME ZONE 'Europe/Berlin', 'HH24'), ',' ORDER BY bucket_start) \
               FROM pgmart.metric_values('dst_amount', '2024-03-31 00:00+01', '2024-03-31 05:00+02', grain => 'hour', timezone => 'Europe/Berlin')",
        );
        assert_eq!(hours, "00,01,03,04");
        // Month buckets in the zone.
        let months = text(
            "SELECT string_agg(to_char(bucket_start AT TIME ZONE 'Europe/Berlin', 'YYYY-MM-DD HH24') || '=' || value, ',' ORDER BY bucket_start) \
               FROM pgmart.metric_values('dst_amount', '2024-03-01 00:00+01', '2024-05-01 00:00+02', grain => 'month', timezone => 'Europe/Berlin')",
        );
        assert_eq!(months, "2024-03-01 00=7,2024-04-01 00=8");
        // In a half-hour zone, hour buckets start at local full hours (xx:30 UTC).
        let kolkata = text(
            "SELECT string_agg(to_char(bucket_start AT TIME ZONE 'UTC', 'HH24:MI'), ',' ORDER BY bucket_start) \
               FROM pgmart.metric_values('dst_amount', '2024-03-30 22:00+00', '2024-03-31 00:30+00', grain => 'hour', timezone => 'Asia/Kolkata')",
        );
        assert_eq!(kolkata, "21:30,22:30,23:30");
    }

    #[pg_test]
    fn empty_buckets_get_the_aggregates_empty_value() {
        Spi::run("SET LOCAL TimeZone = 'UTC'").unwrap();
        orders("m_empty");
        Spi::run("SELECT pgmart.register_metric('empty_count', 'm_empty', 'count(*)', 'created_at', 'team', 'count')").unwrap();
        Spi::run("SELECT pgmart.register_metric('empty_sum', 'm_empty', 'sum(amount)', 'created_at', 'team', 'sum', dimensions => '{region,status}')").unwrap();
        let counts = text(
            "SELECT string_agg(to_char(bucket_start AT TIME ZONE 'UTC', 'DD') || '=' || value, ',' ORDER BY bucket_start) \
               FROM pgmart.metric_values('empty_count', '2024-01-01', '2024-01-05')",
        );
        assert_eq!(counts, "01=2,02=0,03=1,04=0");
        let sums = text(
            "SELECT string_agg(to_char(bucket_start AT TIME ZONE 'UTC', 'DD') || (dimension_values->>'region') || '=' || coalesce(value::text, 'null'), ',' ORDER BY bucket_start, dimension_values) \
               FROM pgmart.metric_values('empty_sum', '2024-01-01', '2024-01-04', dimensions => '{region}')",
        );
        assert_eq!(sums, "01eu=10,01us=20,02eu=null,02us=null,03eu=5,03us=null");
        // No rows at all and no dimensions: every bucket, empty value.
        assert_eq!(
            text("SELECT string_agg(value::text, ',') FROM pgmart.metric_values('empty_count', '2030-01-01', '2030-01-03')"),
            "0,0"
        );
        // Bad requests.
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values('empty_sum', '2024-01-01', '2024-01-04', dimensions => '{customer_id}')"), "22023");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values('empty_sum', '2024-01-04', '2024-01-01')"), "22023");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values('empty_sum', '2024-01-01', '2024-01-04', grain => 'minute')"), "22023");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values('empty_sum', '2024-01-01', '2024-01-04', timezone => 'Mars/Olympus')"), "22023");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values('empty_sum', '2024-01-01', 'infinity')"), "22023");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values('no_such_metric', '2024-01-01', '2024-01-04')"), "42704");
    }

    #[pg_test]
    fn renamed_columns_keep_working_and_deprecation_points_to_the_replacement() {
        Spi::run("SET LOCAL TimeZone = 'UTC'").unwrap();
        orders("m_ren");
        Spi::run("SELECT pgmart.register_metric('ren_paid', 'm_ren', 'sum(amount)', 'created_at', 'team', 'd', dimensions => '{region}', filter => 'status = ''paid''')").unwrap();
        Spi::run("ALTER TABLE m_ren RENAME COLUMN amount TO total").unwrap();
        Spi::run("ALTER TABLE m_ren RENAME COLUMN created_at TO ordered_at").unwrap();
        Spi::run("ALTER TABLE m_ren RENAME COLUMN status TO state").unwrap();
        Spi::run("ALTER TABLE m_ren RENAME TO m_ren2").unwrap();
        assert_eq!(
            text("SELECT sum(value)::text FROM pgmart.metric_values('ren_paid', '2024-01-01', '2024-01-04', dimensions => '{region}')"),
            "30"
        );
        // Dates, and timestamps without time zone (read as UTC), work too.
        Spi::run("SELECT pgmart.register_metric('ren_days', 'm_ren2', 'count(*)', 'day', 'team', 'd2', grain => 'week')").unwrap();
        assert_eq!(text("SELECT string_agg(value::text, ',') FROM pgmart.metric_values('ren_days', '2024-01-01', '2024-01-15')"), "3,0");
        Spi::run("SELECT pgmart.register_metric('ren_local', 'm_ren2', 'max(total)', 'local_ts', 'team', 'd3')").unwrap();
        assert_eq!(text("SELECT string_agg(coalesce(value::text, '-'), ',') FROM pgmart.metric_values('ren_local', '2024-01-01', '2024-01-04')"), "20,-,5");
        // Deprecation keeps it working.
        Spi::run("SELECT pgmart.deprecate_metric('ren_paid', replaced_by => 'ren_days')").unwrap();
        assert_eq!(text("SELECT deprecated || ':' || replaced_by FROM pgmart.metrics WHERE name = 'ren_paid'"), "true:ren_days");
        assert!(text("SELECT obj_description('pgmart_metric_columns.ren_paid'::regclass)").contains("ren_days"));
        assert_eq!(text("SELECT count(*)::text FROM pgmart.metric_values('ren_paid', '2024-01-01', '2024-01-04')"), "3");
        assert_eq!(sqlstate_of("SELECT pgmart.deprecate_metric('ren_paid', 'nope')"), "42704");
        assert_eq!(sqlstate_of("SELECT pgmart.deprecate_metric('nope')"), "42704");
        // Dropping the metric releases the columns.
        Spi::run("SELECT pgmart.drop_metric('ren_paid')").unwrap();
        Spi::run("ALTER TABLE m_ren2 DROP COLUMN state").unwrap();
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.metrics WHERE name = 'ren_paid'"), Some(0));
        // DROP ... CASCADE removes the protection view: the metric then says so clearly.
        Spi::run("DROP TABLE m_ren2 CASCADE").unwrap();
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values('ren_days', '2024-01-01', '2024-01-15')"), "55000");
        Spi::run("SELECT pgmart.drop_metric('ren_days')").unwrap();
    }

    #[pg_test]
    fn metrics_show_source_freshness_when_pgmart_refreshes_the_source() {
        Spi::run("CREATE TABLE m_fr_src (amount numeric, at timestamptz)").unwrap();
        Spi::run("INSERT INTO m_fr_src VALUES (5, '2024-01-01')").unwrap();
        Spi::run("CREATE MATERIALIZED VIEW m_fr_mv AS SELECT amount, at FROM m_fr_src").unwrap();
        Spi::run("SELECT pgmart.register_metric('fr_total', 'm_fr_mv', 'sum(amount)', 'at', 'team', 'fresh source')").unwrap();
        Spi::run("SELECT pgmart.register_metric('fr_plain', 'm_fr_src', 'sum(amount)', 'at', 'team', 'plain source')").unwrap();
        // Not tracked yet: no freshness known.
        assert_eq!(one::<bool>("SELECT source_refreshed_at IS NULL FROM pgmart.metrics WHERE name = 'fr_total'"), Some(true));
        Spi::run("SELECT pgmart.schedule_refresh('m_fr_mv', '1 hour')").unwrap();
        Spi::run("SELECT * FROM pgmart.refresh_now('m_fr_mv')").unwrap();
        assert_eq!(
            one::<bool>("SELECT source_refreshed_at IS NOT NULL AND source_age IS NOT NULL FROM pgmart.metrics WHERE name = 'fr_total'"),
            Some(true)
        );
        assert_eq!(one::<bool>("SELECT source_refreshed_at IS NULL FROM pgmart.metrics WHERE name = 'fr_plain'"), Some(true));
    }

    #[pg_test]
    fn metric_values_is_shaped_for_bi_tools() {
        Spi::run("SET LOCAL TimeZone = 'UTC'").unwrap();
        orders("m_bi");
        Spi::run("SELECT pgmart.register_metric('bi_rev', 'm_bi', 'sum(amount)', 'created_at', 'team', 'Revenue', dimensions => '{region}')").unwrap();
        Spi::run("SELECT pgmart.register_metric('bi_avg', 'm_bi', 'sum(amount) / nullif(count(*), 0)', 'created_at', 'team', 'Average')").unwrap();
        Spi::run("SELECT pgmart.register_metric('bi_zero', 'm_bi', 'sum(amount - amount) / nullif(count(*), 0)', 'created_at', 'team', 'Zero')").unwrap();
        Spi::run("SELECT pgmart.register_metric('bi_days', 'm_bi', 'count(*)', 'day', 'team', 'Days')").unwrap();
        Spi::run("SELECT pgmart.register_metric('bi_weekly', 'm_bi', 'count(*)', 'created_at', 'team', 'Weekly', grain => 'week')").unwrap();
        // Buckets cut by from_ts or to_ts are partial; bucket_local is the bucket in the zone asked.
        let rows = text(
            "SELECT string_agg(to_char(bucket_local, 'MM-DD HH24') || '/' || to_char(bucket_start AT TIME ZONE 'UTC', 'MM-DD HH24') \
                               || '/' || is_partial || '=' || coalesce(value::text, '-'), ' ' ORDER BY bucket_start) \
               FROM pgmart.metric_values('bi_rev', '2024-01-01 06:00+00', '2024-01-03 12:00+00', timezone => 'Europe/Paris')",
        );
        assert_eq!(rows, "01-01 00/12-31 23/true=30 01-02 00/01-01 23/false=- 01-03 00/01-02 23/true=5");
        // A ratio gives its parts; numbers carry no trailing zeros (no 0E-20 in a driver).
        assert_eq!(
            text("SELECT value || '=' || numerator || '/' || denominator FROM pgmart.metric_values('bi_avg', '2024-01-01', '2024-01-02')"),
            "15=30/2"
        );
        assert_eq!(text("SELECT value::text FROM pgmart.metric_values('bi_zero', '2024-01-01', '2024-01-02')"), "0");
        assert_eq!(one::<bool>("SELECT numerator IS NULL AND denominator IS NULL FROM pgmart.metric_values('bi_rev', '2024-01-01', '2024-01-02')"), Some(true));
        // A date column counts whole days: the day of from_ts is not empty because from_ts is mid-day.
        assert_eq!(
            text("SELECT string_agg(value || ':' || is_partial, ',' ORDER BY bucket_start) FROM pgmart.metric_values('bi_days', '2024-01-01 10:00+00', '2024-01-03 10:00+00')"),
            "2:false,0:false,1:false"
        );
        // Several metrics over the same buckets, in bucket then metric order.
        assert_eq!(
            text(
                "SELECT string_agg(metric || ':' || to_char(bucket_start AT TIME ZONE 'UTC', 'DD') || '=' || coalesce(value::text, '-'), ' ') \
                   FROM pgmart.metric_values(ARRAY['bi_rev', 'bi_avg'], '2024-01-01', '2024-01-03')"
            ),
            "bi_avg:01=15 bi_rev:01=30 bi_avg:02=- bi_rev:02=-"
        );
        assert!(text("SELECT pgmart.metric_sql(ARRAY['bi_rev', 'bi_avg'], '2024-01-01', '2024-01-03')").contains("UNION ALL"));
        // ... of one grain, asked for when their own grains differ; dimensions shared by all.
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values(ARRAY['bi_rev', 'bi_weekly'], '2024-01-01', '2024-01-03')"), "22023");
        assert_eq!(text("SELECT count(*)::text FROM pgmart.metric_values(ARRAY['bi_rev', 'bi_weekly'], '2024-01-01', '2024-01-15', grain => 'week')"), "4");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values(ARRAY['bi_rev', 'bi_avg'], '2024-01-01', '2024-01-03', dimensions => '{region}')"), "22023");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values(ARRAY['bi_rev', 'bi_rev'], '2024-01-01', '2024-01-03')"), "22023");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values(ARRAY[]::text[], '2024-01-01', '2024-01-03')"), "22023");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values(ARRAY['bi_rev', NULL], '2024-01-01', '2024-01-03')"), "22004");
        assert_eq!(sqlstate_of("SELECT * FROM pgmart.metric_values('{bi_rev,bi_avg}', '2024-01-01', '2024-01-03')"), "42704");
        // The browsable view: bucket, local date, the dimensions, the value (its own type).
        assert_eq!(
            text("SELECT string_agg(attname || ':' || format_type(atttypid, NULL), ',' ORDER BY attnum) FROM pg_attribute \
                   WHERE attrelid = 'pgmart_metrics.bi_rev'::regclass AND attnum > 0"),
            "bucket:timestamp with time zone,bucket_date:date,region:text,value:numeric"
        );
        assert_eq!(
            text("SELECT string_agg(bucket_date || ' ' || region || '=' || value, ', ' ORDER BY bucket, region) FROM pgmart_metrics.bi_rev"),
            "2024-01-01 eu=10, 2024-01-01 us=20, 2024-01-03 eu=5"
        );
        assert_eq!(text("SELECT value::text FROM pgmart_metrics.bi_zero"), "0");
        assert_eq!(text("SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'pgmart_metrics.bi_days'::regclass AND attname = 'value'"), "bigint");
        // A filter on the bucket is applied in the scan of the source, below the aggregate.
        let plan: Vec<String> = Spi::connect(|c| {
            c.select("EXPLAIN (COSTS OFF) SELECT * FROM pgmart_metrics.bi_rev WHERE bucket >= '2024-01-02'", None, &[])
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap_or_default())
                .collect()
        });
        let scan = plan.iter().position(|l| l.contains("Scan on m_bi")).unwrap_or_else(|| panic!("{plan:?}"));
        assert!(plan.get(scan + 1).is_some_and(|l| l.contains("Filter") && l.contains("date_trunc")), "{plan:?}");
        assert!(plan[..scan].iter().all(|l| !l.contains("Filter")), "{plan:?}");
        assert_eq!(text("SELECT count(*)::text FROM pgmart_metrics.bi_rev WHERE bucket_date = '2024-01-03'"), "1");
        assert_eq!(text("SELECT view FROM pgmart.metrics WHERE name = 'bi_rev'"), "pgmart_metrics.bi_rev");
        // Dropping the metric drops both its views.
        Spi::run("SELECT pgmart.drop_metric('bi_rev')").unwrap();
        assert_eq!(one::<bool>("SELECT to_regclass('pgmart_metrics.bi_rev') IS NULL AND to_regclass('pgmart_metric_columns.bi_rev') IS NULL"), Some(true));
    }
}
