//! SQL-facing layer functions: thin wrappers over [`super::exec`].

use super::exec;
use super::plan::Config;
use crate::args::{self, RegClass};
use crate::error::required;
use pgrx::prelude::*;

#[pg_extern(schema = "pgmart", volatile)]
fn create_layers(
    raw: default!(Option<&str>, "'raw'"),
    staging: default!(Option<&str>, "'staging'"),
    mart: default!(Option<&str>, "'mart'"),
    ingest_role: default!(Option<&str>, "'ingest'"),
    transform_role: default!(Option<&str>, "'transform'"),
    bi_role: default!(Option<&str>, "'bi'"),
) -> TableIterator<'static, (name!(change, String), name!(object, String), name!(statement, String))> {
    let cfg = Config {
        raw: raw.unwrap_or("raw").into(),
        staging: staging.unwrap_or("staging").into(),
        mart: mart.unwrap_or("mart").into(),
        ingest: ingest_role.unwrap_or("ingest").into(),
        transform: transform_role.unwrap_or("transform").into(),
        bi: bi_role.unwrap_or("bi").into(),
    };
    TableIterator::new(exec::create_layers(cfg))
}

#[pg_extern(schema = "pgmart", volatile)]
fn drop_layers(mart: default!(Option<&str>, "'mart'")) -> bool {
    exec::drop_layers(mart.unwrap_or("mart"))
}

#[pg_extern(schema = "pgmart", stable)]
fn access_report() -> TableIterator<
    'static,
    (
        name!(layer, Option<String>),
        name!(schema, Option<String>),
        name!(object_type, String),
        name!(object, String),
        name!(column_name, Option<String>),
        name!(role, String),
        name!(privilege, String),
        name!(violation, bool),
        name!(reason, Option<String>),
    ),
> {
    let rows = exec::report(crate::sql::caller());
    TableIterator::new(
        rows.into_iter()
            .map(|r| (r.layer, r.schema, r.object_type, r.object, r.column, r.role, r.privilege, r.violation, r.reason)),
    )
}

#[pg_extern(schema = "pgmart", volatile)]
fn label_pii(table: Option<RegClass>, columns: Option<Vec<Option<String>>>) -> i64 {
    let rel = args::relation(table, "table");
    let columns = required(args::names(columns, "columns"), "columns");
    exec::label_pii(rel, columns, true)
}

#[pg_extern(schema = "pgmart", volatile)]
fn unlabel_pii(table: Option<RegClass>, columns: Option<Vec<Option<String>>>) -> i64 {
    let rel = args::relation(table, "table");
    let columns = required(args::names(columns, "columns"), "columns");
    exec::label_pii(rel, columns, false)
}

#[pg_extern(schema = "pgmart", volatile)]
fn label_client_facing(table: Option<RegClass>, client_facing: default!(Option<bool>, true)) -> bool {
    let rel = args::relation(table, "table");
    exec::label_client_facing(rel, client_facing.unwrap_or(true))
}

#[pg_extern(schema = "pgmart", volatile)]
fn isolate_tenants(
    table: Option<RegClass>,
    tenant_column: Option<&str>,
    setting: default!(Option<&str>, "'app.tenant_id'"),
    bi_role: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(change, String), name!(object, String), name!(statement, String))> {
    let rel = args::relation(table, "table");
    let column = required(tenant_column, "tenant_column");
    TableIterator::new(exec::isolate_tenants(rel, column, setting.unwrap_or("app.tenant_id"), bi_role))
}
