//! Symbols that released install scripts name and this library no longer implements. A database
//! still on such a version (after the new library was loaded, before `ALTER EXTENSION pgmart
//! UPDATE`) can call them; each answers with the version error instead of misreading its
//! arguments. The rule: when a function's SQL arguments change, its Rust function takes the
//! version as a suffix (`schedule_sql_0_2`, so a new symbol), and the old symbol moves here.

use pgrx::pg_sys;

/// Always raises: the installed extension's SQL is older than this library.
fn retired() -> ! {
    let installed = crate::sql::installed_version().unwrap_or_default();
    match crate::version::mismatch(&installed) {
        Some(e) => e.raise(),
        None => crate::error::PgMartError::state("this pgmart function's SQL declaration is out of date")
            .hint("Run ALTER EXTENSION pgmart UPDATE.")
            .raise(),
    }
}

macro_rules! retired_symbols {
    ($($wrapper:ident $finfo:ident),* $(,)?) => {$(
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1_API
        }

        #[unsafe(no_mangle)]
        #[doc(hidden)]
        #[pgrx::pg_guard]
        pub unsafe extern "C-unwind" fn $wrapper(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            retired()
        }
    )*};
}

// 0.1.0: these five gained a `timeout` argument in 0.2.0.
retired_symbols!(
    schedule_sql_wrapper pg_finfo_schedule_sql_wrapper,
    alter_job_wrapper pg_finfo_alter_job_wrapper,
    add_check_wrapper pg_finfo_add_check_wrapper,
    create_partition_set_wrapper pg_finfo_create_partition_set_wrapper,
    schedule_refresh_wrapper pg_finfo_schedule_refresh_wrapper,
);
