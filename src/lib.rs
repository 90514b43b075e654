//! pgmart: a dependable analytics stack inside PostgreSQL. See DESIGN.md for the architecture:
//! every scheduled thing is a job; each capability is one module with pure planning code, an
//! executor and thin SQL-facing functions.

use pgrx::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

pg_module_magic!();

pub mod access;
pub mod alerts;
pub mod args;
pub mod checks;
pub mod compat;
pub mod dashboards;
pub mod error;
pub mod follow;
pub mod fragment;
pub mod guc;
pub mod health;
pub mod jobs;
pub mod layers;
pub mod legacy;
pub mod locks;
pub mod metrics;
pub mod names;
pub mod owners;
pub mod partitions;
pub mod refresh;
pub mod rollups;
pub mod snapshots;
pub mod sql;
pub mod tables;
pub mod timecol;
pub mod version;
#[cfg(any(test, feature = "pg_test"))]
pub mod testing;
pub mod worker;

/// Declares schema `pgmart` to pgrx so `#[pg_extern(schema = "pgmart")]` resolves. The schema itself
/// is created first thing by `sql/jobs.sql` (so it is an extension member and DROP EXTENSION removes
/// it); pgrx's own `CREATE SCHEMA IF NOT EXISTS` is then a no-op.
#[pg_schema]
mod pgmart {}

/// True when pgmart was loaded through shared_preload_libraries (so its workers are running).
pub static PRELOADED: AtomicBool = AtomicBool::new(false);

extension_sql_file!("../sql/jobs.sql", name = "jobs_catalog", bootstrap);
extension_sql_file!("../sql/refresh.sql", name = "refresh_catalog", requires = ["jobs_catalog", "checks_catalog", "rollups_catalog", "snapshots_catalog"]);
extension_sql_file!("../sql/rollups.sql", name = "rollups_catalog", requires = ["jobs_catalog"]);
extension_sql_file!("../sql/snapshots.sql", name = "snapshots_catalog", requires = ["jobs_catalog"]);
extension_sql_file!("../sql/alerts.sql", name = "alerts_catalog", requires = ["jobs_catalog"]);
extension_sql_file!("../sql/checks.sql", name = "checks_catalog", requires = ["jobs_catalog"]);
extension_sql_file!("../sql/metrics.sql", name = "metrics_catalog", requires = ["jobs_catalog", "refresh_catalog"]);
extension_sql_file!("../sql/partitions.sql", name = "partitions_catalog", requires = ["jobs_catalog"]);
extension_sql_file!(
    "../sql/health.sql",
    name = "health_catalog",
    requires = ["jobs_catalog", "alerts_catalog", health::api::_health_settings, health::api::_query_health]
);
extension_sql_file!("../sql/dashboards.sql", name = "dashboards_catalog", requires = ["jobs_catalog", "refresh_catalog", "rollups_catalog", "snapshots_catalog", "alerts_catalog", "checks_catalog", "metrics_catalog"]);
extension_sql_file!("../sql/layers.sql", name = "layers_catalog", requires = ["jobs_catalog"]);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Every job kind: the engine runs a job through the one whose name matches its `kind`.
pub static JOB_KINDS: &[&dyn jobs::kinds::JobKind] = &[
    &jobs::sql_job::SqlJob,
    &refresh::exec::Refresh,
    &checks::exec::CheckSuite,
    &partitions::exec::PartitionMaintenance,
    &rollups::exec::Rollup,
    &health::exec::Health,
    &snapshots::exec::Snapshot,
];

/// Every registration kind with an owner anchor (see `owners`), and how each is removed when
/// `DROP OWNED BY` drops its anchor.
pub static REGISTRATIONS: &[owners::Registration] = &[
    owners::Registration { prefix: "job", forget: jobs::api::forget },
    owners::Registration { prefix: "check", forget: checks::exec::forget },
    owners::Registration { prefix: "rule", forget: alerts::exec::forget_anchor },
    owners::Registration { prefix: "metric", forget: metrics::exec::forget },
    owners::Registration { prefix: "dashboard", forget: dashboards::exec::forget },
];

/// Every registration on a relation, and how it follows that relation by name (see `follow`).
pub static FOLLOWERS: &[follow::Follower] = &[
    follow::Follower {
        kind: "check",
        table: "pgmart.\"check\"",
        id: "check_id",
        label: "t.name",
        relation: "target",
        name: "target_name",
        owner: "SELECT a.relowner FROM pg_catalog.pg_class a WHERE a.oid OPERATOR(pg_catalog.=) t.anchor",
        relkinds: "rpmvf",
        moved: follow::nothing_moved,
        renamed: checks::exec::renamed,
    },
    follow::Follower {
        kind: "metric",
        table: "pgmart.metric",
        id: "name",
        label: "t.name",
        relation: "source",
        name: "source_name",
        owner: "SELECT a.relowner FROM pg_catalog.pg_class a WHERE a.oid OPERATOR(pg_catalog.=) t.anchor",
        relkinds: "rpmvf",
        moved: metrics::exec::moved,
        renamed: follow::nothing_renamed,
    },
    follow::Follower {
        kind: "refresh schedule",
        table: "pgmart.refresh_view",
        id: "job_id",
        label: "t.view_name",
        relation: "view",
        name: "view_name",
        owner: "SELECT a.relowner FROM pgmart.job j JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor \
                WHERE j.job_id OPERATOR(pg_catalog.=) t.job_id",
        relkinds: "m",
        moved: refresh::exec::moved,
        renamed: refresh::exec::renamed,
    },
    follow::Follower {
        kind: "alert rule",
        table: "pgmart.alert_rules",
        id: "rule_id",
        label: "t.name",
        relation: "relation",
        name: "target",
        owner: "SELECT a.relowner FROM pg_catalog.pg_class a WHERE a.oid OPERATOR(pg_catalog.=) t.anchor",
        relkinds: "rp",
        moved: alerts::exec::moved,
        renamed: follow::nothing_renamed,
    },
    follow::Follower {
        kind: "access label",
        table: "pgmart.access_label",
        id: "label_id",
        label: "(t.label OPERATOR(pg_catalog.||) CASE WHEN t.column_name OPERATOR(pg_catalog.=) '' THEN '' \
                ELSE ' ' OPERATOR(pg_catalog.||) t.column_name END)",
        relation: "relation",
        name: "relation_name",
        owner: "t.owner",
        relkinds: "rpvmf",
        moved: follow::nothing_moved,
        renamed: follow::nothing_renamed,
    },
    follow::Follower {
        kind: "rollup",
        table: "pgmart.rollup",
        id: "job_id",
        label: "t.name",
        relation: "source",
        name: "source_name",
        owner: "SELECT a.relowner FROM pgmart.job j JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor \
                WHERE j.job_id OPERATOR(pg_catalog.=) t.job_id",
        relkinds: "rp",
        moved: rollups::exec::moved,
        renamed: follow::nothing_renamed,
    },
    follow::Follower {
        kind: "snapshot",
        table: "pgmart.snapshot",
        id: "job_id",
        label: "t.name",
        relation: "source",
        name: "source_name",
        owner: "SELECT a.relowner FROM pgmart.job j JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor \
                WHERE j.job_id OPERATOR(pg_catalog.=) t.job_id",
        relkinds: "rpvmf",
        moved: follow::nothing_moved,
        renamed: follow::nothing_renamed,
    },
];

#[pg_guard]
#[allow(non_snake_case)]
pub extern "C-unwind" fn _PG_init() {
    // pgrx puts a Rust backtrace into the DETAIL of errors whenever the environment asks for one;
    // none may ever reach a user. Set before anything could capture one (the postmaster with
    // preload, or this backend otherwise); the library's choice is cached at its first capture.
    // SAFETY: _PG_init runs single-threaded.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    guc::register();
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        PRELOADED.store(true, Ordering::Relaxed);
        worker::status::init();
        worker::launcher::register();
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec!["shared_preload_libraries = 'pgmart'", "max_worker_processes = 16"]
    }
}
