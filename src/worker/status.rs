//! What the workers are doing, per database, in shared memory (when pgmart is preloaded): the
//! scheduler, its running and waiting jobs, and whether a worker could not be started for lack of
//! `max_worker_processes` slots. Read by `pgmart.worker_status()`; each problem is logged once.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

pub const MAX_DATABASES: usize = 128;

/// Why a worker is missing.
pub const NO_SLOT_SCHEDULER: u8 = 1;
pub const NO_SLOT_RUNNER: u8 = 2;

#[derive(Copy, Clone, Default)]
pub struct Db {
    pub dboid: u32,
    pub scheduler_pid: i32,
    pub running: i32,
    pub waiting: i32,
    /// µs since the Unix epoch when a worker could not be started for lack of slots (0: none).
    pub no_slot_since: i64,
    pub no_slot_for: u8,
    /// The database has no pgmart (its scheduler exited); the launcher waits for a wake-up.
    pub no_extension: bool,
    /// The installed extension is not this library's version: nothing runs until ALTER EXTENSION.
    pub version_mismatch: bool,
}

#[derive(Copy, Clone)]
pub struct Table {
    pub dbs: [Db; MAX_DATABASES],
    /// Set by `CREATE EXTENSION pgmart`: the launcher looks at every database again.
    pub probe: bool,
}

impl Default for Table {
    fn default() -> Self {
        Table { dbs: [Db::default(); MAX_DATABASES], probe: false }
    }
}

unsafe impl PGRXSharedMemory for Table {}

pub static TABLE: PgLwLock<Table> = unsafe { PgLwLock::new(c"pgmart_worker_status") };

/// Reserve the table (from `_PG_init`, while shared_preload_libraries is processed).
pub fn init() {
    pg_shmem_init!(TABLE);
}

/// Change the entry of one database (made on first use; none when the table is full or pgmart was
/// not preloaded).
pub fn update(dboid: pg_sys::Oid, f: impl FnOnce(&mut Db)) {
    if !crate::worker::available() {
        return;
    }
    let id = u32::from(dboid);
    let mut t = TABLE.exclusive();
    let slot = match t.dbs.iter().position(|d| d.dboid == id) {
        Some(i) => Some(i),
        None => t.dbs.iter().position(|d| d.dboid == 0),
    };
    if let Some(i) = slot {
        t.dbs[i].dboid = id;
        f(&mut t.dbs[i]);
    }
}

/// Ask the launcher to look at every database again (CREATE EXTENSION).
pub fn request_probe() {
    if crate::worker::available() {
        TABLE.exclusive().probe = true;
    }
}

/// Whether a probe was asked for (and clear the request).
pub fn take_probe() -> bool {
    crate::worker::available() && std::mem::replace(&mut TABLE.exclusive().probe, false)
}

/// The entry of one database, if any.
pub fn get(dboid: pg_sys::Oid) -> Option<Db> {
    if !crate::worker::available() {
        return None;
    }
    TABLE.share().dbs.iter().find(|d| d.dboid == u32::from(dboid)).copied()
}

/// Every database's entry.
pub fn all() -> Vec<Db> {
    if !crate::worker::available() {
        return vec![];
    }
    TABLE.share().dbs.iter().filter(|d| d.dboid != 0).copied().collect()
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[pg_extern(schema = "pgmart", stable)]
fn worker_status() -> TableIterator<
    'static,
    (
        name!(database, Option<String>),
        name!(scheduler_pid, Option<i32>),
        name!(running_jobs, i32),
        name!(waiting_jobs, i32),
        name!(max_parallel_jobs, i32),
        name!(problem, Option<String>),
        name!(since, Option<pgrx::datum::TimestampWithTimeZone>),
    ),
> {
    let rows: Vec<_> = all()
        .into_iter()
        .map(|d| {
            let name = crate::sql::one::<String>(
                "SELECT datname::pg_catalog.text FROM pg_catalog.pg_database WHERE oid OPERATOR(pg_catalog.=) $1",
                &[pg_sys::Oid::from(d.dboid).into()],
            );
            let problem = if d.version_mismatch {
                Some("the installed pgmart is not this library's version: run ALTER EXTENSION pgmart UPDATE".to_string())
            } else if d.no_slot_since != 0 {
                Some(format!(
                    "no free background worker slot for a {} (raise max_worker_processes)",
                    if d.no_slot_for == NO_SLOT_SCHEDULER { "scheduler" } else { "job runner" }
                ))
            } else if d.no_extension {
                Some("pgmart is not installed in this database".to_string())
            } else {
                None
            };
            let since = (d.no_slot_since != 0)
                .then(|| {
                    crate::sql::one::<pgrx::datum::TimestampWithTimeZone>(
                        "SELECT pg_catalog.to_timestamp($1::double precision / 1e6)",
                        &[(d.no_slot_since as f64).into()],
                    )
                })
                .flatten();
            (
                name,
                (d.scheduler_pid != 0).then_some(d.scheduler_pid),
                d.running,
                d.waiting,
                crate::guc::MAX_PARALLEL_JOBS.get(),
                problem,
                since,
            )
        })
        .collect();
    TableIterator::new(rows)
}
