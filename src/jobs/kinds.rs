//! The seam between the engine and the capabilities: a job kind is a [`JobKind`] that a capability
//! implements; the composition root (`lib.rs`) lists them. The engine names no capability.

use crate::jobs::job::Job;
use serde_json::Value;

/// One kind of job.
pub trait JobKind: Sync {
    /// The `kind` stored in `pgmart.job` ("sql", "refresh", ...).
    fn name(&self) -> &'static str;
    /// Run the job as its owner (the engine has switched identity, or connected as the owner);
    /// raise an ERROR to fail; return a JSON object of details to succeed (a `message` key is
    /// shown by `refresh_due()`). Writes that must survive a failure go through
    /// `engine::after_rollback`.
    fn run(&self, job: &Job) -> Value;
    /// Whether a run must happen outside a transaction block (in a background runner, the way
    /// `psql -c` runs a command), for example a `VACUUM` command.
    fn needs_own_transaction(&self, _job: &Job) -> bool {
        false
    }
    /// Whether the object the job works on is gone (then `drop_job` may remove the job).
    fn target_gone(&self, _job: &Job) -> bool {
        false
    }
    /// What to say when someone tries to drop the job on its own (None: they may).
    fn drop_hint(&self) -> Option<&'static str> {
        None
    }
    /// History tables the kind keeps, pruned by age with the engine's own:
    /// `(table, timestamp column, extra condition)`.
    fn history(&self) -> &'static [(&'static str, &'static str, &'static str)] {
        &[]
    }
}

/// The kind of a job, from the composition root's list.
pub fn find(name: &str) -> Option<&'static dyn JobKind> {
    crate::JOB_KINDS.iter().copied().find(|k| k.name() == name)
}

/// Run a job through its kind.
pub fn run(job: &Job) -> Value {
    match find(&job.kind) {
        Some(k) => k.run(job),
        None => crate::error::PgMartError::state(format!("job kind \"{}\" is not available in this pgmart build", job.kind))
            .raise(),
    }
}
