"""PostgreSQL, for several issuer processes: asyncpg pools, one per event loop.

An asyncpg connection belongs to the event loop that opened it, and one
``Issuer`` may be used from several loops (TestClient, reloaders), so each
loop gets its own pool, made on first use there. PostgreSQL shares WAL
flushes between concurrent commits by itself, so each write is simply one
transaction on a pooled connection; a deadlock or serialization failure is
retried, every other driver or connection error becomes a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable
from typing import Any

import asyncpg

from ..errors import InvalidRequest, StorageUnavailable
from .plans import ROW, ROWCOUNT, Plan, PlanFactory, Statement, fetch_row
from .schema import SCHEMA_VERSION, ddl, migrations

logger = logging.getLogger("spc_embed.storage")

RETRIES = 3  # deadlocks and serialization failures: another attempt usually goes through
SCHEMA_LOCK = 0x5B_C0_E4_BE_D0  # pg_advisory_xact_lock key: one schema step at a time, any process

# Errors of the request's data, not of the database (NUL in text, a number out of range).
_DATA_ERRORS = (asyncpg.exceptions.DataError, asyncpg.exceptions._base.DataError)
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
# InternalClientError: a connection cut mid-statement (the server went away) before the pool noticed.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError,
                  asyncio.TimeoutError)


async def run_plan(conn: asyncpg.Connection, plan: Plan[Any]) -> Any:
    try:
        statement = next(plan)
        while True:
            statement = plan.send(await _run(conn, statement))
    except StopIteration as done:
        return done.value


async def _run(conn: asyncpg.Connection, statement: Statement) -> Any:
    try:
        if statement.returns == ROWCOUNT:
            status: str = await conn.execute(statement.sql, *statement.args)
            return int(status.rsplit(" ", 1)[-1])  # "UPDATE 1", "INSERT 0 1"
        if statement.returns == ROW:
            row = await conn.fetchrow(statement.sql, *statement.args)
            return tuple(row) if row is not None else None
        return [tuple(r) for r in await conn.fetch(statement.sql, *statement.args)]
    except (UnicodeEncodeError, OverflowError, *_DATA_ERRORS) as exc:
        raise InvalidRequest("a value in the request cannot be stored", code="unstorable_value") from exc


class PostgresBackend:
    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int, timeout: float,
                 on_error: Callable[[BaseException], StorageUnavailable], on_success: Callable[[], None]) -> None:
        self.url = url
        self.pool_size = pool_size
        self.timeout = timeout
        self._on_error = on_error
        self._on_success = on_success
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncpg.Pool] = \
            weakref.WeakKeyDictionary()
        self._creating: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[asyncpg.Pool]] = \
            weakref.WeakKeyDictionary()

    # Lifecycle

    async def open(self) -> None:
        pool = await self._pool()
        async with pool.acquire(timeout=self.timeout) as conn, conn.transaction():
            # DDL of several processes at once collides in PostgreSQL's own
            # catalogs even with IF NOT EXISTS; one lock makes them take turns.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
            for statement in ddl("postgresql"):
                await conn.execute(statement)
            found = await conn.fetchval("SELECT version FROM spc_schema WHERE id = 1")
            if found is None:
                await conn.execute("INSERT INTO spc_schema (id, version) VALUES (1, $1)", SCHEMA_VERSION)
            elif found != SCHEMA_VERSION:
                # An older database: migrate it, and record the version, in this same transaction.
                for statement in migrations("postgresql", found):
                    await conn.execute(statement)
                await conn.execute("UPDATE spc_schema SET version = $1 WHERE id = 1", SCHEMA_VERSION)

    async def close(self) -> None:
        current = _running_loop()
        for loop, pool in list(self._pools.items()):
            if loop is current:
                try:
                    await asyncio.wait_for(pool.close(), self.timeout)
                except (TimeoutError, *_DRIVER_ERRORS):
                    pool.terminate()
            else:  # its loop is elsewhere or gone: no graceful goodbye possible
                with contextlib.suppress(RuntimeError):  # "Event loop is closed": its sockets went with it
                    pool.terminate()
        self._pools.clear()

    async def _pool(self) -> asyncpg.Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None:
            return pool
        creating = self._creating.get(loop)
        if creating is None:
            creating = loop.create_task(self._create_pool())
            self._creating[loop] = creating
        try:
            pool = await creating
        finally:
            self._creating.pop(loop, None)
        self._pools[loop] = pool
        return pool

    async def _create_pool(self) -> asyncpg.Pool:
        # min_size=0: connections are made on demand. A kept floor would make
        # asyncpg log a traceback every second of an outage while it retries.
        # reset: the store leaves nothing on a connection to clean up (no session
        # settings, LISTEN, cursors or session locks), so a connection goes back to
        # the pool as it is, without the round trip of asyncpg's default reset query.
        return await asyncpg.create_pool(
            self.url, min_size=0, max_size=self.pool_size, timeout=self.timeout,
            command_timeout=self.timeout, statement_cache_size=256, reset=_keep_as_is,
        )

    async def ping(self) -> None:
        await self.read(_ping)

    # Reads and writes

    async def read(self, factory: PlanFactory[Any]) -> Any:
        try:
            pool = await self._pool()
            async with pool.acquire(timeout=self.timeout) as conn:
                value = await run_plan(conn, factory())
        except _DRIVER_ERRORS as exc:
            raise self._on_error(exc) from exc
        self._on_success()
        return value

    async def write(self, factory: PlanFactory[Any], *, single_statement: bool = False) -> Any:
        """Run a write plan in one transaction; a single statement is atomic by itself (no BEGIN/COMMIT)."""
        for attempt in range(RETRIES):
            try:
                pool = await self._pool()
                async with pool.acquire(timeout=self.timeout) as conn:
                    if single_statement:
                        value = await run_plan(conn, factory())
                    else:
                        async with conn.transaction():
                            value = await run_plan(conn, factory())
            except _RETRYABLE as exc:
                if attempt == RETRIES - 1:
                    raise self._on_error(exc) from exc
                continue
            except _DRIVER_ERRORS as exc:
                raise self._on_error(exc) from exc
            self._on_success()
            return value
        raise AssertionError("unreachable")  # pragma: no cover


async def _keep_as_is(connection: asyncpg.Connection) -> None:
    return None


def _ping() -> Plan[Any]:
    return (yield fetch_row("SELECT 1"))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
