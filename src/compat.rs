//! Every difference between the PostgreSQL versions pgmart supports (15, 16, 17, 18), behind
//! `cfg` gates, in this one file. Nothing else in pgmart names a version.

use pgrx::pg_sys;

/// This backend's local transaction id (changes with every top-level transaction).
pub fn local_xid() -> u32 {
    unsafe {
        let p = pg_sys::MyProc;
        if p.is_null() {
            return 0;
        }
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        {
            (*p).lxid
        }
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        {
            (*p).vxid.lxid
        }
    }
}

/// "May act as": `member` may SET ROLE to `role` (PostgreSQL 16+ has a SET option on grants; on
/// 15 every member may). Superusers may act as anyone.
pub fn may_set_role(member: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    unsafe {
        #[cfg(feature = "pg15")]
        {
            pg_sys::is_member_of_role(member, role)
        }
        #[cfg(not(feature = "pg15"))]
        {
            pg_sys::member_can_set_role(member, role)
        }
    }
}

/// The privilege name `pg_has_role` takes for "may act as" in SQL text.
pub const ACT_AS_PRIVILEGE: &str = if cfg!(feature = "pg15") { "MEMBER" } else { "SET" };

/// Flags for `BackgroundWorkerInitializeConnectionByOid` that let a runner connect as a role
/// without LOGIN (the usual owner of a team's objects). 17+ only; on 15 and 16 a runner for such a
/// role connects as the bootstrap superuser and then becomes the role (see `worker::runner`).
pub const BYPASS_LOGIN_CHECK: Option<u32> = if cfg!(any(feature = "pg17", feature = "pg18")) {
    Some(bypass_flag())
} else {
    None
};

const fn bypass_flag() -> u32 {
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    {
        pg_sys::BGWORKER_BYPASS_ROLELOGINCHECK
    }
    #[cfg(not(any(feature = "pg17", feature = "pg18")))]
    {
        0
    }
}

/// Whether this backend holds `tag` in `mode` (PostgreSQL 17 added an `orstronger` argument).
pub fn lock_held_by_me(tag: &pg_sys::LOCKTAG, mode: i32) -> bool {
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        {
            pg_sys::LockHeldByMe(tag, mode)
        }
        #[cfg(any(feature = "pg17", feature = "pg18"))]
        {
            pg_sys::LockHeldByMe(tag, mode, false)
        }
    }
}

/// Install a signal handler (PostgreSQL 18 renamed the backend's `pqsignal` to `pqsignal_be`).
pub fn set_signal_handler(signal: i32, handler: unsafe extern "C-unwind" fn(i32)) {
    unsafe {
        #[cfg(not(feature = "pg18"))]
        {
            pg_sys::pqsignal(signal, Some(handler));
        }
        #[cfg(feature = "pg18")]
        {
            pg_sys::pqsignal_be(signal, Some(handler));
        }
    }
}

/// The first user-definable `TimeoutId` (PostgreSQL 17 added TRANSACTION_TIMEOUT before it).
pub const USER_TIMEOUT: i32 = if cfg!(any(feature = "pg17", feature = "pg18")) { 13 } else { 12 };

/// `PortalRun` for a whole portal, at top level (PostgreSQL 18 dropped the `run_once` argument).
///
/// # Safety
/// A portal made and started by the caller, inside a transaction.
pub unsafe fn portal_run(portal: pg_sys::Portal, dest: *mut pg_sys::DestReceiver, qc: *mut pg_sys::QueryCompletion) {
    #[cfg(not(feature = "pg18"))]
    {
        pg_sys::PortalRun(portal, i64::MAX as _, true, true, dest, dest, qc);
    }
    #[cfg(feature = "pg18")]
    {
        pg_sys::PortalRun(portal, i64::MAX as _, true, dest, dest, qc);
    }
}

/// How the health job analyzes a partitioned table: PostgreSQL 18's `ANALYZE ONLY` refreshes the
/// parent's statistics without analyzing every partition again (autovacuum analyzes those).
pub const ANALYZE_PARENT: &str = if cfg!(feature = "pg18") { "ANALYZE ONLY" } else { "ANALYZE" };
/// "Administers" a role: may grant it, change it, drop it. PostgreSQL 16+ asks for ADMIN OPTION
/// on the role (which a CREATEROLE user gets on the roles it creates); on 15, CREATEROLE alone
/// administers every role that is not a superuser (PostgreSQL 15's own rule).
pub fn administers(member: pg_sys::Oid, role: pg_sys::Oid, member_has_createrole: bool, role_is_superuser: bool) -> bool {
    unsafe {
        if pg_sys::superuser_arg(member) {
            return true;
        }
        if cfg!(feature = "pg15") && member_has_createrole && !role_is_superuser {
            return true;
        }
        member != role && pg_sys::is_admin_of_role(member, role)
    }
}

/// The table privileges `has_table_privilege` knows (MAINTAIN is PostgreSQL 17+).
pub const TABLE_PRIVILEGES: &[&str] = if cfg!(any(feature = "pg17", feature = "pg18")) {
    &["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN"]
} else {
    &["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
};
