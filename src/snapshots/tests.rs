//! `#[pg_test]`s for snapshots: periodic freeze (re-run is a no-op, rows cannot be changed, one
//! partition per period), timestamp and check histories (new versions on change, closed versions
//! on hard delete, the dbt preset's columns), duplicate and NULL keys failing the run with nothing
//! written, and the bad input of create_snapshot.

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::testing::{one, run, sqlstate_of};
    use pgrx::prelude::*;

    fn text(q: &str) -> String {
        one::<String>(q).unwrap_or_default()
    }

    fn customers(t: &str) {
        run("SET LOCAL TimeZone = 'UTC'");
        run(&format!(
            "CREATE TABLE {t} (id int, region text, status text, updated_at timestamp); \
             INSERT INTO {t} VALUES (1, 'eu', 'new', '2024-01-01 10:00'), (2, 'us', 'new', '2024-01-01 11:00'), \
                                    (3, NULL, 'gold', '2024-01-02 09:00')"
        ));
    }

    #[pg_test]
    fn a_periodic_snapshot_freezes_its_period_once() {
        customers("sn_p_src");
        let id = one::<i64>("SELECT pgmart.create_snapshot('public.sn_p', 'sn_p_src', 'periodic', period => 'month')").unwrap();
        assert!(id > 0);
        assert_eq!(one::<i64>("SELECT count(*) FROM sn_p"), Some(3));
        assert_eq!(
            text("SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'sn_p'::regclass AND attnum > 0"),
            "id,region,status,updated_at,snapshot_period,snapshot_at"
        );
        assert_eq!(
            one::<bool>("SELECT bool_and(snapshot_period = date_trunc('month', now() AT TIME ZONE 'UTC')::date) FROM sn_p"),
            Some(true)
        );
        // Partitioned by period through a pgmart partition set.
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.partition_sets WHERE parent::regclass = 'sn_p'::regclass"), Some(1));
        // Re-running the frozen period changes nothing.
        run("INSERT INTO sn_p_src VALUES (4, 'eu', 'new', now())");
        let out = text("SELECT pgmart.run_snapshot('sn_p')::text");
        assert!(out.contains("already frozen"), "{out}");
        assert_eq!(one::<i64>("SELECT count(*) FROM sn_p"), Some(3));
        // Frozen rows: the table refuses every write (through the parent and a partition).
        assert_eq!(sqlstate_of("UPDATE sn_p SET status = 'x'"), "55000");
        assert_eq!(sqlstate_of("DELETE FROM sn_p"), "55000");
        assert_eq!(sqlstate_of("INSERT INTO sn_p SELECT * FROM sn_p"), "55000");
        assert_eq!(sqlstate_of("TRUNCATE sn_p"), "55000");
        let part = text(
            "SELECT c.oid::regclass::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
              WHERE i.inhparent = 'sn_p'::regclass ORDER BY c.relname LIMIT 1",
        );
        assert_eq!(sqlstate_of(&format!("UPDATE {part} SET status = 'x'")), "55000");
        assert_eq!(sqlstate_of(&format!("TRUNCATE {part}")), "55000");
        assert_eq!(one::<i64>("SELECT count(*) FROM sn_p"), Some(3));
        assert_eq!(one::<i64>("SELECT rows FROM pgmart.snapshots WHERE name = 'public.sn_p'"), Some(3));
        assert_eq!(one::<i64>("SELECT frozen_periods FROM pgmart.snapshots WHERE name = 'public.sn_p'"), Some(1));
        // Dropped with its data kept: a plain table again.
        run("SELECT pgmart.drop_snapshot('sn_p', keep_data => true)");
        run("DELETE FROM sn_p WHERE id = 1");
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.snapshots WHERE name = 'public.sn_p'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.partition_sets WHERE parent::regclass = 'sn_p'::regclass"), Some(0));
    }

    #[pg_test]
    fn a_timestamp_snapshot_keeps_a_type_2_history() {
        customers("sn_t_src");
        run("SELECT pgmart.create_snapshot('sn_t', 'sn_t_src', 'timestamp', unique_key => '{id}', updated_at => 'updated_at')");
        assert_eq!(one::<i64>("SELECT count(*) FROM sn_t WHERE valid_to IS NULL AND is_current"), Some(3));
        assert_eq!(
            one::<bool>("SELECT valid_from = '2024-01-01 10:00+00' FROM sn_t WHERE id = 1"),
            Some(true)
        );
        // A change, a delete, a new row, and a change whose updated_at did not move (ignored).
        run("UPDATE sn_t_src SET status = 'gold', updated_at = '2024-02-01 08:00' WHERE id = 1");
        run("DELETE FROM sn_t_src WHERE id = 2");
        run("INSERT INTO sn_t_src VALUES (5, 'eu', 'new', '2024-02-02 00:00')");
        run("UPDATE sn_t_src SET status = 'lost' WHERE id = 3");
        let out = text("SELECT pgmart.run_snapshot('sn_t')::text");
        assert!(out.contains("\"inserted\": 2") && out.contains("\"closed\": 1") && out.contains("\"deleted\": 1"), "{out}");
        assert_eq!(one::<i64>("SELECT count(*) FROM sn_t"), Some(5));
        assert_eq!(
            one::<bool>("SELECT valid_to = '2024-02-01 08:00+00' AND NOT is_current FROM sn_t WHERE id = 1 AND status = 'new'"),
            Some(true)
        );
        assert_eq!(one::<bool>("SELECT valid_to = transaction_timestamp() FROM sn_t WHERE id = 2"), Some(true));
        assert_eq!(one::<i64>("SELECT count(*) FROM sn_t WHERE valid_to IS NULL"), Some(3));
        // A second run with nothing changed writes nothing.
        let out = text("SELECT pgmart.run_snapshot('sn_t')::text");
        assert!(out.contains("\"inserted\": 0") && out.contains("\"closed\": 0") && out.contains("\"deleted\": 0"), "{out}");
        assert_eq!(one::<i64>("SELECT current_rows FROM pgmart.snapshots WHERE name = 'public.sn_t'"), Some(3));
        assert_eq!(one::<i64>("SELECT rows FROM pgmart.snapshots WHERE name = 'public.sn_t'"), Some(5));
    }

    #[pg_test]
    fn type_2_retention_removes_versions_closed_long_ago() {
        customers("sn_r_src");
        run("SELECT pgmart.create_snapshot('sn_r', 'sn_r_src', 'timestamp', unique_key => '{id}', updated_at => 'updated_at', \
                    retention => '30 days')");
        // A change closes id 1's version at the new updated_at (2024): long ago, so it goes; a
        // delete closes id 2's at the run's time: kept.
        run("UPDATE sn_r_src SET status = 'gold', updated_at = '2024-02-01' WHERE id = 1");
        run("DELETE FROM sn_r_src WHERE id = 2");
        let out = text("SELECT pgmart.run_snapshot('sn_r')::text");
        assert!(out.contains("\"purged\": 1"), "{out}");
        assert_eq!(one::<i64>("SELECT count(*) FROM sn_r"), Some(3));
        assert_eq!(one::<i64>("SELECT count(*) FROM sn_r WHERE valid_to IS NOT NULL"), Some(1));
        assert_eq!(one::<i64>("SELECT rows FROM pgmart.snapshots WHERE name = 'public.sn_r'"), Some(3));
    }

    #[pg_test]
    fn a_check_snapshot_with_the_dbt_preset() {
        customers("sn_c_src");
        run("SELECT pgmart.create_snapshot('sn_c', 'sn_c_src', 'check', unique_key => '{id}', check_columns => '{status,region}', preset => 'dbt')");
        assert_eq!(
            text("SELECT string_agg(attname || ':' || format_type(atttypid, NULL), ',' ORDER BY attnum) FROM pg_attribute \
                   WHERE attrelid = 'sn_c'::regclass AND attnum > 4"),
            "dbt_scd_id:text,dbt_updated_at:timestamp without time zone,dbt_valid_from:timestamp without time zone,dbt_valid_to:timestamp without time zone"
        );
        // dbt's scd id: md5 of the key and the version's updated_at.
        assert_eq!(
            one::<bool>("SELECT bool_and(dbt_scd_id = md5(coalesce(id::varchar, '') || '|' || coalesce(dbt_updated_at::varchar, ''))) FROM sn_c"),
            Some(true)
        );
        // region NULL -> 'eu' is a change (a NULL on one side only); updated_at alone is not checked.
        run("UPDATE sn_c_src SET region = 'eu' WHERE id = 3");
        run("UPDATE sn_c_src SET updated_at = now() WHERE id = 1");
        let out = text("SELECT pgmart.run_snapshot('sn_c')::text");
        assert!(out.contains("\"inserted\": 1") && out.contains("\"closed\": 1"), "{out}");
        assert_eq!(one::<i64>("SELECT count(*) FROM sn_c WHERE id = 3"), Some(2));
        assert_eq!(one::<i64>("SELECT count(*) FROM sn_c WHERE id = 1"), Some(1));
    }

    #[pg_test]
    fn a_key_that_is_not_unique_fails_the_run_and_writes_nothing() {
        customers("sn_d_src");
        run("SELECT pgmart.create_snapshot('sn_d', 'sn_d_src', 'timestamp', unique_key => '{id}', updated_at => 'updated_at')");
        run("INSERT INTO sn_d_src VALUES (7, 'eu', 'a', '2024-03-01'), (7, 'us', 'b', '2024-03-02'), (1, 'x', 'y', '2024-05-01')");
        run("UPDATE sn_d_src SET status = 'changed', updated_at = '2024-04-01' WHERE id = 2");
        let err = crate::sql::subtransaction(|| Spi::run("SELECT pgmart.run_snapshot('sn_d')")).unwrap_err();
        assert_eq!(err.sqlstate, "23505");
        assert!(err.message.contains("(1), (7)"), "{}", err.message);
        assert_eq!(one::<i64>("SELECT count(*) FROM sn_d"), Some(3));
        run("DELETE FROM sn_d_src WHERE id IN (1, 7)");
        run("INSERT INTO sn_d_src VALUES (NULL, 'eu', 'a', '2024-03-01')");
        assert_eq!(sqlstate_of("SELECT pgmart.run_snapshot('sn_d')"), "23502");
        // A periodic snapshot with a key checks it too (and creation fails with it).
        assert_eq!(sqlstate_of("SELECT pgmart.create_snapshot('sn_d2', 'sn_d_src', 'periodic', unique_key => '{id}')"), "23502");
    }

    #[pg_test]
    fn bad_input_is_refused_with_a_clear_error() {
        customers("sn_b_src");
        let c = |args: &str| sqlstate_of(&format!("SELECT pgmart.create_snapshot({args})"));
        assert_eq!(c("'sn_b', 'sn_b_src', 'timestamp', updated_at => 'updated_at'"), "22023"); // no key
        assert_eq!(c("'sn_b', 'sn_b_src', 'check'"), "22023"); // no key
        assert_eq!(c("'sn_b', 'sn_b_src', 'timestamp', unique_key => '{id}'"), "22023"); // no updated_at
        assert_eq!(c("'sn_b', 'sn_b_src', 'timestamp', unique_key => '{nope}', updated_at => 'updated_at'"), "42703");
        assert_eq!(c("'sn_b', 'sn_b_src', 'timestamp', unique_key => '{id}', updated_at => 'status'"), "22023");
        assert_eq!(c("'sn_b', 'sn_b_src', 'check', unique_key => '{id}', check_columns => '{nope}'"), "42703");
        assert_eq!(c("'sn_b', 'sn_b_src', 'scd2'"), "22023");
        assert_eq!(c("'sn_b', 'sn_b_src', 'periodic', period => 'year'"), "22023");
        assert_eq!(c("'sn_b', 'sn_b_src', 'periodic', updated_at => 'updated_at'"), "22023");
        assert_eq!(c("'sn_b', 'sn_b_src', 'check', unique_key => '{id}', preset => 'dbt2'"), "22023");
        assert_eq!(c("'sn_b', 'sn_b_src', 'check', unique_key => '{id}', meta_columns => '{\"nope\": \"x\"}'"), "22023");
        assert_eq!(c("'sn_b', 'sn_b_src', 'check', unique_key => '{id}', timezone => 'Mars/Base'"), "22023");
        assert_eq!(c("'sn_b', 'sn_b_src', 'check', unique_key => '{id}', schedule => 'often'"), "22023");
        assert_eq!(c("NULL, 'sn_b_src', 'check', unique_key => '{id}'"), "22004");
        assert_eq!(c("'sn_b', 'sn_b_src', 'check', unique_key => ARRAY[NULL]"), "22004");
        assert_eq!(c("'a.b.c', 'sn_b_src', 'check', unique_key => '{id}'"), "22023");
        // A source column with the name of a column the snapshot adds.
        run("CREATE TABLE sn_b_src2 (id int, valid_from date)");
        assert_eq!(c("'sn_b', 'sn_b_src2', 'check', unique_key => '{id}'"), "42701");
        run("SELECT pgmart.create_snapshot('sn_b', 'sn_b_src2', 'check', unique_key => '{id}', meta_columns => '{\"valid_from\": \"pgmart_from\"}')");
        assert_eq!(c("'sn_b', 'sn_b_src', 'check', unique_key => '{id}'"), "42P07"); // the name is taken
        assert_eq!(sqlstate_of("SELECT pgmart.run_snapshot('no_such')"), "42704");
        assert_eq!(sqlstate_of("SELECT pgmart.drop_snapshot('no_such')"), "42704");
        // Nothing was left behind by the failures.
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.snapshots"), Some(1));
        run("SELECT pgmart.drop_snapshot('sn_b')");
        assert_eq!(one::<bool>("SELECT to_regclass('sn_b') IS NULL"), Some(true));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.jobs WHERE kind = 'snapshot'"), Some(0));
    }
}
