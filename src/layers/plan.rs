//! Pure planning for layers: which names are acceptable, which privileges each role should hold
//! on each layer's schema and objects and in its default privileges, the statements that turn
//! what is into what should be (one per change), and the judgement of `access_report`. No
//! PostgreSQL here: unit tested with `#[test]`.
//!
//! The rules (docs/layers.md): ingest writes raw only; transform reads raw and staging and writes
//! staging and mart; the BI role reads mart and nothing else, and only the columns of a mart table
//! that are not labelled PII; PUBLIC has nothing on the layer schemas or their objects. pgmart
//! manages the privileges of these four grantees (and the default privileges of ingest, transform
//! and the caller in these schemas); other roles' grants are reported, never revoked.

use crate::error::{PgMartError, Result};
use crate::names::quote_identifier;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The grantee id of PUBLIC in an ACL.
pub const PUBLIC: u32 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    Raw,
    Staging,
    Mart,
}

pub const LAYERS: [Layer; 3] = [Layer::Raw, Layer::Staging, Layer::Mart];

impl Layer {
    pub fn name(self) -> &'static str {
        match self {
            Layer::Raw => "raw",
            Layer::Staging => "staging",
            Layer::Mart => "mart",
        }
    }
}

/// The grantees pgmart manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    Ingest,
    Transform,
    Bi,
    Public,
}

pub const MANAGED: [Who; 4] = [Who::Ingest, Who::Transform, Who::Bi, Who::Public];

/// A layer set's names, as the caller gave them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Config {
    pub raw: String,
    pub staging: String,
    pub mart: String,
    pub ingest: String,
    pub transform: String,
    pub bi: String,
}

/// PostgreSQL keeps names to 63 bytes (longer ones are cut, silently but for a NOTICE).
const MAX_NAME: usize = 63;

fn check_name(what: &str, arg: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(PgMartError::invalid(format!("{what} name must not be empty")).hint(format!("Pass {arg} => '...'.")));
    }
    if name.len() > MAX_NAME {
        return Err(PgMartError::invalid(format!("{what} name \"{name}\" is longer than {MAX_NAME} bytes"))
            .hint("PostgreSQL would cut it; choose a shorter name."));
    }
    if name.contains('\0') {
        return Err(PgMartError::invalid(format!("{what} name must not contain NUL bytes")));
    }
    if name.starts_with("pg_") {
        return Err(PgMartError::invalid(format!("{what} name \"{name}\" is reserved (names starting with pg_ are PostgreSQL's)")));
    }
    Ok(())
}

impl Config {
    pub fn schema(&self, l: Layer) -> &str {
        match l {
            Layer::Raw => &self.raw,
            Layer::Staging => &self.staging,
            Layer::Mart => &self.mart,
        }
    }
    pub fn layer_of(&self, schema: &str) -> Option<Layer> {
        LAYERS.into_iter().find(|l| self.schema(*l) == schema)
    }
    pub fn role(&self, w: Who) -> &str {
        match w {
            Who::Ingest => &self.ingest,
            Who::Transform => &self.transform,
            Who::Bi => &self.bi,
            Who::Public => "PUBLIC",
        }
    }

    /// Names a layer set may use: distinct, not reserved, not pgmart's or PostgreSQL's own schemas.
    pub fn validate(&self) -> Result<()> {
        for (l, arg) in [(Layer::Raw, "raw"), (Layer::Staging, "staging"), (Layer::Mart, "mart")] {
            let s = self.schema(l);
            check_name("schema", arg, s)?;
            if matches!(s, "public" | "information_schema") || s == "pgmart" || s.starts_with("pgmart_") {
                return Err(PgMartError::invalid(format!("schema \"{s}\" cannot be a layer"))
                    .hint("Layers are schemas of their own: PUBLIC loses its rights on them. Choose a dedicated name such as raw, staging or mart."));
            }
        }
        if self.raw == self.staging || self.raw == self.mart || self.staging == self.mart {
            return Err(PgMartError::invalid("raw, staging and mart must be three different schemas"));
        }
        for (w, arg) in [(Who::Ingest, "ingest_role"), (Who::Transform, "transform_role"), (Who::Bi, "bi_role")] {
            let r = self.role(w);
            check_name("role", arg, r)?;
            if r == "public" || r == "none" {
                return Err(PgMartError::invalid(format!("\"{r}\" is not a role name PostgreSQL accepts")));
            }
        }
        if self.ingest == self.transform || self.ingest == self.bi || self.transform == self.bi {
            return Err(PgMartError::invalid("ingest_role, transform_role and bi_role must be three different roles")
                .hint("Least privilege needs one group role per job: loading, transforming, reading."));
        }
        Ok(())
    }
}

/// A name as messages and report rows show it: bare when it is a plain lower-case identifier,
/// quoted otherwise (statements always quote: [`quote_identifier`]).
pub fn shown(name: &str) -> String {
    let mut ch = name.chars();
    let plain = ch.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && ch.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        quote_identifier(name)
    }
}

// ---------------------------------------------------------------------------------------------
// What pgmart observes (read by exec.rs from the catalogs).

/// One entry of an ACL: a grantee (0: PUBLIC) and one privilege (`aclexplode`'s privilege_type).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Acl {
    pub grantee: u32,
    pub privilege: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RoleFacts {
    pub name: String,
    pub oid: u32,
    pub superuser: bool,
    pub bypassrls: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SchemaFacts {
    pub name: String,
    pub owner: u32,
    pub acl: Vec<Acl>,
    /// Effective privileges (`has_schema_privilege`) of each managed role, by its name (PUBLIC as
    /// `PUBLIC`).
    pub effective: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ColumnAcl {
    pub column: String,
    pub grantee: u32,
    pub privilege: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ObjectFacts {
    pub oid: u32,
    pub schema: String,
    /// Qualified and quoted.
    pub name: String,
    pub relkind: String,
    pub owner: u32,
    pub acl: Vec<Acl>,
    pub column_acl: Vec<ColumnAcl>,
    pub columns: Vec<String>,
    /// A view with security_invoker (it reads as its reader, row-level security included).
    pub invoker: bool,
    /// Effective privileges of each managed role (by name; `SELECT (columns)` when only some
    /// columns are readable).
    pub effective: BTreeMap<String, Vec<String>>,
}

impl ObjectFacts {
    pub fn is_sequence(&self) -> bool {
        self.relkind == "S"
    }
    /// A table (plain, partitioned, foreign): it can be written.
    pub fn is_table(&self) -> bool {
        matches!(self.relkind.as_str(), "r" | "p" | "f")
    }
    pub fn kind_name(&self) -> &'static str {
        match self.relkind.as_str() {
            "r" => "table",
            "p" => "partitioned table",
            "f" => "foreign table",
            "v" => "view",
            "m" => "materialized view",
            "S" => "sequence",
            _ => "relation",
        }
    }
    /// The keyword GRANT takes for it.
    fn grant_kind(&self) -> &'static str {
        if self.is_sequence() {
            "SEQUENCE"
        } else {
            "TABLE"
        }
    }
}

/// Per-schema default privileges of one role for one kind of object (`r` tables, `S` sequences).
#[derive(Debug, Clone, Deserialize)]
pub struct DefaultAcl {
    pub role: u32,
    pub schema: String,
    pub objtype: String,
    pub acl: Vec<Acl>,
}

/// An access label, with what the report needs to judge it.
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    pub relation: u32,
    pub name: String,
    pub owner: u32,
    pub label: String,
    pub column: Option<String>,
    pub relation_exists: bool,
    pub column_exists: bool,
    /// pii: the BI role can read the column (column privilege and schema usage); client_facing:
    /// the BI role can read the table.
    pub bi_reads: bool,
    pub rls: bool,
    pub force_rls: bool,
    /// Permissive policies other than pgmart's that let the BI role read rows.
    pub other_policies: Vec<String>,
}

/// A view (or materialized view) `view` reads relation `on` (column `column`, when known).
#[derive(Debug, Clone, Deserialize)]
pub struct Dependency {
    pub view: u32,
    pub on: u32,
    pub column: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Facts {
    pub config: Config,
    pub caller: u32,
    pub roles: Vec<RoleFacts>,
    /// The name of every role an ACL, owner or membership here mentions.
    pub names: BTreeMap<u32, String>,
    pub superusers: BTreeSet<u32>,
    pub schemas: Vec<SchemaFacts>,
    pub objects: Vec<ObjectFacts>,
    pub default_acls: Vec<DefaultAcl>,
    pub labels: Vec<Label>,
    pub deps: Vec<Dependency>,
    /// Non-superuser direct members of pg_write_all_data.
    pub write_all: Vec<u32>,
}

impl Facts {
    pub fn oid(&self, w: Who) -> Option<u32> {
        if w == Who::Public {
            return Some(PUBLIC);
        }
        let name = self.config.role(w);
        self.roles.iter().find(|r| r.name == name).map(|r| r.oid)
    }
    fn who(&self, oid: u32) -> Option<Who> {
        MANAGED.into_iter().find(|w| self.oid(*w) == Some(oid))
    }
    fn name(&self, oid: u32) -> String {
        if oid == PUBLIC {
            return "PUBLIC".into();
        }
        self.names.get(&oid).cloned().unwrap_or_else(|| format!("[role {oid}]"))
    }
    /// The role as SQL names it (PUBLIC, or a quoted name).
    fn grantee_sql(&self, oid: u32) -> String {
        if oid == PUBLIC {
            "PUBLIC".into()
        } else {
            quote_identifier(self.name(oid))
        }
    }
    fn pii_columns(&self, rel: u32) -> BTreeSet<String> {
        self.labels
            .iter()
            .filter(|l| l.relation == rel && l.label == "pii" && l.column_exists)
            .filter_map(|l| l.column.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// What should be.

const TABLE_RW: &[&str] = &["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"];
const READ: &[&str] = &["SELECT"];
const SEQUENCE_RW: &[&str] = &["USAGE", "SELECT", "UPDATE"];
const NONE: &[&str] = &[];

/// Privileges in the order statements list them.
const ORDER: &[&str] =
    &["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER", "MAINTAIN", "USAGE", "CREATE"];

fn ordered(set: &BTreeSet<String>) -> Vec<String> {
    let mut v: Vec<String> = set.iter().cloned().collect();
    v.sort_by_key(|p| ORDER.iter().position(|o| o == p).unwrap_or(ORDER.len()));
    v
}

/// What `w` should hold on layer `l`'s schema.
pub fn want_schema(l: Layer, w: Who) -> &'static [&'static str] {
    match (l, w) {
        (Layer::Raw, Who::Ingest) | (Layer::Staging, Who::Transform) | (Layer::Mart, Who::Transform) => &["USAGE", "CREATE"],
        (Layer::Raw, Who::Transform) | (Layer::Mart, Who::Bi) => &["USAGE"],
        _ => NONE,
    }
}

/// What `w` should hold on an object of kind `relkind` in layer `l` (table-level).
pub fn want_object(l: Layer, relkind: &str, w: Who) -> &'static [&'static str] {
    let seq = relkind == "S";
    let table = matches!(relkind, "r" | "p" | "f");
    let writer = |_: ()| if seq { SEQUENCE_RW } else if table { TABLE_RW } else { READ };
    match (l, w) {
        (Layer::Raw, Who::Ingest) | (Layer::Staging, Who::Transform) | (Layer::Mart, Who::Transform) => writer(()),
        (Layer::Raw, Who::Transform) | (Layer::Mart, Who::Bi) if !seq => READ,
        _ => NONE,
    }
}

/// The default privileges pgmart declares: for objects ingest creates in raw, transform creates
/// in staging and mart, and the caller creates in any layer (an administrator building tables by
/// hand). Keyed by (creator, schema, objtype).
type DefaultKey = (u32, String, String);

fn want_defaults(f: &Facts) -> BTreeMap<DefaultKey, BTreeMap<u32, BTreeSet<String>>> {
    let mut want: BTreeMap<DefaultKey, BTreeMap<u32, BTreeSet<String>>> = BTreeMap::new();
    let (Some(ingest), Some(transform), Some(bi)) = (f.oid(Who::Ingest), f.oid(Who::Transform), f.oid(Who::Bi)) else {
        return want;
    };
    let mut add = |creator: u32, l: Layer, objtype: &str, grantee: u32, privs: &[&str]| {
        let entry = want.entry((creator, f.config.schema(l).to_string(), objtype.to_string())).or_default();
        if grantee != creator && !privs.is_empty() {
            entry.entry(grantee).or_default().extend(privs.iter().map(|p| p.to_string()));
        }
    };
    for l in LAYERS {
        for objtype in ["r", "S"] {
            for creator in [ingest, transform, f.caller] {
                add(creator, l, objtype, bi, NONE); // the key exists: loosened defaults are found
            }
            for w in [Who::Ingest, Who::Transform, Who::Bi] {
                let g = f.oid(w).unwrap_or(PUBLIC);
                add(f.caller, l, objtype, g, want_object(l, objtype, w));
            }
        }
    }
    add(ingest, Layer::Raw, "r", transform, READ);
    add(transform, Layer::Mart, "r", bi, READ);
    want
}

/// One change `create_layers` makes: what, on which object, the statement; and whose rights the
/// caller needs for it (the object's owner, the role whose defaults change).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub action: String,
    pub object: String,
    pub statement: String,
    pub needs: u32,
}

fn diff(have: &BTreeSet<String>, want: &BTreeSet<String>) -> (BTreeSet<String>, BTreeSet<String>) {
    (want.difference(have).cloned().collect(), have.difference(want).cloned().collect())
}

fn set(privs: &[&str]) -> BTreeSet<String> {
    privs.iter().map(|p| p.to_string()).collect()
}

fn held(acl: &[Acl], grantee: u32) -> BTreeSet<String> {
    acl.iter().filter(|a| a.grantee == grantee).map(|a| a.privilege.clone()).collect()
}

/// The grants and revokes that give every layer's schema and objects, and the declared default
/// privileges, exactly the managed roles' rights; revokes come before grants on each object.
pub fn changes(f: &Facts) -> Vec<Change> {
    let mut out = vec![];
    let managed: Vec<(Who, u32)> = MANAGED.into_iter().filter_map(|w| f.oid(w).map(|o| (w, o))).collect();
    for s in &f.schemas {
        let Some(l) = f.config.layer_of(&s.name) else { continue };
        let obj = format!("schema {}", shown(&s.name));
        for (w, g) in &managed {
            if *g == s.owner {
                continue;
            }
            let (grant, revoke) = diff(&held(&s.acl, *g), &set(want_schema(l, *w)));
            if !revoke.is_empty() {
                out.push(Change {
                    action: "revoke".into(),
                    object: obj.clone(),
                    statement: format!("REVOKE {} ON SCHEMA {} FROM {} CASCADE", ordered(&revoke).join(", "), quote_identifier(&s.name), f.grantee_sql(*g)),
                    needs: s.owner,
                });
            }
            if !grant.is_empty() {
                out.push(Change {
                    action: "grant".into(),
                    object: obj.clone(),
                    statement: format!("GRANT {} ON SCHEMA {} TO {}", ordered(&grant).join(", "), quote_identifier(&s.name), f.grantee_sql(*g)),
                    needs: s.owner,
                });
            }
        }
    }
    // Default privileges.
    let want = want_defaults(f);
    let managed_oids: BTreeSet<u32> = managed.iter().map(|(_, g)| *g).collect();
    for ((creator, schema, objtype), grants) in &want {
        let have_acl: Vec<Acl> = f
            .default_acls
            .iter()
            .filter(|d| d.role == *creator && &d.schema == schema && &d.objtype == objtype)
            .flat_map(|d| d.acl.clone())
            .collect();
        let what = if objtype == "S" { "SEQUENCES" } else { "TABLES" };
        let obj = format!(
            "default privileges of {} in schema {} on {}",
            shown(&f.name(*creator)),
            shown(schema),
            what.to_lowercase()
        );
        for g in &managed_oids {
            if g == creator {
                continue;
            }
            let want_g = grants.get(g).cloned().unwrap_or_default();
            let (grant, revoke) = diff(&held(&have_acl, *g), &want_g);
            let head = format!("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {}", f.grantee_sql(*creator), quote_identifier(schema));
            if !revoke.is_empty() {
                out.push(Change {
                    action: "revoke default".into(),
                    object: obj.clone(),
                    statement: format!("{head} REVOKE {} ON {what} FROM {}", ordered(&revoke).join(", "), f.grantee_sql(*g)),
                    needs: *creator,
                });
            }
            if !grant.is_empty() {
                out.push(Change {
                    action: "grant default".into(),
                    object: obj.clone(),
                    statement: format!("{head} GRANT {} ON {what} TO {}", ordered(&grant).join(", "), f.grantee_sql(*g)),
                    needs: *creator,
                });
            }
        }
    }
    for o in &f.objects {
        let Some(l) = f.config.layer_of(&o.schema) else { continue };
        out.extend(object_changes(f, o, l, &managed));
    }
    out
}

/// The changes on one object (see [`changes`]).
pub fn object_changes(f: &Facts, o: &ObjectFacts, l: Layer, managed: &[(Who, u32)]) -> Vec<Change> {
    let mut out = vec![];
    let obj = format!("{} {}", o.kind_name(), o.name);
    let pii = f.pii_columns(o.oid);
    for (w, g) in managed {
        if *g == o.owner {
            continue;
        }
        let mut want = set(want_object(l, &o.relkind, *w));
        let mut want_cols: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        // The BI role reads a mart table with PII columns through the other columns only.
        if *w == Who::Bi && !pii.is_empty() && want.remove("SELECT") {
            for c in o.columns.iter().filter(|c| !pii.contains(*c)) {
                want_cols.entry(c.clone()).or_default().insert("SELECT".into());
            }
        }
        let (grant, revoke) = diff(&held(&o.acl, *g), &want);
        if !revoke.is_empty() {
            out.push(Change {
                action: "revoke".into(),
                object: obj.clone(),
                statement: format!("REVOKE {} ON {} {} FROM {} CASCADE", ordered(&revoke).join(", "), o.grant_kind(), o.name, f.grantee_sql(*g)),
                needs: o.owner,
            });
        }
        if !grant.is_empty() {
            out.push(Change {
                action: "grant".into(),
                object: obj.clone(),
                statement: format!("GRANT {} ON {} {} TO {}", ordered(&grant).join(", "), o.grant_kind(), o.name, f.grantee_sql(*g)),
                needs: o.owner,
            });
        }
        if o.is_sequence() {
            continue;
        }
        // Column privileges: revoking a table-level privilege revokes it on every column too.
        let mut have_cols: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for a in o.column_acl.iter().filter(|a| a.grantee == *g && !revoke.contains(&a.privilege)) {
            have_cols.entry(a.column.clone()).or_default().insert(a.privilege.clone());
        }
        let mut by_priv: BTreeMap<(bool, String), Vec<String>> = BTreeMap::new();
        // In the table's column order.
        let mut cols: Vec<&String> =
            o.columns.iter().filter(|c| have_cols.contains_key(*c) || want_cols.contains_key(*c)).collect();
        cols.extend(have_cols.keys().filter(|c| !o.columns.contains(c)));
        for c in cols {
            let (cg, cr) = diff(&have_cols.get(c).cloned().unwrap_or_default(), &want_cols.get(c).cloned().unwrap_or_default());
            for p in cr {
                by_priv.entry((false, p)).or_default().push(quote_identifier(c));
            }
            for p in cg {
                by_priv.entry((true, p)).or_default().push(quote_identifier(c));
            }
        }
        // Revokes first.
        for ((is_grant, p), cols) in by_priv.iter().filter(|((g, _), _)| !g).chain(by_priv.iter().filter(|((g, _), _)| *g)) {
            let (verb, prep, action) = if *is_grant { ("GRANT", "TO", "grant columns") } else { ("REVOKE", "FROM", "revoke columns") };
            out.push(Change {
                action: action.into(),
                object: obj.clone(),
                statement: format!("{verb} {p} ({}) ON TABLE {} {prep} {}{}", cols.join(", "), o.name, f.grantee_sql(*g), if *is_grant { "" } else { " CASCADE" }),
                needs: o.owner,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The access report.

#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub layer: Option<String>,
    pub schema: Option<String>,
    pub object_type: String,
    pub object: String,
    pub column: Option<String>,
    pub role: String,
    pub privilege: String,
    pub violation: bool,
    pub reason: Option<String>,
    /// Who may see the row: a role with the rights of `role_oid` (0: none) or of `owner`.
    pub role_oid: u32,
    pub owner: u32,
}

fn is_read(privilege: &str, object_type: &str) -> bool {
    match object_type {
        "schema" => privilege == "USAGE",
        "sequence" => privilege == "SELECT",
        _ => privilege == "SELECT" || privilege.starts_with("SELECT ("),
    }
}

/// Whether `who` (None: a role pgmart does not manage) holding `privilege` on an object of
/// `object_type` in layer `l` breaks the rules, and why.
pub fn judge(l: Layer, who: Option<Who>, f: &Facts, object_type: &str, privilege: &str) -> Option<String> {
    let read = is_read(privilege, object_type);
    let layer = l.name();
    match who {
        Some(Who::Bi) => match l {
            Layer::Raw | Layer::Staging if read => Some(format!("the BI role {} can read {layer}", f.config.bi)),
            Layer::Raw | Layer::Staging => Some(format!("the BI role {} has {privilege} in {layer}", f.config.bi)),
            Layer::Mart if read => None,
            Layer::Mart => Some(format!("only {} may write mart (the BI role {} has {privilege})", f.config.transform, f.config.bi)),
        },
        Some(Who::Ingest) => match l {
            Layer::Raw => None,
            _ => Some(format!("ingest ({}) writes raw only, but has {privilege} in {layer}", f.config.ingest)),
        },
        Some(Who::Transform) => match l {
            Layer::Raw if !read => Some(format!("transform ({}) only reads raw, but has {privilege}", f.config.transform)),
            _ => None,
        },
        Some(Who::Public) => Some(format!("PUBLIC (every role) has {privilege} in {layer}")),
        None => match l {
            Layer::Mart if !read => Some(format!("a role other than {} can write mart ({privilege})", f.config.transform)),
            _ => None,
        },
    }
}

/// Views that read a labelled column (PII) or a client-facing table, transitively through other
/// views: (view -> what it exposes), and for client-facing tables whether the path runs through
/// a view that reads as its owner (not security_invoker) or a materialized view, which row-level
/// security does not follow to the reader.
fn tainted_views(f: &Facts) -> (BTreeMap<u32, String>, BTreeMap<u32, String>) {
    let invoker: BTreeMap<u32, bool> = f.objects.iter().map(|o| (o.oid, o.relkind == "v" && o.invoker)).collect();
    let mut pii: BTreeMap<u32, String> = BTreeMap::new();
    let mut leaky: BTreeMap<u32, String> = BTreeMap::new();
    // Client-facing tables and views reading one through invoker views only (RLS still applies).
    let mut reaches: BTreeMap<u32, String> = BTreeMap::new();
    for l in f.labels.iter().filter(|l| l.relation_exists) {
        if l.label == "client_facing" {
            reaches.insert(l.relation, l.name.clone());
        }
    }
    loop {
        let mut changed = false;
        for d in &f.deps {
            if d.view == d.on {
                continue;
            }
            if !pii.contains_key(&d.view) {
                let direct = f.labels.iter().find(|l| {
                    l.label == "pii" && l.relation == d.on && l.column.is_some() && d.column == l.column
                });
                let what = direct
                    .map(|l| format!("PII column {} of {}", shown(l.column.as_deref().unwrap_or("")), l.name))
                    .or_else(|| pii.get(&d.on).cloned());
                if let Some(w) = what {
                    pii.insert(d.view, w);
                    changed = true;
                }
            }
            if !leaky.contains_key(&d.view) {
                let through_owner = !invoker.get(&d.view).copied().unwrap_or(false);
                let what = leaky.get(&d.on).cloned().or_else(|| reaches.get(&d.on).filter(|_| through_owner).cloned());
                if let Some(w) = what {
                    leaky.insert(d.view, w);
                    changed = true;
                } else if !through_owner && !reaches.contains_key(&d.view) {
                    if let Some(w) = reaches.get(&d.on).cloned() {
                        reaches.insert(d.view, w);
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    (pii, leaky)
}

/// Every (role, schema or object, privilege) that matters on the layer set, flagged.
pub fn report(f: &Facts) -> Vec<ReportRow> {
    let mut out = vec![];
    let row = |l: Option<Layer>, schema: Option<&str>, object_type: &str, object: &str, column: Option<&str>, role: u32,
               role_name: String, privilege: &str, reason: Option<String>, owner: u32| ReportRow {
        layer: l.map(|l| l.name().to_string()),
        schema: schema.map(str::to_string),
        object_type: object_type.into(),
        object: object.into(),
        column: column.map(str::to_string),
        role: role_name,
        privilege: privilege.into(),
        violation: reason.is_some(),
        reason,
        role_oid: role,
        owner,
    };
    // The roles themselves.
    for w in [Who::Ingest, Who::Transform, Who::Bi] {
        let name = f.config.role(w);
        match f.roles.iter().find(|r| r.name == name) {
            None => out.push(row(None, None, "role", &shown(name), None, 0, name.into(), "EXISTS",
                                 Some(format!("role {name} does not exist: run pgmart.create_layers()")), f.caller)),
            Some(r) => {
                if r.superuser {
                    out.push(row(None, None, "role", &shown(name), None, r.oid, name.into(), "SUPERUSER",
                                 Some(format!("{name} is a superuser: it bypasses every privilege")), r.oid));
                }
                if w == Who::Bi && r.bypassrls {
                    out.push(row(None, None, "role", &shown(name), None, r.oid, name.into(), "BYPASSRLS",
                                 Some(format!("the BI role {name} bypasses row-level security: tenants are not isolated from it")), r.oid));
                }
            }
        }
    }
    let managed: Vec<(Who, u32)> = MANAGED.into_iter().filter_map(|w| f.oid(w).map(|o| (w, o))).collect();
    for l in LAYERS {
        let sname = f.config.schema(l);
        let Some(s) = f.schemas.iter().find(|s| s.name == sname) else {
            out.push(row(Some(l), Some(sname), "schema", &shown(sname), None, 0, "".into(), "EXISTS",
                         Some(format!("schema {sname} does not exist: run pgmart.create_layers()")), f.caller));
            continue;
        };
        let sq = shown(sname);
        // Schema: managed roles' effective rights, other grantees, the owner.
        for (w, g) in &managed {
            for p in s.effective.get(f.config.role(*w)).into_iter().flatten() {
                let why = if *g == s.owner { None } else { judge(l, Some(*w), f, "schema", p) };
                out.push(row(Some(l), Some(sname), "schema", &sq, None, *g, f.name_of(*w), p, why, s.owner));
            }
        }
        for a in s.acl.iter().filter(|a| a.grantee != s.owner && f.who(a.grantee).is_none() && !f.superusers.contains(&a.grantee)) {
            let why = judge(l, None, f, "schema", &a.privilege);
            out.push(row(Some(l), Some(sname), "schema", &sq, None, a.grantee, f.name(a.grantee), &a.privilege, why, s.owner));
        }
        let owner_why = match f.who(s.owner) {
            Some(Who::Bi) => Some(format!("the BI role {} owns schema {sname}", f.config.bi)),
            Some(Who::Ingest) if l != Layer::Raw => Some(format!("ingest ({}) owns schema {sname}", f.config.ingest)),
            _ => None,
        };
        out.push(row(Some(l), Some(sname), "schema", &sq, None, s.owner, f.name(s.owner), "OWNER", owner_why, s.owner));
        if l == Layer::Mart {
            for m in f.write_all.iter().filter(|m| f.oid(Who::Transform) != Some(**m)) {
                out.push(row(Some(l), Some(sname), "schema", &sq, None, *m, f.name(*m), "pg_write_all_data",
                             Some(format!("a role other than {} can write mart (member of pg_write_all_data)", f.config.transform)), s.owner));
            }
        }
        for o in f.objects.iter().filter(|o| o.schema == sname) {
            let ty = o.kind_name();
            for (w, g) in &managed {
                if *g == o.owner {
                    continue;
                }
                for p in o.effective.get(f.config.role(*w)).into_iter().flatten() {
                    let why = judge(l, Some(*w), f, ty, p);
                    out.push(row(Some(l), Some(sname), ty, &o.name, None, *g, f.name_of(*w), p, why, o.owner));
                }
            }
            for a in o.acl.iter().filter(|a| a.grantee != o.owner && f.who(a.grantee).is_none() && !f.superusers.contains(&a.grantee)) {
                let why = judge(l, None, f, ty, &a.privilege);
                out.push(row(Some(l), Some(sname), ty, &o.name, None, a.grantee, f.name(a.grantee), &a.privilege, why, o.owner));
            }
            for a in o.column_acl.iter().filter(|a| f.who(a.grantee).is_none() && !f.superusers.contains(&a.grantee)) {
                let why = judge(l, None, f, "column", &a.privilege);
                out.push(row(Some(l), Some(sname), "column", &o.name, Some(&a.column), a.grantee, f.name(a.grantee), &a.privilege, why, o.owner));
            }
            let owner_why = if f.superusers.contains(&o.owner) {
                None
            } else {
                match f.who(o.owner) {
                    Some(w @ (Who::Bi | Who::Ingest)) => judge(l, Some(w), f, ty, "OWNER").map(|r| format!("{r} (it owns {})", o.name)),
                    Some(_) => None,
                    None => judge(l, None, f, ty, "OWNER").map(|r| format!("{r}: {} owns {}", f.name(o.owner), o.name)),
                }
            };
            out.push(row(Some(l), Some(sname), ty, &o.name, None, o.owner, f.name(o.owner), "OWNER", owner_why, o.owner));
        }
    }
    // Labels.
    let bi = f.oid(Who::Bi).unwrap_or(0);
    let bi_name = f.config.bi.clone();
    let layer_of_rel = |rel: u32| {
        f.objects.iter().find(|o| o.oid == rel).and_then(|o| f.config.layer_of(&o.schema).map(|l| (l, o.schema.clone())))
    };
    for lb in f.labels.iter().filter(|l| l.relation_exists) {
        let (l, schema) = layer_of_rel(lb.relation).map(|(l, s)| (Some(l), Some(s))).unwrap_or((None, None));
        if lb.label == "pii" {
            let col = lb.column.as_deref().unwrap_or("");
            if !lb.column_exists {
                out.push(row(l, schema.as_deref(), "column", &lb.name, Some(col), lb.owner, f.name(lb.owner), "PII LABEL",
                             Some(format!("column {} labelled PII no longer exists (renamed? label the new name)", shown(col))), lb.owner));
            } else if lb.bi_reads {
                out.push(row(l, schema.as_deref(), "column", &lb.name, Some(col), bi, bi_name.clone(), "SELECT",
                             Some(format!("PII column readable by the BI role {bi_name}")), lb.owner));
            }
        } else {
            if !(lb.rls && lb.force_rls) {
                out.push(row(l, schema.as_deref(), "table", &lb.name, None, lb.owner, f.name(lb.owner), "ROW LEVEL SECURITY",
                             Some("client-facing table without row-level security enabled and forced (pgmart.isolate_tenants)".into()), lb.owner));
            }
            for p in &lb.other_policies {
                out.push(row(l, schema.as_deref(), "table", &lb.name, None, lb.owner, f.name(lb.owner), "POLICY",
                             Some(format!("policy {} of this client-facing table also lets the BI role {bi_name} read rows", shown(p))), lb.owner));
            }
        }
    }
    let (pii_views, leaky_views) = tainted_views(f);
    for o in &f.objects {
        let Some(l) = f.config.layer_of(&o.schema) else { continue };
        let bi_reads = o.effective.get(&f.config.bi).is_some_and(|p| p.iter().any(|p| is_read(p, o.kind_name())))
            && f.schemas.iter().find(|s| s.name == o.schema).is_some_and(|s| s.effective.get(&f.config.bi).is_some_and(|p| p.iter().any(|p| p == "USAGE")));
        if !bi_reads {
            continue;
        }
        if let Some(what) = pii_views.get(&o.oid) {
            out.push(row(Some(l), Some(&o.schema), o.kind_name(), &o.name, None, bi, bi_name.clone(), "SELECT",
                         Some(format!("the BI role {bi_name} reads {what} through this {}", o.kind_name())), o.owner));
        }
        if let Some(what) = leaky_views.get(&o.oid) {
            out.push(row(Some(l), Some(&o.schema), o.kind_name(), &o.name, None, bi, bi_name.clone(), "SELECT",
                         Some(format!("the BI role {bi_name} reads client-facing {what} through this {}, which does not apply row-level security to its reader (make it a view WITH (security_invoker))", o.kind_name())), o.owner));
        }
    }
    out.sort_by(|a, b| {
        let lk = |r: &ReportRow| r.layer.as_deref().map(|l| LAYERS.iter().position(|x| x.name() == l).unwrap_or(9)).unwrap_or(0);
        (lk(a), &a.object, &a.column, &a.role, &a.privilege).cmp(&(lk(b), &b.object, &b.column, &b.role, &b.privilege))
    });
    out.dedup();
    out
}

impl Facts {
    fn name_of(&self, w: Who) -> String {
        self.config.role(w).to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Tenant isolation.

/// A setting name `current_setting` can read for a tenant: a custom (dotted) parameter.
pub fn check_setting(setting: &str) -> Result<()> {
    let part = |p: &str| {
        let mut ch = p.chars();
        ch.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && ch.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    let parts: Vec<&str> = setting.split('.').collect();
    if parts.len() < 2 || !parts.iter().all(|p| part(p)) || setting.len() > MAX_NAME {
        return Err(PgMartError::invalid(format!("invalid setting \"{setting}\""))
            .hint("Use a custom setting such as app.tenant_id (a prefix, a dot, a name; letters, digits and underscores)."));
    }
    Ok(())
}

/// The name of the BI role's tenant policy and of the owner's policy.
pub const TENANT_POLICY: &str = "pgmart_tenant";
pub const OWNER_POLICY: &str = "pgmart_tenant_owner";

/// The BI role's policy: rows whose tenant column equals the setting (none when it is unset or
/// empty). `current_setting` is stable, so the comparison is an index condition on the tenant
/// column; no subquery, so `metric_values` (which reads a source's policies as the reader and
/// allows only built-in functions there) reads the table.
pub fn tenant_policy(table: &str, column: &str, column_type: &str, setting: &str, bi: &str) -> String {
    format!(
        "CREATE POLICY {} ON {table} AS PERMISSIVE FOR SELECT TO {} USING ({} OPERATOR(pg_catalog.=) \
         CAST(NULLIF(pg_catalog.current_setting({}, true), '') AS {column_type}))",
        quote_identifier(TENANT_POLICY),
        quote_identifier(bi),
        quote_identifier(column),
        crate::names::quote_literal(setting),
    )
}

/// The owner's policy (and the transform role's): every row, every command. Without it, FORCE ROW
/// LEVEL SECURITY would leave the role that builds the table unable to read or write it.
pub fn owner_policy(table: &str, roles: &[String]) -> String {
    let roles: Vec<String> = roles.iter().map(quote_identifier).collect();
    format!(
        "CREATE POLICY {} ON {table} AS PERMISSIVE FOR ALL TO {} USING (true) WITH CHECK (true)",
        quote_identifier(OWNER_POLICY),
        roles.join(", ")
    )
}

/// An `access` check's measure: its failing rows are the violations among `rows`, five of them
/// as the sample.
pub fn check_measure(rows: &[ReportRow]) -> (i64, i64, serde_json::Value) {
    let bad: Vec<&ReportRow> = rows.iter().filter(|r| r.violation).collect();
    let sample: Vec<serde_json::Value> = bad
        .iter()
        .take(crate::checks::plan::SAMPLE_SIZE)
        .map(|r| {
            serde_json::json!({ "role": r.role, "object": r.object, "column": r.column, "privilege": r.privilege,
                                "reason": r.reason })
        })
        .collect();
    (bad.len() as i64, rows.len() as i64, serde_json::Value::Array(sample))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            raw: "raw".into(),
            staging: "staging".into(),
            mart: "mart".into(),
            ingest: "ingest".into(),
            transform: "transform".into(),
            bi: "bi".into(),
        }
    }

    fn facts() -> Facts {
        let role = |name: &str, oid| RoleFacts { name: name.into(), oid, superuser: false, bypassrls: false };
        let mut names = BTreeMap::new();
        for (o, n) in [(10, "admin"), (11, "ingest"), (12, "transform"), (13, "bi"), (14, "analyst")] {
            names.insert(o, n.to_string());
        }
        Facts {
            config: cfg(),
            caller: 10,
            roles: vec![role("ingest", 11), role("transform", 12), role("bi", 13)],
            names,
            superusers: BTreeSet::new(),
            schemas: LAYERS
                .iter()
                .map(|l| SchemaFacts {
                    name: l.name().into(),
                    owner: 10,
                    acl: vec![Acl { grantee: 10, privilege: "USAGE".into() }, Acl { grantee: 10, privilege: "CREATE".into() }],
                    effective: BTreeMap::new(),
                })
                .collect(),
            objects: vec![],
            default_acls: vec![],
            labels: vec![],
            deps: vec![],
            write_all: vec![],
        }
    }

    fn statements(f: &Facts) -> Vec<String> {
        changes(f).into_iter().map(|c| c.statement).collect()
    }

    #[test]
    fn names_are_validated() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.staging = "raw".into();
        assert!(c.validate().is_err());
        c = cfg();
        c.bi = "transform".into();
        assert!(c.validate().is_err());
        for bad in ["", "pg_x", "public", "pgmart", "pgmart_metrics", &"x".repeat(64)] {
            let mut c = cfg();
            c.mart = bad.into();
            assert!(c.validate().is_err(), "{bad}");
        }
        for bad in ["public", "none", "pg_monitor", ""] {
            let mut c = cfg();
            c.bi = bad.into();
            assert!(c.validate().is_err(), "{bad}");
        }
        // Hostile but legal names are fine: they are quoted everywhere.
        let mut c = cfg();
        c.mart = "Mart\"; DROP TABLE x; --".into();
        c.bi = "b i\"".into();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn a_fresh_set_gets_schema_grants_and_default_privileges() {
        let s = statements(&facts());
        for want in [
            r#"GRANT USAGE, CREATE ON SCHEMA "raw" TO "ingest""#,
            r#"GRANT USAGE ON SCHEMA "raw" TO "transform""#,
            r#"GRANT USAGE, CREATE ON SCHEMA "staging" TO "transform""#,
            r#"GRANT USAGE, CREATE ON SCHEMA "mart" TO "transform""#,
            r#"GRANT USAGE ON SCHEMA "mart" TO "bi""#,
            r#"ALTER DEFAULT PRIVILEGES FOR ROLE "ingest" IN SCHEMA "raw" GRANT SELECT ON TABLES TO "transform""#,
            r#"ALTER DEFAULT PRIVILEGES FOR ROLE "transform" IN SCHEMA "mart" GRANT SELECT ON TABLES TO "bi""#,
            r#"ALTER DEFAULT PRIVILEGES FOR ROLE "admin" IN SCHEMA "raw" GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO "ingest""#,
            r#"ALTER DEFAULT PRIVILEGES FOR ROLE "admin" IN SCHEMA "mart" GRANT SELECT ON TABLES TO "bi""#,
            r#"ALTER DEFAULT PRIVILEGES FOR ROLE "admin" IN SCHEMA "staging" GRANT SELECT, UPDATE, USAGE ON SEQUENCES TO "transform""#,
        ] {
            assert!(s.contains(&want.to_string()), "missing {want}\n{s:#?}");
        }
        assert!(!s.iter().any(|x| x.contains("TO \"bi\"") && x.contains("\"staging\"")), "{s:#?}");
        assert!(!s.iter().any(|x| x.contains("PUBLIC")), "{s:#?}");
    }

    #[test]
    fn loosened_grants_are_revoked_and_the_rest_left_alone() {
        let mut f = facts();
        f.schemas[0].acl.push(Acl { grantee: PUBLIC, privilege: "USAGE".into() });
        f.schemas[0].acl.push(Acl { grantee: 13, privilege: "USAGE".into() });
        f.schemas[0].acl.push(Acl { grantee: 14, privilege: "USAGE".into() }); // an analyst: reported, kept
        f.objects.push(ObjectFacts {
            oid: 100,
            schema: "mart".into(),
            name: "mart.orders".into(),
            relkind: "r".into(),
            owner: 12,
            acl: vec![
                Acl { grantee: 13, privilege: "SELECT".into() },
                Acl { grantee: 13, privilege: "INSERT".into() },
                Acl { grantee: PUBLIC, privilege: "SELECT".into() },
            ],
            column_acl: vec![ColumnAcl { column: "email".into(), grantee: 11, privilege: "UPDATE".into() }],
            columns: vec!["id".into(), "email".into()],
            invoker: false,
            effective: BTreeMap::new(),
        });
        let s = statements(&f);
        assert!(s.contains(&r#"REVOKE USAGE ON SCHEMA "raw" FROM PUBLIC CASCADE"#.to_string()), "{s:#?}");
        assert!(s.contains(&r#"REVOKE USAGE ON SCHEMA "raw" FROM "bi" CASCADE"#.to_string()), "{s:#?}");
        assert!(!s.iter().any(|x| x.contains("analyst")), "{s:#?}");
        assert!(s.contains(&r#"REVOKE INSERT ON TABLE mart.orders FROM "bi" CASCADE"#.to_string()), "{s:#?}");
        assert!(s.contains(&"REVOKE SELECT ON TABLE mart.orders FROM PUBLIC CASCADE".to_string()), "{s:#?}");
        assert!(s.contains(&r#"REVOKE UPDATE ("email") ON TABLE mart.orders FROM "ingest" CASCADE"#.to_string()), "{s:#?}");
        // The owner (transform) is never granted to or revoked from.
        assert!(!s.iter().any(|x| x.contains("mart.orders") && x.ends_with("\"transform\"")), "{s:#?}");
    }

    #[test]
    fn pii_columns_are_kept_from_bi() {
        let mut f = facts();
        f.objects.push(ObjectFacts {
            oid: 100,
            schema: "mart".into(),
            name: "mart.customers".into(),
            relkind: "r".into(),
            owner: 12,
            acl: vec![Acl { grantee: 13, privilege: "SELECT".into() }],
            column_acl: vec![],
            columns: vec!["id".into(), "email".into(), "region".into()],
            invoker: false,
            effective: BTreeMap::new(),
        });
        f.labels.push(Label {
            relation: 100,
            name: "mart.customers".into(),
            owner: 12,
            label: "pii".into(),
            column: Some("email".into()),
            relation_exists: true,
            column_exists: true,
            bi_reads: true,
            rls: false,
            force_rls: false,
            other_policies: vec![],
        });
        let s = statements(&f);
        let revoke = s.iter().position(|x| x == r#"REVOKE SELECT ON TABLE mart.customers FROM "bi" CASCADE"#).expect("revoke");
        let grant = s.iter().position(|x| x == r#"GRANT SELECT ("id", "region") ON TABLE mart.customers TO "bi""#).expect("grant");
        assert!(revoke < grant);
        // Once so, nothing more to do.
        f.objects[0].acl.clear();
        f.objects[0].column_acl = ["id", "region"]
            .iter()
            .map(|c| ColumnAcl { column: c.to_string(), grantee: 13, privilege: "SELECT".into() })
            .collect();
        assert!(!statements(&f).iter().any(|x| x.contains("customers")), "{:#?}", statements(&f));
    }

    #[test]
    fn the_report_flags_what_the_rules_forbid() {
        let mut f = facts();
        f.schemas[0].effective.insert("bi".into(), vec!["USAGE".into()]);
        f.schemas[2].effective.insert("bi".into(), vec!["USAGE".into()]);
        f.schemas[2].acl.push(Acl { grantee: 14, privilege: "CREATE".into() });
        f.objects.push(ObjectFacts {
            oid: 100,
            schema: "mart".into(),
            name: "mart.orders".into(),
            relkind: "r".into(),
            owner: 12,
            acl: vec![Acl { grantee: 14, privilege: "INSERT".into() }, Acl { grantee: 14, privilege: "SELECT".into() }],
            column_acl: vec![],
            columns: vec![],
            invoker: false,
            effective: [("bi".to_string(), vec!["SELECT".to_string()])].into_iter().collect(),
        });
        let r = report(&f);
        let bad = |role: &str, obj: &str, p: &str| r.iter().any(|x| x.role == role && x.object == obj && x.privilege == p && x.violation);
        let ok = |role: &str, obj: &str, p: &str| r.iter().any(|x| x.role == role && x.object == obj && x.privilege == p && !x.violation);
        assert!(bad("bi", "raw", "USAGE"), "{r:#?}");
        assert!(ok("bi", "mart", "USAGE"));
        assert!(ok("bi", "mart.orders", "SELECT"));
        assert!(bad("analyst", "mart", "CREATE"));
        assert!(bad("analyst", "mart.orders", "INSERT"));
        assert!(ok("analyst", "mart.orders", "SELECT"));
        assert!(ok("transform", "mart.orders", "OWNER"));
    }

    #[test]
    fn views_over_labelled_relations_are_followed() {
        let mut f = facts();
        let obj = |oid, name: &str, kind: &str, invoker| ObjectFacts {
            oid,
            schema: "mart".into(),
            name: name.into(),
            relkind: kind.into(),
            owner: 12,
            acl: vec![],
            column_acl: vec![],
            columns: vec![],
            invoker,
            effective: [("bi".to_string(), vec!["SELECT".to_string()])].into_iter().collect(),
        };
        f.schemas[2].effective.insert("bi".into(), vec!["USAGE".into()]);
        f.objects = vec![
            obj(100, "mart.clients", "r", false),
            obj(101, "mart.v_inv", "v", true),
            obj(102, "mart.v_owner", "v", false),
            obj(103, "mart.v_on_inv", "v", true),
            obj(104, "mart.emails", "v", true),
        ];
        let label = |label: &str, column: Option<&str>| Label {
            relation: 100,
            name: "mart.clients".into(),
            owner: 12,
            label: label.into(),
            column: column.map(str::to_string),
            relation_exists: true,
            column_exists: true,
            bi_reads: false,
            rls: true,
            force_rls: true,
            other_policies: vec![],
        };
        f.labels = vec![label("client_facing", None), label("pii", Some("email"))];
        let dep = |view, on, column: Option<&str>| Dependency { view, on, column: column.map(str::to_string) };
        f.deps = vec![
            dep(101, 100, Some("id")),
            dep(102, 100, Some("id")),
            dep(103, 101, Some("id")),
            dep(104, 100, Some("email")),
        ];
        let r = report(&f);
        let flagged = |obj: &str, what: &str| {
            r.iter().any(|x| x.object == obj && x.violation && x.reason.as_deref().unwrap_or("").contains(what))
        };
        assert!(flagged("mart.v_owner", "client-facing"), "{r:#?}");
        assert!(!flagged("mart.v_inv", "client-facing"), "{r:#?}");
        assert!(!flagged("mart.v_on_inv", "client-facing"), "{r:#?}");
        assert!(flagged("mart.emails", "PII column"), "{r:#?}");
        assert!(!flagged("mart.v_inv", "PII"), "{r:#?}");
    }

    #[test]
    fn tenant_policy_text_is_quoted() {
        let p = tenant_policy("mart.\"T\"", "tenant\"id", "integer", "app.tenant_id", "b\"i");
        assert_eq!(
            p,
            "CREATE POLICY \"pgmart_tenant\" ON mart.\"T\" AS PERMISSIVE FOR SELECT TO \"b\"\"i\" USING (\"tenant\"\"id\" OPERATOR(pg_catalog.=) \
             CAST(NULLIF(pg_catalog.current_setting('app.tenant_id', true), '') AS integer))"
        );
        assert!(check_setting("app.tenant_id").is_ok());
        for bad in ["tenant", "app.", "app.x'; --", ".x", "a.b c"] {
            assert!(check_setting(bad).is_err(), "{bad}");
        }
    }
}
