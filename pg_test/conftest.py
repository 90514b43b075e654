"""Harness for pgmart's end-to-end tests: real PostgreSQL clusters, started here with pgmart
preloaded, owned by the `postgres` OS user (initdb refuses root), each on its own port and socket
directory, torn down after the test module.

The PostgreSQL major version comes from PGMART_PG (15, 16, 17 or 18; default 15, Debian's own);
its binaries are wherever `scripts/pgversions.sh bindir` says, and pgmart must be installed there
first (`scripts/install.sh "$(scripts/pgversions.sh pg_config 18)"`)."""

import itertools
import os
import shutil
import subprocess
import tempfile
import time

import psycopg
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_VERSION = int(os.environ.get("PGMART_PG") or 15)


# The bin/ of the version under test (15: /usr/lib/postgresql/15/bin). Every PostgreSQL program the
# tests run (initdb, pg_ctl, pg_dump, ...) is PGBIN/<name>: use pg_bin().
PGBIN = subprocess.run(["bash", os.path.join(ROOT, "scripts", "pgversions.sh"), "bindir", str(PG_VERSION)],
                       check=True, capture_output=True, text=True).stdout.strip()


def pg_bin(program):
    """The path of one PostgreSQL program (pg_dump, psql, ...) of the version under test."""
    return os.path.join(PGBIN, program)


_ports = itertools.count(56000 + (os.getpid() % 400) * 10)


def run_as_postgres(*args, check=True, **kw):
    cmd = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kw)


class Cluster:
    """A throwaway PostgreSQL cluster with pgmart in shared_preload_libraries."""

    def __init__(self, name, settings=None, preload=True, basebackup_of=None):
        self.dir = tempfile.mkdtemp(prefix=f"pgmart-{name}-")
        os.chmod(self.dir, 0o777)
        self.data = os.path.join(self.dir, "data")
        self.port = next(_ports)
        self.log = os.path.join(self.dir, "server.log")
        conf = {
            "port": self.port,
            "unix_socket_directories": f"'{self.dir}'",
            "listen_addresses": "''",
            "max_worker_processes": 16,
            "pgmart.naptime": "'1s'",
            "log_min_messages": "log",
            "fsync": "off",
        }
        if preload:
            conf["shared_preload_libraries"] = "'pgmart'"
        conf.update(settings or {})
        if basebackup_of is None:
            run_as_postgres(pg_bin("initdb"), "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        else:
            run_as_postgres(pg_bin("pg_basebackup"), "-h", basebackup_of.dir, "-p", str(basebackup_of.port),
                            "-U", "postgres", "-D", self.data, "-R", "-X", "stream")
            conf["primary_conninfo"] = f"'host={basebackup_of.dir} port={basebackup_of.port} user=postgres'"
            # pg_basebackup -R writes its own primary_conninfo into postgresql.auto.conf, which
            # wins over postgresql.conf; a newer pg_basebackup's (18: sslnegotiation=...) is not
            # understood by the libpq the walreceiver loads here (Debian's). Keep ours only.
            auto = os.path.join(self.data, "postgresql.auto.conf")
            with open(auto) as f:
                kept = [line for line in f if not line.startswith("primary_conninfo")]
            with open(auto, "w") as f:
                f.writelines(kept)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        self.start()

    def start(self):
        run_as_postgres(pg_bin("pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60", "start")

    def stop(self, mode="fast", check=True):
        return run_as_postgres(pg_bin("pg_ctl"), "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", check=check)

    def reload(self):
        run_as_postgres(pg_bin("pg_ctl"), "-D", self.data, "reload")

    def destroy(self):
        self.stop(mode="immediate", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def set(self, name, value):
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"{name} = {value}\n")

    def connect(self, dbname="postgres", user="postgres", autocommit=True):
        return psycopg.connect(host=self.dir, port=self.port, dbname=dbname, user=user, autocommit=autocommit)

    def sql(self, query, params=None, dbname="postgres", user="postgres"):
        """Run one statement in its own autocommit connection; return all rows (or None)."""
        with self.connect(dbname, user) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else None

    def one(self, query, params=None, dbname="postgres", user="postgres"):
        rows = self.sql(query, params, dbname, user)
        return rows[0][0] if rows else None

    def createdb(self, name, extension=True):
        self.sql(f'CREATE DATABASE "{name}"')
        if extension:
            self.sql("CREATE EXTENSION pgmart", dbname=name)

    def dump_restore(self, src, dst):
        """pg_dump database `src` (custom format) and pg_restore it into a new database `dst`,
        stopping at the first error."""
        out = os.path.join(self.dir, f"{src}.dump")
        run_as_postgres(pg_bin("pg_dump"), "-h", self.dir, "-p", str(self.port), "-U", "postgres", "-Fc", "-f", out, src)
        self.createdb(dst, extension=False)
        r = run_as_postgres(pg_bin("pg_restore"), "-h", self.dir, "-p", str(self.port), "-U", "postgres",
                            "--exit-on-error", "-d", dst, out, check=False)
        assert r.returncode == 0, r.stderr

    def server_log(self):
        with open(self.log) as f:
            return f.read()


def cluster_with_backtraces(name, settings=None):
    """A cluster whose postmaster runs with RUST_BACKTRACE=1 (as a DBA's environment may have it):
    no pgmart message may carry a Rust backtrace all the same."""
    os.environ["RUST_BACKTRACE"] = "1"
    try:
        return Cluster(name, settings=settings)
    finally:
        os.environ.pop("RUST_BACKTRACE", None)


def wait_for(predicate, timeout=30.0, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


@pytest.fixture(scope="module")
def cluster(request):
    """One cluster per test module, with pgmart created in database postgres. A module sets
    CLUSTER_SETTINGS (postgresql.conf lines) to tune it, e.g. {"pgmart.enabled": "off"}."""
    c = Cluster(request.module.__name__.split(".")[-1], settings=getattr(request.module, "CLUSTER_SETTINGS", None))
    c.sql("CREATE EXTENSION pgmart")
    yield c
    c.destroy()


def pytest_configure(config):
    config.addinivalue_line("markers", "bench: a benchmark against an anchor (make bench), not run by make test")
