"""Benchmark: the cost of risk alerts on a bulk insert. INSERT ... SELECT of 1,000,000 rows (0.05%
match signal_name = 'risk_flag' AND signal_value = 'high') into
  (a) a plain table,
  (b) the same with the usual PL/pgSQL row trigger calling pg_notify (the anchor),
  (c) the same with a pgmart alert rule (row trigger whose WHEN carries the condition),
  (d) the other design the issue names: a statement-level trigger with a transition table and one
      set-based query (measured for the record; pgmart does not use it).
Each is run several times, interleaved, and the median is reported."""

import os
import statistics
import time

import pytest


ROWS = 1_000_000
ROUNDS = 7
COND = "signal_name = 'risk_flag' AND signal_value = 'high'"
# 1 row in 2000 (0.05%) matches; many more match one half of the condition.
FILL = f"""
INSERT INTO {{t}} (conversation_id, signal_name, signal_value, confidence)
SELECT g,
       CASE WHEN g % 2000 = 0 OR g % 3 = 0 THEN 'risk_flag' ELSE 'sentiment' END,
       CASE WHEN g % 2000 = 0 OR g % 7 = 0 THEN CASE WHEN g % 3 = 0 AND g % 2000 <> 0 THEN 'medium' ELSE 'high' END
            ELSE 'low' END,
       (g % 100) / 100.0
  FROM generate_series(1, {ROWS}) g
"""


def backend_cpu(pid):
    """CPU seconds (user + system) the server process `pid` has used so far. The machine running
    the benchmark is shared, so wall-clock times are noisy; the backend's own CPU time is not."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


CLUSTER_SETTINGS = {
        "pgmart.enabled": "off", "shared_buffers": "'512MB'", "max_wal_size": "'8GB'",
        "checkpoint_timeout": "'1h'", "synchronous_commit": "off", "autovacuum": "off",
    }


@pytest.mark.bench
def test_bench_alert_rule_overhead(cluster):
    with cluster.connect() as conn:
        for t in ("plain", "plpgsql", "pgmart", "stmt"):
            conn.execute(f"CREATE TABLE sig_{t} (conversation_id bigint, signal_name text, signal_value text, "
                         "confidence real)")
        conn.execute(f"""
            CREATE FUNCTION notify_risk() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.signal_name = 'risk_flag' AND NEW.signal_value = 'high' THEN
                    PERFORM pg_notify('risk', row_to_json(NEW)::text);
                END IF;
                RETURN NEW;
            END $$""")
        conn.execute("CREATE TRIGGER notify_risk AFTER INSERT ON sig_plpgsql FOR EACH ROW EXECUTE FUNCTION notify_risk()")
        conn.execute(f"SELECT pgmart.add_alert_rule('bench_risk', 'sig_pgmart', $${COND}$$, channel => 'risk')")
        # The do-it-yourself durable alert: a table of one's own, as pgmart's is (pgmart.alert is
        # written by pgmart only; pgmart.alerts is the readers' view).
        conn.execute("CREATE TABLE diy_alerts (alert_id bigserial PRIMARY KEY, raised_at timestamptz NOT NULL "
                     "DEFAULT clock_timestamp(), source_kind text, source_name text, severity text, target text, "
                     "payload jsonb)")
        conn.execute("""
            CREATE FUNCTION stmt_risk() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE sent bigint;
            BEGIN
                WITH a AS (
                    INSERT INTO diy_alerts (source_kind, source_name, severity, target, payload)
                    SELECT 'rule', 'bench_stmt', 'high', 'public.sig_stmt', to_jsonb(n)
                      FROM new_rows n WHERE n.signal_name = 'risk_flag' AND n.signal_value = 'high'
                    RETURNING alert_id, payload)
                SELECT count(pg_notify('risk', json_build_object('alert_id', alert_id, 'payload', payload)::text))
                  INTO sent FROM (SELECT * FROM a ORDER BY alert_id LIMIT 100) s;
                RETURN NULL;
            END $$""")
        conn.execute("CREATE TRIGGER stmt_risk AFTER INSERT ON sig_stmt REFERENCING NEW TABLE AS new_rows "
                     "FOR EACH STATEMENT EXECUTE FUNCTION stmt_risk()")

        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        times = {t: [] for t in ("plain", "plpgsql", "pgmart", "stmt")}
        cpu = {t: [] for t in times}
        order = list(times)
        for r in range(ROUNDS):
            for t in (order if r % 2 == 0 else list(reversed(order))):
                conn.execute(f"TRUNCATE sig_{t}")
                conn.execute("CHECKPOINT")
                start, start_cpu = time.perf_counter(), backend_cpu(pid)
                conn.execute(FILL.format(t=f"sig_{t}"))
                times[t].append(time.perf_counter() - start)
                cpu[t].append(backend_cpu(pid) - start_cpu)
        matched = conn.execute(f"SELECT count(*) FROM sig_pgmart WHERE {COND}").fetchone()[0]
        alerts = conn.execute("SELECT count(*) FROM pgmart.alerts WHERE source_name = 'bench_risk'").fetchone()[0]

    def report(label, runs):
        med = {t: statistics.median(v) for t, v in runs.items()}
        over = {t: med[t] / med["plain"] - 1 for t in med}
        print(f"  {label}:")
        print(f"    (a) plain table                          {med['plain']:7.3f} s")
        print(f"    (b) PL/pgSQL row trigger + pg_notify     {med['plpgsql']:7.3f} s   overhead {over['plpgsql']:+7.1%}  (anchor)")
        print(f"    (c) pgmart alert rule (row trigger WHEN) {med['pgmart']:7.3f} s   overhead {over['pgmart']:+7.1%}  (pgmart)")
        print(f"    (d) statement trigger + transition table {med['stmt']:7.3f} s   overhead {over['stmt']:+7.1%}  (other design)")
        if over["plpgsql"] > 0:
            print(f"    pgmart / anchor: time ratio {med['pgmart'] / med['plpgsql']:.3f}, "
                  f"overhead ratio {over['pgmart'] / over['plpgsql']:.3f}")
        print(f"    all runs: { {t: [round(x, 3) for x in v] for t, v in runs.items()} }")
        return over

    print()
    print(f"alerts benchmark: INSERT ... SELECT of {ROWS:,} rows, {matched} matching (0.05%), median of {ROUNDS} rounds")
    report("wall-clock time (noisy on a shared machine)", times)
    over = report("server backend CPU time (user + system)", cpu)
    assert matched == ROWS // 2000
    assert alerts == matched * ROUNDS
    assert over["pgmart"] <= 0.15, f"pgmart alert rule overhead {over['pgmart']:.1%} exceeds 15%"
