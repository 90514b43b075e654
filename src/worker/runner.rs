//! A runner: one dynamic worker per run, connected to the database *as the job's owner* (so the
//! run has exactly that role's privileges and its `ALTER ROLE ... SET` settings, `session_user` is
//! the owner, and nothing of the scheduler's identity comes along). It takes over the run the
//! scheduler queued, runs the job the way a client would (statements that cannot run in a
//! transaction block work), with the job's time limit, records the outcome and exits.
//! `pg_stat_activity` shows it with backend_type `pgmart job` and the job's name as its query.

use super::{attach_signals, report};
use crate::jobs::engine::{self, Trigger};
use crate::sql;
use pgrx::prelude::*;

unsafe extern "C-unwind" {
    fn ApplySetting(
        snapshot: pg_sys::Snapshot,
        databaseid: pg_sys::Oid,
        roleid: pg_sys::Oid,
        relsetting: pg_sys::Relation,
        source: pg_sys::GucSource::Type,
    );
}

/// pg_db_role_setting (a fixed system catalog OID).
const DB_ROLE_SETTING_RELATION: pg_sys::Oid = pg_sys::Oid::from_u32(2964);

/// What the scheduler passed in `bgw_extra`.
struct Assignment {
    dboid: pg_sys::Oid,
    owner: pg_sys::Oid,
    job_id: i64,
    run_id: i64,
    can_login: bool,
}

fn assignment() -> Option<Assignment> {
    let extra = pgrx::bgworkers::BackgroundWorker::get_extra();
    let f: Vec<&str> = extra.split_whitespace().collect();
    if f.len() != 5 {
        return None;
    }
    Some(Assignment {
        dboid: pg_sys::Oid::from(f[0].parse::<u32>().ok()?),
        owner: pg_sys::Oid::from(f[1].parse::<u32>().ok()?),
        job_id: f[2].parse().ok()?,
        run_id: f[3].parse().ok()?,
        can_login: f[4] == "1",
    })
}

/// On PostgreSQL 15 and 16 a role without LOGIN cannot be connected to directly: connect as the
/// bootstrap superuser, then become the owner for good (session user, its own settings), with
/// `SET ROLE` and `SET SESSION AUTHORIZATION` refused, so nothing leads back.
unsafe fn become_owner(owner: pg_sys::Oid) {
    pg_sys::StartTransactionCommand();
    pg_sys::SetSessionAuthorization(owner, pg_sys::superuser_arg(owner));
    let rel = pg_sys::table_open(DB_ROLE_SETTING_RELATION, pg_sys::AccessShareLock as i32);
    let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetCatalogSnapshot(DB_ROLE_SETTING_RELATION));
    ApplySetting(snapshot, pg_sys::MyDatabaseId, owner, rel, pg_sys::GucSource::PGC_S_DATABASE_USER);
    ApplySetting(snapshot, pg_sys::InvalidOid, owner, rel, pg_sys::GucSource::PGC_S_USER);
    pg_sys::UnregisterSnapshot(snapshot);
    pg_sys::table_close(rel, pg_sys::AccessShareLock as i32);
    pg_sys::CommitTransactionCommand();
    pg_sys::SetUserIdAndSecContext(owner, pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32);
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pgmart_runner_main(_arg: pg_sys::Datum) {
    attach_signals();
    let Some(a) = assignment() else {
        log!("pgmart runner: started without a job to run");
        return;
    };
    unsafe {
        match crate::compat::BYPASS_LOGIN_CHECK {
            Some(flags) => pg_sys::BackgroundWorkerInitializeConnectionByOid(a.dboid, a.owner, flags),
            None if a.can_login => pg_sys::BackgroundWorkerInitializeConnectionByOid(a.dboid, a.owner, 0),
            None => {
                pg_sys::BackgroundWorkerInitializeConnectionByOid(a.dboid, pg_sys::InvalidOid, 0);
                become_owner(a.owner);
            }
        }
    }
    engine::IN_WORKER.store(true, std::sync::atomic::Ordering::Relaxed);
    let job = match sql::top_level(false, || engine::begin_queued_run(a.job_id, a.run_id)) {
        Ok(Some(job)) => job,
        Ok(None) => return, // recovered meanwhile: someone else runs it
        Err(c) => {
            log!("pgmart runner: cannot take over run {} of job {}: {}", a.run_id, a.job_id, c.message);
            return;
        }
    };
    report(pg_sys::BackendState::STATE_RUNNING, &job.name);
    let (outcome, ms) = engine::execute_in_runner(&job);
    if let Err(c) = sql::top_level(false, || engine::record(&job, a.run_id, Trigger::Schedule, outcome, ms)) {
        log!("pgmart runner: cannot record run {} of job {}: {} ({})", a.run_id, a.job_id, c.message, c.sqlstate);
    }
    unsafe { pg_sys::pgstat_report_stat(true) };
    report(pg_sys::BackendState::STATE_IDLE, "");
}
