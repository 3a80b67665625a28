"""Persistent state behind one small async interface.

SQLAlchemy Core speaks to SQLite (default, a file, zero set-up) and to
PostgreSQL (several app instances) with the same statements. Every "only
once" rule (a challenge, an enrolment token, a transaction id, a sign count
step) is a unique key or a conditional UPDATE, so it holds across processes.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from .errors import ChallengeError, Conflict, TokenUsed

metadata = sa.MetaData()

users = sa.Table(
    "spc_users",
    metadata,
    sa.Column("user_id", sa.String(255), primary_key=True),
    # WebAuthn user.id: random, so the bank's own id never reaches the authenticator.
    sa.Column("user_handle", sa.LargeBinary(64), nullable=False, unique=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("display_name", sa.String(255), nullable=False),
    sa.Column("created_at", sa.Float(precision=53), nullable=False),
)

credentials = sa.Table(
    "spc_credentials",
    metadata,
    sa.Column("credential_id", sa.LargeBinary(1023), primary_key=True),
    sa.Column("user_id", sa.String(255), nullable=False, index=True),
    sa.Column("public_key", sa.LargeBinary, nullable=False),
    sa.Column("sign_count", sa.BigInteger, nullable=False),
    sa.Column("alg", sa.Integer, nullable=False),
    sa.Column("transports", sa.Text, nullable=False),
    sa.Column("aaguid", sa.String(36), nullable=False),
    sa.Column("attestation_format", sa.String(32), nullable=False),
    sa.Column("backup_eligible", sa.Boolean, nullable=False),
    sa.Column("backed_up", sa.Boolean, nullable=False),
    sa.Column("instrument_name", sa.String(255), nullable=False),
    sa.Column("instrument_icon", sa.Text, nullable=False),
    sa.Column("enrolled_origin", sa.String(255), nullable=False),
    sa.Column("nickname", sa.String(255), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float(precision=53), nullable=False),
    sa.Column("last_used_at", sa.Float(precision=53)),
    sa.Column("revoked_at", sa.Float(precision=53)),
)

challenges = sa.Table(
    "spc_challenges",
    metadata,
    sa.Column("challenge", sa.String(128), primary_key=True),
    # What ceremony the challenge belongs to ("registration", "payment", ...)
    # and to whom (an enrolment token id, a transaction key): checked on use.
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("subject", sa.String(512), nullable=False),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("expires_at", sa.Float(precision=53), nullable=False),
    sa.Column("used_at", sa.Float(precision=53)),
)

used_tokens = sa.Table(
    "spc_used_tokens",
    metadata,
    sa.Column("token_id", sa.String(64), primary_key=True),
    sa.Column("used_at", sa.Float(precision=53), nullable=False),
)


@dataclass(frozen=True)
class User:
    user_id: str
    user_handle: bytes
    name: str
    display_name: str


@dataclass(frozen=True)
class Credential:
    credential_id: bytes
    user_id: str
    public_key: bytes
    sign_count: int
    alg: int
    transports: tuple[str, ...]
    aaguid: str
    attestation_format: str
    backup_eligible: bool
    backed_up: bool
    instrument_name: str
    instrument_icon: str
    enrolled_origin: str
    created_at: float
    nickname: str = ""
    last_used_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True)
class Challenge:
    challenge: str
    purpose: str
    subject: str
    user_id: str
    expires_at: float
    used_at: float | None = None


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
            # A fresh connection per use: SQLite opens in microseconds, and an
            # aiosqlite connection must not outlive the event loop that made it
            # (TestClient and reloaders run several loops over one app).
            self.engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
            sa.event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
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

    # Single-use tokens

    async def is_token_used(self, token_id: str) -> bool:
        await self.ready()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(used_tokens.c.token_id).where(used_tokens.c.token_id == token_id))).first()
        return row is not None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the one writer; the busy timeout makes
    # concurrent writers wait for the lock instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
