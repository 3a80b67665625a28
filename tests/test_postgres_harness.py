"""The PostgreSQL test harness (tests/postgres.py) itself: a throwaway cluster that
runs as a non-root user, a fresh database per test, outages on the same port
that keep the data, nothing left behind, and the skip policy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import asyncpg
import pytest
from postgres import PostgresCluster, port_accepts

TESTS = Path(__file__).parent


def process_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "Z" not in state.split()[1]


def process_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def user_tables(cluster: PostgresCluster, dbname: str) -> int:
    return cluster.fetchval(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
        dbname=dbname,
    )


def test_server_runs_as_non_root_on_loopback_only(postgres_server: PostgresCluster) -> None:
    pid = postgres_server.server_pid
    assert pid is not None and process_alive(pid)
    uid = process_uid(pid)
    assert uid != 0
    assert uid == (postgres_server.os_user.pw_uid if os.geteuid() == 0 else os.geteuid())
    assert postgres_server.fetchval("SHOW listen_addresses") == "127.0.0.1"
    assert postgres_server.fetchval("SHOW port") == str(postgres_server.port)
    assert Path(postgres_server.fetchval("SHOW data_directory")) == postgres_server.data_dir
    assert Path(postgres_server.fetchval("SHOW unix_socket_directories")).is_relative_to(postgres_server.base_dir)
    assert postgres_server.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is True
    assert postgres_server.fetchval("SHOW fsync") == "on"  # outage and durability tests stay honest
    assert postgres_server.version and postgres_server.version[0].isdigit()


_seen_databases: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_gets_a_fresh_empty_database(
    round_: int, postgres_server: PostgresCluster, postgres_url: str
) -> None:
    dbname = postgres_url.rsplit("/", 1)[1]
    assert postgres_url == f"postgresql://postgres@127.0.0.1:{postgres_server.port}/{dbname}"
    assert dbname.startswith("spc_") and dbname not in _seen_databases
    assert user_tables(postgres_server, dbname) == 0
    postgres_server.fetchval("CREATE TABLE leftover (x int)", dbname=dbname)
    for earlier in _seen_databases:  # dropped after its test
        assert not postgres_server.fetchval("SELECT count(*) FROM pg_database WHERE datname = $1", earlier)
    _seen_databases.append(dbname)


async def test_database_url_gives_each_backend(database_url: str, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.id
    if backend == "sqlite":
        assert database_url.startswith("sqlite:///")
        path = Path(database_url.removeprefix("sqlite:///"))
        assert path.is_absolute() and path.parent.is_dir() and not path.exists()
    else:
        assert backend == "postgresql" and database_url.startswith("postgresql://postgres@127.0.0.1:")
        connection = await asyncpg.connect(database_url)  # from inside the test's own event loop
        try:
            assert await connection.fetchval("SELECT current_database()") == database_url.rsplit("/", 1)[1]
        finally:
            await connection.close()


def test_outage_keeps_port_and_committed_data(postgres_server: PostgresCluster, postgres_url: str) -> None:
    dbname = postgres_url.rsplit("/", 1)[1]
    port, data_dir = postgres_server.port, postgres_server.data_dir
    postgres_server.fetchval("CREATE TABLE payments (id text primary key)", dbname=dbname)
    postgres_server.fetchval("INSERT INTO payments VALUES ('tx-1')", dbname=dbname)

    started = time.monotonic()
    with postgres_server.outage(mode="immediate"):  # a crash, not a clean shutdown
        assert not postgres_server.running
        assert not port_accepts("127.0.0.1", port)
        with pytest.raises(OSError):
            postgres_server.fetchval("SELECT 1", dbname=dbname)
    assert time.monotonic() - started < 10

    assert postgres_server.running and postgres_server.port == port and postgres_server.data_dir == data_dir
    assert postgres_server.fetchval("SELECT id FROM payments", dbname=dbname) == "tx-1"

    postgres_server.stop()  # and by hand, as an outage test with its own timing does
    assert not port_accepts("127.0.0.1", port)
    postgres_server.start()
    assert postgres_server.fetchval("SELECT count(*) FROM payments", dbname=dbname) == 1


def test_a_second_cluster_is_separate_and_leaves_nothing_behind(postgres_server: PostgresCluster) -> None:
    with PostgresCluster() as cluster:
        base, pid, port = cluster.base_dir, cluster.server_pid, cluster.port
        assert base is not None and base.is_dir() and pid is not None and process_alive(pid)
        assert port != postgres_server.port and base != postgres_server.base_dir
        assert process_uid(pid) != 0
        if os.geteuid() == 0:
            assert base.stat().st_uid == cluster.os_user.pw_uid
        assert cluster.fetchval("SELECT count(*) FROM pg_database WHERE datname LIKE 'spc_%'") == 0
        cluster.stop()
        assert base.is_dir()  # stop() keeps the data for start()
        cluster.start()
        assert cluster.port == port
    assert not base.exists()
    assert not process_alive(pid)
    assert not port_accepts("127.0.0.1", port)
    assert postgres_server.fetchval("SELECT 1") == 1  # the session's cluster is untouched


def test_a_killed_test_run_leaves_nothing_behind(postgres_server: PostgresCluster) -> None:
    """pytest killed with SIGKILL runs no teardown: the watchdog stops the server and removes the directory.

    (`postgres_server` only for the availability check and the skip policy.)"""
    script = textwrap.dedent(
        f"""
        import json, os, signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        from postgres import PostgresCluster
        cluster = PostgresCluster()
        cluster.init()
        cluster.start()
        print(json.dumps([str(cluster.base_dir), cluster.server_pid, cluster.port]), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    base, pid, port = json.loads(done.stdout)
    deadline = time.monotonic() + 30
    while (Path(base).exists() or process_alive(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(base).exists()
    assert not process_alive(pid)
    assert not port_accepts("127.0.0.1", port)


# -- the skip policy, in separate pytest runs with PostgreSQL made unfindable

NEEDS_POSTGRES = """
def test_with_postgres(database_url):
    pass
"""


def run_inner_pytest(tmp_path: Path, *args: str, ci: bool, bindir: str = "/nonexistent") -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\npytest_plugins = ['postgres']\n")
    (tmp_path / "test_inner.py").write_text(NEEDS_POSTGRES)
    env = {key: value for key, value in os.environ.items() if key not in {"CI", "PYTEST_ADDOPTS"}}
    env["SPC_PG_BINDIR"] = bindir
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )


def test_missing_postgres_fails_locally_and_names_the_fixes(tmp_path: Path) -> None:
    done = run_inner_pytest(tmp_path, ci=False)
    assert done.returncode == 1, done.stdout
    assert "1 passed, 1 error" in done.stdout  # sqlite ran, postgresql errored
    assert "apt-get install postgresql" in done.stdout and "--no-postgres" in done.stdout


def test_missing_postgres_fails_in_ci(tmp_path: Path) -> None:
    done = run_inner_pytest(tmp_path, ci=True)
    assert done.returncode == 1, done.stdout
    assert "1 passed, 1 error" in done.stdout
    assert "required in CI" in done.stdout


def test_no_postgres_option_skips_locally_only(tmp_path: Path) -> None:
    done = run_inner_pytest(tmp_path, "--no-postgres", "-rs", ci=False)
    assert done.returncode == 0, done.stdout
    assert "1 passed, 1 skipped" in done.stdout
    assert "skipped with --no-postgres" in done.stdout
    assert "PostgreSQL: 1 test skipped (--no-postgres)" in done.stdout

    refused = run_inner_pytest(tmp_path, "--no-postgres", ci=True)
    assert refused.returncode == 4  # usage error
    assert "--no-postgres is not allowed in CI" in refused.stderr
