"""A throwaway PostgreSQL cluster for the test suite, and the fixtures that use it.

Registered as a pytest plugin from tests/conftest.py. Nothing here runs unless a
test asks for PostgreSQL; then, once per session, `PostgresCluster` runs initdb
into a fresh temporary directory, starts the server with pg_ctl on 127.0.0.1 on a
free port (trust authentication, reachable only from 127.0.0.1 and through a unix
socket inside that directory), and at session end stops it and removes the
directory, also when tests fail or the run is interrupted. A small watchdog
process does the same if pytest itself is killed, so no server outlives the run.

PostgreSQL refuses to run as root: as root the cluster belongs to, and runs as,
the `postgres` system user (which Debian's `postgresql` package creates);
otherwise it runs as the current user. The server binaries are found through
$SPC_PG_BINDIR, `pg_config --bindir`, /usr/lib/postgresql/<newest>/bin or PATH.

Fixtures:

- ``postgres_server`` (session): the running `PostgresCluster` (``host``,
  ``port``, ``superuser``, ``version``, ``url(dbname)``, ``stop()``/``start()``
  and the ``outage()`` context manager for outage tests).
- ``postgres_url`` (function): a fresh, empty database for one test,
  ``postgresql://postgres@127.0.0.1:PORT/spc_<random>``, dropped afterwards.
- ``database_url`` (function, parametrized ``sqlite`` / ``postgresql``): a fresh
  database of either backend; a test that uses it runs once on each.

Missing PostgreSQL: with CI=true a test that needs it errors; locally it errors
too, unless pytest runs with ``--no-postgres``, which skips those tests. The
terminal summary says how many tests used the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

HOST = "127.0.0.1"
SUPERUSER = "postgres"
SYSTEM_USER = "postgres"  # who runs the server when the tests run as root

T = TypeVar("T")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or no user that may run them."""


class PostgresFailed(RuntimeError):
    """initdb, pg_ctl or the server itself failed; the message carries their output."""


# ---------------------------------------------------------------------------
# Finding the binaries and the user to run them as


def _is_bindir(path: Path) -> bool:
    return all(os.access(path / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name)) or (0,)


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None."""
    explicit = os.environ.get("SPC_PG_BINDIR")
    if explicit:
        return Path(explicit) if _is_bindir(Path(explicit)) else None
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        # libpq-dev ships a pg_config without the server: check, don't trust.
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    return next((path for path in candidates if _is_bindir(path)), None)


def _server_user() -> pwd.struct_passwd | None:
    """The user the server runs as: None for the current user, `postgres` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, and PostgreSQL refuses to run as root, but there is no "
            f"`{SYSTEM_USER}` system user to run it as (Debian's postgresql package creates it)"
        ) from None


def _reachable_by_others(directory: Path) -> bool:
    """Whether a different user may traverse every directory down to `directory`."""
    for path in (directory, *directory.parents):
        try:
            if not path.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_accepts(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a private event loop in another thread.

    Works from sync tests, from inside a running pytest-asyncio loop and under
    Playwright's sync API (which keeps a loop running in the main thread).
    """
    with ThreadPoolExecutor(1, thread_name_prefix="spc-pg-admin") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


# If pytest dies without tearing down (SIGKILL, SIGTERM, a crash), the read on
# stdin returns EOF: stop the server and remove the directory.
_WATCHDOG = r"""
import json, os, shutil, signal, subprocess, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
plan = json.loads(sys.argv[1])
sys.stdin.buffer.read()
pid_file = os.path.join(plan["data_dir"], "postmaster.pid")
if os.path.exists(pid_file):
    try:
        subprocess.run(plan["stop"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.kill(int(open(pid_file).readline()), signal.SIGKILL)  # pg_ctl could not stop it
    except (OSError, ValueError):
        pass
shutil.rmtree(plan["base_dir"], ignore_errors=True)
"""


# ---------------------------------------------------------------------------
# The cluster


class PostgresCluster:
    """One throwaway PostgreSQL cluster: ``init()``, ``start()``, ``stop()``, ``destroy()``.

    Also a context manager (init and start on entry, destroy on exit). The port
    stays the same across ``stop()``/``start()``, and so does the data.
    """

    def __init__(
        self,
        bindir: Path | None = None,
        *,
        host: str = HOST,
        port: int | None = None,
        superuser: str = SUPERUSER,
        max_connections: int = 200,
    ) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PostgresUnavailable(
                "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found via $SPC_PG_BINDIR, "
                "`pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH"
            )
        self.bindir = found
        self.host = host
        self.superuser = superuser
        self.max_connections = max_connections
        self._port_chosen = port is None
        self.port = port if port is not None else free_port(host)
        self.os_user = _server_user()  # None: the current user
        self.base_dir: Path | None = None
        self.version: str | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- layout

    @property
    def data_dir(self) -> Path:
        return self._base() / "data"

    @property
    def socket_dir(self) -> Path:
        return self._base() / "socket"

    @property
    def log_file(self) -> Path:
        return self._base() / "postgres.log"

    def _base(self) -> Path:
        if self.base_dir is None:
            raise RuntimeError("the cluster has not been initialised (call init())")
        return self.base_dir

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{dbname}"

    @property
    def os_user_name(self) -> str:
        return self.os_user.pw_name if self.os_user else pwd.getpwuid(os.geteuid()).pw_name

    # -- commands

    def _command(self, *argv: str) -> list[str]:
        """argv, run as the server's user."""
        if self.os_user is None:
            return list(argv)
        if shutil.which("runuser"):
            return ["runuser", "-u", self.os_user.pw_name, "--", *argv]
        return ["su", "-s", "/bin/sh", self.os_user.pw_name, "-c", shlex.join(argv)]

    def _pg_ctl(self, *args: str) -> list[str]:
        return self._command(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), *args)

    def _run(self, argv: list[str], what: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                argv, cwd=self._base(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresFailed(f"{what} timed out after {timeout:.0f}s{self._log_tail()}") from exc
        if done.returncode != 0:
            raise PostgresFailed(
                f"{what} failed (exit {done.returncode}): {shlex.join(argv)}\n"
                f"{done.stdout}{done.stderr}{self._log_tail()}"
            )
        return done

    def _log_tail(self, lines: int = 30) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except (OSError, RuntimeError):
            return ""
        return "\n--- postgres.log (last lines) ---\n" + "\n".join(tail) if tail else ""

    def _own(self, path: Path) -> None:
        if self.os_user is not None:
            os.chown(path, self.os_user.pw_uid, self.os_user.pw_gid)

    # -- life cycle

    def init(self) -> None:
        """Make the directory and run initdb into it (trust auth, local connections only)."""
        if self.base_dir is not None:
            raise RuntimeError("already initialised")
        parent = Path(tempfile.gettempdir())
        if self.os_user is not None and not _reachable_by_others(parent):
            parent = Path("/tmp")  # the postgres user must reach the directory
        self.base_dir = Path(tempfile.mkdtemp(prefix="spc-pg-", dir=parent))
        self._own(self.base_dir)
        self._start_watchdog()
        self.socket_dir.mkdir(mode=0o700)
        self._own(self.socket_dir)
        self._run(
            self._command(
                str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", self.superuser,
                "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync",
            ),
            "initdb",
        )
        (self.data_dir / "pg_hba.conf").write_text(
            "# spc-embed test cluster: trust, and only from this machine\n"
            "local all all trust\n"
            f"host all all {self.host}/32 trust\n"
        )
        self._write_settings()
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'spc_test.conf'\n")

    def _write_settings(self) -> None:
        settings = self.data_dir / "spc_test.conf"
        settings.write_text(
            f"listen_addresses = '{self.host}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "unix_socket_permissions = 0700\n"
            f"max_connections = {self.max_connections}\n"
        )
        self._own(settings)

    @property
    def running(self) -> bool:
        if self.base_dir is None or not self.data_dir.exists():
            return False
        status = subprocess.run(
            self._pg_ctl("status"), cwd=self.base_dir, stdin=subprocess.DEVNULL,
            capture_output=True, timeout=30,
        )
        return status.returncode == 0

    @property
    def server_pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError, RuntimeError):
            return None

    def start(self, timeout: float = 60) -> None:
        """Start the server (same port, same data) and wait until it takes TCP connections."""
        attempts = 3 if self._port_chosen and self.version is None else 1
        for attempt in range(attempts):
            try:
                self._run(
                    self._pg_ctl("-l", str(self.log_file), "-w", "-t", str(int(timeout)), "-s", "start"),
                    "pg_ctl start", timeout=timeout + 10,
                )
                break
            except PostgresFailed as exc:
                # Another process may have taken the free port since we picked it.
                if attempt + 1 == attempts or "already in use" not in str(exc):
                    raise
                self.port = free_port(self.host)
                self._write_settings()
        deadline = time.monotonic() + timeout
        while True:
            try:
                version = self.fetchval("SHOW server_version")
                break
            except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
                if time.monotonic() > deadline:
                    raise PostgresFailed(f"the server does not accept connections: {exc!r}{self._log_tail()}") from exc
                time.sleep(0.1)
        self.version = str(version).split()[0]

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server: ``fast`` (roll back, disconnect, clean shutdown), ``smart`` or ``immediate`` (crash-like)."""
        if not self.running:
            return
        self._run(self._pg_ctl("-m", mode, "-w", "-t", str(int(timeout)), "-s", "stop"), "pg_ctl stop", timeout + 10)

    @contextlib.contextmanager
    def outage(self, mode: str = "fast") -> Iterator[None]:
        """Stop the server for the duration of the block and start it again, also on failure."""
        self.stop(mode)
        try:
            yield
        finally:
            self.start()

    def destroy(self) -> None:
        """Stop the server (immediately) if it runs and remove the whole directory."""
        if self.base_dir is None:
            return
        try:
            if self.running:
                try:
                    self.stop("immediate")
                except PostgresFailed:
                    pid = self.server_pid
                    if pid:
                        with contextlib.suppress(OSError):
                            os.kill(pid, signal.SIGKILL)
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self._stop_watchdog()

    def _start_watchdog(self) -> None:
        plan = {
            "base_dir": str(self.base_dir),
            "data_dir": str(self.data_dir),
            "stop": self._pg_ctl("-m", "immediate", "-w", "-t", "30", "-s", "stop"),
        }
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, json.dumps(plan)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            cwd="/", start_new_session=True,  # a Ctrl-C in the terminal must not stop it early
        )

    def _stop_watchdog(self) -> None:
        if self._watchdog is None:
            return
        with contextlib.suppress(OSError):
            self._watchdog.stdin.close()  # type: ignore[union-attr]
        try:
            self._watchdog.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._watchdog.kill()
        self._watchdog = None

    def __enter__(self) -> PostgresCluster:
        try:
            self.init()
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- administration (asyncpg, on a private loop: callable from anywhere)

    def fetchval(self, query: str, *args: Any, dbname: str = "postgres") -> Any:
        import asyncpg

        async def go() -> Any:
            connection = await asyncpg.connect(self.url(dbname), timeout=10)
            try:
                return await connection.fetchval(query, *args, timeout=30)
            finally:
                await connection.close()

        return run_async(go)

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (``spc_<random>`` unless named) and return its name."""
        name = name or f"spc_{secrets.token_hex(6)}"
        self.fetchval(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop the database, disconnecting whoever is still connected to it."""
        self.fetchval(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------------
# The pytest plugin


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


@dataclass
class _State:
    skip: bool  # --no-postgres
    cluster: PostgresCluster | None = None
    error: str | None = None
    where: str | None = None  # "PostgreSQL 15.18 at 127.0.0.1:PORT", kept for the summary
    wanted: set[str] = field(default_factory=set)  # node ids of collected tests that need PostgreSQL
    used: set[str] = field(default_factory=set)  # ... whose setup passed with it


_STATE = pytest.StashKey[_State]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-postgres", action="store_true", default=False,
        help="skip the tests that need a PostgreSQL server (not allowed with CI=true)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postgres: needs a real PostgreSQL server (tests/postgres.py); set on every test that uses "
        "postgres_server, postgres_url or database_url[postgresql], skipped with --no-postgres",
    )
    skip = bool(config.getoption("--no-postgres"))
    if skip and _in_ci():
        raise pytest.UsageError("--no-postgres is not allowed in CI (CI=true): the PostgreSQL tests must run")
    config.stash[_STATE] = _State(skip=skip)


def _needs_postgres(item: pytest.Item) -> bool:
    if item.get_closest_marker("postgres") is not None:
        return True
    names = getattr(item, "fixturenames", ())
    if "postgres_server" in names or "postgres_url" in names:
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("database_url") == "postgresql"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[_STATE]
    skip = pytest.mark.skip(reason="needs PostgreSQL; skipped with --no-postgres")
    for item in items:
        if _needs_postgres(item):
            state.wanted.add(item.nodeid)
            item.add_marker(pytest.mark.postgres)
            if state.skip:
                item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    result = yield
    state = item.config.stash[_STATE]
    if item.nodeid in state.wanted and state.cluster is not None:
        state.used.add(item.nodeid)
    return result


def _unavailable_message(reason: str) -> str:
    install = "`sudo apt-get install postgresql` (or `bash scripts/setup.sh --postgres`)"
    if _in_ci():
        return (
            f"PostgreSQL is required in CI (CI=true) and is not available: {reason}. "
            f"scripts/test.sh installs it; by hand: {install}."
        )
    return (
        f"PostgreSQL is not available: {reason}. Install it with {install}, or set SPC_PG_BINDIR "
        f"to its bin directory, or skip the tests that need it with `pytest --no-postgres`."
    )


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> Iterator[PostgresCluster]:
    """The session's throwaway PostgreSQL cluster, started on first use."""
    state = pytestconfig.stash[_STATE]
    if state.skip:
        pytest.skip("needs PostgreSQL; skipped with --no-postgres")
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as exc:
        state.error = str(exc)
        pytest.fail(_unavailable_message(str(exc)), pytrace=False)
    try:
        cluster.init()
        cluster.start()
    except (PostgresFailed, OSError) as exc:
        cluster.destroy()
        state.error = f"could not start a throwaway cluster: {exc}"
        pytest.fail(f"PostgreSQL: {state.error}", pytrace=False)
    except BaseException:
        cluster.destroy()
        raise
    state.cluster = cluster
    state.where = f"PostgreSQL {cluster.version} at {cluster.host}:{cluster.port}"
    try:
        yield cluster
    finally:
        state.cluster = None
        cluster.destroy()


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, postgres_server: PostgresCluster) -> Iterator[str]:
    """A fresh, empty database for this test: its URL; dropped after the test."""
    request.config.stash[_STATE].used.add(request.node.nodeid)
    if not postgres_server.running:  # an outage test that failed before restarting it
        postgres_server.start()
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    if not postgres_server.running:
        postgres_server.start()
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL, once per backend: ``sqlite:///<tmp>/spc.db`` or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'spc.db'}"
    return request.getfixturevalue("postgres_url")


def _tests(count: int) -> str:
    return f"{count} test" if count == 1 else f"{count} tests"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not state.wanted:
        return
    if state.skip:
        line = f"PostgreSQL: {_tests(len(state.wanted))} skipped (--no-postgres)"
    elif state.where is not None:
        line = f"{state.where}: {_tests(len(state.used))} used it"
    elif state.error is not None:
        line = f"PostgreSQL: not available ({state.error.splitlines()[0]})"
    else:
        return
    terminalreporter.write_sep("-", line)
