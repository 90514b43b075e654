//! Job kinds: the one place the engine hands a job to its capability. A kind's `run` executes as
//! the job's owner inside the engine's subtransaction; it raises an ERROR to fail and returns a
//! JSON object of details to succeed (a `message` key, if any, is shown by `refresh_due()`).
//! Writes to pgmart's own catalog inside a kind go through `sql::as_catalog_owner`.

use crate::error::PgMartError;
use crate::jobs::engine::Job;
use serde_json::Value;

pub fn run(job: &Job) -> Value {
    match job.kind.as_str() {
        "sql" => crate::jobs::sql_job::run(job),
        "refresh" => crate::refresh::exec::run_job(job),
        "check_suite" => crate::checks::run_job(job),
        "partition_maintenance" => crate::partitions::run_job(job),
        other => PgMartError::state(format!("job kind \"{other}\" is not available in this pgmart build")).raise(),
    }
}
