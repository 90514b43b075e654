"""End-to-end: alert rules heard by a real LISTEN client. Alerts arrive with their payload and id;
nothing is lost while nobody listens; rolled-back data raises nothing; partitions (even ones made
later) fire their parent's rule; a statement over the limit sends one summary; a failing job makes
one open alert; the conversation-signals seed scenario fires once per new high-risk signal."""

import json

import pytest



# The scheduler is off so that only the sessions under test run jobs.
CLUSTER_SETTINGS = {"pgmart.enabled": "off"}


def listener(cluster, channel="pgmart_alerts"):
    conn = cluster.connect()
    conn.execute(f"LISTEN {channel}")
    return conn


def heard(conn, timeout=2.0, stop_after=None):
    return [json.loads(n.payload) for n in conn.notifies(timeout=timeout, stop_after=stop_after)]


def signals_table(cluster, name):
    cluster.sql(f"CREATE TABLE {name} (conversation_id bigint, signal_name text, signal_value text, "
                "confidence real, note text, PRIMARY KEY (conversation_id, signal_name))")


def test_alerts_arrive_with_the_right_payload(cluster):
    signals_table(cluster, "sig_a")
    cluster.sql("SELECT pgmart.add_alert_rule('risk_a', 'sig_a', "
                "$$signal_name = 'risk_flag' AND signal_value = 'high'$$, severity => 'critical')")
    with listener(cluster) as l:
        cluster.sql("INSERT INTO sig_a VALUES (1, 'risk_flag', 'high', 0.97, 'angry customer'), "
                    "(2, 'risk_flag', 'low', 0.2, NULL), (3, 'sentiment', 'high', 0.5, NULL)")
        got = heard(l, stop_after=1)
        assert len(got) == 1, got
        m = got[0]
        assert m["source_kind"] == "rule" and m["rule"] == "risk_a" and m["severity"] == "critical"
        assert m["source_name"] == "risk_a" and m["table"] == "public.sig_a"  # the shape health alerts share
        assert m["target"] == "public.sig_a"
        assert m["payload"] == {"conversation_id": 1, "signal_name": "risk_flag", "signal_value": "high",
                                "confidence": 0.97, "note": "angry customer"}
        row = cluster.sql("SELECT source_name, severity, payload->>'note' FROM pgmart.alerts WHERE alert_id = %s",
                          (m["alert_id"],))
        assert row == [("risk_a", "critical", "angry customer")]
        assert heard(l, timeout=0.5) == []

        # A payload over 8000 bytes arrives trimmed to valid JSON; the row keeps all of it.
        cluster.sql("INSERT INTO sig_a VALUES (4, 'risk_flag', 'high', 0.9, repeat('x', 20000))")
        got = heard(l, stop_after=1)
        assert len(got) == 1
        assert got[0]["truncated"] is True and got[0]["payload"]["conversation_id"] == 4
        assert "note" not in got[0]["payload"]
        assert cluster.one("SELECT length(payload->>'note') FROM pgmart.alerts WHERE alert_id = %s",
                           (got[0]["alert_id"],)) == 20000


def test_alerts_raised_while_nobody_listens_are_all_kept(cluster):
    signals_table(cluster, "sig_b")
    cluster.sql("SELECT pgmart.add_alert_rule('risk_b', 'sig_b', $$signal_value = 'high'$$, channel => 'risk_b')")
    for i in range(30):
        cluster.sql("INSERT INTO sig_b VALUES (%s, 'risk_flag', 'high', 1)", (i,))
    assert cluster.one("SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'risk_b'") == 30
    assert cluster.one("SELECT count(DISTINCT payload->>'conversation_id') FROM pgmart.alerts "
                       "WHERE source_name = 'risk_b'") == 30


def test_a_rolled_back_insert_raises_nothing(cluster):
    signals_table(cluster, "sig_c")
    cluster.sql("SELECT pgmart.add_alert_rule('risk_c', 'sig_c', $$signal_value = 'high'$$)")
    with listener(cluster) as l:
        with cluster.connect(autocommit=False) as w:
            w.execute("INSERT INTO sig_c VALUES (1, 'risk_flag', 'high', 1)")
            w.rollback()
        assert heard(l, timeout=1.0) == []
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'risk_c'") == 0


def test_direct_inserts_into_partitions_fire_the_rule(cluster):
    cluster.sql("CREATE TABLE sig_p (at date NOT NULL, signal_name text, signal_value text) PARTITION BY RANGE (at)")
    cluster.sql("CREATE TABLE sig_p_2024_01 PARTITION OF sig_p FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')")
    cluster.sql("SELECT pgmart.add_alert_rule('risk_p', 'sig_p', $$signal_value = 'high'$$)")
    # A partition created after the rule gets it too.
    cluster.sql("CREATE TABLE sig_p_2024_02 PARTITION OF sig_p FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')")
    with listener(cluster) as l:
        cluster.sql("INSERT INTO sig_p_2024_01 VALUES ('2024-01-03', 'risk_flag', 'high')")
        cluster.sql("INSERT INTO sig_p_2024_02 VALUES ('2024-02-03', 'risk_flag', 'high'), ('2024-02-04', 'x', 'low')")
        cluster.sql("INSERT INTO sig_p VALUES ('2024-02-05', 'risk_flag', 'high')")
        got = heard(l, stop_after=3)
        assert sorted(m["payload"]["at"] for m in got) == ["2024-01-03", "2024-02-03", "2024-02-05"]
        assert {m["table"] for m in got} == {"public.sig_p_2024_01", "public.sig_p_2024_02"}
        assert all(m["target"] == "public.sig_p" for m in got)
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'risk_p'") == 3


def test_a_statement_over_the_limit_sends_one_summary(cluster):
    signals_table(cluster, "sig_d")
    cluster.sql("SELECT pgmart.add_alert_rule('risk_d', 'sig_d', $$signal_value = 'high'$$, channel => 'risk_d')")
    with listener(cluster, "risk_d") as l, cluster.connect() as w:
        w.execute("SET pgmart.alert_notify_limit = 5")
        w.execute("INSERT INTO sig_d SELECT g, 'risk_flag', 'high', 1 FROM generate_series(1, 50) g")
        got = heard(l, timeout=3.0)
        single = [m for m in got if not m.get("summary")]
        summary = [m for m in got if m.get("summary")]
        assert len(single) == 5 and len(summary) == 1, got
        assert summary[0]["count"] == 45 and summary[0]["rules"] == ["risk_d"]
        ids = cluster.sql("SELECT alert_id FROM pgmart.alerts WHERE source_name = 'risk_d' ORDER BY alert_id")
        assert len(ids) == 50
        assert summary[0]["first_alert_id"] == ids[5][0] and summary[0]["last_alert_id"] == ids[-1][0]
        # The next statement starts from zero again.
        w.execute("INSERT INTO sig_d SELECT g, 'risk_flag', 'high', 1 FROM generate_series(51, 53) g")
        got = heard(l, timeout=1.5)
        assert len(got) == 3 and not any(m.get("summary") for m in got)


def test_limit_summary_for_direct_partition_inserts_is_sent_at_commit(cluster):
    cluster.sql("CREATE TABLE sig_q (at date NOT NULL, signal_value text) PARTITION BY RANGE (at)")
    cluster.sql("SELECT pgmart.add_alert_rule('risk_q', 'sig_q', $$signal_value = 'high'$$, channel => 'risk_q')")
    cluster.sql("CREATE TABLE sig_q_1 PARTITION OF sig_q FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
    with listener(cluster, "risk_q") as l, cluster.connect() as w:
        w.execute("SET pgmart.alert_notify_limit = 3")
        w.execute("INSERT INTO sig_q_1 SELECT date '2024-01-01' + g, 'high' FROM generate_series(0, 19) g")
        got = heard(l, timeout=2.0)
        assert len([m for m in got if not m.get("summary")]) == 3
        assert [m["count"] for m in got if m.get("summary")] == [17]
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'risk_q'") == 20


def test_a_repeatedly_failing_job_makes_one_open_alert(cluster):
    with listener(cluster) as l:
        job = cluster.one("SELECT pgmart.schedule_sql('always_fails', 'SELECT 1/0', '1 hour', max_retries => 0)")
        for _ in range(4):
            cluster.sql("UPDATE pgmart.job SET next_run_at = now() - interval '1 second' WHERE job_id = %s", (job,))
            statuses = cluster.sql("SELECT status FROM pgmart.refresh_due() WHERE job_id = %s", (job,))
            assert statuses == [("failed",)]
        got = [m for m in heard(l, timeout=1.5) if m.get("source_kind") == "job"]
        assert len(got) == 1 and got[0]["source_name"] == "always_fails" and got[0]["job_id"] == job
        assert {"alert_id", "source_kind", "source_name", "severity", "target", "payload"} <= set(got[0])
    rows = cluster.sql("SELECT alert_id, severity FROM pgmart.open_alerts WHERE source_kind = 'job' "
                       "AND source_name = 'always_fails'")
    assert len(rows) == 1 and rows[0][1] == "high"
    assert cluster.one("SELECT pgmart.ack_alert(%s, 'disk full, fixed')", (rows[0][0],)) is True
    # After acknowledging, the next failure opens a new alert.
    cluster.sql("UPDATE pgmart.job SET next_run_at = now() - interval '1 second' WHERE job_id = %s", (job,))
    cluster.sql("SELECT * FROM pgmart.refresh_due()")
    assert cluster.one("SELECT count(*) FROM pgmart.open_alerts WHERE source_name = 'always_fails'") == 1
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'always_fails'") == 2


def test_seed_conversation_signals_upsert_fires_once_per_new_high_risk_signal(cluster):
    cluster.sql("CREATE TABLE conversation_signals (conversation_id bigint, signal_name text, signal_value text, "
                "confidence numeric, PRIMARY KEY (conversation_id, signal_name))")
    cluster.sql("SELECT pgmart.add_alert_rule('conversation_risk', 'conversation_signals', "
                "$$signal_name = 'risk_flag' AND signal_value = 'high'$$, channel => 'risk', "
                "payload_columns => ARRAY['conversation_id', 'confidence'], on_update => true)")
    cluster.sql("CREATE ROLE signal_writer LOGIN")
    cluster.sql("GRANT SELECT, INSERT, UPDATE ON conversation_signals TO signal_writer")
    upsert = ("INSERT INTO conversation_signals VALUES (%s, %s, %s, %s) ON CONFLICT (conversation_id, signal_name) "
              "DO UPDATE SET signal_value = EXCLUDED.signal_value, confidence = EXCLUDED.confidence")
    with listener(cluster, "risk") as l, cluster.connect(user="signal_writer") as w:
        for conv, name, value, conf in [
            (1, "risk_flag", "high", 0.91),   # new high risk: alert
            (1, "risk_flag", "high", 0.95),   # re-scored, still high: no alert
            (1, "sentiment", "negative", 0.8),
            (2, "risk_flag", "low", 0.3),
            (2, "risk_flag", "high", 0.85),   # low -> high: alert
            (2, "risk_flag", "high", 0.86),
            (3, "risk_flag", "medium", 0.5),
        ]:
            w.execute(upsert, (conv, name, value, conf))
        # A batch upsert in one statement: one new, one already high.
        w.execute("INSERT INTO conversation_signals VALUES (4, 'risk_flag', 'high', 0.99), (1, 'risk_flag', 'high', 0.97) "
                  "ON CONFLICT (conversation_id, signal_name) DO UPDATE SET signal_value = EXCLUDED.signal_value, "
                  "confidence = EXCLUDED.confidence")
        got = heard(l, timeout=2.0)
    assert sorted(m["payload"]["conversation_id"] for m in got) == [1, 2, 4]
    assert all(set(m["payload"]) == {"conversation_id", "confidence"} for m in got)
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'conversation_risk'") == 3


def test_rules_survive_pg_dump_and_restore(cluster):
    cluster.createdb("dump_src")
    cluster.sql("CREATE TABLE s (id int, v text)", dbname="dump_src")
    cluster.sql("SELECT pgmart.add_alert_rule('dump_rule', 's', $$v = 'high'$$)", dbname="dump_src")
    cluster.dump_restore("dump_src", "dump_dst")
    assert cluster.one("SELECT count(*) FROM pgmart.alert_rules WHERE name = 'dump_rule'", dbname="dump_dst") == 1
    cluster.sql("INSERT INTO s VALUES (1, 'high'), (2, 'low')", dbname="dump_dst")
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'dump_rule'", dbname="dump_dst") == 1
    cluster.sql("SELECT pgmart.drop_alert_rule('dump_rule')", dbname="dump_dst")


def test_a_statement_rolled_back_to_a_savepoint_leaves_no_counts_behind(cluster):
    signals_table(cluster, "sig_s")
    cluster.sql("SELECT pgmart.add_alert_rule('risk_s', 'sig_s', $$signal_value = 'high'$$, channel => 'risk_s')")
    cluster.sql("CREATE FUNCTION fail_on_10() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.conversation_id = 10 THEN RAISE EXCEPTION 'boom'; END IF; RETURN NULL; END $$")
    cluster.sql("CREATE TRIGGER zz_fail AFTER INSERT ON sig_s FOR EACH ROW EXECUTE FUNCTION fail_on_10()")
    with listener(cluster, "risk_s") as l, cluster.connect(autocommit=False) as w:
        w.execute("SET pgmart.alert_notify_limit = 3")
        w.execute("SAVEPOINT s")
        with pytest.raises(Exception):
            w.execute("INSERT INTO sig_s SELECT g, 'risk_flag', 'high', 1 FROM generate_series(1, 12) g")
        w.execute("ROLLBACK TO SAVEPOINT s")
        w.execute("INSERT INTO sig_s SELECT g, 'risk_flag', 'high', 1 FROM generate_series(100, 101) g")
        w.commit()
        got = heard(l, timeout=1.5)
    assert sorted(m["payload"]["conversation_id"] for m in got) == [100, 101], got
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'risk_s'") == 2


def test_alerts_are_written_at_commit_even_if_the_statement_trigger_was_disabled(cluster):
    signals_table(cluster, "sig_x")
    rule = cluster.one("SELECT pgmart.add_alert_rule('risk_x', 'sig_x', $$signal_value = 'high'$$, channel => 'risk_x')")
    cluster.sql(f"ALTER TABLE sig_x DISABLE TRIGGER pgmart_alert_{rule}_stmt")
    with listener(cluster, "risk_x") as l:
        cluster.sql("INSERT INTO sig_x SELECT g, 'risk_flag', 'high', 1 FROM generate_series(1, 3) g")
        got = heard(l, timeout=1.5)
    assert sorted(m["payload"]["conversation_id"] for m in got) == [1, 2, 3]
    assert cluster.one("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'risk_x'") == 3
