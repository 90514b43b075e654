"""Idle cost of the workers: 1000 registered jobs, none due, CPU used by the scheduler and the
launcher over one minute (from /proc/<pid>/stat). Run with `make bench`."""

import os
import time

import pytest

from conftest import Cluster, wait_for

SECONDS = 60


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.bench
def test_idle_cpu_with_1000_jobs():
    c = Cluster("idle", settings={"pgmart.naptime": "'5s'"})
    try:
        c.sql("CREATE EXTENSION pgmart")
        c.sql("SELECT pgmart.schedule_sql('idle_' || i, 'SELECT 1', '1 day') FROM generate_series(1, 1000) i")
        sched = wait_for(lambda: c.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgmart scheduler'"), 20)
        launcher = c.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgmart launcher'")
        time.sleep(2)
        s0, l0 = cpu_seconds(sched), cpu_seconds(launcher)
        time.sleep(SECONDS)
        s1, l1 = cpu_seconds(sched), cpu_seconds(launcher)
        assert c.one("SELECT count(*) FROM pgmart.job_runs") == 0
        sched_ms, launch_ms = (s1 - s0) * 1000, (l1 - l0) * 1000
        print(f"\nidle CPU over {SECONDS}s with 1000 jobs, none due (naptime 5s): "
              f"scheduler {sched_ms:.0f} ms ({sched_ms / SECONDS / 10:.3f}% of a core), "
              f"launcher {launch_ms:.0f} ms ({launch_ms / SECONDS / 10:.3f}% of a core)")
        assert sched_ms < SECONDS * 1000 * 0.01, "the idle scheduler uses under 1% of a core"
    finally:
        c.destroy()
