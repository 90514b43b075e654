//! The small-team stack's layers (see docs/layers.md): raw/staging/mart schemas with
//! least-privilege ingest/transform/BI group roles kept true by one idempotent call
//! (`create_layers`), access labels (`label_pii`, `label_client_facing`), an audit of who can do
//! what (`access_report`, and the `access` check kind built on it), and row-level tenant
//! isolation (`isolate_tenants`).
//!
//! Privilege: everything `create_layers`, the labels and `isolate_tenants` change on a user's
//! objects (roles, schemas, grants, default privileges, policies) runs **as the caller**, never
//! as the extension's owner, so PostgreSQL itself refuses what the caller could not do by hand;
//! pgmart checks the same rights first to say so clearly and change nothing. Only pgmart's own
//! catalog rows are written as the extension's owner, and the BI surface on schema pgmart is
//! granted only for a caller who could grant it (`grant_access`'s rule).

pub mod api;
pub mod exec;
pub mod plan;
mod tests;
