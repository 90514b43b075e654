//! Who may use pgmart: `pgmart.grant_access(role, access)`, the one call an administrator makes
//! for each kind of role (see docs/security.md). Everything a role may then do is decided per
//! object, by the role's own rights: it sees and acts on what belongs to roles it may act as.

use crate::error::{OrRaise, PgMartError};
use crate::sql::{self, quote_identifier};
use pgrx::prelude::*;

/// The statements that give (or take away) one kind of access.
pub fn statements(role: &str, access: &str) -> Result<Vec<String>, PgMartError> {
    let r = quote_identifier(role);
    let usage = vec![
        format!("GRANT USAGE ON SCHEMA pgmart TO {r}"),
        format!("GRANT USAGE ON SCHEMA pgmart_metrics TO {r}"),
        format!("GRANT USAGE ON SCHEMA pgmart_metric_columns TO {r}"),
    ];
    Ok(match access {
        // A team role: registers and manages its own jobs, sets, checks, metrics and rules.
        "user" => {
            let mut v = usage;
            v.push(format!("GRANT SELECT ON pgmart.trust TO {r}"));
            v
        }
        // A BI role: reads freshness, metrics (their views and metric_values) and its checks' status.
        "reader" => {
            let mut v = usage;
            v.push(format!("GRANT SELECT ON pgmart.freshness TO {r}"));
            v.push(format!("GRANT SELECT ON pgmart.trust TO {r}"));
            v
        }
        "none" => vec![
            format!("REVOKE SELECT ON pgmart.freshness FROM {r}"),
            format!("REVOKE SELECT ON pgmart.trust FROM {r}"),
            format!("REVOKE USAGE ON SCHEMA pgmart_metric_columns FROM {r}"),
            format!("REVOKE USAGE ON SCHEMA pgmart_metrics FROM {r}"),
            format!("REVOKE USAGE ON SCHEMA pgmart FROM {r}"),
        ],
        other => {
            return Err(PgMartError::invalid(format!("unknown access \"{other}\""))
                .hint("Use 'user' (a team role that registers its own objects), 'reader' (a BI role) or 'none'."))
        }
    })
}

#[pg_extern(schema = "pgmart", volatile)]
fn grant_access(
    role: Option<&str>,
    access: default!(Option<&str>, "'user'"),
) -> TableIterator<'static, (name!(statement, String),)> {
    let role = crate::error::required(role, "role");
    let access = access.unwrap_or("user");
    crate::jobs::api::require_primary("grant access to pgmart");
    let caller = sql::caller();
    let owner = sql::extension_owner();
    if !unsafe { pg_sys::is_member_of_role(caller, owner) } {
        PgMartError::privilege("only the owner of extension pgmart (or a superuser) may grant access to it").raise();
    }
    let role_oid = sql::role_oid(role).or_raise();
    if role_oid == owner {
        PgMartError::invalid(format!("role \"{role}\" owns pgmart already")).raise();
    }
    let stmts = statements(role, access).or_raise();
    sql::as_catalog_owner(|| {
        for s in &stmts {
            sql::exec(s, &[]);
        }
    });
    TableIterator::new(stmts.into_iter().map(|s| (s,)))
}
