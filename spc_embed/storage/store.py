"""The store: every read and every atomic write the issuer needs, with a lifecycle.

    store = Store("sqlite:////var/lib/bank/spc.db")
    await store.open()      # connects, creates or checks the schema; fails here, naming the database
    ...
    await store.close()

``Issuer.lifespan`` does both for a host app. Every "only once" rule (a
challenge, an enrolment token, a transaction id, a sign count step) is a
unique key or a conditional UPDATE, so it holds across processes. Every
driver or connection error becomes :class:`StorageUnavailable` (503), logged
once per outage, with nothing half-written.

A payment's challenge lives in its transaction row: the transaction moving
out of ``pending`` (once, by a conditional update) is what uses it up.
Enrolment challenges have their own table.

Lock order. Every write that changes more than one existing row takes its
rows in this order, so two writes never wait on each other in a circle
(PostgreSQL would abort one as a deadlock): registration challenge, then
transaction, then credential, then the rows it inserts. Finalize takes the
transaction, then the credential; opt-out takes only the transaction;
revoking or renaming takes only the credential; inserts of new rows
(initialize, enrolment) lock no existing rows.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import fields, replace
from operator import attrgetter, itemgetter
from typing import Any, TypeVar

import orjson

from ..encoding import compact_json
from ..errors import (
    AssertionRejected,
    ChallengeError,
    ConfigurationError,
    Conflict,
    StorageUnavailable,
    TokenUsed,
)
from ..transactions import EXPIRED, FAILED, PENDING, SUCCEEDED
from .plans import Plan, PlanFactory, Refusal, execute, fetch_row, fetch_rows, placeholders
from .records import Challenge, Credential, OptOut, TransactionRecord, User
from .schema import CREDENTIAL_COLUMNS, SCHEMA_VERSION, TRANSACTION_COLUMNS, SchemaVersionError
from .sqlite import SQLiteBackend, sqlite_path

T = TypeVar("T")

logger = logging.getLogger("spc_embed.storage")

REGISTRATION = "registration"

_CREDENTIAL_SELECT = f"SELECT {', '.join(CREDENTIAL_COLUMNS)} FROM spc_credentials"
_TRANSACTION_SELECT = f"SELECT {', '.join(TRANSACTION_COLUMNS)} FROM spc_transactions"
_TRANSACTION_INSERT = (f"INSERT INTO spc_transactions ({', '.join(TRANSACTION_COLUMNS)}) "
                       f"VALUES ({placeholders(1, len(TRANSACTION_COLUMNS))}) ON CONFLICT DO NOTHING")
_USER_SELECT = "SELECT user_id, user_handle, name, display_name FROM spc_users"
# The user (NULLs if unknown) beside each payable credential (NULLs if none): always at least one row.
# Credentials without a card (instrument_id '') are included: the bank's own site offers them (H6).
_PAYABLE = (
    "SELECT u.user_id, u.user_handle, u.name, u.display_name, "
    + ", ".join(f"c.{column}" for column in CREDENTIAL_COLUMNS)
    + " FROM (SELECT CAST($1 AS TEXT) AS wanted) AS q"
    " LEFT JOIN spc_users AS u ON u.user_id = q.wanted"
    " LEFT JOIN spc_credentials AS c ON c.user_id = q.wanted AND c.revoked_at IS NULL AND c.created_at > COALESCE("
    "(SELECT MAX(o.reported_at) FROM spc_opt_outs AS o WHERE o.tenant_id = $2 AND o.user_id = q.wanted), -1)"
    " ORDER BY c.created_at"
)
_CONSUME_CHALLENGE = (
    "UPDATE spc_challenges SET used_at = $1 WHERE challenge = $2 AND purpose = $3 AND subject = $4"
    " AND used_at IS NULL AND expires_at > $1"
)


def redacted(url: str) -> str:
    """The database URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


class Store:
    """The database. One per process (``Issuer`` makes it); open it before use, close it after."""

    def __init__(self, url: str, *, clock: Any = time.time, pool_size: int = 10, timeout: float = 3.0) -> None:
        self.url = url
        self.clock = clock
        self._opened = 0
        self._outage = False
        self.backend: Any
        if url.startswith("sqlite"):
            try:
                path = sqlite_path(url)
            except ValueError as exc:
                raise ConfigurationError(f"database_url {url!r}: {exc}") from None
            self.backend = SQLiteBackend(path, on_error=self._unavailable, on_success=self._available)
        elif url.startswith(("postgresql://", "postgres://")):
            from .postgres import PostgresBackend  # asyncpg is an optional extra

            self.backend = PostgresBackend(url, pool_size=pool_size, timeout=timeout,
                                           on_error=self._unavailable, on_success=self._available)
        else:
            raise ConfigurationError(f"database_url {redacted(url)!r} must be sqlite:/// or postgresql://")

    def __repr__(self) -> str:
        return f"Store({redacted(self.url)!r})"

    # Lifecycle

    async def open(self) -> None:
        """Connect and create or check the schema; idempotent and safe in several processes at once.

        Opens are counted: the store closes when every ``open`` has had its ``close``.
        """
        self._opened += 1
        if self._opened > 1:
            return
        try:
            if isinstance(self.backend, SQLiteBackend):
                self.backend.open()
            else:
                await self.backend.open()
        except SchemaVersionError as exc:
            self._opened = 0
            raise ConfigurationError(
                f"the database {redacted(self.url)} has schema version {exc.found}, this spc-embed knows "
                f"version {SCHEMA_VERSION}: upgrade spc-embed, or point database_url at the right database"
            ) from None
        except Exception as exc:
            self._opened = 0
            raise ConfigurationError(f"cannot open the database {self._describe(exc)}: {exc}") from exc

    async def close(self) -> None:
        if self._opened == 0:
            return
        self._opened -= 1
        if self._opened == 0:
            await self.backend.close()

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._opened > 0

    async def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers now (for health checks)."""
        self._require_open()
        if isinstance(self.backend, SQLiteBackend):
            try:
                self.backend.ping()
            except Exception as exc:
                raise self._unavailable(exc) from exc
        else:
            await self.backend.ping()

    def now(self) -> float:
        return float(self.clock())

    def _describe(self, error: Exception) -> str:
        if isinstance(self.backend, SQLiteBackend):
            hint = " (does its directory exist, and may this process write it?)" if "unable to open" in str(error) else ""
            return f"SQLite file {self.backend.path}{hint}"
        return redacted(self.url)

    def _require_open(self) -> None:
        if not self._opened:
            logger.error("spc-embed's store is used before it was opened: run the app with issuer.lifespan "
                         "(Starlette(lifespan=issuer.lifespan)) or await issuer.store.open() at startup")
            raise StorageUnavailable("the issuer's database is not open")

    def _unavailable(self, exc: BaseException) -> StorageUnavailable:
        if not self._outage:
            self._outage = True
            logger.error("database %s unavailable: %s: %s (logged once until it answers again)",
                         redacted(self.url), type(exc).__name__, exc)
        return StorageUnavailable("the issuer's database is unavailable; retry shortly")

    def _available(self) -> None:
        if self._outage:
            self._outage = False
            logger.warning("database %s answers again", redacted(self.url))

    async def _read(self, factory: PlanFactory[T]) -> T:
        if not self._opened:
            self._require_open()
        value: T = await self.backend.read(factory)
        return value

    async def _write(self, factory: PlanFactory[T | Refusal], *, single_statement: bool = False) -> T:
        """Run a write plan atomically; ``single_statement`` plans need no transaction around them.

        A plan that returns a :class:`Refusal` has its error raised here.
        """
        if not self._opened:
            self._require_open()
        result = await self.backend.write(factory, single_statement=single_statement)
        if isinstance(result, Refusal):
            raise result.error
        value: T = result
        return value

    # Users

    async def get_user(self, user_id: str) -> User | None:
        def plan() -> Plan[User | None]:
            row = yield fetch_row(_USER_SELECT + " WHERE user_id = $1", user_id)
            return User(*row) if row else None

        return await self._read(plan)

    async def get_or_create_user(self, user_id: str, name: str, display_name: str, handle: bytes) -> User:
        """Return the user, creating it with ``handle`` if new (races resolve to one row)."""
        existing = await self.get_user(user_id)
        if existing is not None:
            return existing
        now = self.now()

        def plan() -> Plan[User]:
            yield execute(
                "INSERT INTO spc_users (user_id, user_handle, name, display_name, created_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                user_id, handle, name, display_name, now,
            )
            row = yield fetch_row(_USER_SELECT + " WHERE user_id = $1", user_id)
            if row is None:  # the random handle collided: astronomically unlikely, but not a 500
                raise Conflict("the user could not be created; retry", code="user_conflict")
            return User(*row)

        user: User = await self._write(plan)
        return user

    # Credentials

    async def add_credential(self, credential: Credential, *, challenge: str, subject: str,
                             token_id: str | None, purpose: str = REGISTRATION) -> None:
        """Store a new credential, consuming its challenge and enrolment token, atomically.

        Either all three happen or none: a reused challenge or token, or a
        credential id registered before (to anyone), leaves nothing behind.
        ``token_id`` None is a registration without an enrolment link (the
        issuer's own page, ``POST /registration/finalize``): its challenge,
        of its own ``purpose``, is then the only thing consumed.
        """
        now = self.now()
        values = [getattr(credential, c) for c in CREDENTIAL_COLUMNS]
        values[CREDENTIAL_COLUMNS.index("transports")] = json.dumps(list(credential.transports))
        insert = (f"INSERT INTO spc_credentials ({', '.join(CREDENTIAL_COLUMNS)}) "
                  f"VALUES ({placeholders(1, len(values))}) ON CONFLICT DO NOTHING")

        def plan() -> Plan[None]:
            if (yield execute(_CONSUME_CHALLENGE, now, challenge, purpose, subject)) != 1:
                raise ChallengeError("the registration challenge is unknown, expired or already used")
            if token_id is not None:
                if (yield execute("INSERT INTO spc_used_tokens (token_id, used_at) VALUES ($1, $2)"
                                  " ON CONFLICT DO NOTHING", token_id, now)) != 1:
                    raise TokenUsed("this enrolment link has already been used")
            if (yield execute(insert, *values)) != 1:
                raise Conflict("this credential is already registered", code="credential_exists")

        await self._write(plan)

    async def get_credential(self, credential_id: bytes) -> Credential | None:
        def plan() -> Plan[Credential | None]:
            row = yield fetch_row(_CREDENTIAL_SELECT + " WHERE credential_id = $1", credential_id)
            return _credential(row) if row else None

        return await self._read(plan)

    async def list_credentials(self, user_id: str, *, include_revoked: bool = False) -> list[Credential]:
        live = "" if include_revoked else " AND revoked_at IS NULL"

        def plan() -> Plan[list[Credential]]:
            rows = yield fetch_rows(_CREDENTIAL_SELECT + f" WHERE user_id = $1{live} ORDER BY created_at", user_id)
            return [_credential(r) for r in rows]

        return await self._read(plan)

    async def payable_credentials(self, tenant_id: str, user_id: str) -> tuple[User | None, list[Credential]]:
        """The user, and the credentials this merchant may offer for a payment.

        Live credentials enrolled after the user's last opt-out at this
        merchant. One query (one round trip), the same whether the user exists
        or not, so timing tells nothing (docs/security.md S11).
        """
        def plan() -> Plan[tuple[User | None, list[Credential]]]:
            return _payable((yield fetch_rows(_PAYABLE, user_id, tenant_id)))

        return await self._read(plan)

    async def record_use(self, credential_id: bytes, *, expected_sign_count: int, new_sign_count: int,
                         backed_up: bool) -> bool:
        """Advance the sign count only from the value the verifier saw (compare-and-set).

        False means another request used the credential in between: one
        assertion must not complete two ceremonies.
        """
        now = self.now()

        def plan() -> Plan[bool]:
            moved = yield execute(
                "UPDATE spc_credentials SET sign_count = $1, backed_up = $2, last_used_at = $3"
                " WHERE credential_id = $4 AND sign_count = $5 AND revoked_at IS NULL",
                new_sign_count, backed_up, now, credential_id, expected_sign_count,
            )
            return bool(moved == 1)

        used: bool = await self._write(plan, single_statement=True)
        return used

    async def rename_credential(self, user_id: str, credential_id: bytes, nickname: str) -> bool:
        return await self._update_credential(user_id, credential_id, "nickname", nickname)

    async def revoke_credential(self, user_id: str, credential_id: bytes) -> bool:
        return await self._update_credential(user_id, credential_id, "revoked_at", self.now())

    async def _update_credential(self, user_id: str, credential_id: bytes, column: str, value: Any) -> bool:
        def plan() -> Plan[bool]:
            moved = yield execute(
                f"UPDATE spc_credentials SET {column} = $1"
                " WHERE credential_id = $2 AND user_id = $3 AND revoked_at IS NULL",
                value, credential_id, user_id,
            )
            return bool(moved == 1)

        updated: bool = await self._write(plan, single_statement=True)
        return updated

    # Challenges

    async def put_challenge(self, challenge: Challenge) -> None:
        def plan() -> Plan[None]:
            if (yield execute(
                "INSERT INTO spc_challenges (challenge, purpose, subject, user_id, expires_at, used_at)"
                " VALUES ($1, $2, $3, $4, $5, NULL) ON CONFLICT DO NOTHING",
                challenge.challenge, challenge.purpose, challenge.subject, challenge.user_id, challenge.expires_at,
            )) != 1:
                raise Conflict("this challenge exists already", code="challenge_exists")

        await self._write(plan, single_statement=True)

    async def get_challenge(self, challenge: str) -> Challenge | None:
        def plan() -> Plan[Challenge | None]:
            row = yield fetch_row("SELECT challenge, purpose, subject, user_id, expires_at, used_at"
                                  " FROM spc_challenges WHERE challenge = $1", challenge)
            return Challenge(*row) if row else None

        return await self._read(plan)

    async def consume_challenge(self, challenge: str, *, purpose: str, subject: str) -> bool:
        """Mark a live challenge used; True exactly once, for the right ceremony only."""
        now = self.now()

        def plan() -> Plan[bool]:
            return bool((yield execute(_CONSUME_CHALLENGE, now, challenge, purpose, subject)) == 1)

        consumed: bool = await self._write(plan, single_statement=True)
        return consumed

    # Transactions

    async def create_transaction(self, record: TransactionRecord) -> None:
        """Insert a pending transaction (its challenge with it); a reused id is Conflict (409).

        Uniqueness is the primary key's, never a read before the insert, so N
        concurrent initializes with one id give one row and N-1 conflicts.
        """
        await self._write(lambda: _insert_transaction(record), single_statement=True)

    async def start_transaction(
        self, tenant_id: str, user_id: str,
        build: Callable[[User | None, list[Credential]], tuple[TransactionRecord, T]],
    ) -> T:
        """Read the user's payable credentials, build the transaction from them, insert it; one write.

        ``build`` gets what :meth:`payable_credentials` returns and gives the
        record to insert (Conflict, 409, if its id is taken, as in
        :meth:`create_transaction`) and what to return. Reading inside the write lets SQLite read
        on the writer's connection in the shared commit (warm pages, no read
        transaction of its own); PostgreSQL runs the two statements one after
        the other, as two calls would.
        """
        def plan() -> Plan[T]:
            rows = yield fetch_rows(_PAYABLE, user_id, tenant_id)
            record, result = build(*_payable(rows))
            yield from _insert_transaction(record)
            return result

        # One change at most (the insert), and nothing changed when it refuses.
        started: T = await self._write(plan, single_statement=True)
        return started

    async def get_transaction(self, tenant_id: str, transaction_id: str) -> TransactionRecord | None:
        now = self.now()

        def plan() -> Plan[TransactionRecord | None]:
            row = yield fetch_row(_TRANSACTION_SELECT + " WHERE tenant_id = $1 AND transaction_id = $2",
                                  tenant_id, transaction_id)
            return _transaction(row, now) if row else None

        return await self._read(plan)

    async def find_transactions(self, tenant_ids: Collection[str], *, transaction_id: str | None = None,
                                challenge: str | None = None) -> list[TransactionRecord]:
        """Transactions of any of ``tenant_ids`` with this id or this challenge (at most two are read)."""
        tenants = list(tenant_ids)
        if not tenants:
            return []
        column, value = ("transaction_id", transaction_id) if transaction_id is not None else ("challenge", challenge)
        sql = (_TRANSACTION_SELECT + f" WHERE {column} = $1 AND tenant_id IN ({placeholders(2, len(tenants))})"
               " LIMIT 2")
        now = self.now()

        def plan() -> Plan[list[TransactionRecord]]:
            rows = yield fetch_rows(sql, value, *tenants)
            return [_transaction(r, now) for r in rows]

        return await self._read(plan)

    async def find_transactions_and_credential(
        self, tenant_ids: Collection[str], *, credential_id: bytes, transaction_id: str | None = None,
        challenge: str | None = None,
    ) -> tuple[list[TransactionRecord], Credential | None]:
        """``find_transactions`` and ``get_credential(credential_id)`` in one query: a finalize needs both."""
        tenants = list(tenant_ids)
        if not tenants:
            return [], await self.get_credential(credential_id)
        column, value = ("transaction_id", transaction_id) if transaction_id is not None else ("challenge", challenge)
        sql = _transactions_and_credential_sql(column, len(tenants))
        now = self.now()
        width = len(TRANSACTION_COLUMNS)

        def plan() -> Plan[tuple[list[TransactionRecord], Credential | None]]:
            rows = yield fetch_rows(sql, value, credential_id, *tenants)
            found = [_transaction(r[:width], now) for r in rows if r[0] is not None]
            credential = _credential(rows[0][width:]) if rows[0][width] is not None else None
            return found, credential

        return await self._read(plan)

    async def list_transactions(self, user_id: str, *, tenant_id: str | None = None,
                                limit: int = 100) -> list[TransactionRecord]:
        """A user's transactions, newest first; pending ones past their TTL read as expired."""
        now = self.now()
        args: tuple[str, ...]
        if tenant_id is None:
            sql, args = _TRANSACTION_SELECT + " WHERE user_id = $1", (user_id,)
        else:
            sql, args = _TRANSACTION_SELECT + " WHERE user_id = $1 AND tenant_id = $2", (user_id, tenant_id)
        sql += f" ORDER BY created_at DESC, transaction_id LIMIT {int(limit)}"

        def plan() -> Plan[list[TransactionRecord]]:
            rows = yield fetch_rows(sql, *args)
            return [_transaction(r, now) for r in rows]

        return await self._read(plan)

    async def expire_due(self) -> int:
        """Mark every pending transaction past its TTL expired (a sweep; reads already show them so)."""
        now = self.now()

        def plan() -> Plan[int]:
            count: int = yield execute(
                "UPDATE spc_transactions SET state = $1 WHERE state = $2 AND expires_at <= $3", EXPIRED, PENDING, now,
            )
            return count

        expired: int = await self._write(plan, single_statement=True)
        return expired

    async def sweep(self) -> tuple[int, int]:
        """Housekeeping for a periodic job: mark pending transactions past their TTL expired, delete expired challenges.

        Returns (transactions expired, challenges deleted). Nothing a request
        needs is lost: a challenge's validity is its own ``expires_at``, so an
        expired one is refused whether its row is there or not. Used enrolment
        tokens are kept: whether a token is still young enough is decided with
        the configured TTL at each use, which may grow.
        """
        expired = await self.expire_due()
        now = self.now()

        def plan() -> Plan[int]:
            count: int = yield execute("DELETE FROM spc_challenges WHERE expires_at <= $1", now)
            return count

        deleted: int = await self._write(plan, single_statement=True)
        return expired, deleted

    async def finalize_transaction(
        self, tenant_id: str, transaction_id: str, *, challenge: str, credential_id: bytes,
        expected_sign_count: int, new_sign_count: int, backed_up: bool, method: str,
        browser_bound_public_key: bytes | None,
    ) -> None:
        """Complete a verified transaction: all of it in one database transaction, or nothing.

        Moves the transaction from pending to succeeded if it still is, with
        this challenge and within its TTL (so its challenge is used exactly
        once), and advances the credential's sign count from the value the
        verifier saw (compare-and-set); if either conditional update matches
        no row (a parallel submit won, the TTL passed, the credential was
        revoked), both roll back (docs/security.md A10, S8, T3). A transaction
        found past its TTL is marked expired on the way out.
        """
        now = self.now()
        if self.backend.dialect == "postgresql":
            await self._finalize_in_one_statement(
                tenant_id, transaction_id, challenge=challenge, credential_id=credential_id, now=now,
                expected_sign_count=expected_sign_count, new_sign_count=new_sign_count, backed_up=backed_up,
                method=method, browser_bound_public_key=browser_bound_public_key)
            return

        def plan() -> Plan[None | Refusal]:
            moved = yield execute(
                "UPDATE spc_transactions SET state = $1, finalized_at = $2, credential_id = $3, method = $4,"
                " browser_bound_public_key = $5 WHERE tenant_id = $6 AND transaction_id = $7 AND challenge = $8"
                " AND state = $9 AND expires_at > $2",
                SUCCEEDED, now, credential_id, method, browser_bound_public_key, tenant_id, transaction_id,
                challenge, PENDING,
            )
            if moved != 1:
                error = ChallengeError("this transaction's challenge is expired or was already used",
                                       code="challenge_used")
                return (yield from _expire_if_due(tenant_id, transaction_id, now, error))
            used = yield execute(
                "UPDATE spc_credentials SET sign_count = $1, backed_up = $2, last_used_at = $3"
                " WHERE credential_id = $4 AND sign_count = $5 AND revoked_at IS NULL",
                new_sign_count, backed_up, now, credential_id, expected_sign_count,
            )
            if used != 1:
                raise AssertionRejected("the credential was used or revoked concurrently", code="credential_in_use")
            return None

        await self._write(plan)

    async def _finalize_in_one_statement(
        self, tenant_id: str, transaction_id: str, *, challenge: str, credential_id: bytes, now: float,
        expected_sign_count: int, new_sign_count: int, backed_up: bool, method: str,
        browser_bound_public_key: bytes | None,
    ) -> None:
        """PostgreSQL: the same two conditional updates in one statement, one round trip, no BEGIN/COMMIT.

        The transaction row is locked first (FOR UPDATE, re-checked against the
        newest version), the credential's compare-and-set runs only if it was,
        and the transaction moves only if the credential did: all or nothing,
        in the documented lock order.
        """
        def plan() -> Plan[None | Refusal]:
            locked, used, moved = yield fetch_row(_PG_FINALIZE, SUCCEEDED, now, credential_id, method,
                                                  browser_bound_public_key, tenant_id, transaction_id, challenge,
                                                  PENDING, expected_sign_count, new_sign_count, backed_up)
            if not locked:
                error = ChallengeError("this transaction's challenge is expired or was already used",
                                       code="challenge_used")
                return (yield from _expire_if_due(tenant_id, transaction_id, now, error))
            if not used:
                raise AssertionRejected("the credential was used or revoked concurrently", code="credential_in_use")
            if moved != 1:  # cannot happen: the row is ours since `locked`
                raise Conflict("the transaction is no longer pending", code="transaction_not_pending")
            return None

        await self._write(plan, single_statement=True)

    async def record_opt_out(self, tenant_id: str, transaction_id: str, *, reported_by: str) -> OptOut:
        """The user chose "opt out" in the SPC dialog: fail the pending transaction (its challenge with it), record it."""
        now = self.now()

        def plan() -> Plan[OptOut | Refusal]:
            not_pending = Conflict("the transaction is no longer pending", code="transaction_not_pending")
            moved = yield execute(
                "UPDATE spc_transactions SET state = $1, failure_reason = $2, finalized_at = $3"
                " WHERE tenant_id = $4 AND transaction_id = $5 AND state = $6 AND expires_at > $3",
                FAILED, "opt_out", now, tenant_id, transaction_id, PENDING,
            )
            if moved != 1:
                return (yield from _expire_if_due(tenant_id, transaction_id, now, not_pending))
            row = yield fetch_row("SELECT user_id, credential_ids FROM spc_transactions"
                                  " WHERE tenant_id = $1 AND transaction_id = $2", tenant_id, transaction_id)
            user_id, offered = row
            yield execute(
                "INSERT INTO spc_opt_outs (tenant_id, user_id, transaction_id, credential_ids, reported_by,"
                " reported_at) VALUES ($1, $2, $3, $4, $5, $6)",
                tenant_id, user_id, transaction_id, offered, reported_by, now,
            )
            return OptOut(tenant_id=tenant_id, user_id=user_id, transaction_id=transaction_id,
                          credential_ids=tuple(json.loads(offered)), reported_by=reported_by, reported_at=now)

        opt_out: OptOut = await self._write(plan)
        return opt_out

    async def latest_opt_out(self, tenant_id: str, user_id: str) -> float | None:
        """When the user last opted out at this merchant, if ever."""
        def plan() -> Plan[float | None]:
            row = yield fetch_row("SELECT MAX(reported_at) FROM spc_opt_outs WHERE tenant_id = $1 AND user_id = $2",
                                  tenant_id, user_id)
            return row[0] if row else None

        return await self._read(plan)

    async def list_opt_outs(self, user_id: str) -> list[OptOut]:
        def plan() -> Plan[list[OptOut]]:
            rows = yield fetch_rows(
                "SELECT tenant_id, user_id, transaction_id, credential_ids, reported_by, reported_at"
                " FROM spc_opt_outs WHERE user_id = $1 ORDER BY reported_at, id", user_id,
            )
            return [OptOut(tenant_id=r[0], user_id=r[1], transaction_id=r[2], credential_ids=tuple(json.loads(r[3])),
                           reported_by=r[4], reported_at=r[5]) for r in rows]

        return await self._read(plan)

    # Single-use tokens

    async def is_token_used(self, token_id: str) -> bool:
        def plan() -> Plan[bool]:
            return (yield fetch_row("SELECT 1 FROM spc_used_tokens WHERE token_id = $1", token_id)) is not None

        return await self._read(plan)


_PG_FINALIZE = """
WITH locked AS (
    SELECT 1 FROM spc_transactions
    WHERE tenant_id = $6 AND transaction_id = $7 AND challenge = $8 AND state = $9 AND expires_at > $2
    FOR UPDATE
), used AS (
    UPDATE spc_credentials SET sign_count = $11, backed_up = $12, last_used_at = $2
    WHERE credential_id = $3 AND sign_count = $10 AND revoked_at IS NULL AND EXISTS (SELECT 1 FROM locked)
    RETURNING 1
), moved AS (
    UPDATE spc_transactions SET state = $1, finalized_at = $2, credential_id = $3, method = $4,
        browser_bound_public_key = $5
    WHERE tenant_id = $6 AND transaction_id = $7 AND EXISTS (SELECT 1 FROM used)
    RETURNING 1
)
SELECT (SELECT count(*) FROM locked), (SELECT count(*) FROM used), (SELECT count(*) FROM moved)
"""


@functools.lru_cache(maxsize=16)
def _transactions_and_credential_sql(column: str, tenants: int) -> str:
    """find_transactions_and_credential's query: one row even when neither exists (the constant row q), two at most."""
    return (f"SELECT {', '.join('t.' + c for c in TRANSACTION_COLUMNS)}, "
            f"{', '.join('c.' + c for c in CREDENTIAL_COLUMNS)} FROM (SELECT 1 AS one) AS q"
            f" LEFT JOIN spc_transactions AS t ON t.{column} = $1"
            f" AND t.tenant_id IN ({placeholders(3, tenants)})"
            " LEFT JOIN spc_credentials AS c ON c.credential_id = $2 LIMIT 2")


def _insert_transaction(record: TransactionRecord) -> Plan[None]:
    """Insert ``record``; Conflict (409) if its id is taken in its tenant."""
    if (yield execute(_TRANSACTION_INSERT, *_transaction_values(record))) != 1:
        raise Conflict(f"transaction id {record.transaction_id[:128]!r} is already used by this merchant",
                       code="transaction_exists")


def _expire_if_due(tenant_id: str, transaction_id: str, now: float, error: Exception) -> Plan[Refusal]:
    """Mark the transaction expired if its TTL has passed (a write that keeps), then refuse."""
    yield execute(
        "UPDATE spc_transactions SET state = $1 WHERE tenant_id = $2 AND transaction_id = $3 AND state = $4"
        " AND expires_at <= $5", EXPIRED, tenant_id, transaction_id, PENDING, now,
    )
    return Refusal(error)  # type: ignore[arg-type]


def _payable(rows: list[tuple[Any, ...]]) -> tuple[User | None, list[Credential]]:
    """The rows of _PAYABLE: the user (or None) and the payable credentials."""
    user = User(*rows[0][:4]) if rows[0][0] is not None else None
    return user, [_credential(r[4:]) for r in rows if r[4] is not None]


# Where each of Credential's fields is in a row of CREDENTIAL_COLUMNS, and the columns read as something else.
_CREDENTIAL_FIELDS = itemgetter(*(CREDENTIAL_COLUMNS.index(f.name) for f in fields(Credential)))
_TRANSPORTS, _BACKUP_ELIGIBLE, _BACKED_UP = (CREDENTIAL_COLUMNS.index(c)
                                             for c in ("transports", "backup_eligible", "backed_up"))


def _credential(row: tuple[Any, ...]) -> Credential:
    values = list(row)
    values[_TRANSPORTS] = tuple(orjson.loads(values[_TRANSPORTS]))
    values[_BACKUP_ELIGIBLE] = bool(values[_BACKUP_ELIGIBLE])
    values[_BACKED_UP] = bool(values[_BACKED_UP])
    return Credential(*_CREDENTIAL_FIELDS(values))


# Where each of TransactionRecord's fields is in a row of TRANSACTION_COLUMNS, and the columns read as JSON.
_TRANSACTION_COLUMN = {"data": "data_json", "expected": "expected_json"}  # fields stored under another name
_TRANSACTION_FIELDS = itemgetter(*(TRANSACTION_COLUMNS.index(_TRANSACTION_COLUMN.get(f.name, f.name))
                                   for f in fields(TransactionRecord)))
_DATA, _EXPECTED, _CREDENTIAL_IDS = (TRANSACTION_COLUMNS.index(c) for c in ("data_json", "expected_json", "credential_ids"))


def _transaction(row: tuple[Any, ...], now: float) -> TransactionRecord:
    values = list(row)
    # JSON this store wrote (its integers within 2**53: transactions.py), read by orjson, a few times faster.
    values[_DATA] = orjson.loads(values[_DATA])
    values[_EXPECTED] = orjson.loads(values[_EXPECTED])
    values[_CREDENTIAL_IDS] = tuple(orjson.loads(values[_CREDENTIAL_IDS]))
    record = TransactionRecord(*_TRANSACTION_FIELDS(values))
    if record.state == PENDING and record.expires_at <= now:
        return replace(record, state=EXPIRED)
    return record


_ENCODED_COLUMNS = {
    "data_json": lambda record: compact_json(record.data),
    "expected_json": lambda record: compact_json(record.expected),
    "credential_ids": lambda record: compact_json(list(record.credential_ids)),
}
# One getter per column, in TRANSACTION_COLUMNS order: the record's attribute, or its encoding.
_TRANSACTION_GETTERS = tuple(_ENCODED_COLUMNS.get(c, attrgetter(c)) for c in TRANSACTION_COLUMNS)


def _transaction_values(record: TransactionRecord) -> list[Any]:
    return [get(record) for get in _TRANSACTION_GETTERS]
