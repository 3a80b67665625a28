"""SQLite, embedded: statements on the caller's thread, commits group-shared on a committer thread.

Reads run on a connection of the calling thread, synchronously: a read of a
few rows from SQLite's page cache costs microseconds, less than handing it to
another thread, and in WAL mode readers never wait for the writer.

Writes share commits. A batch starts once the event loop has run what was
ready when the first write came (so requests already being worked on join
it): every write waiting runs at once, on the loop's thread, in one
transaction, each inside its own savepoint (so one write's refusal rolls back
only its own statements; a single statement needs none). Only the COMMIT,
which waits for fsync (``synchronous=FULL``), goes to a committer thread;
writes arriving meanwhile wait for the next batch, which starts as soon as
the commit is done, before the requests it answered resume (so its commit
overlaps their responses). So a 200 still
means the write is on disk, one fsync serves every request of a batch, and
the statements never run on a second thread: a thread running Python beside
the event loop would make every statement of the loop wait for the GIL.

Several processes on one file take turns at its write lock. A batch that
finds it taken does not wait inside SQLite (its busy handler sleeps on the
calling thread, which here is the event loop's): it is put back and tried again
after 0.2, 0.5, 1, 2 and then every 4 ms, while the loop serves other requests
(whose writes join it), and is answered 503 after the busy timeout.

Nothing here is bound to one event loop: each write carries the loop that
awaits it, so one store serves TestClient's loops, reloaders and threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest, StorageUnavailable
from .plans import ROW, ROWCOUNT, Plan, PlanFactory, Statement, sqlite_sql
from .schema import SCHEMA_VERSION, ddl, migrations

logger = logging.getLogger("spc_embed.storage")

_Job = tuple[PlanFactory[Any], "asyncio.Future[Any]", bool]  # a write, who awaits it, single statement or not

BUSY_TIMEOUT_MS = 5000  # another process holding the write lock: wait this long, then 503
# How long a batch waits before it asks again for the write lock another process holds: short at first
# (that process's batch takes about a millisecond), then every 4 ms. The event loop runs on meanwhile.
BUSY_RETRY_DELAYS_S = (0.0002, 0.0005, 0.001, 0.002, 0.004)


def run_plan(conn: sqlite3.Connection, plan: Plan[Any]) -> Any:
    """Drive a plan to its end on one connection; return what it returns."""
    try:
        statement = next(plan)
        while True:
            statement = plan.send(_run(conn, statement))
    except StopIteration as done:
        return done.value


def _run(conn: sqlite3.Connection, statement: Statement) -> Any:
    try:
        cursor = conn.execute(sqlite_sql(statement.sql), statement.args)
    except (UnicodeEncodeError, OverflowError) as exc:
        # Text the database cannot hold (a lone surrogate), a number past 64 bits: the input's fault.
        raise InvalidRequest("a value in the request cannot be stored", code="unstorable_value") from exc
    if statement.returns == ROWCOUNT:
        return cursor.rowcount
    if statement.returns == ROW:
        return cursor.fetchone()
    return cursor.fetchall()


class SQLiteBackend:
    dialect = "sqlite"

    def __init__(self, path: str, *, on_error: Callable[[BaseException], StorageUnavailable],
                 on_success: Callable[[], None]) -> None:
        self.path = path
        self._on_error = on_error
        self._on_success = on_success
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()  # guards the two fields below and the readers list
        self._waiting: list[_Job] = []
        self._batch_running = False  # a batch holds the write connection: statements, then its commit
        self._write_conn: sqlite3.Connection | None = None
        # The committer thread and its inbox: a plain thread on a C queue, so handing it a
        # batch costs the loop's thread one put, not an executor's futures and locks.
        self._commits: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._committer: threading.Thread | None = None
        self._generation = 0
        self._locked_since: float | None = None  # when the waiting batch first found the write lock taken
        self._lock_retries = 0

    # Lifecycle

    def open(self) -> None:
        """Create or check the schema, open the write connection, start the committer."""
        self._generation += 1
        schema_conn = self._connect(busy_timeout_ms=BUSY_TIMEOUT_MS)
        try:
            _enable_wal(schema_conn)
            self._create_schema(schema_conn)
        finally:
            schema_conn.close()
        # Opened with the busy timeout, as every connection (its first statement may find another process
        # starting up), then none: for its batches SQLite would wait by sleeping on the event loop's thread.
        self._write_conn = self._connect(busy_timeout_ms=BUSY_TIMEOUT_MS)
        self._write_conn.execute("PRAGMA busy_timeout=0")
        self._committer = threading.Thread(target=self._commit_loop, name="spc-embed-sqlite-commit", daemon=True)
        self._committer.start()

    async def close(self) -> None:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while self._busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.002)  # let the writes in flight finish
        if self._committer is not None:
            self._commits.put(None)
            self._committer.join()
            self._committer = None
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()

    def _busy(self) -> bool:
        with self._lock:
            return self._batch_running or bool(self._waiting)

    def _connect(self, *, busy_timeout_ms: int) -> sqlite3.Connection:
        # isolation_level=None: we say BEGIN and COMMIT ourselves.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=busy_timeout_ms / 1000)
        conn.execute("PRAGMA synchronous=FULL")  # WAL + FULL: every commit is fsynced
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock first, so processes starting
        # together run this one after the other, never interleaved.
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in ddl("sqlite"):
                conn.execute(statement)
            row = conn.execute("SELECT version FROM spc_schema WHERE id = 1").fetchone()
            if row is None:
                conn.execute("INSERT INTO spc_schema (id, version) VALUES (1, ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                # An older database: migrate it, and record the version, in this same transaction.
                for statement in migrations("sqlite", row[0]):
                    conn.execute(statement)
                conn.execute("UPDATE spc_schema SET version = ? WHERE id = 1", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def ping(self) -> None:
        self._reader().execute("SELECT 1").fetchone()

    # Reads

    def _reader(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "generation", None) != self._generation:
            local.conn = self._connect(busy_timeout_ms=BUSY_TIMEOUT_MS)
            local.conn.execute("PRAGMA query_only=ON")
            local.generation = self._generation
            with self._lock:
                self._readers.append(local.conn)
        conn: sqlite3.Connection = local.conn
        return conn

    async def read(self, factory: PlanFactory[Any]) -> Any:
        try:
            value = run_plan(self._reader(), factory())
        except sqlite3.Error as exc:
            raise self._on_error(exc) from exc
        self._on_success()
        return value

    # Writes

    async def write(self, factory: PlanFactory[Any], *, single_statement: bool = False) -> Any:
        # A single statement needs no savepoint of its own: SQLite undoes a failing statement by itself,
        # and such a plan refuses only when its statement changed nothing (the contract of Store._write).
        if self._write_conn is None:
            raise self._on_error(RuntimeError("the SQLite store is closed"))
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._waiting.append((factory, future, single_statement))
            start = not self._batch_running
            self._batch_running = True
        if start:
            # After everything ready to run now: requests this loop is already
            # working on reach their writes first and share this batch.
            loop.call_soon(self._run_batch)
        return await future

    def _run_batch(self) -> None:
        """Run every waiting write in one transaction on this thread, then hand the commit over."""
        with self._lock:
            batch, self._waiting = self._waiting, []
            if not batch:
                self._batch_running = False
                return
        conn = self._write_conn
        outcomes: list[tuple[bool, Any]] = []
        try:
            if conn is None:
                raise sqlite3.OperationalError("the SQLite store is closed")
            if not self._begin(conn):
                self._retry_later(batch)
                return
            for factory, _, single_statement in batch:
                if single_statement:
                    try:
                        outcomes.append((True, run_plan(conn, factory())))
                    except Exception as exc:
                        if not conn.in_transaction:  # an error that ended the transaction: the batch fails whole
                            raise
                        outcomes.append((False, exc))  # SQLite undid the failed statement itself
                    continue
                conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, run_plan(conn, factory())))
                except Exception as exc:  # a refusal (or a fault) undoes this write only
                    conn.execute("ROLLBACK TO job")
                    outcomes.append((False, exc))
                conn.execute("RELEASE job")
        except sqlite3.Error as exc:
            self._rollback(conn)
            self._finish(batch, [(False, self._on_error(exc)) for _ in batch])
            return
        self._commits.put((conn, batch, outcomes))

    def _begin(self, conn: sqlite3.Connection) -> bool:
        """BEGIN IMMEDIATE without waiting: False while another process holds the write lock.

        Raises once the lock has been taken for longer than the busy timeout (the batch is then answered 503).
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_BUSY:
                raise
            now = time.monotonic()
            if self._locked_since is None:
                self._locked_since = now
            if now - self._locked_since > BUSY_TIMEOUT_MS / 1000:
                self._locked_since, self._lock_retries = None, 0
                raise
            return False
        self._locked_since, self._lock_retries = None, 0
        return True

    def _retry_later(self, batch: list[_Job]) -> None:
        """Put the batch back, first in line, and try again shortly; the loop serves other requests meanwhile."""
        with self._lock:
            self._waiting[:0] = batch
        delay = BUSY_RETRY_DELAYS_S[min(self._lock_retries, len(BUSY_RETRY_DELAYS_S) - 1)]
        self._lock_retries += 1
        asyncio.get_running_loop().call_later(delay, self._run_batch)

    def _commit_loop(self) -> None:
        while (work := self._commits.get()) is not None:
            self._commit(*work)

    def _commit(self, conn: sqlite3.Connection, batch: list[_Job],
                outcomes: list[tuple[bool, Any]]) -> None:
        # On the committer thread: one C call that waits for fsync, with the GIL released.
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            # Nothing of the batch is written: every request gets its own 503.
            outcomes = [(False, self._on_error(exc)) for _ in batch]
        else:
            self._on_success()
        self._finish(batch, outcomes)

    def _finish(self, batch: list[_Job],
                outcomes: list[tuple[bool, Any]]) -> None:
        """Answer every write of the batch and start the next batch, with one call into each loop.

        One call, not one per write: each call into a loop from this thread
        is a GIL handover, and the loop thread is busy with other requests.
        """
        answers: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, future, _), (ok, value) in zip(batch, outcomes, strict=False):
            if not ok and isinstance(value, sqlite3.Error):
                value = self._on_error(value)
            answers.setdefault(future.get_loop(), []).append((future, ok, value))
        while True:
            with self._lock:
                if not self._waiting:
                    self._batch_running = False
                    next_loop = None
                else:
                    next_loop = self._waiting[0][1].get_loop()
            for loop, items in answers.items():
                _call_soon(loop, self._answer, items, loop is next_loop)
            if next_loop is None or next_loop in answers or _call_soon(next_loop, self._answer, [], True):
                return
            with self._lock:  # that loop is gone: its writes can never be answered; drop them
                self._waiting = [job for job in self._waiting if not job[1].get_loop().is_closed()]
            answers = {}

    def _answer(self, items: list[tuple[asyncio.Future[Any], bool, Any]], run_next_batch: bool) -> None:
        if run_next_batch:
            # The writes that came during the commit go first: their commit then runs on the
            # committer thread while the requests answered below send their responses.
            self._run_batch()
        for future, ok, value in items:
            if not future.done():  # the request may have been cancelled meanwhile; the write stands
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    @staticmethod
    def _rollback(conn: sqlite3.Connection | None) -> None:
        if conn is not None and conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> bool:
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # that loop has closed: nobody is waiting there
        return False
    return True


def _enable_wal(conn: sqlite3.Connection) -> None:
    """WAL lets readers run beside the writer; it is the file's mode, so setting it once lasts.

    Switching needs the file to itself and SQLite's busy handler does not wait
    for that, so processes starting together on a new file retry here.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def sqlite_path(url: str) -> str:
    """The file of ``sqlite:///relative.db`` or ``sqlite:////absolute.db``, made absolute."""
    rest = url.split(":", 1)[1]
    if not rest.startswith("///"):
        raise ValueError("a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db")
    path = rest[3:].split("?", 1)[0]
    if not path or path == ":memory:":
        raise ValueError("spc-embed needs a SQLite file (state must survive a restart), not :memory:")
    return str(Path(path).absolute())
