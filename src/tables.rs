//! Tables pgmart creates for a registration (a rollup's, a snapshot's): the name a caller gives
//! for a new one, and finding a registration by its table's name.

use crate::error::PgMartError;
use crate::sql;

/// Schema and name of a table to create: `name` qualified, or in the caller's current schema.
/// `noun` ("rollup") and `example` ("mart.sales_hourly") word the errors.
pub fn new_table_name(name: &str, noun: &str, example: &str) -> (String, String) {
    let parts = sql::subtransaction(|| sql::one::<Vec<String>>("SELECT pg_catalog.parse_ident($1)", &[name.into()]))
        .ok()
        .flatten()
        .unwrap_or_default();
    match parts.as_slice() {
        [rel] => {
            let schema = sql::caller_path(|| sql::one::<String>("SELECT pg_catalog.current_schema()::pg_catalog.text", &[]))
                .unwrap_or_else(|| {
                    PgMartError::new(
                        pgrx::PgSqlErrorCode::ERRCODE_INVALID_SCHEMA_NAME,
                        format!("no schema has been selected to create the {noun} in"),
                    )
                    .hint(format!("Qualify the name: {example}."))
                    .raise()
                });
            (schema, rel.clone())
        }
        [schema, rel] => (schema.clone(), rel.clone()),
        _ => PgMartError::invalid(format!("invalid {noun} name \"{name}\""))
            .hint(format!("Name the table to create, optionally with its schema: {example}."))
            .raise(),
    }
}

/// The job of the registration in `catalog` (a pgmart table with `job_id`, `rel` and `name`)
/// whose table is `name` (qualified, or found on the caller's search_path), or that was
/// registered under `name` (its table gone or renamed). Who may act on it is the caller's check.
pub fn registration_job(catalog: &str, name: &str) -> Option<i64> {
    let oid = sql::caller_path(|| {
        sql::subtransaction(|| sql::one::<pgrx::pg_sys::Oid>("SELECT pg_catalog.to_regclass($1)::pg_catalog.oid", &[name.into()]))
            .ok()
            .flatten()
    });
    sql::as_catalog_owner(|| {
        sql::one::<i64>(
            &format!(
                "SELECT job_id FROM {catalog} WHERE rel::pg_catalog.oid OPERATOR(pg_catalog.=) $1 OR name OPERATOR(pg_catalog.=) $2 \
                  ORDER BY (rel::pg_catalog.oid OPERATOR(pg_catalog.=) $1) DESC LIMIT 1"
            ),
            &[oid.unwrap_or(pgrx::pg_sys::InvalidOid).into(), name.into()],
        )
    })
}
