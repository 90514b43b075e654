//! SQL-facing dashboard and lineage functions: thin wrappers over [`super::exec`].

use super::exec;
use crate::args::{self, RegClass};
use crate::error::required;
use pgrx::prelude::*;

#[pg_extern(schema = "pgmart", volatile)]
#[allow(clippy::too_many_arguments)]
fn register_dashboard(
    name: Option<&str>,
    owner: Option<&str>,
    description: Option<&str>,
    metrics: default!(Option<Vec<Option<String>>>, "'{}'"),
    sources: default!(Option<args::RegClassArray>, "'{}'"),
    caveats: default!(Option<&str>, "NULL"),
    url: default!(Option<&str>, "NULL"),
    query_pattern: default!(Option<&str>, "NULL"),
) {
    let sources = args::relations(sources, "sources");
    exec::register(exec::NewDashboard {
        name: required(name, "name"),
        owner: required(owner, "owner"),
        description: required(description, "description"),
        metrics: args::names(metrics, "metrics").unwrap_or_default(),
        sources,
        caveats,
        url,
        query_pattern,
    })
}

#[pg_extern(schema = "pgmart", volatile)]
fn drop_dashboard(name: Option<&str>) {
    exec::drop_dashboard(required(name, "name"))
}

#[pg_extern(schema = "pgmart", stable, parallel_unsafe)]
fn lineage(
    object: default!(Option<RegClass>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(upstream, String),
        name!(upstream_kind, String),
        name!(downstream, String),
        name!(downstream_kind, String),
        name!(via, String),
        name!(direction, Option<String>),
        name!(depth, Option<i32>),
    ),
> {
    let object = args::optional_relation(object, "object");
    TableIterator::new(exec::lineage(object).into_iter().map(|e| {
        (e.upstream, e.upstream_kind, e.downstream, e.downstream_kind, e.via, e.direction, e.depth)
    }))
}

#[pg_extern(schema = "pgmart", stable, parallel_unsafe)]
fn impact(
    object: Option<RegClass>,
) -> TableIterator<
    'static,
    (
        name!(object, String),
        name!(kind, String),
        name!(depth, i32),
        name!(owner, Option<String>),
        name!(registered_by, Option<String>),
        name!(url, Option<String>),
    ),
> {
    let object = args::relation(object, "object");
    TableIterator::new(
        exec::impact(object).into_iter().map(|i| (i.object, i.kind, i.depth, i.owner, i.registered_by, i.url)),
    )
}

#[pg_extern(schema = "pgmart", stable, parallel_unsafe)]
fn lineage_mermaid(object: default!(Option<RegClass>, "NULL")) -> String {
    let object = args::optional_relation(object, "object");
    exec::mermaid(object)
}
