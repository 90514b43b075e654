//! A job as the engine and every job kind see it: one row of `pgmart.job` with its owner.

use crate::guc;
use pgrx::pg_sys;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
pub struct Job {
    pub job_id: i64,
    pub name: String,
    pub kind: String,
    pub target: Option<String>,
    pub schedule: String,
    pub timezone: String,
    /// The role the job runs as: its anchor's owner (0 when the anchor is gone).
    pub owner: u32,
    pub anchor: String,
    pub max_retries: i32,
    pub retry_backoff_s: f64,
    pub consecutive_failures: i32,
    pub config: Value,
    pub next_run_epoch: Option<f64>,
    pub enabled: bool,
    pub slot_origin_epoch: Option<f64>,
    /// The job's own time limit in milliseconds (None: pgmart.job_timeout; 0: none).
    pub timeout_ms: Option<f64>,
}

impl Job {
    pub fn owner_oid(&self) -> pg_sys::Oid {
        pg_sys::Oid::from(self.owner)
    }
    /// The run's time limit in milliseconds (0: none).
    pub fn timeout(&self) -> i64 {
        match self.timeout_ms {
            Some(ms) => ms as i64,
            None => guc::JOB_TIMEOUT_MS.get() as i64,
        }
    }
    /// This run's attempt within its scheduled occurrence: 1 for a fresh run, 2.. for retries.
    /// Each scheduled occurrence gets its own `max_retries` retries.
    pub fn attempt(&self) -> i32 {
        self.consecutive_failures % (self.max_retries + 1) + 1
    }
}

/// A job row with its owner; filter with `WHERE` on `j` (and lock with `FOR UPDATE OF j`).
pub const JOB_SELECT: &str = "SELECT j.job_id, j.name, j.kind, j.target, j.schedule, j.timezone, \
     coalesce(a.relowner, 0::pg_catalog.oid)::pg_catalog.int8 AS owner, j.anchor::pg_catalog.text AS anchor, \
     j.max_retries, EXTRACT(epoch FROM j.retry_backoff)::double precision AS retry_backoff_s, j.consecutive_failures, \
     j.config, EXTRACT(epoch FROM j.next_run_at)::double precision AS next_run_epoch, j.enabled, \
     EXTRACT(epoch FROM j.slot_origin)::double precision AS slot_origin_epoch, \
     (EXTRACT(epoch FROM j.timeout) OPERATOR(pg_catalog.*) 1000)::double precision AS timeout_ms \
     FROM pgmart.job j LEFT JOIN pg_catalog.pg_class a ON a.oid OPERATOR(pg_catalog.=) j.anchor";
