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
