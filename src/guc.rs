//! Every pgmart GUC, in one place. All of them reload on SIGHUP; `lock_timeout` and the alert
//! limit may also be set per session.

use pgrx::guc::*;
use std::ffi::CString;

pub static ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static NAPTIME_MS: GucSetting<i32> = GucSetting::<i32>::new(5000);
pub static DATABASES: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5000);
pub static HISTORY_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(30 * 24 * 3600);
pub static ALERT_NOTIFY_LIMIT: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static MAX_JOBS_PER_ROLE: GucSetting<i32> = GucSetting::<i32>::new(10000);
pub static MAX_PARALLEL_JOBS: GucSetting<i32> = GucSetting::<i32>::new(2);
pub static JOB_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(3_600_000);
pub static REPLICA_LAG_SLO_S: GucSetting<i32> = GucSetting::<i32>::new(300);
// Table and query health (src/health/).
pub static HEALTH_MIN_PAGES: GucSetting<i32> = GucSetting::<i32>::new(128);
pub static HEALTH_DEAD_RATIO: GucSetting<f64> = GucSetting::<f64>::new(0.2);
pub static HEALTH_DEAD_RATIO_FAIL: GucSetting<f64> = GucSetting::<f64>::new(0.5);
pub static HEALTH_BLOAT_RATIO: GucSetting<f64> = GucSetting::<f64>::new(0.3);
pub static HEALTH_BLOAT_RATIO_FAIL: GucSetting<f64> = GucSetting::<f64>::new(0.6);
pub static HEALTH_STALE_FACTOR: GucSetting<f64> = GucSetting::<f64>::new(2.0);
pub static HEALTH_UNUSED_INDEX_MIN_KB: GucSetting<i32> = GucSetting::<i32>::new(1024);
pub static HEALTH_TUNING_MIN_ROWS: GucSetting<i32> = GucSetting::<i32>::new(1_000_000);
pub static QUERY_HEALTH_TOP: GucSetting<i32> = GucSetting::<i32>::new(20);
pub static QUERY_REGRESSION_RATIO: GucSetting<f64> = GucSetting::<f64>::new(1.5);
pub static QUERY_REGRESSION_MIN_MS: GucSetting<f64> = GucSetting::<f64>::new(1.0);
pub static QUERY_REGRESSION_MIN_CALLS: GucSetting<i32> = GucSetting::<i32>::new(10);

pub fn register() {
    GucRegistry::define_bool_guc(
        c"pgmart.enabled",
        c"Whether pgmart's background workers run due jobs.",
        c"When off, the schedulers stay idle; pgmart.refresh_due() still works.",
        &ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgmart.naptime",
        c"Longest time a pgmart scheduler sleeps between looks at its job catalog.",
        c"A scheduler wakes earlier when a job falls due or the catalog changes.",
        &NAPTIME_MS,
        100,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_string_guc(
        c"pgmart.databases",
        c"Comma-separated list of databases pgmart schedules jobs in (empty: every database with the extension).",
        c"",
        &DATABASES,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgmart.lock_timeout",
        c"lock_timeout applied to every pgmart job and maintenance step.",
        c"A job that cannot get its locks in time fails with 55P03 and is retried later; it never blocks others.",
        &LOCK_TIMEOUT_MS,
        1,
        3_600_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pgmart.history_retention",
        c"How long pgmart keeps job runs, check results and acknowledged alerts.",
        c"",
        &HISTORY_RETENTION_S,
        60,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgmart.max_parallel_jobs",
        c"Most pgmart jobs that run at once in one database, each in its own background worker.",
        c"Jobs due beyond it wait their turn (pgmart.jobs shows them as queued). Each needs a max_worker_processes slot.",
        &MAX_PARALLEL_JOBS,
        1,
        256,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgmart.job_timeout",
        c"How long a pgmart job may run when it sets no timeout of its own (0: no limit).",
        c"A run past it is cancelled, recorded with SQLSTATE 57014 and retried by the job's policy.",
        &JOB_TIMEOUT_MS,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pgmart.max_jobs_per_role",
        c"Most pgmart jobs one role (not a superuser) may own in a database.",
        c"Keeps one role from flooding the scheduler.",
        &MAX_JOBS_PER_ROLE,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::default(),
    );
    health_gucs();
    GucRegistry::define_int_guc(
        c"pgmart.replica_lag_slo",
        c"On a standby, how far replay may fall behind before pgmart.freshness and pgmart.trust say the replica is the reason.",
        c"Read by pgmart.freshness (its replication lag row) and pgmart.trust on a hot standby.",
        &REPLICA_LAG_SLO_S,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pgmart.alert_notify_limit",
        c"Most alert notifications one statement sends; the rest are summarised in one notification.",
        c"Every alert still gets its row in pgmart.alerts.",
        &ALERT_NOTIFY_LIMIT,
        1,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
}

fn health_gucs() {
    let ratio = |name: &'static std::ffi::CStr, short: &'static std::ffi::CStr, long: &'static std::ffi::CStr, s: &'static GucSetting<f64>, max: f64| {
        GucRegistry::define_float_guc(name, short, long, s, 0.0, max, GucContext::Userset, GucFlags::default());
    };
    GucRegistry::define_int_guc(
        c"pgmart.health_min_pages",
        c"Smallest table or index (in pages) pgmart.table_health judges for dead rows and bloat.",
        c"Below it, percentages are noise. 128 pages is 1 MB with 8 kB pages.",
        &HEALTH_MIN_PAGES,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    ratio(c"pgmart.health_dead_ratio", c"Share of dead rows past which pgmart.table_health warns.", c"", &HEALTH_DEAD_RATIO, 1.0);
    ratio(c"pgmart.health_dead_ratio_fail", c"Share of dead rows past which pgmart.table_health fails a table.", c"", &HEALTH_DEAD_RATIO_FAIL, 1.0);
    ratio(
        c"pgmart.health_bloat_ratio",
        c"Estimated bloat past which pgmart.table_health warns (and the health job rebuilds a maintained table's B-tree index).",
        c"",
        &HEALTH_BLOAT_RATIO,
        1.0,
    );
    ratio(c"pgmart.health_bloat_ratio_fail", c"Estimated bloat past which pgmart.table_health fails a table or index.", c"", &HEALTH_BLOAT_RATIO_FAIL, 1.0);
    ratio(
        c"pgmart.health_stale_factor",
        c"A table's statistics are stale when more rows changed since its last analyze than this many times its autoanalyze trigger point.",
        c"",
        &HEALTH_STALE_FACTOR,
        1e6,
    );
    GucRegistry::define_int_guc(
        c"pgmart.health_unused_index_min_size",
        c"Smallest index pgmart.table_health reports as unused.",
        c"",
        &HEALTH_UNUSED_INDEX_MIN_KB,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"pgmart.health_tuning_min_rows",
        c"Rows from which pgmart.table_health suggests per-table autovacuum settings (scale factors 0.01 and 0.005).",
        c"",
        &HEALTH_TUNING_MIN_ROWS,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pgmart.query_health_top",
        c"How many of the slowest statements (by total time) pgmart.query_health shows and the health job samples.",
        c"Dashboards' statements are shown and sampled besides.",
        &QUERY_HEALTH_TOP,
        0,
        10000,
        GucContext::Userset,
        GucFlags::default(),
    );
    ratio(
        c"pgmart.query_regression_ratio",
        c"A statement regressed when its mean time over the last sampling interval exceeds its baseline mean by this factor.",
        c"It must also be slower by pgmart.query_regression_min_ms and by 3 standard deviations of its interval means.",
        &QUERY_REGRESSION_RATIO,
        1000.0,
    );
    ratio(
        c"pgmart.query_regression_min_ms",
        c"Smallest slowdown of a statement's mean time (in milliseconds) counted as a regression.",
        c"",
        &QUERY_REGRESSION_MIN_MS,
        1e9,
    );
    GucRegistry::define_int_guc(
        c"pgmart.query_regression_min_calls",
        c"Fewest calls in a sampling interval for a statement's mean time to be judged.",
        c"",
        &QUERY_REGRESSION_MIN_CALLS,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// The database allow-list, parsed; empty means every database.
pub fn databases() -> Vec<String> {
    DATABASES
        .get()
        .map(|c| parse_list(&c.to_string_lossy()))
        .unwrap_or_default()
}

pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',').map(|d| d.trim().to_string()).filter(|d| !d.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_list_parses_and_trims() {
        assert_eq!(super::parse_list(" a, b ,,c"), vec!["a", "b", "c"]);
        assert!(super::parse_list("").is_empty());
    }
}
