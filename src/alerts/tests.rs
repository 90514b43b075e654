//! `#[pg_test]`s for alert rules, their validation, payload trimming, the per-statement limit and
//! acknowledgement. (Notifications are delivered at commit, so their content is tested end to end
//! in pg_test/test_alerts.py; here the durable rows are checked.)

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use crate::sql;
    use pgrx::prelude::*;
    use crate::testing::{sqlstate_of, one, run};

    fn signals(table: &str) {
        run(&format!(
            "CREATE TABLE {table} (conversation_id bigint, signal_name text, signal_value text, confidence real, \
             note text, PRIMARY KEY (conversation_id, signal_name))"
        ));
    }

    fn alerts_of(rule: &str) -> i64 {
        one::<i64>(&format!("SELECT count(*) FROM pgmart.alerts WHERE source_kind = 'rule' AND source_name = '{rule}'"))
            .unwrap()
    }

    #[pg_test]
    fn rule_fires_only_for_matching_rows_with_the_row_as_payload() {
        signals("ar_sig1");
        let id = one::<i64>(
            "SELECT pgmart.add_alert_rule('ar_r1', 'ar_sig1', $$signal_name = 'risk_flag' AND signal_value = 'high'$$)",
        )
        .unwrap();
        assert!(id > 0);
        run("INSERT INTO ar_sig1 SELECT g, CASE WHEN g % 5 = 0 THEN 'risk_flag' ELSE 'sentiment' END, \
                    CASE WHEN g % 10 = 0 THEN 'high' ELSE 'low' END, 0.9 FROM generate_series(1, 100) g");
        assert_eq!(alerts_of("ar_r1"), 10);
        let ok = one::<bool>(
            "SELECT bool_and(severity = 'high' AND target = 'public.ar_sig1' AND payload->>'signal_name' = 'risk_flag' \
                             AND payload->>'signal_value' = 'high' AND (payload->>'conversation_id')::int % 10 = 0 \
                             AND acked_at IS NULL) \
               FROM pgmart.alerts WHERE source_name = 'ar_r1'",
        );
        assert_eq!(ok, Some(true));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'ar_r1'"), Some(10));
        let stored = one::<bool>(
            "SELECT target = 'public.ar_sig1' AND severity = 'high' AND channel = 'pgmart_alerts' AND NOT on_update \
                    AND owner = current_user FROM pgmart.rules WHERE name = 'ar_r1'",
        );
        assert_eq!(stored, Some(true));
        // UPDATEs do not fire a rule without on_update.
        run("UPDATE ar_sig1 SET signal_value = 'high' WHERE signal_name = 'risk_flag'");
        assert_eq!(alerts_of("ar_r1"), 10);
    }

    #[pg_test]
    fn payload_columns_severity_and_channel_are_used() {
        signals("ar_sig2");
        run("SELECT pgmart.add_alert_rule('ar_r2', 'ar_sig2', 'confidence > 0.5', severity => 'critical', \
                    channel => 'risk_team', payload_columns => ARRAY['conversation_id', 'confidence'])");
        run("INSERT INTO ar_sig2 VALUES (1, 'a', 'x', 0.9, 'secret'), (2, 'a', 'x', 0.1, 'n')");
        let payload = one::<pgrx::JsonB>("SELECT payload FROM pgmart.alerts WHERE source_name = 'ar_r2'").unwrap();
        assert_eq!(payload.0, serde_json::json!({"conversation_id": 1, "confidence": 0.9}));
        assert_eq!(one::<String>("SELECT severity FROM pgmart.alerts WHERE source_name = 'ar_r2'").as_deref(), Some("critical"));
        assert_eq!(one::<String>("SELECT channel FROM pgmart.alert_rules WHERE name = 'ar_r2'").as_deref(), Some("risk_team"));
    }

    #[pg_test]
    fn on_update_fires_only_when_a_row_newly_matches() {
        signals("ar_sig3");
        run("SELECT pgmart.add_alert_rule('ar_r3', 'ar_sig3', $$signal_name = 'risk_flag' AND signal_value = 'high'$$, on_update => true)");
        let upsert = |c: i64, v: &str| {
            run(&format!(
                "INSERT INTO ar_sig3 VALUES ({c}, 'risk_flag', '{v}', 0.5) \
                 ON CONFLICT (conversation_id, signal_name) DO UPDATE SET signal_value = EXCLUDED.signal_value, confidence = EXCLUDED.confidence"
            ))
        };
        upsert(1, "high"); // new high-risk signal: 1
        upsert(1, "high"); // same again: no new alert
        upsert(2, "low");
        upsert(2, "high"); // low -> high: 2
        upsert(2, "high");
        upsert(3, "low");
        assert_eq!(alerts_of("ar_r3"), 2);
        // Back to low and high again is a new match.
        upsert(1, "low");
        upsert(1, "high");
        assert_eq!(alerts_of("ar_r3"), 3);
        // A NULL old value counts as "did not match".
        run("INSERT INTO ar_sig3 VALUES (4, 'risk_flag', NULL, 0.5)");
        run("UPDATE ar_sig3 SET signal_value = 'high' WHERE conversation_id = 4");
        assert_eq!(alerts_of("ar_r3"), 4);
    }

    #[pg_test]
    fn bad_input_is_rejected_with_the_right_sqlstate_and_changes_nothing() {
        signals("ar_sig4");
        run("CREATE VIEW ar_view4 AS SELECT * FROM ar_sig4");
        run("CREATE SEQUENCE ar_seq4");
        run("CREATE TABLE ar_other4 (x int)");
        let add = |args: &str| sqlstate_of(&format!("SELECT pgmart.add_alert_rule({args})"));
        assert_eq!(add("'b1', 'ar_sig4', 'no_such_column = 1'"), "42703");
        assert_eq!(add("'b2', 'ar_sig4', 'confidence + 1'"), "22023");
        assert_eq!(add("'b3', 'ar_sig4', $$signal_name$$"), "22023");
        assert_eq!(add("'b4', 'ar_sig4', 'true', severity => 'urgent'"), "22023");
        assert_eq!(add("'b5', 'ar_sig4', 'true', channel => 'Bad Channel'"), "22023");
        assert_eq!(add("'b6', 'ar_sig4', 'true', channel => 'x;y'"), "22023");
        assert_eq!(add("'b7', 'ar_view4', 'true'"), "42809");
        assert_eq!(add("'b8', 'ar_seq4', 'true'"), "42809");
        assert_eq!(add("'b9', 'no_such_table4', 'true'"), "42P01");
        assert_eq!(add("'b10', 'ar_sig4', $$conversation_id IN (SELECT x FROM ar_other4)$$"), "22023");
        assert_eq!(add("'b11', 'ar_sig4', $$true; DROP TABLE ar_other4$$"), "22023");
        assert_eq!(add("'b12', 'ar_sig4', $$true) FROM ar_other4 --$$"), "22023");
        assert_eq!(add("'b13', 'ar_sig4', $$random() > 0.5$$"), "22023");
        assert_eq!(add("'b14', 'ar_sig4', $$count(*) > 0$$"), "22023");
        assert_eq!(add("'b15', 'ar_sig4', $$pg_notify('x', 'y') IS NULL$$"), "22023");
        assert_eq!(add("'b16', 'ar_sig4', 'true', payload_columns => ARRAY['nope']"), "42703");
        assert_eq!(add("'b17', 'ar_sig4', ''"), "22023");
        assert_eq!(add("'', 'ar_sig4', 'true'"), "22023");
        // A syntax error is an invalid condition (22023), like every other refusal of a fragment.
        assert_eq!(add("'b18', 'ar_sig4', 'signal_name = '"), "22023");
        // Nothing was stored and no trigger was created.
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.alert_rules WHERE name ~ '^b[0-9]+$' OR name = ''"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ar_sig4'::regclass"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM ar_other4"), Some(0));
        // Duplicate names.
        run("SELECT pgmart.add_alert_rule('ar_dup4', 'ar_sig4', 'true')");
        assert_eq!(add("'ar_dup4', 'ar_sig4', 'confidence > 0'"), "42710");
        // Only the table's owner may add a rule on it.
        run("CREATE ROLE ar_not_owner4");
        run("GRANT ALL ON ar_sig4 TO ar_not_owner4");
        run("GRANT USAGE ON SCHEMA pgmart TO ar_not_owner4");
        run("SET LOCAL ROLE ar_not_owner4");
        let st = add("'b19', 'ar_sig4', 'true'");
        run("RESET ROLE");
        assert_eq!(st, "42501");
        // Unknown rule names for drop_alert_rule.
        assert_eq!(sqlstate_of("SELECT pgmart.drop_alert_rule('no_such_rule')"), "42704");
    }

    #[pg_test]
    fn writers_need_no_privilege_on_pgmart() {
        signals("ar_sig5");
        run("SELECT pgmart.add_alert_rule('ar_r5', 'ar_sig5', $$signal_value = 'high'$$)");
        run("CREATE ROLE ar_writer5");
        run("GRANT INSERT ON ar_sig5 TO ar_writer5");
        run("SET LOCAL ROLE ar_writer5");
        let r = sql::subtransaction(|| Spi::run("INSERT INTO ar_sig5 VALUES (1, 'risk_flag', 'high', 1)"));
        run("RESET ROLE");
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(alerts_of("ar_r5"), 1);
        // The writer cannot read or write pgmart.alerts itself.
        run("SET LOCAL ROLE ar_writer5");
        let st = sqlstate_of("SELECT count(*) FROM pgmart.alerts");
        run("RESET ROLE");
        assert_eq!(st, "42501");
    }

    #[pg_test]
    fn large_payloads_are_trimmed_in_the_notification_but_kept_whole_in_the_row() {
        signals("ar_sig6");
        run("SELECT pgmart.add_alert_rule('ar_r6', 'ar_sig6', $$signal_value = 'high'$$)");
        // pg_notify fails on payloads of 8000 bytes or more, so this would ERROR if untrimmed.
        run("INSERT INTO ar_sig6 VALUES (1, 'risk_flag', 'high', 1, repeat('x', 20000))");
        assert_eq!(
            one::<i32>("SELECT length(payload->>'note') FROM pgmart.alerts WHERE source_name = 'ar_r6'"),
            Some(20000)
        );
        let msg = serde_json::json!({"alert_id": 1, "payload": {"note": "x".repeat(20000), "signal_value": "high"}});
        let fitted = crate::alerts::notify::fit(&msg, crate::alerts::notify::MAX_PAYLOAD);
        assert!(fitted.len() < 8000);
        let v: serde_json::Value = serde_json::from_str(&fitted).unwrap();
        assert_eq!(v["truncated"], true);
        assert_eq!(v["alert_id"], 1);
    }

    #[pg_test]
    fn every_alert_has_its_row_beyond_the_notify_limit() {
        signals("ar_sig7");
        run("SELECT pgmart.add_alert_rule('ar_r7', 'ar_sig7', $$signal_value = 'high'$$)");
        run("SET LOCAL pgmart.alert_notify_limit = 5");
        run("INSERT INTO ar_sig7 SELECT g, 'risk_flag', 'high', 1 FROM generate_series(1, 250) g");
        assert_eq!(alerts_of("ar_r7"), 250);
        run("INSERT INTO ar_sig7 SELECT g, 'risk_flag', 'high', 1 FROM generate_series(251, 260) g");
        assert_eq!(alerts_of("ar_r7"), 260);
    }

    #[pg_test]
    fn rules_on_partitioned_tables_fire_for_direct_inserts_into_partitions_made_later() {
        run("CREATE TABLE ar_part8 (at date NOT NULL, signal_value text) PARTITION BY RANGE (at)");
        run("CREATE TABLE ar_part8_p1 PARTITION OF ar_part8 FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')");
        run("SELECT pgmart.add_alert_rule('ar_r8', 'ar_part8', $$signal_value = 'high'$$)");
        run("CREATE TABLE ar_part8_p2 PARTITION OF ar_part8 FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')");
        run("INSERT INTO ar_part8 VALUES ('2024-01-05', 'high'), ('2024-02-05', 'high'), ('2024-02-06', 'low')");
        run("INSERT INTO ar_part8_p1 VALUES ('2024-01-07', 'high')");
        run("INSERT INTO ar_part8_p2 VALUES ('2024-02-07', 'high'), ('2024-02-08', 'low')");
        assert_eq!(alerts_of("ar_r8"), 4);
        assert_eq!(
            one::<bool>("SELECT bool_and(target = 'public.ar_part8') FROM pgmart.alerts WHERE source_name = 'ar_r8'"),
            Some(true)
        );
        // Dropping the rule drops the clones on every partition too.
        run("SELECT pgmart.drop_alert_rule('ar_r8')");
        run("INSERT INTO ar_part8_p2 VALUES ('2024-02-09', 'high')");
        assert_eq!(alerts_of("ar_r8"), 4);
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('ar_part8'::regclass, 'ar_part8_p1'::regclass, 'ar_part8_p2'::regclass)"),
            Some(0)
        );
    }

    #[pg_test]
    fn drop_alert_rule_stops_it_and_keeps_its_alerts() {
        signals("ar_sig9");
        run("SELECT pgmart.add_alert_rule('ar_r9', 'ar_sig9', $$signal_value = 'high'$$, on_update => true)");
        run("INSERT INTO ar_sig9 VALUES (1, 'risk_flag', 'high', 1)");
        run("SELECT pgmart.drop_alert_rule('ar_r9')");
        run("INSERT INTO ar_sig9 VALUES (2, 'risk_flag', 'high', 1)");
        assert_eq!(alerts_of("ar_r9"), 1);
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.alert_rules WHERE name = 'ar_r9'"), Some(0));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'ar_sig9'::regclass AND NOT tgisinternal"), Some(0));
        // The name can be used again.
        run("SELECT pgmart.add_alert_rule('ar_r9', 'ar_sig9', $$signal_value = 'low'$$)");
    }

    #[pg_test]
    fn ack_alert_closes_an_alert_once() {
        signals("ar_sig10");
        run("SELECT pgmart.add_alert_rule('ar_r10', 'ar_sig10', $$signal_value = 'high'$$)");
        run("INSERT INTO ar_sig10 VALUES (1, 'risk_flag', 'high', 1), (2, 'risk_flag', 'high', 1)");
        let id = one::<i64>("SELECT min(alert_id) FROM pgmart.open_alerts WHERE source_name = 'ar_r10'").unwrap();
        assert_eq!(one::<bool>(&format!("SELECT pgmart.ack_alert({id}, 'looked at it')")), Some(true));
        assert_eq!(one::<bool>(&format!("SELECT pgmart.ack_alert({id})")), Some(false));
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'ar_r10'"), Some(1));
        let ok = one::<bool>(&format!(
            "SELECT acked_at IS NOT NULL AND ack_note = 'looked at it' AND acked_by = current_user FROM pgmart.alerts WHERE alert_id = {id}"
        ));
        assert_eq!(ok, Some(true));
        assert_eq!(sqlstate_of("SELECT pgmart.ack_alert(-1)"), "42704");
        // Another role may not acknowledge it.
        run("CREATE ROLE ar_stranger10");
        let other = one::<i64>("SELECT max(alert_id) FROM pgmart.open_alerts WHERE source_name = 'ar_r10'").unwrap();
        run("SET LOCAL ROLE ar_stranger10");
        let st = sqlstate_of(&format!("SELECT pgmart.ack_alert({other})"));
        run("RESET ROLE");
        assert_eq!(st, "42501");
    }

    #[pg_test]
    fn job_health_alerts_are_open_and_can_be_acked_and_acked_history_is_pruned() {
        run("SELECT pgmart.schedule_sql('ar_failing11', 'SELECT 1/0', '1 hour', max_retries => 0)");
        for _ in 0..3 {
            run("UPDATE pgmart.job SET next_run_at = clock_timestamp() - interval '1 second' WHERE name = 'ar_failing11'");
            run("SELECT * FROM pgmart.refresh_due()");
        }
        assert_eq!(
            one::<i64>("SELECT count(*) FROM pgmart.open_alerts WHERE source_kind = 'job' AND source_name = 'ar_failing11'"),
            Some(1)
        );
        let id = one::<i64>("SELECT alert_id FROM pgmart.open_alerts WHERE source_name = 'ar_failing11'").unwrap();
        assert_eq!(one::<bool>(&format!("SELECT pgmart.ack_alert({id}, 'fixing')")), Some(true));
        // Acked long ago: pruned. Open, however old: kept.
        run(&format!("UPDATE pgmart.alert SET acked_at = now() - interval '400 days', raised_at = now() - interval '401 days' WHERE alert_id = {id}"));
        signals("ar_sig11");
        run("SELECT pgmart.add_alert_rule('ar_r11', 'ar_sig11', $$signal_value = 'high'$$)");
        run("INSERT INTO ar_sig11 VALUES (1, 'risk_flag', 'high', 1)");
        run("UPDATE pgmart.alert SET raised_at = now() - interval '401 days' WHERE source_name = 'ar_r11'");
        // Pruning is skipped while another session prunes (tests run in parallel).
        if one::<bool>("SELECT pg_try_advisory_xact_lock(hashtext('pgmart.prune'))") == Some(true) {
            crate::jobs::history::prune();
            assert_eq!(one::<i64>(&format!("SELECT count(*) FROM pgmart.alerts WHERE alert_id = {id}")), Some(0));
        }
        assert_eq!(alerts_of("ar_r11"), 1);
    }

    #[pg_test]
    fn a_table_owner_without_superuser_manages_rules_on_their_own_table() {
        run("CREATE ROLE ar_owner12");
        run("GRANT USAGE ON SCHEMA pgmart TO ar_owner12");
        run("GRANT CREATE ON SCHEMA public TO ar_owner12");
        run("GRANT SELECT ON pgmart.open_alerts TO ar_owner12");
        // Someone else's rule: its alerts are not shown to ar_owner12.
        signals("ar_sig12");
        run("SELECT pgmart.add_alert_rule('ar_other12', 'ar_sig12', $$signal_value = 'high'$$)");
        run("INSERT INTO ar_sig12 VALUES (1, 'risk_flag', 'high', 1)");
        run("SET LOCAL ROLE ar_owner12");
        let r = sql::subtransaction(|| {
            Spi::run("CREATE TABLE ar_own12 (id int, level text)").unwrap();
            Spi::run("SELECT pgmart.add_alert_rule('ar_r12', 'ar_own12', $$level = 'high'$$, severity => 'medium')").unwrap();
            Spi::run("INSERT INTO ar_own12 VALUES (1, 'high'), (2, 'low')").unwrap();
            let mine = Spi::get_one::<i64>("SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'ar_r12'").unwrap();
            let others = Spi::get_one::<i64>("SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'ar_other12'").unwrap();
            let acked = Spi::get_one::<bool>("SELECT bool_and(pgmart.ack_alert(alert_id)) FROM pgmart.open_alerts WHERE source_name = 'ar_r12'").unwrap();
            Spi::run("SELECT pgmart.drop_alert_rule('ar_r12')").unwrap();
            (mine, others, acked)
        });
        let other_drop = sqlstate_of("SELECT pgmart.drop_alert_rule('ar_other12')");
        run("RESET ROLE");
        assert_eq!(r.map_err(|c| c.message), Ok((Some(1), Some(0), Some(true))));
        assert_eq!(other_drop, "42704"); // "does not exist or you may not act on it"
        assert_eq!(alerts_of("ar_r12"), 1);
        assert_eq!(one::<i64>("SELECT count(*) FROM pgmart.alert_rules WHERE name = 'ar_r12'"), Some(0));
    }
}
