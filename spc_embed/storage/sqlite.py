"""SQLite, embedded: reads on the caller's thread, writes through one group-committing writer.

Reads run on a connection of the calling thread, synchronously: a read of a
few rows from SQLite's page cache costs microseconds, less than handing it to
another thread, and in WAL mode readers never wait for the writer.

Writes go to one writer thread that owns the only write connection. It takes
every write waiting in its queue, runs them in one transaction, each inside
its own savepoint (so one write's refusal rolls back only its own
statements), commits once with fsync (``synchronous=FULL``), then answers all
of them. Concurrent requests so share one fsync: a 200 still means the write
is on disk, at the cost of one commit per batch instead of one per request.

Nothing here is bound to an event loop: each write carries the loop that
awaits it, so one store serves TestClient's loops, reloaders and threads.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest, SPCEmbedError, StorageUnavailable
from .plans import ROW, ROWCOUNT, Plan, PlanFactory, Statement, sqlite_sql
from .schema import SCHEMA_VERSION, ddl

logger = logging.getLogger("spc_embed.storage")

MAX_BATCH = 256
BUSY_TIMEOUT_MS = 5000  # another process holding the write lock: wait this long, then 503


class SchemaVersionError(Exception):
    def __init__(self, found: int) -> None:
        super().__init__(found)
        self.found = found


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


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if not future.done():  # the request may have been cancelled meanwhile; the write stands
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class SQLiteBackend:
    dialect = "sqlite"

    def __init__(self, path: str, *, on_error: Callable[[BaseException], StorageUnavailable],
                 on_success: Callable[[], None]) -> None:
        self.path = path
        self._on_error = on_error
        self._on_success = on_success
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._generation = 0

    # Lifecycle

    def open(self) -> None:
        """Open the write connection, create or check the schema, start the writer."""
        self._generation += 1
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            self._create_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._write_conn = conn
        self._writer = threading.Thread(target=self._write_loop, name="spc-embed-sqlite-writer", daemon=True)
        self._writer.start()

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        if self._write_conn is not None:
            self._write_conn.close()
            self._write_conn = None
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we say BEGIN and COMMIT ourselves.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute("PRAGMA synchronous=FULL")  # WAL + FULL: every commit is fsynced
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
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
                raise SchemaVersionError(row[0])
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
            local.conn = self._connect()
            local.conn.execute("PRAGMA query_only=ON")
            local.generation = self._generation
            with self._readers_lock:
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

    async def write(self, factory: PlanFactory[Any]) -> Any:
        if self._writer is None:
            raise self._on_error(RuntimeError("the SQLite writer is not running"))
        future = asyncio.get_running_loop().create_future()
        self._queue.put((factory, future))
        return await future

    def _write_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                batch.append(job)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[PlanFactory[Any], asyncio.Future[Any]]]) -> None:
        conn = self._write_conn
        assert conn is not None
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for factory, _ in batch:
                conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, run_plan(conn, factory())))
                except (SPCEmbedError, sqlite3.Error, Exception) as exc:
                    conn.execute("ROLLBACK TO job")
                    outcomes.append((False, exc))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            # Nothing of the batch is written: every request gets its own 503.
            outcomes = [(False, self._on_error(exc)) for _ in batch]
        else:
            self._on_success()
        for (_, future), (ok, value) in zip(batch, outcomes):
            if not ok and isinstance(value, sqlite3.Error):
                value = self._on_error(value)
            loop = future.get_loop()
            try:
                loop.call_soon_threadsafe(_settle, future, ok, value)
            except RuntimeError:
                pass  # that loop has closed: nobody is waiting


def sqlite_path(url: str) -> str:
    """The file of ``sqlite:///relative.db`` or ``sqlite:////absolute.db``, made absolute."""
    rest = url.split(":", 1)[1]
    if not rest.startswith("///"):
        raise ValueError("a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db")
    path = rest[3:].split("?", 1)[0]
    if not path or path == ":memory:":
        raise ValueError("spc-embed needs a SQLite file (state must survive a restart), not :memory:")
    return str(Path(path).absolute())
