//! Registrations follow their relation by name. dbt, migrations and hand-run scripts drop and
//! re-create views and tables on every run, or build a new one and swap names (dbt: rename the old
//! one to `x__dbt_backup`, the new one to `x`, drop the backup). A registration (a check, a metric,
//! a refresh schedule, an alert rule) is made for *the relation of that name*, so:
//!
//! - when a relation is created under a name a registration has, and the registration's own
//!   relation is gone (dropped) or was renamed away from that name in this same transaction (the
//!   swap), the registration moves to it: same id, same history, no new metric version;
//! - when a relation is renamed (`ALTER ... RENAME`, `SET SCHEMA`) and nothing takes its old name in
//!   that transaction, its registrations follow it to its new name.
//!
//! A registration moves only to a relation whose owner has its owner's rights (the same role, a
//! member of that role, a superuser: a role that can create a table of that name in a shared
//! schema gains nothing), and of a kind it can use; it stays where it is otherwise, and a NOTICE
//! says why. The `ddl_command_end` event trigger
//! (`pgmart._on_ddl_end`, sql/finalize.sql) hands every table, view and materialized view a
//! command created or altered to [`_relations_changed`]. Each capability describes its catalog
//! table in a [`Follower`] (listed in the composition root, `lib.rs`).

use crate::sql;
use pgrx::prelude::*;
use serde::Deserialize;
use std::cell::RefCell;

/// How one capability's registrations name their relation.
pub struct Follower {
    /// What the registration is called in messages ("check", "metric", ...).
    pub kind: &'static str,
    /// Its catalog table (qualified, quoted).
    pub table: &'static str,
    /// Its key column, read as text.
    pub id: &'static str,
    /// The registration's name, for messages (an SQL expression over alias `t`).
    pub label: &'static str,
    /// The `regclass`/`oid` column of its relation, and the text column of that relation's name.
    pub relation: &'static str,
    pub name: &'static str,
    /// An SQL expression over alias `t`: the oid of the registration's owner.
    pub owner: &'static str,
    /// The relation kinds it can use (`pg_class.relkind` letters).
    pub relkinds: &'static str,
    /// Called (as the extension's owner) after the move, inside the same subtransaction: re-create
    /// what hangs on the relation (triggers, a protection view). An error leaves the registration
    /// where it was.
    pub moved: fn(id: &str, old: u32, new: u32, name: &str) -> Result<(), String>,
    /// Called after the relation was renamed (its registrations keep it).
    pub renamed: fn(id: &str, name: &str),
}

/// A follower that needs nothing more than the catalog row.
pub fn nothing_moved(_: &str, _: u32, _: u32, _: &str) -> Result<(), String> {
    Ok(())
}

pub fn nothing_renamed(_: &str, _: &str) {}

#[derive(Deserialize)]
struct Rel {
    oid: i64,
    name: String,
    relkind: String,
    owner: i64,
    partition: bool,
}

#[derive(Deserialize)]
struct Row {
    id: String,
    label: String,
    relation: i64,
    owner: Option<i64>,
    /// The relation's name as the registration knows it.
    name: Option<String>,
}

thread_local! {
    /// Names registrations were renamed away from in the current transaction (keyed by its start
    /// time): a relation that takes such a name in the same transaction takes them back (dbt's swap).
    static RENAMED_AWAY: RefCell<(i64, Vec<(String, &'static str, String)>)> = const { RefCell::new((0, Vec::new())) };
}

fn xact_key() -> i64 {
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

fn renamed_away(name: &str, kind: &'static str) -> Vec<String> {
    RENAMED_AWAY.with(|r| {
        let r = r.borrow();
        if r.0 != xact_key() {
            return vec![];
        }
        r.1.iter().filter(|(n, k, _)| n == name && *k == kind).map(|(_, _, id)| id.clone()).collect()
    })
}

fn remember_renamed_away(name: &str, kind: &'static str, id: &str) {
    RENAMED_AWAY.with(|r| {
        let mut r = r.borrow_mut();
        let key = xact_key();
        if r.0 != key {
            *r = (key, Vec::new());
        }
        r.1.push((name.to_string(), kind, id.to_string()));
    });
}

/// The event trigger's entry: relations a DDL command created or altered. Nothing here may fail
/// the user's command: a failure is reported in a NOTICE and the registrations stay as they were.
#[pg_extern(schema = "pgmart", volatile)]
fn _relations_changed(relations: Vec<Option<pg_sys::Oid>>) {
    for oid in relations.into_iter().flatten() {
        if let Err(c) = sql::subtransaction(|| changed(oid)) {
            notice!("pgmart could not check its registrations against relation {}: {}", u32::from(oid), c.message);
        }
    }
}

fn changed(oid: pg_sys::Oid) {
    let Some(rel) = sql::as_catalog_owner(|| {
        sql::row::<Rel>(
            "SELECT c.oid::pg_catalog.int8 AS oid, c.relkind::pg_catalog.text AS relkind, c.relowner::pg_catalog.int8 AS owner, \
                    pg_catalog.quote_ident(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.||) '.' \
                    OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname::pg_catalog.text) AS name, \
                    c.relispartition AS partition \
               FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
              WHERE c.oid OPERATOR(pg_catalog.=) $1",
            &[oid.into()],
        )
    }) else {
        return;
    };
    // Registrations name whole tables; a partition only gets the capture of its root's rollups.
    if !rel.partition {
        for f in crate::FOLLOWERS {
            follow_rename(f, &rel);
            take_back(f, &rel);
        }
    }
    crate::rollups::exec::relation_changed(oid);
    crate::snapshots::exec::relation_changed(oid);
}

fn rows(f: &Follower, condition: &str, args: &[pgrx::datum::DatumWithOid]) -> Vec<Row> {
    sql::as_catalog_owner(|| {
        sql::rows::<Row>(
            &format!(
                "SELECT t.{id}::pg_catalog.text AS id, {label} AS label, t.{relation}::pg_catalog.oid::pg_catalog.int8 AS relation, \
                        ({owner})::pg_catalog.int8 AS owner, t.{name}::pg_catalog.text AS name \
                   FROM {table} t WHERE {condition}",
                id = f.id,
                name = f.name,
                label = f.label,
                relation = f.relation,
                owner = f.owner,
                table = f.table,
            ),
            args,
        )
    })
}

/// Registrations on this relation under another name: it was renamed; they keep it, under its new
/// name (and remember the old one for this transaction).
fn follow_rename(f: &Follower, rel: &Rel) {
    let cond = format!(
        "t.{} OPERATOR(pg_catalog.=) $1::pg_catalog.int8::pg_catalog.oid AND t.{} OPERATOR(pg_catalog.<>) $2",
        f.relation, f.name
    );
    for r in rows(f, &cond, &[rel.oid.into(), rel.name.as_str().into()]) {
        set_name(f, &r.id, None, &rel.name);
        (f.renamed)(&r.id, &rel.name);
        if let Some(old) = r.name {
            remember_renamed_away(&old, f.kind, &r.id);
        }
    }
}

/// Registrations under this relation's name whose relation is gone, or was renamed away from the
/// name in this transaction: they move to this relation when its kind and owner allow.
fn take_back(f: &Follower, rel: &Rel) {
    let cond = format!(
        "t.{rel_col} OPERATOR(pg_catalog.<>) $1::pg_catalog.int8::pg_catalog.oid \
         AND (t.{name} OPERATOR(pg_catalog.=) $2 OR t.{id}::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[])) \
         AND (NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) t.{rel_col}) \
              OR t.{id}::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($3::pg_catalog.text[]))",
        rel_col = f.relation,
        name = f.name,
        id = f.id,
    );
    let away = renamed_away(&rel.name, f.kind);
    for r in rows(f, &cond, &[rel.oid.into(), rel.name.as_str().into(), away.clone().into()]) {
        let refuse = |why: String| notice!("pgmart: {} \"{}\" stays detached from {}: {why}", f.kind, r.label, rel.name);
        if !f.relkinds.contains(rel.relkind.as_str()) {
            refuse(format!("it cannot use a relation of kind '{}'", rel.relkind));
            continue;
        }
        // The registration runs as its owner over the relation, so the relation's owner must have
        // at least its owner's rights (the same role, a member of it, a superuser): nothing
        // the new relation's owner wrote ever runs with more rights than that owner has.
        let owner = pg_sys::Oid::from(r.owner.unwrap_or(0) as u32);
        if r.owner.is_none() || !sql::has_rights_of(pg_sys::Oid::from(rel.owner as u32), owner) {
            refuse(format!("{} is owned by a role without the rights of the registration's owner", rel.name));
            continue;
        }
        let moved = sql::subtransaction(|| {
            set_name(f, &r.id, Some(rel.oid), &rel.name);
            sql::as_catalog_owner(|| (f.moved)(&r.id, r.relation as u32, rel.oid as u32, &rel.name))
        });
        match moved {
            Ok(Ok(())) => notice!("pgmart: {} \"{}\" now follows {} (re-created)", f.kind, r.label, rel.name),
            Ok(Err(why)) => refuse(why),
            Err(c) => refuse(c.message),
        }
    }
}

/// Point a registration at a relation (`oid`, when it moves) under a name.
fn set_name(f: &Follower, id: &str, oid: Option<i64>, name: &str) {
    sql::as_catalog_owner(|| {
        sql::exec(
            &format!(
                "UPDATE {table} t SET {name_col} = $2, {rel_col} = coalesce($3::pg_catalog.int8::pg_catalog.oid, t.{rel_col}) \
                  WHERE t.{id}::pg_catalog.text OPERATOR(pg_catalog.=) $1",
                table = f.table,
                name_col = f.name,
                rel_col = f.relation,
                id = f.id,
            ),
            &[id.into(), name.into(), oid.into()],
        )
    });
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::testing::{one, run, sqlstate_of};
    use pgrx::prelude::*;

    fn registrations_on(t: &str, view: &str) {
        run(&format!("CREATE TABLE {t} (id int, amount numeric, at timestamptz DEFAULT now())"));
        run(&format!("CREATE MATERIALIZED VIEW {view} AS SELECT count(*) AS n FROM {t}"));
        run(&format!("SELECT pgmart.add_check('{t}', 'not_null', ARRAY['id'], name => '{t}_id')"));
        run(&format!("SELECT pgmart.register_metric('{t}_rev', '{t}', 'sum(amount)', 'at', 'team', 'Revenue')"));
        run(&format!("SELECT pgmart.add_alert_rule('{t}_big', '{t}', 'amount > 100')"));
        run(&format!("SELECT pgmart.schedule_refresh('{view}', '1 hour')"));
        run(&format!("SELECT * FROM pgmart.run_checks('{t}')"));
    }

    /// Every registration is on the relation now called `t` / `view`, with its history.
    fn all_follow(t: &str, view: &str) {
        let on_it = one::<bool>(&format!(
            "SELECT (SELECT target FROM pgmart.\"check\" WHERE name = '{t}_id') = '{t}'::regclass \
                AND (SELECT source FROM pgmart.metric WHERE name = '{t}_rev') = '{t}'::regclass \
                AND (SELECT relation FROM pgmart.alert_rules WHERE name = '{t}_big') = '{t}'::regclass \
                AND (SELECT view FROM pgmart.refresh_view WHERE view_name = 'public.{view}') = '{view}'::regclass"
        ));
        assert_eq!(on_it, Some(true));
        // Same check, its history continues; the metric keeps its version and its protection.
        run(&format!("SELECT * FROM pgmart.run_checks('{t}')"));
        assert_eq!(one::<i64>(&format!("SELECT count(DISTINCT check_id) FROM pgmart.check_results WHERE name = '{t}_id'")), Some(1));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.check_results WHERE name = '{t}_id'")), Some(2));
        assert_eq!(one::<i32>(&format!("SELECT version FROM pgmart.metrics WHERE name = '{t}_rev'")), Some(1));
        assert_eq!(sqlstate_of(&format!("ALTER TABLE {t} DROP COLUMN amount")), "2BP01");
        // The rule fires on the new table; the refresh runs on the new view.
        run(&format!("INSERT INTO {t} (id, amount) VALUES (1, 500)"));
        assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.alerts WHERE source_name = '{t}_big'")), Some(1));
        assert_eq!(one::<String>(&format!("SELECT status FROM pgmart.refresh_now('{view}')")).as_deref(), Some("succeeded"));
        assert_eq!(one::<i64>(&format!("SELECT n FROM {view}")), Some(1));
    }

    #[pg_test]
    fn registrations_survive_a_drop_and_recreate() {
        registrations_on("fw_a", "fw_a_mv");
        // What dbt's table materialization and a migration do: drop (with what depends on it), re-create.
        run("DROP TABLE fw_a CASCADE");
        run("CREATE TABLE fw_a (id int, amount numeric, at timestamptz DEFAULT now())");
        run("CREATE MATERIALIZED VIEW fw_a_mv AS SELECT count(*) AS n FROM fw_a");
        all_follow("fw_a", "fw_a_mv");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.metric_versions WHERE name = 'fw_a_rev'"), Some(1));
    }

    #[pg_test]
    fn registrations_survive_dbts_rename_swap() {
        registrations_on("fw_b", "fw_b_mv");
        // dbt-postgres: build x__dbt_tmp, rename x to x__dbt_backup, x__dbt_tmp to x, drop the backup.
        run("CREATE TABLE fw_b__dbt_tmp (id int, amount numeric, at timestamptz DEFAULT now())");
        run("ALTER TABLE fw_b RENAME TO fw_b__dbt_backup");
        run("ALTER TABLE fw_b__dbt_tmp RENAME TO fw_b");
        run("CREATE MATERIALIZED VIEW fw_b_mv__dbt_tmp AS SELECT count(*) AS n FROM fw_b");
        run("ALTER MATERIALIZED VIEW fw_b_mv RENAME TO fw_b_mv__dbt_backup");
        run("ALTER MATERIALIZED VIEW fw_b_mv__dbt_tmp RENAME TO fw_b_mv");
        run("DROP TABLE fw_b__dbt_backup CASCADE");
        all_follow("fw_b", "fw_b_mv");
    }

    #[pg_test]
    fn a_rename_is_followed() {
        registrations_on("fw_c", "fw_c_mv");
        run("CREATE SCHEMA fw_mart");
        run("ALTER TABLE fw_c RENAME TO fw_c2");
        run("ALTER MATERIALIZED VIEW fw_c_mv SET SCHEMA fw_mart");
        assert_eq!(one::<String>("SELECT target_name FROM pgmart.\"check\" WHERE name = 'fw_c_id'").as_deref(), Some("public.fw_c2"));
        assert_eq!(one::<String>("SELECT target FROM pgmart.rules WHERE name = 'fw_c_big'").as_deref(), Some("public.fw_c2"));
        assert_eq!(one::<String>("SELECT target FROM pgmart.jobs WHERE kind = 'refresh'").as_deref(), Some("fw_mart.fw_c_mv"));
        assert_eq!(one::<String>("SELECT object FROM pgmart.freshness").as_deref(), Some("fw_mart.fw_c_mv"));
        run("INSERT INTO fw_c2 (id, amount) VALUES (1, 500)");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'fw_c_big'"), Some(1));
        // (A new table of the old name in a later transaction takes nothing: pg_test/test_habits.py.)
    }

    #[pg_test]
    fn another_roles_table_of_that_name_takes_nothing() {
        run("CREATE ROLE fw_team");
        run("CREATE ROLE fw_intruder");
        run("GRANT CREATE, USAGE ON SCHEMA public TO fw_team, fw_intruder");
        run("SELECT pgmart.grant_access('fw_team', 'user')");
        run("SET ROLE fw_team");
        run("CREATE TABLE fw_d (id int, amount numeric, at timestamptz)");
        run("SELECT pgmart.add_check('fw_d', 'not_null', ARRAY['id'], name => 'fw_d_id')");
        run("SELECT pgmart.add_alert_rule('fw_d_big', 'fw_d', 'amount > 100')");
        run("DROP TABLE fw_d");
        run("RESET ROLE");
        let dead = one::<i64>("SELECT target::oid::int8 FROM pgmart.\"check\" WHERE name = 'fw_d_id'");
        run("SET ROLE fw_intruder");
        run("CREATE TABLE fw_d (id int, amount numeric, at timestamptz)");
        run("INSERT INTO fw_d VALUES (1, 500, now())");
        run("RESET ROLE");
        // Nothing moved to the intruder's table: no trigger on it, the check still on the dead table.
        assert_eq!(one::<i64>("SELECT target::oid::int8 FROM pgmart.\"check\" WHERE name = 'fw_d_id'"), dead);
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'fw_d'::regclass"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'fw_d_big'"), Some(0));
        // The team's own re-created table takes them back.
        run("DROP TABLE fw_d");
        run("SET ROLE fw_team");
        run("CREATE TABLE fw_d (id int, amount numeric, at timestamptz)");
        run("RESET ROLE");
        assert_eq!(one::<bool>("SELECT target = 'fw_d'::regclass FROM pgmart.\"check\" WHERE name = 'fw_d_id'"), Some(true));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'fw_d'::regclass AND NOT tgisinternal"), Some(2));
    }

    #[pg_test]
    fn a_relation_that_cannot_take_a_registration_leaves_it_detached() {
        run("CREATE TABLE fw_e (id int, amount numeric, at timestamptz)");
        run("SELECT pgmart.register_metric('fw_e_rev', 'fw_e', 'sum(amount)', 'at', 'team', 'Revenue')");
        run("SELECT pgmart.add_alert_rule('fw_e_big', 'fw_e', 'amount > 100')");
        run("DROP TABLE fw_e CASCADE");
        // Re-created without the metric's column, and as a view (a rule needs a table): both stay
        // detached, the CREATE itself succeeds.
        run("CREATE VIEW fw_e AS SELECT 1 AS id, now() AS at");
        assert_eq!(one::<bool>("SELECT source::oid <> 'fw_e'::regclass::oid FROM pgmart.metric WHERE name = 'fw_e_rev'"), Some(true));
        assert_eq!(one::<bool>("SELECT relation::oid <> 'fw_e'::regclass::oid FROM pgmart.alert_rules WHERE name = 'fw_e_big'"), Some(true));
        run("DROP VIEW fw_e");
        run("CREATE TABLE fw_e (id int, amount numeric, at timestamptz)");
        assert_eq!(one::<bool>("SELECT source = 'fw_e'::regclass FROM pgmart.metric WHERE name = 'fw_e_rev'"), Some(true));
        assert_eq!(one::<bool>("SELECT relation = 'fw_e'::regclass FROM pgmart.alert_rules WHERE name = 'fw_e_big'"), Some(true));
    }

    #[pg_test]
    fn registering_a_metric_again_on_a_rebuilt_source_makes_no_new_version() {
        run("CREATE TABLE fw_f (amount numeric, at timestamptz)");
        run("SELECT pgmart.register_metric('fw_f_rev', 'fw_f', 'sum(amount)', 'at', 'team', 'Revenue')");
        // Rebuilt while pgmart could not follow (say, restored from a dump taken without it)...
        run("ALTER EVENT TRIGGER pgmart_relations_changed DISABLE");
        run("DROP TABLE fw_f CASCADE");
        run("CREATE TABLE fw_f (amount numeric, at timestamptz)");
        run("ALTER EVENT TRIGGER pgmart_relations_changed ENABLE");
        // ... then registered again as the dbt project does on every run: the same version.
        assert_eq!(one::<i32>("SELECT pgmart.register_metric('fw_f_rev', 'fw_f', 'sum(amount)', 'at', 'team', 'Revenue')"), Some(1));
        assert_eq!(one::<bool>("SELECT source = 'fw_f'::regclass FROM pgmart.metric WHERE name = 'fw_f_rev'"), Some(true));
        assert_eq!(sqlstate_of("ALTER TABLE fw_f DROP COLUMN amount"), "2BP01");
    }
}
