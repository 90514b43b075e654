//! `#[pg_test]`s for every job function, including its error cases.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;
    use crate::testing::{one, run, sqlstate_of};

    fn make_due(name: &str) {
        Spi::run(&format!("UPDATE pgmart.job SET next_run_at = clock_timestamp() - interval '1 second' WHERE name = '{name}'")).unwrap();
    }

    #[pg_test]
    fn schedule_sql_registers_an_interval_job() {
        let id = one::<i64>("SELECT pgmart.schedule_sql('t_interval', 'SELECT 1', '15 minutes')").unwrap();
        assert!(id > 0);
        let ok = one::<bool>(
            "SELECT kind = 'sql' AND owner = current_user AND timezone = 'UTC' AND enabled \
                    AND next_run_at BETWEEN clock_timestamp() + interval '14 minutes' AND clock_timestamp() + interval '15 minutes' \
               FROM pgmart.jobs WHERE name = 't_interval'",
        );
        assert_eq!(ok, Some(true));
    }

    #[pg_test]
    fn cron_job_is_first_due_at_its_next_match_in_its_zone() {
        Spi::run("SELECT pgmart.schedule_sql('t_cron', 'SELECT 1', '30 3 * * *', 'Asia/Tokyo')").unwrap();
        let local = one::<String>(
            "SELECT to_char(next_run_at AT TIME ZONE 'Asia/Tokyo', 'HH24:MI') FROM pgmart.jobs WHERE name = 't_cron'",
        );
        assert_eq!(local.as_deref(), Some("03:30"));
        let within_a_day = one::<bool>(
            "SELECT next_run_at > clock_timestamp() AND next_run_at <= clock_timestamp() + interval '1 day' FROM pgmart.jobs WHERE name = 't_cron'",
        );
        assert_eq!(within_a_day, Some(true));
    }

    #[pg_test]
    fn jobs_by_name_and_pg_cron_habits() {
        // pg_cron's cron.schedule(job_name, schedule, command): made once, changed in place after.
        let id = one::<i64>("SELECT pgmart.schedule('nightly', '0 4 * * *', 'SELECT 1')").unwrap();
        let again = one::<i64>("SELECT pgmart.schedule('nightly', '30 5 * * *', 'SELECT 2')").unwrap();
        assert_eq!(id, again);
        let row = one::<String>("SELECT schedule || ' | ' || (config->>'command') FROM pgmart.jobs WHERE name = 'nightly'");
        assert_eq!(row.as_deref(), Some("30 5 * * * | SELECT 2"));
        assert_eq!(one::<String>("SELECT to_char(next_run_at AT TIME ZONE 'UTC', 'HH24:MI') FROM pgmart.jobs WHERE name = 'nightly'").as_deref(), Some("05:30"));
        assert_eq!(one::<i64>("SELECT pgmart.schedule('nightly', '30 5 * * *', 'SELECT 2')"), Some(id));
        // cron.schedule(schedule, command): named after the command.
        let unnamed = one::<i64>("SELECT pgmart.schedule('@hourly', 'SELECT   3')").unwrap();
        assert_eq!(one::<String>(&format!("SELECT name FROM pgmart.jobs WHERE job_id = {unnamed}")).as_deref(), Some("SELECT 3"));
        // Every job function takes the name as well as the id.
        assert_eq!(one::<String>("SELECT status FROM pgmart.run_job('nightly')").as_deref(), Some("succeeded"));
        run("SELECT pgmart.pause_job('nightly')");
        assert_eq!(one::<bool>("SELECT enabled FROM pgmart.jobs WHERE name = 'nightly'"), Some(false));
        run("SELECT pgmart.resume_job('nightly')");
        run("SELECT pgmart.alter_job('nightly', max_retries => 7, name => 'nightly_load')");
        assert_eq!(one::<i32>(&format!("SELECT max_retries FROM pgmart.jobs WHERE job_id = {id}")), Some(7));
        assert_eq!(sqlstate_of("SELECT pgmart.run_job('nightly')"), "42704");
        run("SELECT pgmart.drop_job('nightly_load')");
        assert_eq!(one::<bool>(&format!("SELECT pgmart.unschedule({unnamed})")), Some(true));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.jobs"), Some(0));
        assert_eq!(sqlstate_of("SELECT pgmart.unschedule('nightly')"), "42704");
        // Called in pg_cron's order, schedule_sql says so; a cron typo is never an interval.
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('x', '0 4 * * *', 'SELECT 1')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('x', 'SELECT 1', '*/15 * * *')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('x', 'SELECT 1', '5')"), "22023");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.jobs"), Some(0));
    }

    #[pg_test]
    fn schedule_sql_rejects_bad_input() {
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b1', 'SELECT 1', 'every tuesday')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b2', 'SELECT 1', '61 * * * *')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b3', 'SELECT 1', '500 milliseconds')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b4', 'SELECT 1', '-1 hour')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b5', 'SELECT 1', '1 hour', 'Mars/Olympus')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('', 'SELECT 1', '1 hour')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b6', 'SELEC 1', '1 hour')"), "42601");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b7', ';', '1 hour')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b8', '-- nothing', '1 hour')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b9', 'SELECT 1', '1 hour', max_retries => -1)"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b10', 'SELECT 1', '1 hour', retry_backoff => 'soon')"), "22023");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b11', 'SELECT 1', '1 hour', run_as => 'no_such_role')"), "42704");
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b12', 'SELECT 1', '')"), "22023");
        // Nothing was stored by any of them.
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.jobs WHERE name ~ '^b[0-9]+$'"), Some(0));
        Spi::run("SELECT pgmart.schedule_sql('b_dup', 'SELECT 1', '1 hour')").unwrap();
        assert_eq!(sqlstate_of("SELECT pgmart.schedule_sql('b_dup', 'SELECT 2', '2 hours')"), "42710");
        // ANALYZE runs inside a transaction; VACUUM runs like psql -c would, in a background runner.
        Spi::run("SELECT pgmart.schedule_sql('b_analyze', 'ANALYZE pgmart.job', '1 day')").unwrap();
        Spi::run("SELECT pgmart.schedule_sql('b_vacuum', 'VACUUM pgmart.job', '1 day')").unwrap();
        assert_eq!(one::<bool>("SELECT (config->>'own_transaction')::bool FROM pgmart.jobs WHERE name = 'b_vacuum'"), Some(true));
        assert_eq!(one::<bool>("SELECT (config->>'own_transaction')::bool FROM pgmart.jobs WHERE name = 'b_analyze'"), Some(false));
    }

    #[pg_test]
    fn refresh_due_runs_due_jobs_records_and_advances() {
        Spi::run("CREATE TABLE t_due_log (v int)").unwrap();
        Spi::run("SELECT pgmart.schedule_sql('t_due', 'INSERT INTO t_due_log VALUES (1)', '1 hour')").unwrap();
        Spi::run("SELECT pgmart.schedule_sql('t_not_due', 'INSERT INTO t_due_log VALUES (2)', '1 hour')").unwrap();
        make_due("t_due");
        let ran = one::<String>("SELECT string_agg(name || ':' || status, ',') FROM pgmart.refresh_due() WHERE name LIKE 't_%due'");
        assert_eq!(ran.as_deref(), Some("t_due:succeeded"));
        assert_eq!(one::<i64>("SELECT sum(v) FROM t_due_log"), Some(1));
        let run = one::<bool>(
            "SELECT r.status = 'succeeded' AND r.finished_at >= r.started_at AND r.attempt = 1 AND r.duration_ms >= 0 \
               FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) WHERE j.name = 't_due'",
        );
        assert_eq!(run, Some(true));
        let advanced = one::<bool>(
            "SELECT next_run_at > clock_timestamp() + interval '59 minutes' AND last_status = 'succeeded' \
               FROM pgmart.jobs WHERE name = 't_due'",
        );
        assert_eq!(advanced, Some(true));
        // Run again straight away: nothing is due.
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.refresh_due() WHERE name LIKE 't_%due'"), Some(0));
    }

    #[pg_test]
    fn failing_job_is_retried_with_backoff_then_failed_and_alerted() {
        Spi::run("CREATE TABLE t_ok_log (v int)").unwrap();
        Spi::run("SELECT pgmart.schedule_sql('t_fail', 'SELECT 1/0', '1 day', max_retries => 2, retry_backoff => '10 minutes')").unwrap();
        Spi::run("SELECT pgmart.schedule_sql('t_fine', 'INSERT INTO t_ok_log VALUES (1)', '1 day')").unwrap();
        make_due("t_fail");
        make_due("t_fine");
        let r = one::<String>("SELECT string_agg(name || ':' || status, ',' ORDER BY name) FROM pgmart.refresh_due() WHERE name IN ('t_fail','t_fine')");
        assert_eq!(r.as_deref(), Some("t_fail:retrying,t_fine:succeeded"), "one failure does not stop the other");
        let retry = one::<bool>(
            "SELECT consecutive_failures = 1 AND last_status = 'retrying' \
                    AND next_run_at BETWEEN clock_timestamp() + interval '9 minutes' AND clock_timestamp() + interval '11 minutes' \
               FROM pgmart.jobs WHERE name = 't_fail'",
        );
        assert_eq!(retry, Some(true));
        assert_eq!(
            one::<String>("SELECT sqlstate || ' ' || message FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) WHERE j.name = 't_fail'").as_deref(),
            Some("22012 division by zero")
        );
        make_due("t_fail");
        // Second attempt: backoff doubles.
        assert_eq!(one::<String>("SELECT status FROM pgmart.refresh_due() WHERE name = 't_fail'").as_deref(), Some("retrying"));
        assert_eq!(
            one::<bool>("SELECT next_run_at > clock_timestamp() + interval '19 minutes' FROM pgmart.jobs WHERE name = 't_fail'"),
            Some(true)
        );
        make_due("t_fail");
        assert_eq!(one::<String>("SELECT status FROM pgmart.refresh_due() WHERE name = 't_fail'").as_deref(), Some("failed"));
        let failed = one::<bool>(
            "SELECT consecutive_failures = 3 AND next_run_at > clock_timestamp() + interval '23 hours' FROM pgmart.jobs WHERE name = 't_fail'",
        );
        assert_eq!(failed, Some(true), "after its last retry the job waits for its next scheduled time");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pgmart.alerts WHERE source_kind = 'job' AND source_name = 't_fail' AND acked_at IS NULL"),
            Some(1)
        );
        // Failing again does not raise a second open alert.
        make_due("t_fail");
        Spi::run("SELECT * FROM pgmart.refresh_due()").unwrap();
        make_due("t_fail");
        Spi::run("SELECT * FROM pgmart.refresh_due()").unwrap();
        make_due("t_fail");
        Spi::run("SELECT * FROM pgmart.refresh_due()").unwrap();
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pgmart.alerts WHERE source_kind = 'job' AND source_name = 't_fail'"),
            Some(1)
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) WHERE j.name = 't_fail'"), Some(6));
    }

    #[pg_test]
    fn lock_timeout_bounds_every_job() {
        Spi::run("SELECT pgmart.schedule_sql('t_lt', 'SELECT 1', '1 hour')").unwrap();
        Spi::run("SELECT pgmart.schedule_sql('t_lt_show', $$INSERT INTO t_lt_out SELECT current_setting('lock_timeout')$$, '1 hour')").unwrap_or(());
        Spi::run("CREATE TABLE t_lt_out (v text)").unwrap();
        Spi::run("SET LOCAL pgmart.lock_timeout = '1234ms'").unwrap();
        make_due("t_lt_show");
        Spi::run("SELECT * FROM pgmart.refresh_due()").unwrap();
        assert_eq!(one::<String>("SELECT v FROM t_lt_out").as_deref(), Some("1234ms"));
        // ...and the caller's own setting is untouched afterwards.
        assert_ne!(one::<String>("SELECT current_setting('lock_timeout')").as_deref(), Some("1234ms"));
    }

    #[pg_test]
    fn run_job_runs_now_and_keeps_the_schedule() {
        Spi::run("CREATE TABLE t_run_log (v int)").unwrap();
        let id = one::<i64>("SELECT pgmart.schedule_sql('t_run', 'INSERT INTO t_run_log VALUES (7)', '1 day')").unwrap();
        let before = one::<String>(&format!("SELECT next_run_at::text FROM pgmart.jobs WHERE job_id = {id}"));
        assert_eq!(one::<String>(&format!("SELECT status FROM pgmart.run_job({id})")).as_deref(), Some("succeeded"));
        assert_eq!(one::<i64>("SELECT sum(v) FROM t_run_log"), Some(7));
        assert_eq!(one::<String>(&format!("SELECT next_run_at::text FROM pgmart.jobs WHERE job_id = {id}")), before);
        assert_eq!(sqlstate_of("SELECT pgmart.run_job(-42)"), "42704");
        // A failing manual run is recorded as failed and not retried.
        let bad = one::<i64>("SELECT pgmart.schedule_sql('t_run_bad', 'SELECT 1/0', '1 day')").unwrap();
        assert_eq!(one::<String>(&format!("SELECT status FROM pgmart.run_job({bad})")).as_deref(), Some("failed"));
    }

    #[pg_test]
    fn pause_and_resume() {
        let id = one::<i64>("SELECT pgmart.schedule_sql('t_pause', 'SELECT 1', '1 hour')").unwrap();
        Spi::run(&format!("SELECT pgmart.pause_job({id})")).unwrap();
        make_due("t_pause");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.refresh_due() WHERE name = 't_pause'"), Some(0));
        assert_eq!(one::<bool>(&format!("SELECT enabled FROM pgmart.jobs WHERE job_id = {id}")), Some(false));
        Spi::run(&format!("SELECT pgmart.resume_job({id})")).unwrap();
        // Resumed with its missed slot skipped: next run in the future, not a burst of catch-up.
        assert_eq!(
            one::<bool>(&format!("SELECT enabled AND next_run_at > clock_timestamp() FROM pgmart.jobs WHERE job_id = {id}")),
            Some(true)
        );
        assert_eq!(sqlstate_of("SELECT pgmart.pause_job(-1)"), "42704");
        assert_eq!(sqlstate_of("SELECT pgmart.resume_job(-1)"), "42704");
    }

    #[pg_test]
    fn alter_job_changes_and_validates() {
        let id = one::<i64>("SELECT pgmart.schedule_sql('t_alter', 'SELECT 1', '1 hour')").unwrap();
        Spi::run(&format!("SELECT pgmart.alter_job({id}, schedule => '0 6 * * *', timezone => 'America/New_York', max_retries => 5, retry_backoff => '30 seconds', command => 'SELECT 2', name => 't_alter2')")).unwrap();
        let ok = one::<bool>(&format!(
            "SELECT name = 't_alter2' AND schedule = '0 6 * * *' AND timezone = 'America/New_York' AND max_retries = 5 \
                    AND retry_backoff = '30 seconds' AND config->>'command' = 'SELECT 2' \
                    AND to_char(next_run_at AT TIME ZONE 'America/New_York', 'HH24:MI') = '06:00' \
               FROM pgmart.jobs WHERE job_id = {id}"
        ));
        assert_eq!(ok, Some(true));
        assert_eq!(sqlstate_of(&format!("SELECT pgmart.alter_job({id}, schedule => 'never')")), "22023");
        assert_eq!(sqlstate_of(&format!("SELECT pgmart.alter_job({id}, timezone => 'Nowhere/City')")), "22023");
        assert_eq!(sqlstate_of(&format!("SELECT pgmart.alter_job({id}, max_retries => 1000)")), "22023");
        assert_eq!(sqlstate_of(&format!("SELECT pgmart.alter_job({id}, command => 'SELEC')")), "42601");
        Spi::run("SELECT pgmart.schedule_sql('t_alter_other', 'SELECT 1', '1 hour')").unwrap();
        assert_eq!(sqlstate_of(&format!("SELECT pgmart.alter_job({id}, name => 't_alter_other')")), "42710");
        assert_eq!(sqlstate_of("SELECT pgmart.alter_job(-5, max_retries => 1)"), "42704");
        // The failed calls changed nothing.
        assert_eq!(one::<String>(&format!("SELECT schedule FROM pgmart.jobs WHERE job_id = {id}")).as_deref(), Some("0 6 * * *"));
    }

    #[pg_test]
    fn drop_job_removes_job_and_history() {
        let id = one::<i64>("SELECT pgmart.schedule_sql('t_drop', 'SELECT 1', '1 hour')").unwrap();
        Spi::run(&format!("SELECT pgmart.run_job({id})")).unwrap();
        Spi::run(&format!("SELECT pgmart.drop_job({id})")).unwrap();
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.job_run WHERE job_id = {id}")), Some(0));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.job WHERE job_id = {id}")), Some(0));
        assert_eq!(sqlstate_of(&format!("SELECT pgmart.drop_job({id})")), "42704");
    }

    #[pg_test]
    fn interval_schedule_keeps_cadence_and_skips_missed_slots() {
        Spi::run("SELECT pgmart.schedule_sql('t_cadence', 'SELECT 1', '10 minutes')").unwrap();
        // Pretend the job was made 45 minutes ago and due 35 minutes ago (it missed three slots).
        Spi::run("UPDATE pgmart.job SET next_run_at = date_trunc('minute', clock_timestamp()) - interval '35 minutes', \
                  slot_origin = date_trunc('minute', clock_timestamp()) - interval '45 minutes' WHERE name = 't_cadence'").unwrap();
        let anchor = one::<String>("SELECT next_run_at::text FROM pgmart.jobs WHERE name = 't_cadence'");
        Spi::run("SELECT * FROM pgmart.refresh_due()").unwrap();
        let ok = one::<bool>(&format!(
            "SELECT next_run_at > clock_timestamp() AND next_run_at <= clock_timestamp() + interval '10 minutes' \
                    AND extract(epoch FROM next_run_at - '{}'::timestamptz)::int % 600 = 0 \
               FROM pgmart.jobs WHERE name = 't_cadence'",
            anchor.unwrap()
        ));
        assert_eq!(ok, Some(true));
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pgmart.job_runs r JOIN pgmart.jobs j USING (job_id) WHERE j.name = 't_cadence'"),
            Some(1),
            "missed slots are skipped, not replayed"
        );
    }

    #[pg_test]
    fn null_for_a_required_argument_is_22004_and_for_an_optional_one_its_default() {
        for q in [
            "SELECT * FROM pgmart.run_job(NULL)",
            "SELECT pgmart.pause_job(NULL)",
            "SELECT pgmart.resume_job(NULL)",
            "SELECT pgmart.drop_job(NULL)",
            "SELECT pgmart.alter_job(NULL, schedule => '1 hour')",
            "SELECT pgmart.schedule_sql(NULL, 'SELECT 1', '1 hour')",
            "SELECT pgmart.schedule_sql('t_null', NULL, '1 hour')",
            "SELECT pgmart.schedule_sql('t_null', 'SELECT 1', NULL)",
        ] {
            assert_eq!(sqlstate_of(q), "22004", "{q}");
        }
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.jobs WHERE name = 't_null'"), Some(0));
        run("SELECT pgmart.schedule_sql('t_null', 'SELECT 1', '1 hour', timezone => NULL, max_retries => NULL, retry_backoff => NULL)");
        assert_eq!(
            one::<bool>("SELECT timezone = 'UTC' AND max_retries = 3 AND retry_backoff = '1 minute' FROM pgmart.job WHERE name = 't_null'"),
            Some(true)
        );
    }

    #[pg_test]
    fn time_zones_are_taken_as_postgres_takes_them_and_stored_canonically() {
        run("SET LOCAL TimeZone = 'Asia/Tokyo'");
        let zones = [
            ("utc", "UTC"),
            (" Europe/Berlin ", "Europe/Berlin"),
            ("america/new_york", "America/New_York"),
            ("UTC+3", "Etc/GMT+3"),
            ("+3", "Etc/GMT-3"),
            ("Etc/GMT-3", "Etc/GMT-3"),
        ];
        for (i, (given, stored)) in zones.into_iter().enumerate() {
            run(&format!("SELECT pgmart.schedule_sql('t_tz_{i}', 'SELECT 1', '0 9 * * *', timezone => '{given}')"));
            assert_eq!(one::<String>(&format!("SELECT timezone FROM pgmart.job WHERE name = 't_tz_{i}'")).as_deref(), Some(stored));
        }
        for bad in ["PST", "Mars/Olympus", "", "<+0330>-0330"] {
            assert_eq!(sqlstate_of(&format!("SELECT pgmart.schedule_sql('t_tz_bad', 'SELECT 1', '1 hour', timezone => '{bad}')")), "22023", "{bad}");
        }
        // Asking PostgreSQL left the session's own setting alone.
        assert_eq!(one::<String>("SELECT current_setting('TimeZone')").as_deref(), Some("Asia/Tokyo"));
    }
}
