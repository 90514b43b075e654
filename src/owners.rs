//! Owners of registrations. Every job, check, alert rule and metric has an *anchor*: a contentless
//! materialized view in schema `pgmart_owners`, owned by the role the registration belongs to and
//! marked `DEPENDS ON EXTENSION pgmart`. The registration's owner is always the anchor's owner
//! (`pg_class.relowner`), read when it is needed, never cached. So PostgreSQL itself:
//! refuses `DROP ROLE` while the role owns registrations (from any database, naming each anchor),
//! moves them with `REASSIGN OWNED`, drops them with `DROP OWNED` (the `sql_drop` event trigger then
//! removes the registration, see [`_anchors_dropped`]), carries them through `pg_dump` with their
//! owner, and drops them with the extension. A renamed role changes nothing.

use crate::error::PgMartError;
use crate::sql::{self, quote_identifier};
use pgrx::prelude::*;

pub const SCHEMA: &str = "pgmart_owners";

/// The registration kinds that have anchors, and how each is removed when its anchor is dropped
/// (filled in by the composition root, `lib.rs`).
pub struct Registration {
    /// Anchor name prefix, e.g. `job` for `pgmart_owners.job_42`.
    pub prefix: &'static str,
    /// Remove the registration (by the id in its anchor's name) whose anchor is gone.
    pub forget: fn(id: &str),
}

/// `pgmart_owners.<prefix>_<id>`, quoted.
pub fn anchor_name(prefix: &str, id: &str) -> String {
    format!("{}.{}", quote_identifier(SCHEMA), quote_identifier(format!("{prefix}_{id}")))
}

/// Create the anchor of a registration, owned by `owner`; returns its name (for a `regclass`
/// column). Runs as the extension's owner. A leftover anchor of that name is replaced.
pub fn create(prefix: &str, id: &str, owner: pg_sys::Oid, comment: &str) -> String {
    let name = anchor_name(prefix, id);
    let role = role_ident(owner);
    sql::as_catalog_owner(|| {
        if exists(&name) {
            sql::exec(&format!("DROP MATERIALIZED VIEW {name}"), &[]);
        }
        sql::exec(&format!("CREATE MATERIALIZED VIEW {name} AS SELECT WITH NO DATA"), &[]);
        sql::exec(&format!("ALTER MATERIALIZED VIEW {name} OWNER TO {role}"), &[]);
        sql::exec(&format!("ALTER MATERIALIZED VIEW {name} DEPENDS ON EXTENSION pgmart"), &[]);
        sql::exec(&format!("COMMENT ON MATERIALIZED VIEW {name} IS {}", sql::quote_literal(comment)), &[]);
    });
    name
}

/// Hand a registration to another role (its anchor's owner changes; `alter_job(owner => ...)`).
pub fn set_owner(anchor: &str, owner: pg_sys::Oid) {
    let role = role_ident(owner);
    sql::as_catalog_owner(|| {
        if exists(anchor) {
            sql::exec(&format!("ALTER MATERIALIZED VIEW {anchor} OWNER TO {role}"), &[]);
        }
    });
}

/// Drop a registration's anchor (the registration itself is being deleted by its capability).
pub fn drop(anchor: &str) {
    sql::as_catalog_owner(|| {
        if exists(anchor) {
            sql::exec(&format!("DROP MATERIALIZED VIEW {anchor}"), &[]);
        }
    });
}

fn exists(anchor: &str) -> bool {
    sql::one::<bool>("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[anchor.into()]).unwrap_or(false)
}

/// The current owner of a registration (None when its anchor is gone).
pub fn owner(anchor: &str) -> Option<pg_sys::Oid> {
    sql::one::<pg_sys::Oid>(
        "SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)",
        &[anchor.into()],
    )
}

fn role_ident(owner: pg_sys::Oid) -> String {
    let name = sql::one::<String>(
        "SELECT rolname::pg_catalog.text FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) $1",
        &[owner.into()],
    )
    .unwrap_or_else(|| PgMartError::undefined_object("role does not exist").raise());
    quote_identifier(name)
}

/// Internal (called by the `sql_drop` event trigger with the names of dropped anchors): remove
/// the registrations whose anchor is really gone.
#[pg_extern(schema = "pgmart", volatile)]
fn _anchors_dropped(names: Vec<String>) {
    for n in names {
        let full = anchor_name_from_relname(&n);
        if exists(&full) {
            continue;
        }
        for reg in crate::REGISTRATIONS {
            if let Some(id) = n.strip_prefix(reg.prefix).and_then(|rest| rest.strip_prefix('_')) {
                (reg.forget)(id);
            }
        }
    }
}

fn anchor_name_from_relname(relname: &str) -> String {
    format!("{}.{}", quote_identifier(SCHEMA), quote_identifier(relname))
}
