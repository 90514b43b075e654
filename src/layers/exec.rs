//! Runs layer plans through SPI: reads what is (catalogs, labels), checks the caller's rights,
//! makes the changes **as the caller**, and records the set; labels, tenant isolation, the access
//! report and the `access` check's measure.

use super::plan::{self, Change, Config, Facts, Layer, ReportRow, Who};
use crate::error::{OrRaise, PgMartError};
use crate::sql::{self, quote_identifier};
use pgrx::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// One row of `create_layers` / `isolate_tenants`: what changed, on what, by which statement.
pub type Done = (String, String, String);

#[derive(Deserialize, Debug, Clone)]
struct RoleRow {
    name: String,
    oid: u32,
    superuser: bool,
    bypassrls: bool,
    createrole: bool,
}

fn role_rows(names: &[&str]) -> Vec<RoleRow> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    sql::rows::<RoleRow>(
        "SELECT r.rolname::pg_catalog.text AS name, r.oid::pg_catalog.int8 AS oid, r.rolsuper AS superuser, \
                r.rolbypassrls AS bypassrls, r.rolcreaterole AS createrole \
           FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])",
        &[names.into()],
    )
}

fn caller_row() -> RoleRow {
    let caller = sql::caller();
    sql::row::<RoleRow>(
        "SELECT r.rolname::pg_catalog.text AS name, r.oid::pg_catalog.int8 AS oid, r.rolsuper AS superuser, \
                r.rolbypassrls AS bypassrls, r.rolcreaterole AS createrole \
           FROM pg_catalog.pg_roles r WHERE r.oid OPERATOR(pg_catalog.=) $1",
        &[caller.into()],
    )
    .unwrap_or_else(|| PgMartError::internal("the calling role does not exist").raise())
}

#[derive(Deserialize)]
struct SchemaRow {
    name: String,
    owner: u32,
}

fn schema_rows(names: &[&str]) -> Vec<SchemaRow> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    sql::rows::<SchemaRow>(
        "SELECT n.nspname::pg_catalog.text AS name, n.nspowner::pg_catalog.int8 AS owner \
           FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])",
        &[names.into()],
    )
}

fn oid(o: u32) -> pg_sys::Oid {
    pg_sys::Oid::from(o)
}

fn is_superuser(role: u32) -> bool {
    unsafe { pg_sys::superuser_arg(oid(role)) }
}

/// The caller has the rights of `role` (PostgreSQL's test for acting as an object's owner).
fn has_rights(caller: u32, role: u32) -> bool {
    sql::has_rights_of(oid(caller), oid(role))
}

/// Create or adopt the layer set `cfg`, make every privilege what it should be; one row per change.
pub fn create_layers(cfg: Config) -> Vec<Done> {
    crate::jobs::api::require_primary("create layers");
    cfg.validate().or_raise();
    let me = caller_row();
    let mut done: Vec<Done> = vec![];

    // Everything the call needs is checked before anything changes.
    let role_names = [cfg.ingest.as_str(), cfg.transform.as_str(), cfg.bi.as_str()];
    let existing = role_rows(&role_names);
    let mut to_create = vec![];
    for name in role_names {
        match existing.iter().find(|r| r.name == name) {
            None => to_create.push(name),
            Some(r) => {
                if r.superuser {
                    PgMartError::state(format!("role \"{name}\" is a superuser: it cannot be a least-privilege layer role"))
                        .hint("Name another role (pgmart creates it), or remove SUPERUSER from this one.")
                        .raise();
                }
                if r.oid == me.oid {
                    PgMartError::invalid(format!("role \"{name}\" is you: layer roles are group roles"))
                        .hint("Call create_layers as an administrator and grant the layer roles to login roles.")
                        .raise();
                }
                if !crate::compat::administers(oid(me.oid), oid(r.oid), me.createrole, r.superuser) {
                    PgMartError::privilege(format!("you may not adopt role \"{name}\": you do not administer it"))
                        .hint(format!(
                            "Only a superuser or a role with ADMIN OPTION on \"{name}\" may make it a layer role; \
                             ask one to run create_layers, or to GRANT \"{name}\" TO you WITH ADMIN OPTION."
                        ))
                        .raise();
                }
            }
        }
    }
    if !to_create.is_empty() && !me.superuser && !me.createrole {
        PgMartError::privilege(format!("creating role(s) {} needs the CREATEROLE privilege", to_create.join(", ")))
            .hint("Ask a superuser to run create_layers, or to create these roles (NOLOGIN) and grant you ADMIN OPTION on them, then call it again.")
            .raise();
    }
    let schema_names = [cfg.raw.as_str(), cfg.staging.as_str(), cfg.mart.as_str()];
    let schemas = schema_rows(&schema_names);
    let mut new_schemas = vec![];
    for name in schema_names {
        match schemas.iter().find(|s| s.name == name) {
            None => new_schemas.push(name),
            Some(s) if !has_rights(me.oid, s.owner) => {
                PgMartError::privilege(format!(
                    "you may not adopt schema \"{name}\": it is owned by {}",
                    sql::role_name(oid(s.owner))
                ))
                .hint("Only its owner (or a member of the owning role, or a superuser) may make it a layer.")
                .raise();
            }
            Some(_) => {}
        }
    }
    if !new_schemas.is_empty()
        && sql::one::<bool>(
            "SELECT pg_catalog.has_database_privilege($1, pg_catalog.current_database(), 'CREATE')",
            &[oid(me.oid).into()],
        ) != Some(true)
    {
        PgMartError::privilege(format!("creating schema(s) {} needs CREATE on this database", new_schemas.join(", ")))
            .hint("Ask the database's owner to GRANT CREATE ON DATABASE to you, or to create the schemas.")
            .raise();
    }
    check_other_sets(&cfg);

    // Roles and schemas that are missing, made by the caller.
    for name in &to_create {
        let stmt = format!("CREATE ROLE {} NOLOGIN", quote_identifier(name));
        sql::exec(&stmt, &[]);
        done.push(("create role".into(), format!("role {}", quote_identifier(name)), stmt));
    }
    for name in &new_schemas {
        let stmt = format!("CREATE SCHEMA {}", quote_identifier(name));
        sql::exec(&stmt, &[]);
        done.push(("create schema".into(), format!("schema {}", quote_identifier(name)), stmt));
    }

    // Privileges.
    let facts = observe(&cfg, me.oid);
    let changes = plan::changes(&facts);
    check_rights(&facts, me.oid, &changes);
    for c in &changes {
        sql::exec(&c.statement, &[]);
        done.push((c.action.clone(), c.object.clone(), c.statement.clone()));
    }
    // A second look: what is left was granted by someone else (with GRANT OPTION), which the
    // owner's REVOKE does not reach.
    if !changes.is_empty() {
        let left = plan::changes(&observe(&cfg, me.oid));
        if !left.is_empty() {
            let list: Vec<String> = left.iter().take(5).map(|c| c.statement.clone()).collect();
            PgMartError::state("create_layers could not make every privilege what it should be")
                .detail(format!("Still to do: {}", list.join("; ")))
                .hint("Grants made by a role holding GRANT OPTION must be revoked by that role (or with REVOKE ... GRANTED BY).")
                .raise();
        }
    }
    done.extend(bi_surface(&cfg, me.oid));
    if record(&cfg) {
        done.push((
            "register".into(),
            format!("layer set {}", plan::shown(&cfg.mart)),
            "pgmart.layers".into(),
        ));
    }
    if done.is_empty() {
        notice!(
            "pgmart: layers {}, {}, {} and roles {}, {}, {} are as they should be: nothing changed",
            cfg.raw, cfg.staging, cfg.mart, cfg.ingest, cfg.transform, cfg.bi
        );
    }
    done
}

/// A schema may belong to one layer set only.
fn check_other_sets(cfg: &Config) {
    let names = vec![cfg.raw.clone(), cfg.staging.clone(), cfg.mart.clone()];
    let other = sql::as_catalog_owner(|| {
        sql::one::<String>(
            "SELECT s.mart_schema FROM pgmart.layer_set s \
              WHERE s.mart_schema OPERATOR(pg_catalog.<>) $2 \
                AND ARRAY[s.raw_schema, s.staging_schema, s.mart_schema] OPERATOR(pg_catalog.&&) $1::pg_catalog.text[] LIMIT 1",
            &[names.into(), cfg.mart.as_str().into()],
        )
    });
    if let Some(m) = other {
        PgMartError::state(format!("one of schemas {}, {}, {} is already a layer of the set whose mart is \"{m}\"", cfg.raw, cfg.staging, cfg.mart))
            .hint(format!("A schema is a layer of one set only; to start over, SELECT pgmart.drop_layers('{m}') first."))
            .raise();
    }
}

/// Every change needs the rights of the object's owner (or of the role whose defaults change):
/// PostgreSQL would refuse it otherwise, or grant nothing with a mere WARNING.
fn check_rights(f: &Facts, caller: u32, changes: &[Change]) {
    let mut missing: Vec<&Change> = changes.iter().filter(|c| c.needs != 0 && !has_rights(caller, c.needs)).collect();
    missing.dedup_by_key(|c| c.needs);
    let Some(first) = missing.first() else { return };
    let role = sql::role_name(oid(first.needs));
    let is_layer_role = [&f.config.ingest, &f.config.transform].contains(&&role);
    let hint = if is_layer_role {
        format!(
            "The default privileges of {role} (and its objects' grants) can only be set with {role}'s rights: \
             GRANT {} TO {} (you administer it), or before creating the roles SET createrole_self_grant = 'set, inherit'; \
             or ask a superuser to run create_layers.",
            quote_identifier(&role),
            quote_identifier(sql::role_name(oid(caller)))
        )
    } else {
        format!("Ask {role} (or a superuser) to run create_layers, or to give the object to {} (ALTER ... OWNER TO).", f.config.transform)
    };
    PgMartError::privilege(format!("create_layers needs the rights of role {role} for: {}", first.statement))
        .detail(format!("{} change(s) need roles whose rights you do not have.", changes.iter().filter(|c| c.needs != 0 && !has_rights(caller, c.needs)).count()))
        .hint(hint)
        .raise();
}

/// pgmart's BI surface for the BI role (freshness, metric views and values, check status), the
/// way `grant_access(bi, 'reader')` gives it: only by a caller who could call that.
fn bi_surface(cfg: &Config, caller: u32) -> Vec<Done> {
    let has = sql::one::<bool>(
        "SELECT pg_catalog.has_schema_privilege($1, 'pgmart', 'USAGE') \
            AND pg_catalog.has_schema_privilege($1, 'pgmart_metrics', 'USAGE') \
            AND pg_catalog.has_schema_privilege($1, 'pgmart_metric_columns', 'USAGE') \
            AND pg_catalog.has_table_privilege($1, 'pgmart.freshness', 'SELECT')",
        &[cfg.bi.as_str().into()],
    )
    .unwrap_or(false);
    if has {
        return vec![];
    }
    let owner = sql::extension_owner();
    if !unsafe { pg_sys::is_member_of_role(oid(caller), owner) } {
        warning!(
            "pgmart: role {} cannot read pgmart's BI surface (freshness, metrics, check status); only the owner of extension pgmart may grant it: SELECT pgmart.grant_access({}, 'reader')",
            cfg.bi,
            sql::quote_literal(&cfg.bi)
        );
        return vec![];
    }
    let stmts = crate::access::statements(&cfg.bi, "reader").or_raise();
    sql::as_catalog_owner(|| {
        for s in &stmts {
            sql::exec(s, &[]);
        }
    });
    stmts.into_iter().map(|s| ("grant".into(), "pgmart BI surface".into(), s)).collect()
}

/// Record (or update) the set; true when it is new or changed.
fn record(cfg: &Config) -> bool {
    sql::as_catalog_owner(|| {
        let same = sql::one::<bool>(
            "SELECT raw_schema OPERATOR(pg_catalog.=) $2 AND staging_schema OPERATOR(pg_catalog.=) $3 \
                AND ingest_role OPERATOR(pg_catalog.=) $4 AND transform_role OPERATOR(pg_catalog.=) $5 AND bi_role OPERATOR(pg_catalog.=) $6 \
               FROM pgmart.layer_set WHERE mart_schema OPERATOR(pg_catalog.=) $1",
            &args(cfg),
        );
        sql::exec(
            "INSERT INTO pgmart.layer_set (mart_schema, raw_schema, staging_schema, ingest_role, transform_role, bi_role) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (mart_schema) DO UPDATE SET raw_schema = EXCLUDED.raw_schema, staging_schema = EXCLUDED.staging_schema, \
                 ingest_role = EXCLUDED.ingest_role, transform_role = EXCLUDED.transform_role, bi_role = EXCLUDED.bi_role, \
                 checked_at = pg_catalog.now()",
            &args(cfg),
        );
        same != Some(true)
    })
}

fn args(cfg: &Config) -> Vec<pgrx::datum::DatumWithOid<'_>> {
    vec![
        cfg.mart.as_str().into(),
        cfg.raw.as_str().into(),
        cfg.staging.as_str().into(),
        cfg.ingest.as_str().into(),
        cfg.transform.as_str().into(),
        cfg.bi.as_str().into(),
    ]
}

/// Forget a layer set (its schemas, roles and grants stay); the caller needs the rights of the
/// mart schema's owner.
pub fn drop_layers(mart: &str) -> bool {
    crate::jobs::api::require_primary("drop layers");
    let caller = sql::caller();
    let owner = schema_rows(&[mart]).first().map(|s| s.owner);
    let known = sql::as_catalog_owner(|| {
        sql::one::<bool>("SELECT EXISTS (SELECT 1 FROM pgmart.layer_set WHERE mart_schema OPERATOR(pg_catalog.=) $1)", &[mart.into()])
    }) == Some(true);
    let allowed = is_superuser(u32::from(caller)) || owner.is_some_and(|o| has_rights(u32::from(caller), o));
    if !known || !allowed {
        PgMartError::undefined_object(format!("layer set \"{mart}\" does not exist or you may not drop it"))
            .hint("pgmart.layers lists the layer sets; dropping one needs the rights of its mart schema's owner.")
            .raise();
    }
    sql::as_catalog_owner(|| {
        sql::exec("DELETE FROM pgmart.layer_set WHERE mart_schema OPERATOR(pg_catalog.=) $1", &[mart.into()]);
    });
    true
}

/// Every registered layer set (as the extension's owner: the callers filter).
pub fn all_sets() -> Vec<Config> {
    sql::as_catalog_owner(|| {
        sql::rows::<Config>(
            "SELECT raw_schema AS raw, staging_schema AS staging, mart_schema AS mart, ingest_role AS ingest, \
                    transform_role AS transform, bi_role AS bi FROM pgmart.layer_set ORDER BY mart_schema",
            &[],
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Observing.

fn jsonb_acl(acl: &str) -> String {
    format!(
        "coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('grantee', a.grantee::pg_catalog.int8, \
                                                                          'privilege', a.privilege_type)) \
                     FROM pg_catalog.aclexplode({acl}) a), '[]'::pg_catalog.jsonb)"
    )
}

/// What is, for layer set `cfg`, seen with caller `caller`'s default privileges.
pub fn observe(cfg: &Config, caller: u32) -> Facts {
    let schemas = vec![cfg.raw.clone(), cfg.staging.clone(), cfg.mart.clone()];
    let roles = role_rows(&[cfg.ingest.as_str(), cfg.transform.as_str(), cfg.bi.as_str()]);
    // The roles whose effective rights are reported: the layer roles that exist, and PUBLIC.
    let mut who: Vec<String> = roles.iter().map(|r| r.name.clone()).collect();
    who.push("public".into());
    #[derive(Deserialize)]
    struct All {
        oid: u32,
        name: String,
        superuser: bool,
    }
    let all = sql::rows::<All>(
        "SELECT oid::pg_catalog.int8 AS oid, rolname::pg_catalog.text AS name, rolsuper AS superuser FROM pg_catalog.pg_roles",
        &[],
    );
    let names: BTreeMap<u32, String> = all.iter().map(|r| (r.oid, r.name.clone())).collect();
    let superusers: BTreeSet<u32> = all.iter().filter(|r| r.superuser).map(|r| r.oid).collect();
    let fix_public = |mut m: BTreeMap<String, Vec<String>>| {
        if let Some(v) = m.remove("public") {
            m.insert("PUBLIC".into(), v);
        }
        m
    };
    let schema_facts: Vec<plan::SchemaFacts> = sql::rows::<plan::SchemaFacts>(
        &format!(
            "SELECT n.nspname::pg_catalog.text AS name, n.nspowner::pg_catalog.int8 AS owner, \
                    {} AS acl, \
                    coalesce((SELECT pg_catalog.jsonb_object_agg(r.name, \
                                (SELECT coalesce(pg_catalog.jsonb_agg(p.p ORDER BY p.i), '[]'::pg_catalog.jsonb) \
                                   FROM pg_catalog.unnest(ARRAY['USAGE', 'CREATE']::pg_catalog.text[]) WITH ORDINALITY p(p, i) \
                                  WHERE pg_catalog.has_schema_privilege(r.name, n.oid, p.p))) \
                                FROM pg_catalog.unnest($2::pg_catalog.text[]) r(name)), '{{}}'::pg_catalog.jsonb) AS effective \
               FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])",
            jsonb_acl("coalesce(n.nspacl, pg_catalog.acldefault('n'::\"char\", n.nspowner))")
        ),
        &[schemas.clone().into(), who.clone().into()],
    )
    .into_iter()
    .map(|mut s| {
        s.effective = fix_public(std::mem::take(&mut s.effective));
        s
    })
    .collect();
    let table_privs: Vec<String> = crate::compat::TABLE_PRIVILEGES.iter().map(|s| s.to_string()).collect();
    let objects: Vec<plan::ObjectFacts> = sql::rows::<plan::ObjectFacts>(
        &format!(
            "SELECT c.oid::pg_catalog.int8 AS oid, n.nspname::pg_catalog.text AS schema, \
                    pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' \
                        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text) AS name, \
                    c.relkind::pg_catalog.text AS relkind, c.relowner::pg_catalog.int8 AS owner, \
                    {acl} AS acl, \
                    coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('column', at.attname::pg_catalog.text, \
                                     'grantee', a.grantee::pg_catalog.int8, 'privilege', a.privilege_type)) \
                                FROM pg_catalog.pg_attribute at, pg_catalog.aclexplode(at.attacl) a \
                               WHERE at.attrelid OPERATOR(pg_catalog.=) c.oid AND at.attnum OPERATOR(pg_catalog.>) 0 \
                                 AND NOT at.attisdropped AND at.attacl IS NOT NULL), '[]'::pg_catalog.jsonb) AS column_acl, \
                    coalesce((SELECT pg_catalog.jsonb_agg(at.attname::pg_catalog.text ORDER BY at.attnum) \
                                FROM pg_catalog.pg_attribute at \
                               WHERE at.attrelid OPERATOR(pg_catalog.=) c.oid AND at.attnum OPERATOR(pg_catalog.>) 0 \
                                 AND NOT at.attisdropped), '[]'::pg_catalog.jsonb) AS columns, \
                    (c.relkind OPERATOR(pg_catalog.=) 'v' AND EXISTS ( \
                        SELECT 1 FROM pg_catalog.unnest(c.reloptions) o \
                         WHERE pg_catalog.split_part(o, '=', 1) OPERATOR(pg_catalog.=) 'security_invoker' \
                           AND pg_catalog.lower(pg_catalog.split_part(o, '=', 2)) OPERATOR(pg_catalog.=) ANY (ARRAY['true', 'on', '1', 'yes', 't', 'y']))) AS invoker, \
                    coalesce((SELECT pg_catalog.jsonb_object_agg(r.name, \
                                (SELECT coalesce(pg_catalog.jsonb_agg(q.p ORDER BY q.i), '[]'::pg_catalog.jsonb) FROM ( \
                                    SELECT p.p, p.i FROM pg_catalog.unnest(CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'S' \
                                                         THEN ARRAY['USAGE', 'SELECT', 'UPDATE']::pg_catalog.text[] ELSE $3::pg_catalog.text[] END) \
                                                       WITH ORDINALITY p(p, i) \
                                     WHERE CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'S' THEN pg_catalog.has_sequence_privilege(r.name, c.oid, p.p) \
                                                ELSE pg_catalog.has_table_privilege(r.name, c.oid, p.p) END \
                                    UNION ALL \
                                    SELECT 'SELECT (columns)', 0 \
                                     WHERE c.relkind OPERATOR(pg_catalog.<>) 'S' \
                                       AND NOT pg_catalog.has_table_privilege(r.name, c.oid, 'SELECT') \
                                       AND pg_catalog.has_any_column_privilege(r.name, c.oid, 'SELECT')) q)) \
                                FROM pg_catalog.unnest($2::pg_catalog.text[]) r(name)), '{{}}'::pg_catalog.jsonb) AS effective \
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
              WHERE n.nspname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) \
                AND c.relkind OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'p', 'v', 'm', 'f', 'S']::\"char\"[]) \
              ORDER BY 3",
            acl = jsonb_acl(
                "coalesce(c.relacl, pg_catalog.acldefault(CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner))"
            ),
        ),
        &[schemas.clone().into(), who.clone().into(), table_privs.into()],
    )
    .into_iter()
    .map(|mut o| {
        o.effective = fix_public(std::mem::take(&mut o.effective));
        o
    })
    .collect();
    let default_acls = sql::rows::<plan::DefaultAcl>(
        &format!(
            "SELECT d.defaclrole::pg_catalog.int8 AS role, n.nspname::pg_catalog.text AS schema, \
                    d.defaclobjtype::pg_catalog.text AS objtype, {} AS acl \
               FROM pg_catalog.pg_default_acl d JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) d.defaclnamespace \
              WHERE n.nspname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) \
                AND d.defaclobjtype OPERATOR(pg_catalog.=) ANY (ARRAY['r', 'S']::\"char\"[])",
            jsonb_acl("d.defaclacl")
        ),
        &[schemas.clone().into()],
    );
    let bi = roles.iter().find(|r| r.name == cfg.bi).map(|r| r.name.clone());
    let labels = labels(bi.as_deref());
    let deps = sql::rows::<plan::Dependency>(
        "SELECT DISTINCT r.ev_class::pg_catalog.int8 AS view, d.refobjid::pg_catalog.int8 AS on, a.attname::pg_catalog.text AS column \
           FROM pg_catalog.pg_depend d \
           JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid \
           LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) d.refobjid \
                 AND a.attnum OPERATOR(pg_catalog.=) d.refobjsubid AND d.refobjsubid OPERATOR(pg_catalog.>) 0 \
          WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
            AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
            AND r.ev_class OPERATOR(pg_catalog.<>) d.refobjid \
            AND r.ev_class OPERATOR(pg_catalog.>=) 16384::pg_catalog.oid",
        &[],
    );
    let write_all = sql::column::<u32>(
        "SELECT m.member::pg_catalog.int8 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) m.member \
          WHERE m.roleid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'pg_write_all_data') \
            AND NOT r.rolsuper",
        &[],
    );
    Facts {
        config: cfg.clone(),
        caller,
        roles: roles
            .into_iter()
            .map(|r| plan::RoleFacts { name: r.name, oid: r.oid, superuser: r.superuser, bypassrls: r.bypassrls })
            .collect(),
        names,
        superusers,
        schemas: schema_facts,
        objects,
        default_acls,
        labels,
        deps,
        write_all,
    }
}

/// Every access label, with what the report judges it by (`bi`: the BI role's name, if it exists).
fn labels(bi: Option<&str>) -> Vec<plan::Label> {
    sql::as_catalog_owner(|| {
        sql::rows::<plan::Label>(
            "SELECT l.relation::pg_catalog.oid::pg_catalog.int8 AS relation, \
                    coalesce(pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' \
                             OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text), l.relation_name) AS name, \
                    coalesce(c.relowner, l.owner)::pg_catalog.int8 AS owner, l.label, \
                    NULLIF(l.column_name, '') AS column, c.oid IS NOT NULL AS relation_exists, \
                    (l.label OPERATOR(pg_catalog.=) 'client_facing' OR at.attnum IS NOT NULL) AS column_exists, \
                    CASE WHEN c.oid IS NULL OR $1::pg_catalog.text IS NULL THEN false \
                         WHEN l.label OPERATOR(pg_catalog.=) 'pii' THEN at.attnum IS NOT NULL \
                              AND pg_catalog.has_column_privilege($1::pg_catalog.text, c.oid, at.attnum, 'SELECT') \
                              AND pg_catalog.has_schema_privilege($1::pg_catalog.text, c.relnamespace, 'USAGE') \
                         ELSE pg_catalog.has_any_column_privilege($1::pg_catalog.text, c.oid, 'SELECT') \
                              AND pg_catalog.has_schema_privilege($1::pg_catalog.text, c.relnamespace, 'USAGE') END AS bi_reads, \
                    coalesce(c.relrowsecurity, false) AS rls, coalesce(c.relforcerowsecurity, false) AS force_rls, \
                    coalesce((SELECT pg_catalog.jsonb_agg(p.polname::pg_catalog.text ORDER BY p.polname) FROM pg_catalog.pg_policy p \
                               WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid AND p.polpermissive \
                                 AND l.label OPERATOR(pg_catalog.=) 'client_facing' AND $1::pg_catalog.text IS NOT NULL \
                                 AND p.polname OPERATOR(pg_catalog.<>) ALL (ARRAY['pgmart_tenant', 'pgmart_tenant_owner']::pg_catalog.name[]) \
                                 AND p.polcmd OPERATOR(pg_catalog.=) ANY (ARRAY['r', '*']::\"char\"[]) \
                                 AND EXISTS (SELECT 1 FROM pg_catalog.unnest(p.polroles) pr(oid) \
                                              WHERE pr.oid OPERATOR(pg_catalog.=) 0::pg_catalog.oid \
                                                 OR pg_catalog.pg_has_role($1::pg_catalog.text, pr.oid, 'USAGE'))), \
                             '[]'::pg_catalog.jsonb) AS other_policies \
               FROM pgmart.access_label l \
               LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) l.relation::pg_catalog.oid \
               LEFT JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
               LEFT JOIN pg_catalog.pg_attribute at ON at.attrelid OPERATOR(pg_catalog.=) c.oid \
                     AND at.attname OPERATOR(pg_catalog.=) l.column_name::pg_catalog.name AND at.attnum OPERATOR(pg_catalog.>) 0 \
                     AND NOT at.attisdropped \
              ORDER BY 2, l.column_name",
            &[bi.into()],
        )
    })
}

// ---------------------------------------------------------------------------------------------
// The report.

/// The access report of every layer set, as `viewer` may see it: a row shows when the viewer has
/// the rights of the role it is about or of the owner of the object it is on (superusers see
/// all). Nothing else: not another schema's privileges, labels or layout.
pub fn report(viewer: pg_sys::Oid) -> Vec<ReportRow> {
    let viewer = u32::from(viewer);
    let su = is_superuser(viewer);
    let mut seen: BTreeSet<(Option<String>, String, Option<String>, String, String, Option<String>)> = BTreeSet::new();
    let mut out = vec![];
    let mut rights: BTreeMap<u32, bool> = BTreeMap::new();
    let mut may = |role: u32| *rights.entry(role).or_insert_with(|| role != 0 && has_rights(viewer, role));
    for cfg in all_sets() {
        let facts = observe(&cfg, viewer);
        for r in plan::report(&facts) {
            if !(su || may(r.role_oid) || may(r.owner)) {
                continue;
            }
            // A label outside every layer shows once, not once per set.
            let key = (r.layer.clone(), r.object.clone(), r.column.clone(), r.role.clone(), r.privilege.clone(), r.reason.clone());
            if seen.insert(key) {
                out.push(r);
            }
        }
    }
    out
}

/// The `access` check's measure, as its owner (the current user in the check's run): the
/// violations of the whole report when the target is `pgmart.layers`, else of rows on the target.
pub fn access_measure(target: i64) -> crate::checks::plan::Measured {
    let rows = report(unsafe { pg_sys::GetUserId() });
    let layers = sql::one::<bool>(
        "SELECT $1::pg_catalog.int8::pg_catalog.oid OPERATOR(pg_catalog.=) 'pgmart.layers'::pg_catalog.regclass::pg_catalog.oid",
        &[target.into()],
    ) == Some(true);
    let rows: Vec<ReportRow> = if layers {
        rows
    } else {
        let name = sql::relation(pg_sys::Oid::from(target as u32)).map(|r| r.qualified).unwrap_or_default();
        rows.into_iter().filter(|r| r.object == name && r.object_type != "schema").collect()
    };
    let (failing, checked, sample) = plan::check_measure(&rows);
    crate::checks::plan::Measured {
        failing: Some(failing),
        checked: Some(checked),
        sample,
        verdict: Some(if failing > 0 { "fail" } else { "pass" }),
    }
}

// ---------------------------------------------------------------------------------------------
// Labels.

#[derive(Deserialize)]
struct Target {
    owner: u32,
    qualified: String,
    nspname: String,
}

/// The relation a label or isolation is for, once the caller is found to be its owner (has the
/// owner's rights, as PostgreSQL decides ownership).
fn owned_relation(rel: pg_sys::Oid, what: &str, kinds: &str) -> Target {
    let r = sql::relation(rel).unwrap_or_else(|| PgMartError::undefined_table("relation does not exist").raise());
    if !kinds.contains(r.relkind.as_str()) {
        let hint = if kinds == "rp" { "Row-level security applies to tables." } else { "Label tables, views and materialized views." };
        PgMartError::wrong_object_type(format!("{} cannot be given {what}", r.qualified)).hint(hint).raise();
    }
    let caller = u32::from(sql::caller());
    if !(is_superuser(caller) || has_rights(caller, r.owner)) {
        PgMartError::privilege(format!("only the owner of {} may give it {what}", r.qualified))
            .hint(format!("Ask {} (its owner) or a member of that role.", sql::role_name(oid(r.owner))))
            .raise();
    }
    Target { owner: r.owner, qualified: r.qualified, nspname: r.nspname }
}

fn columns_of(rel: pg_sys::Oid) -> Vec<String> {
    sql::column::<String>(
        "SELECT attname::pg_catalog.text FROM pg_catalog.pg_attribute \
          WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped ORDER BY attnum",
        &[rel.into()],
    )
}

fn checked_columns(rel: pg_sys::Oid, t: &Target, columns: Vec<String>) -> Vec<String> {
    if columns.is_empty() {
        PgMartError::invalid("columns must name at least one column").hint("columns => ARRAY['email', 'phone']").raise();
    }
    let have = columns_of(rel);
    let mut out: Vec<String> = vec![];
    for c in columns {
        if !have.contains(&c) {
            PgMartError::undefined_column(format!("column \"{c}\" of relation {} does not exist", t.qualified)).raise();
        }
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// Label (or, with `on` false, unlabel) columns as PII; the number of labels that changed.
pub fn label_pii(rel: pg_sys::Oid, columns: Vec<String>, on: bool) -> i64 {
    crate::jobs::api::require_primary("label columns");
    let t = owned_relation(rel, "access labels", "rpvmf");
    let columns = checked_columns(rel, &t, columns);
    let n = sql::as_catalog_owner(|| {
        if on {
            sql::exec_count(
                "INSERT INTO pgmart.access_label (relation, column_name, label, owner, relation_name) \
                 SELECT $1::pg_catalog.oid::pg_catalog.regclass, c, 'pii', $3::pg_catalog.int8::pg_catalog.oid, $4 \
                   FROM pg_catalog.unnest($2::pg_catalog.text[]) c \
                 ON CONFLICT (relation, column_name, label) DO NOTHING",
                &[rel.into(), columns.clone().into(), (t.owner as i64).into(), t.qualified.as_str().into()],
            )
        } else {
            sql::exec_count(
                "DELETE FROM pgmart.access_label WHERE relation::pg_catalog.oid OPERATOR(pg_catalog.=) $1 \
                    AND label OPERATOR(pg_catalog.=) 'pii' AND column_name OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.text[])",
                &[rel.into(), columns.clone().into()],
            )
        }
    }) as i64;
    if n > 0 {
        restrict_bi(rel, &t);
    }
    n
}

/// A mart table's PII labels changed: the BI role's grants on it follow at once (as the caller,
/// who has the owner's rights).
fn restrict_bi(rel: pg_sys::Oid, t: &Target) {
    let Some(cfg) = all_sets().into_iter().find(|c| c.mart == t.nspname) else { return };
    let facts = observe(&cfg, u32::from(sql::caller()));
    let (Some(o), Some(bi)) = (facts.objects.iter().find(|o| o.oid == u32::from(rel)), facts.oid(Who::Bi)) else { return };
    for c in plan::object_changes(&facts, o, Layer::Mart, &[(Who::Bi, bi)]) {
        sql::exec(&c.statement, &[]);
        notice!("pgmart: {}", c.statement);
    }
}

/// Label a table client-facing (or not); whether that changed anything.
pub fn label_client_facing(rel: pg_sys::Oid, on: bool) -> bool {
    crate::jobs::api::require_primary("label a table");
    let t = owned_relation(rel, "access labels", "rpvmf");
    set_client_facing(rel, &t, on)
}

fn set_client_facing(rel: pg_sys::Oid, t: &Target, on: bool) -> bool {
    sql::as_catalog_owner(|| {
        if on {
            sql::exec_count(
                "INSERT INTO pgmart.access_label (relation, column_name, label, owner, relation_name) \
                 VALUES ($1::pg_catalog.oid::pg_catalog.regclass, '', 'client_facing', $2::pg_catalog.int8::pg_catalog.oid, $3) \
                 ON CONFLICT (relation, column_name, label) DO NOTHING",
                &[rel.into(), (t.owner as i64).into(), t.qualified.as_str().into()],
            )
        } else {
            sql::exec_count(
                "DELETE FROM pgmart.access_label WHERE relation::pg_catalog.oid OPERATOR(pg_catalog.=) $1 \
                    AND label OPERATOR(pg_catalog.=) 'client_facing'",
                &[rel.into()],
            )
        }
    }) > 0
}

// ---------------------------------------------------------------------------------------------
// Tenant isolation.

#[derive(Deserialize)]
struct Policy {
    name: String,
    cmd: String,
    roles: Vec<u32>,
    qual: Option<String>,
    with_check: Option<String>,
}

fn policies(rel: pg_sys::Oid) -> Vec<Policy> {
    sql::rows::<Policy>(
        "SELECT p.polname::pg_catalog.text AS name, p.polcmd::pg_catalog.text AS cmd, \
                ARRAY(SELECT r::pg_catalog.int8 FROM pg_catalog.unnest(p.polroles) r ORDER BY 1) AS roles, \
                pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS qual, pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS with_check \
           FROM pg_catalog.pg_policy p WHERE p.polrelid OPERATOR(pg_catalog.=) $1 \
            AND p.polname OPERATOR(pg_catalog.=) ANY (ARRAY['pgmart_tenant', 'pgmart_tenant_owner']::pg_catalog.name[])",
        &[rel.into()],
    )
}

/// Enable and force row-level security on `rel` with the BI role's tenant policy and the owner's;
/// one row per change.
pub fn isolate_tenants(rel: pg_sys::Oid, column: &str, setting: &str, bi_role: Option<&str>) -> Vec<Done> {
    crate::jobs::api::require_primary("isolate tenants");
    plan::check_setting(setting).or_raise();
    let t = owned_relation(rel, "tenant isolation", "rp");
    let set = all_sets().into_iter().find(|c| [&c.raw, &c.staging, &c.mart].contains(&&t.nspname));
    let bi = match (bi_role, &set) {
        (Some(b), _) => b.to_string(),
        (None, Some(c)) => c.bi.clone(),
        (None, None) => PgMartError::invalid(format!("{} is not in a layer of pgmart.layers: name the BI role", t.qualified))
            .hint("Pass bi_role => 'bi', or create the layers first (pgmart.create_layers).")
            .raise(),
    };
    let bi_oid = sql::role_oid(&bi).or_raise();
    #[derive(Deserialize)]
    struct Col {
        ty: String,
        indexed: bool,
    }
    let col = sql::row::<Col>(
        "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod) AS ty, \
                EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid OPERATOR(pg_catalog.=) a.attrelid \
                           AND i.indkey[0] OPERATOR(pg_catalog.=) a.attnum) AS indexed \
           FROM pg_catalog.pg_attribute a WHERE a.attrelid OPERATOR(pg_catalog.=) $1 \
            AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
        &[rel.into(), column.into()],
    )
    .unwrap_or_else(|| PgMartError::undefined_column(format!("column \"{column}\" of relation {} does not exist", t.qualified)).raise());
    // Roles that read and write every row: the owner, and the set's transform role.
    let mut all_rows = vec![sql::role_name(oid(t.owner))];
    if let Some(c) = &set {
        if c.transform != all_rows[0] && sql::role_oid(&c.transform).is_ok() {
            all_rows.push(c.transform.clone());
        }
    }
    if all_rows.contains(&bi) {
        PgMartError::invalid(format!("the BI role {bi} owns {} (or is its transform role): it would see every tenant", t.qualified))
            .raise();
    }
    let mut expected_owner_roles: Vec<u32> = all_rows.iter().filter_map(|r| sql::role_oid(r).ok()).map(u32::from).collect();
    expected_owner_roles.sort();
    let mut done: Vec<Done> = vec![];
    let obj = format!("table {}", t.qualified);
    let mut run = |action: &str, stmt: String| {
        sql::exec(&stmt, &[]);
        done.push((action.into(), obj.clone(), stmt));
    };
    #[derive(Deserialize)]
    struct Flags {
        rls: bool,
        force: bool,
    }
    let flags = sql::row::<Flags>(
        "SELECT relrowsecurity AS rls, relforcerowsecurity AS force FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
        &[rel.into()],
    )
    .expect("relation");
    if !flags.rls {
        run("enable row level security", format!("ALTER TABLE {} ENABLE ROW LEVEL SECURITY", t.qualified));
    }
    if !flags.force {
        run("force row level security", format!("ALTER TABLE {} FORCE ROW LEVEL SECURITY", t.qualified));
    }
    #[derive(Deserialize)]
    struct Stored {
        tenant_column: String,
        setting: String,
        bi_role: String,
        policy_qual: String,
    }
    let stored = sql::as_catalog_owner(|| {
        sql::exec("DELETE FROM pgmart.tenant_table t WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t.relation::pg_catalog.oid)", &[]);
        sql::row::<Stored>(
            "SELECT tenant_column::pg_catalog.text AS tenant_column, setting, bi_role, policy_qual FROM pgmart.tenant_table \
              WHERE relation::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
            &[rel.into()],
        )
    });
    let current = policies(rel);
    let tenant = current.iter().find(|p| p.name == plan::TENANT_POLICY);
    let tenant_ok = match (tenant, &stored) {
        (Some(p), Some(s)) => {
            s.tenant_column == column
                && s.setting == setting
                && s.bi_role == bi
                && p.cmd == "r"
                && p.roles == vec![u32::from(bi_oid)]
                && p.qual.as_deref() == Some(s.policy_qual.as_str())
                && p.with_check.is_none()
        }
        _ => false,
    };
    let table_ident = t.qualified.clone();
    if !tenant_ok {
        if tenant.is_some() {
            run("drop policy", format!("DROP POLICY {} ON {table_ident}", quote_identifier(plan::TENANT_POLICY)));
        }
        run("create policy", plan::tenant_policy(&table_ident, column, &col.ty, setting, &bi));
    }
    let owner_ok = current.iter().find(|p| p.name == plan::OWNER_POLICY).is_some_and(|p| {
        p.cmd == "*" && p.roles == expected_owner_roles && p.qual.as_deref() == Some("true") && p.with_check.as_deref() == Some("true")
    });
    if !owner_ok {
        if current.iter().any(|p| p.name == plan::OWNER_POLICY) {
            run("drop policy", format!("DROP POLICY {} ON {table_ident}", quote_identifier(plan::OWNER_POLICY)));
        }
        run("create policy", plan::owner_policy(&table_ident, &all_rows));
    }
    if !tenant_ok {
        let qual = policies(rel).into_iter().find(|p| p.name == plan::TENANT_POLICY).and_then(|p| p.qual).unwrap_or_default();
        sql::as_catalog_owner(|| {
            sql::exec(
                "INSERT INTO pgmart.tenant_table (relation, tenant_column, setting, bi_role, policy_qual) \
                 VALUES ($1::pg_catalog.oid::pg_catalog.regclass, $2::pg_catalog.name, $3, $4, $5) \
                 ON CONFLICT (relation) DO UPDATE SET tenant_column = EXCLUDED.tenant_column, setting = EXCLUDED.setting, \
                     bi_role = EXCLUDED.bi_role, policy_qual = EXCLUDED.policy_qual",
                &[rel.into(), column.into(), setting.into(), bi.as_str().into(), qual.as_str().into()],
            )
        });
    }
    if set_client_facing(rel, &t, true) {
        done.push(("label client_facing".into(), obj.clone(), "pgmart.label_client_facing".into()));
    }
    if !col.indexed {
        notice!(
            "pgmart: no index of {} starts with {}: every BI query scans the table; consider CREATE INDEX ON {} ({})",
            t.qualified,
            quote_identifier(column),
            t.qualified,
            quote_identifier(column)
        );
    }
    if done.is_empty() {
        notice!("pgmart: {} is isolated by tenant already: nothing changed", t.qualified);
    }
    done
}

/// The `(change, object, statement)` rows as JSON (for tests and messages).
pub fn as_json(done: &[Done]) -> Value {
    Value::Array(done.iter().map(|(a, o, s)| serde_json::json!({ "change": a, "object": o, "statement": s })).collect())
}
