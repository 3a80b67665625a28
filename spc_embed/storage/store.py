"""The async store: every read and every atomic write the issuer needs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from ..errors import AssertionRejected, ChallengeError, Conflict, TokenUsed
from ..transactions import EXPIRED, FAILED, PENDING, SUCCEEDED
from .records import Challenge, Credential, OptOut, TransactionRecord, User
from .schema import challenges, credentials, metadata, opt_outs, transactions, used_tokens, users

def async_url(url: str) -> str:
    """Map the plain URLs users write to the async drivers SQLAlchemy needs."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def _transaction(row: Any) -> TransactionRecord:
    values = dict(row._mapping)
    values["data"] = json.loads(values.pop("data_json"))
    values["expected"] = json.loads(values.pop("expected_json"))
    values["credential_ids"] = tuple(json.loads(values["credential_ids"]))
    return TransactionRecord(**values)


def _credential(row: Any) -> Credential:
    values = dict(row._mapping)
    values["transports"] = tuple(json.loads(values["transports"]))
    return Credential(**values)


@dataclass
class Store:
    """The database. Create one per process; it creates its schema on first use."""

    url: str
    clock: Any = field(default=time.time, repr=False)
    engine: AsyncEngine = field(init=False, repr=False)
    _ready: bool = field(default=False, init=False, repr=False)
    _lock: asyncio.Lock | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        url = async_url(self.url)
        if url.startswith("sqlite"):
            # A fresh connection per use (about 1.6 ms here, bench/bench_payment.py):
            # an aiosqlite connection must not outlive the event loop that made
            # it, and TestClient and reloaders run several loops over one app.
            self.engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_busy_timeout)
        else:
            self.engine = create_async_engine(url, pool_pre_ping=True)

    async def ready(self) -> None:
        if self._ready:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._ready:
                async with self.engine.begin() as conn:
                    if conn.dialect.name == "sqlite":
                        # WAL lets readers run beside the one writer; it is a
                        # property of the database file, so setting it once lasts.
                        await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                    await conn.run_sync(metadata.create_all)
                self._ready = True

    async def close(self) -> None:
        await self.engine.dispose()

    def now(self) -> float:
        return float(self.clock())

    # Users

    async def get_or_create_user(self, user_id: str, name: str, display_name: str, handle: bytes) -> User:
        """Return the user, creating it with ``handle`` if new (races resolve to one row)."""
        await self.ready()
        existing = await self.get_user(user_id)
        if existing is not None:
            return existing
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    users.insert().values(
                        user_id=user_id, user_handle=handle, name=name,
                        display_name=display_name, created_at=self.now(),
                    )
                )
        except IntegrityError:
            pass  # created concurrently: the stored row wins
        user = await self.get_user(user_id)
        if user is None:  # pragma: no cover - only if the row vanished in between
            raise Conflict("user could not be created")
        return user

    async def get_user(self, user_id: str) -> User | None:
        await self.ready()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(users.c.user_id, users.c.user_handle, users.c.name,
                                                users.c.display_name).where(users.c.user_id == user_id))).first()
        return User(*row) if row else None

    # Credentials

    async def add_credential(self, credential: Credential, *, challenge: str, subject: str,
                             token_id: str) -> None:
        """Store a new credential, consuming its challenge and enrolment token, atomically.

        Either all three happen or none: a reused challenge or token, or a
        credential id registered before (to anyone), leaves nothing behind.
        """
        await self.ready()
        values = {k: getattr(credential, k) for k in credentials.c.keys()}
        values["transports"] = json.dumps(list(credential.transports))
        async with self.engine.begin() as conn:
            if not await self._consume_challenge(conn, challenge, purpose="registration", subject=subject):
                raise ChallengeError("the registration challenge is unknown, expired or already used")
            try:
                await conn.execute(used_tokens.insert().values(token_id=token_id, used_at=self.now()))
            except IntegrityError as exc:
                raise TokenUsed("this enrolment link has already been used") from exc
            try:
                await conn.execute(credentials.insert().values(**values))
            except IntegrityError as exc:
                raise Conflict("this credential is already registered", code="credential_exists") from exc

    async def get_credential(self, credential_id: bytes) -> Credential | None:
        await self.ready()
        async with self.engine.connect() as conn:
            row = (await conn.execute(
                sa.select(credentials).where(credentials.c.credential_id == credential_id)
            )).first()
        return _credential(row) if row else None

    async def list_credentials(self, user_id: str, *, include_revoked: bool = False) -> list[Credential]:
        await self.ready()
        query = sa.select(credentials).where(credentials.c.user_id == user_id)
        if not include_revoked:
            query = query.where(credentials.c.revoked_at.is_(None))
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(credentials.c.created_at))).all()
        return [_credential(r) for r in rows]

    async def payable_credentials(self, tenant_id: str, user_id: str) -> tuple[User | None, list[Credential]]:
        """The user, and the credentials this merchant may offer for a payment.

        Live credentials enrolled after the user's last opt-out at this
        merchant. One connection, and the same queries whether the user
        exists or not, so timing tells nothing (S11).
        """
        await self.ready()
        async with self.engine.connect() as conn:
            user_row = (await conn.execute(
                sa.select(users.c.user_id, users.c.user_handle, users.c.name, users.c.display_name)
                .where(users.c.user_id == user_id)
            )).first()
            opted_out_at = (await conn.execute(
                sa.select(sa.func.max(opt_outs.c.reported_at))
                .where(opt_outs.c.tenant_id == tenant_id, opt_outs.c.user_id == user_id)
            )).scalar()
            query = sa.select(credentials).where(
                credentials.c.user_id == user_id, credentials.c.revoked_at.is_(None))
            if opted_out_at is not None:
                query = query.where(credentials.c.created_at > opted_out_at)
            rows = (await conn.execute(query.order_by(credentials.c.created_at))).all()
        return (User(*user_row) if user_row else None), [_credential(r) for r in rows]

    async def record_use(self, credential_id: bytes, *, expected_sign_count: int, new_sign_count: int,
                         backed_up: bool) -> bool:
        """Advance the sign count only from the value the verifier saw (compare-and-set).

        False means another request used the credential in between: one
        assertion must not complete two ceremonies.
        """
        await self.ready()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                credentials.update()
                .where(credentials.c.credential_id == credential_id)
                .where(credentials.c.sign_count == expected_sign_count)
                .where(credentials.c.revoked_at.is_(None))
                .values(sign_count=new_sign_count, backed_up=backed_up, last_used_at=self.now())
            )
        return result.rowcount == 1

    async def rename_credential(self, user_id: str, credential_id: bytes, nickname: str) -> bool:
        return await self._update_credential(user_id, credential_id, nickname=nickname)

    async def revoke_credential(self, user_id: str, credential_id: bytes) -> bool:
        return await self._update_credential(user_id, credential_id, revoked_at=self.now())

    async def _update_credential(self, user_id: str, credential_id: bytes, **values: Any) -> bool:
        await self.ready()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                credentials.update()
                .where(credentials.c.credential_id == credential_id)
                .where(credentials.c.user_id == user_id)
                .where(credentials.c.revoked_at.is_(None))
                .values(**values)
            )
        return result.rowcount == 1

    # Challenges

    async def put_challenge(self, challenge: Challenge) -> None:
        await self.ready()
        async with self.engine.begin() as conn:
            await conn.execute(challenges.insert().values(
                challenge=challenge.challenge, purpose=challenge.purpose, subject=challenge.subject,
                user_id=challenge.user_id, expires_at=challenge.expires_at, used_at=None,
            ))

    async def get_challenge(self, challenge: str) -> Challenge | None:
        await self.ready()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(challenges).where(challenges.c.challenge == challenge))).first()
        return Challenge(**row._mapping) if row else None

    async def consume_challenge(self, challenge: str, *, purpose: str, subject: str) -> bool:
        """Mark a live challenge used; True exactly once, for the right ceremony only."""
        await self.ready()
        async with self.engine.begin() as conn:
            return await self._consume_challenge(conn, challenge, purpose=purpose, subject=subject)

    async def _consume_challenge(self, conn: AsyncConnection, challenge: str, *, purpose: str,
                                 subject: str) -> bool:
        now = self.now()
        result = await conn.execute(
            challenges.update()
            .where(challenges.c.challenge == challenge)
            .where(challenges.c.purpose == purpose)
            .where(challenges.c.subject == subject)
            .where(challenges.c.used_at.is_(None))
            .where(challenges.c.expires_at > now)
            .values(used_at=now)
        )
        return result.rowcount == 1

    # Transactions

    async def create_transaction(self, record: TransactionRecord) -> None:
        """Insert a pending transaction and its payment challenge; a reused id is Conflict (409).

        Uniqueness is the primary key's, never a read before the insert, so N
        concurrent initializes with one id give one row and N-1 conflicts.
        """
        await self.ready()
        values = {k: getattr(record, k) for k in transactions.c.keys() if hasattr(record, k)}
        values.update(
            data_json=json.dumps(record.data, separators=(",", ":")),
            expected_json=json.dumps(record.expected, separators=(",", ":")),
            credential_ids=json.dumps(list(record.credential_ids)),
        )
        async with self.engine.begin() as conn:
            try:
                await conn.execute(transactions.insert().values(**values))
            except IntegrityError as exc:
                raise Conflict(f"transaction id {record.transaction_id!r} is already used by this merchant",
                               code="transaction_exists") from exc
            await conn.execute(challenges.insert().values(
                challenge=record.challenge, purpose=PAYMENT, subject=payment_subject(record.tenant_id,
                                                                                     record.transaction_id),
                user_id=record.user_id, expires_at=record.expires_at, used_at=None,
            ))

    async def get_transaction(self, tenant_id: str, transaction_id: str) -> TransactionRecord | None:
        await self.ready()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(transactions).where(
                transactions.c.tenant_id == tenant_id, transactions.c.transaction_id == transaction_id,
            ))).first()
        return _transaction(row) if row else None

    async def find_transactions(self, tenant_ids: Collection[str], *, transaction_id: str | None = None,
                                challenge: str | None = None) -> list[TransactionRecord]:
        """Transactions of any of ``tenant_ids`` with this id or this challenge (at most one per tenant)."""
        await self.ready()
        query = sa.select(transactions).where(transactions.c.tenant_id.in_(list(tenant_ids)))
        if transaction_id is not None:
            query = query.where(transactions.c.transaction_id == transaction_id)
        if challenge is not None:
            query = query.where(transactions.c.challenge == challenge)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.limit(2))).all()
        return [_transaction(r) for r in rows]

    async def list_transactions(self, user_id: str, *, tenant_id: str | None = None,
                                limit: int = 100) -> list[TransactionRecord]:
        """A user's transactions, newest first; pending ones past their TTL are marked expired first."""
        await self.expire_due()
        query = sa.select(transactions).where(transactions.c.user_id == user_id)
        if tenant_id is not None:
            query = query.where(transactions.c.tenant_id == tenant_id)
        query = query.order_by(transactions.c.created_at.desc(), transactions.c.transaction_id).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_transaction(r) for r in rows]

    async def expire_due(self) -> int:
        """Move every pending transaction past its TTL to expired (forward only)."""
        await self.ready()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                transactions.update()
                .where(transactions.c.state == PENDING, transactions.c.expires_at <= self.now())
                .values(state=EXPIRED)
            )
        return result.rowcount

    async def finalize_transaction(
        self, tenant_id: str, transaction_id: str, *, challenge: str, credential_id: bytes,
        expected_sign_count: int, new_sign_count: int, backed_up: bool, method: str,
        browser_bound_public_key: bytes | None,
    ) -> None:
        """Complete a verified transaction: all of it in one database transaction, or nothing.

        Consumes the payment challenge, advances the credential's sign count from
        the value the verifier saw (compare-and-set), and moves the transaction
        from pending to succeeded; if any of the three conditional updates
        matches no row (a parallel submit won, the TTL passed, the credential
        was revoked), everything rolls back (SECURITY.md A10, S8, T3).
        """
        await self.ready()
        now = self.now()
        async with self.engine.begin() as conn:
            # Writes only, first statement included: a SQLite reader upgrading to a writer could not wait.
            if not await self._consume_challenge(conn, challenge, purpose=PAYMENT,
                                                 subject=payment_subject(tenant_id, transaction_id)):
                raise ChallengeError("this transaction's challenge is expired or was already used",
                                     code="challenge_used")
            used = await conn.execute(
                credentials.update()
                .where(credentials.c.credential_id == credential_id,
                       credentials.c.sign_count == expected_sign_count,
                       credentials.c.revoked_at.is_(None))
                .values(sign_count=new_sign_count, backed_up=backed_up, last_used_at=now)
            )
            if used.rowcount != 1:
                raise AssertionRejected("the credential was used or revoked concurrently", code="credential_in_use")
            moved = await conn.execute(
                transactions.update()
                .where(transactions.c.tenant_id == tenant_id, transactions.c.transaction_id == transaction_id,
                       transactions.c.challenge == challenge, transactions.c.state == PENDING,
                       transactions.c.expires_at > now)
                .values(state=SUCCEEDED, finalized_at=now, credential_id=credential_id, method=method,
                        browser_bound_public_key=browser_bound_public_key)
            )
            if moved.rowcount != 1:
                raise Conflict("the transaction is no longer pending", code="transaction_not_pending")

    async def record_opt_out(self, tenant_id: str, transaction_id: str, *, reported_by: str) -> OptOut:
        """The user chose "opt out" in the SPC dialog: fail the transaction, burn its challenge, record it."""
        await self.ready()
        now = self.now()
        async with self.engine.begin() as conn:
            moved = await conn.execute(
                transactions.update()
                .where(transactions.c.tenant_id == tenant_id, transactions.c.transaction_id == transaction_id,
                       transactions.c.state == PENDING, transactions.c.expires_at > now)
                .values(state=FAILED, failure_reason="opt_out", finalized_at=now)
            )
            if moved.rowcount != 1:
                raise Conflict("the transaction is no longer pending", code="transaction_not_pending")
            row = (await conn.execute(sa.select(transactions).where(
                transactions.c.tenant_id == tenant_id, transactions.c.transaction_id == transaction_id,
            ))).one()
            record = _transaction(row)
            await conn.execute(challenges.update().where(challenges.c.challenge == record.challenge)
                               .values(used_at=now))
            opt_out = OptOut(tenant_id=tenant_id, user_id=record.user_id, transaction_id=transaction_id,
                             credential_ids=record.credential_ids, reported_by=reported_by, reported_at=now)
            await conn.execute(opt_outs.insert().values(
                tenant_id=tenant_id, user_id=record.user_id, transaction_id=transaction_id,
                credential_ids=json.dumps(list(record.credential_ids)), reported_by=reported_by, reported_at=now,
            ))
        return opt_out

    async def latest_opt_out(self, tenant_id: str, user_id: str) -> float | None:
        """When the user last opted out at this merchant, if ever."""
        await self.ready()
        async with self.engine.connect() as conn:
            value = (await conn.execute(
                sa.select(sa.func.max(opt_outs.c.reported_at))
                .where(opt_outs.c.tenant_id == tenant_id, opt_outs.c.user_id == user_id)
            )).scalar()
        return value

    async def list_opt_outs(self, user_id: str) -> list[OptOut]:
        await self.ready()
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(opt_outs).where(opt_outs.c.user_id == user_id).order_by(opt_outs.c.reported_at)
            )).all()
        return [
            OptOut(tenant_id=r.tenant_id, user_id=r.user_id, transaction_id=r.transaction_id,
                   credential_ids=tuple(json.loads(r.credential_ids)), reported_by=r.reported_by,
                   reported_at=r.reported_at)
            for r in rows
        ]

    # Single-use tokens

    async def is_token_used(self, token_id: str) -> bool:
        await self.ready()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(used_tokens.c.token_id).where(used_tokens.c.token_id == token_id))).first()
        return row is not None


PAYMENT = "payment"


def payment_subject(tenant_id: str, transaction_id: str) -> str:
    """The challenge subject binding a payment challenge to one tenant's transaction."""
    return json.dumps([tenant_id, transaction_id], separators=(",", ":"))


def _sqlite_busy_timeout(dbapi_connection: Any, _record: Any) -> None:
    # Concurrent writers wait for the lock instead of failing at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
