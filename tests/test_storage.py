"""Storage of transactions: uniqueness by the database, one atomic finalize, forward-only states."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import asyncpg
import pytest
from factories import FakeClock
from postgres import free_port

from spc_embed.errors import (
    AssertionRejected,
    ChallengeError,
    ConfigurationError,
    Conflict,
    InvalidRequest,
    StorageUnavailable,
)
from spc_embed.storage import SCHEMA_VERSION, Challenge, Credential, Store, TransactionRecord
from spc_embed.storage.schema import ddl
from spc_embed.storage.sqlite import SQLiteBackend
from spc_embed.transactions import EXPIRED, FAILED, PENDING, SUCCEEDED

CREDENTIAL_ID = b"\x07" * 32


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(database_url: str, clock: FakeClock) -> Store:
    db = Store(database_url, clock=clock)
    await db.open()
    await db.put_challenge(Challenge("reg-challenge", "registration", "token-1", "alice", clock() + 60))
    await db.add_credential(
        Credential(
            credential_id=CREDENTIAL_ID, user_id="alice", public_key=b"cose", sign_count=5, alg=-7,
            transports=("internal",), aaguid="00000000-0000-0000-0000-000000000000", attestation_format="none",
            backup_eligible=False, backed_up=False, instrument_name="Visa", instrument_icon="https://i.test/c.png",
            enrolled_origin="https://merchant.test", created_at=clock(),
        ),
        challenge="reg-challenge", subject="token-1", token_id="token-1",
    )
    yield db
    await db.close()


def record(clock: FakeClock, *, tenant: str = "merchant", transaction_id: str = "order-1",
           challenge: str = "pay-challenge-1", user_id: str = "alice", ttl: float = 600) -> TransactionRecord:
    return TransactionRecord(
        tenant_id=tenant, transaction_id=transaction_id, user_id=user_id,
        data={"amount": "1.00", "currency": "EUR", "payee_name": "Shop"}, data_hash="hash", challenge=challenge,
        expected={"challenge": challenge}, merchant_origin="https://merchant.test", credential_ids=("Bwc",),
        state=PENDING, created_at=clock(), expires_at=clock() + ttl,
    )


async def finalize(store: Store, *, tenant: str = "merchant", transaction_id: str = "order-1",
                   challenge: str = "pay-challenge-1", expected_sign_count: int = 5) -> None:
    await store.finalize_transaction(
        tenant, transaction_id, challenge=challenge, credential_id=CREDENTIAL_ID,
        expected_sign_count=expected_sign_count, new_sign_count=6, backed_up=False, method="spc",
        browser_bound_public_key=b"bbk",
    )


async def challenge_used(store: Store, transaction_id: str = "order-1") -> bool:
    """A payment challenge is used up when its transaction has left pending."""
    found = await store.get_transaction("merchant", transaction_id)
    assert found is not None
    return found.state != PENDING


async def test_a_credential_reads_back_field_for_field(store: Store, clock: FakeClock) -> None:
    # Every field a value of its own, so a column read into the wrong field cannot pass.
    written = Credential(
        credential_id=b"\x09" * 16, user_id="bob", public_key=b"cose-key", sign_count=41, alg=-8,
        transports=("usb", "nfc"), aaguid="aaguid-1", attestation_format="packed", backup_eligible=True,
        backed_up=False, instrument_name="Card name", instrument_icon="https://i.test/b.png",
        enrolled_origin="https://shop.test", created_at=clock() - 5, nickname="my key", last_used_at=None,
        revoked_at=None, instrument_id="card-7",
    )
    await store.put_challenge(Challenge("reg-2", "registration", "token-2", "bob", clock() + 60))
    await store.add_credential(written, challenge="reg-2", subject="token-2", token_id="token-2")

    assert await store.get_credential(written.credential_id) == written
    found, read = await store.find_transactions_and_credential(["merchant"], credential_id=written.credential_id,
                                                                transaction_id="none")
    assert (found, read) == ([], written)


async def test_create_and_read_a_transaction(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    stored = await store.get_transaction("merchant", "order-1")
    assert stored == record(clock)
    # A payment's challenge lives in its transaction, never among the enrolment challenges.
    assert await store.get_challenge("pay-challenge-1") is None


async def test_t2_duplicate_transaction_id_in_a_tenant_is_conflict(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    with pytest.raises(Conflict) as caught:
        await store.create_transaction(record(clock, challenge="another", user_id="bob"))
    assert caught.value.code == "transaction_exists" and caught.value.status == 409
    assert (await store.get_transaction("merchant", "order-1")).user_id == "alice"  # the refused insert left nothing


async def test_t2_same_id_in_another_tenant_is_accepted(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    await store.create_transaction(record(clock, tenant="shop", challenge="pay-challenge-2"))
    assert (await store.get_transaction("shop", "order-1")).challenge == "pay-challenge-2"


async def test_t2_concurrent_creates_give_one_row_and_conflicts(store: Store, clock: FakeClock) -> None:
    attempts = [store.create_transaction(record(clock, challenge=f"c{i}")) for i in range(12)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if r is not None)


async def test_finalize_is_all_three_updates(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    await finalize(store)
    stored = await store.get_transaction("merchant", "order-1")
    assert stored.state == SUCCEEDED and stored.method == "spc" and stored.credential_id == CREDENTIAL_ID
    assert stored.browser_bound_public_key == b"bbk" and stored.finalized_at == clock()
    assert (await store.get_credential(CREDENTIAL_ID)).sign_count == 6
    assert await challenge_used(store)


async def test_a12_a_moved_sign_count_rolls_everything_back(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    with pytest.raises(AssertionRejected) as caught:
        await finalize(store, expected_sign_count=4)
    assert caught.value.code == "credential_in_use"
    assert (await store.get_transaction("merchant", "order-1")).state == PENDING
    assert (await store.get_credential(CREDENTIAL_ID)).sign_count == 5
    assert not await challenge_used(store)


async def test_a_revoked_credential_rolls_everything_back(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    await store.revoke_credential("alice", CREDENTIAL_ID)
    with pytest.raises(AssertionRejected):
        await finalize(store)
    assert (await store.get_transaction("merchant", "order-1")).state == PENDING
    assert not await challenge_used(store)


async def test_t3_finalize_after_expiry_changes_nothing(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    clock.advance(601)
    assert (await store.get_transaction("merchant", "order-1")).state == EXPIRED  # read as expired, no write
    with pytest.raises(ChallengeError):
        await finalize(store)
    assert (await store.get_credential(CREDENTIAL_ID)).sign_count == 5
    assert await store.expire_due() == 0  # the refused finalize marked it expired on its way out
    assert (await store.get_transaction("merchant", "order-1")).state == EXPIRED


async def test_s8_challenge_of_another_transaction_does_not_finalize(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    await store.create_transaction(record(clock, transaction_id="order-2", challenge="pay-challenge-2"))
    with pytest.raises(ChallengeError):
        await finalize(store, transaction_id="order-2", challenge="pay-challenge-1")
    assert (await store.get_transaction("merchant", "order-2")).state == PENDING
    assert not await challenge_used(store)


async def test_a10_parallel_finalizes_one_succeeds(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    results = await asyncio.gather(*(finalize(store) for _ in range(8)), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, (ChallengeError, AssertionRejected)) for r in results if r is not None)
    assert (await store.get_credential(CREDENTIAL_ID)).sign_count == 6


async def test_t3_finalize_twice_is_refused(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    await finalize(store)
    with pytest.raises(ChallengeError):
        await finalize(store, expected_sign_count=6)
    assert (await store.get_credential(CREDENTIAL_ID)).sign_count == 6


async def test_opt_out_fails_the_transaction_and_burns_its_challenge(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    opt_out = await store.record_opt_out("merchant", "order-1", reported_by="api_key")
    assert opt_out.user_id == "alice" and opt_out.credential_ids == ("Bwc",)
    stored = await store.get_transaction("merchant", "order-1")
    assert stored.state == FAILED and stored.failure_reason == "opt_out"
    assert await challenge_used(store)
    assert await store.latest_opt_out("merchant", "alice") == clock()
    assert await store.latest_opt_out("shop", "alice") is None
    assert [o.transaction_id for o in await store.list_opt_outs("alice")] == ["order-1"]
    with pytest.raises(Conflict):
        await store.record_opt_out("merchant", "order-1", reported_by="api_key")
    with pytest.raises(ChallengeError):
        await finalize(store)


async def test_sweep_marks_expired_transactions_and_deletes_only_expired_challenges(
        store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock, transaction_id="old", challenge="c-old", ttl=60))
    await store.create_transaction(record(clock, transaction_id="live", challenge="c-live", ttl=6000))
    await store.put_challenge(Challenge("soon-gone", "api-registration", "{}", "alice", clock() + 60))
    await store.put_challenge(Challenge("kept", "api-registration", "{}", "alice", clock() + 6000))
    clock.advance(120)

    assert await store.sweep() == (1, 2)  # "old"; "soon-gone" and the fixture's used registration challenge

    states = {t: (await store.get_transaction("merchant", t)).state for t in ("old", "live")}  # type: ignore[union-attr]
    assert states == {"old": EXPIRED, "live": PENDING}
    assert await store.get_challenge("soon-gone") is None and await store.get_challenge("reg-challenge") is None
    assert await store.get_challenge("kept") is not None
    assert await store.sweep() == (0, 0)  # again: nothing left to do


async def test_listing_per_user_newest_first_and_per_tenant(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock, transaction_id="a", challenge="ca"))
    clock.advance(1)
    await store.create_transaction(record(clock, transaction_id="b", challenge="cb", ttl=1))
    await store.create_transaction(record(clock, tenant="shop", transaction_id="c", challenge="cc"))
    await store.create_transaction(record(clock, transaction_id="d", challenge="cd", user_id="bob"))
    clock.advance(5)
    listed = await store.list_transactions("alice")
    assert [(t.tenant_id, t.transaction_id) for t in listed] == [("merchant", "b"), ("shop", "c"), ("merchant", "a")]
    assert listed[0].state == EXPIRED  # listing applies the TTL first
    assert [t.transaction_id for t in await store.list_transactions("alice", tenant_id="shop")] == ["c"]


async def test_find_transactions_by_id_or_challenge_within_tenants(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    assert [t.transaction_id for t in await store.find_transactions(["merchant"], challenge="pay-challenge-1")] \
        == ["order-1"]
    assert await store.find_transactions(["shop"], transaction_id="order-1") == []


async def test_find_transactions_and_credential_reads_what_the_two_reads_do(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    await store.create_transaction(record(clock, tenant="shop", challenge="pay-challenge-2"))
    stored = await store.get_credential(CREDENTIAL_ID)
    lookups: list[tuple[list[str], dict[str, str]]] = [
        (["merchant"], {"transaction_id": "order-1"}), (["merchant", "shop"], {"challenge": "pay-challenge-2"}),
        (["shop"], {"transaction_id": "unknown"}), (["merchant", "shop"], {"transaction_id": "order-1"}),
        ([], {"transaction_id": "order-1"}),
    ]
    for tenants, kwargs in lookups:
        for credential_id in (CREDENTIAL_ID, b"unknown credential"):
            found, credential = await store.find_transactions_and_credential(
                tenants, credential_id=credential_id, **kwargs)
            by_tenant = sorted(await store.find_transactions(tenants, **kwargs), key=lambda t: t.tenant_id)
            assert sorted(found, key=lambda t: t.tenant_id) == by_tenant
            assert credential == (stored if credential_id == CREDENTIAL_ID else None)
    both, _ = await store.find_transactions_and_credential(["merchant", "shop"], credential_id=CREDENTIAL_ID,
                                                           transaction_id="order-1")
    assert sorted(t.tenant_id for t in both) == ["merchant", "shop"]  # the caller refuses the ambiguity


# Lifecycle: open, schema step, several loops, outages


async def set_schema_version(database_url: str, version: int) -> None:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            conn.execute("UPDATE spc_schema SET version = ?", (version,))
    else:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE spc_schema SET version = $1", version)
        finally:
            await conn.close()


async def test_the_schema_step_is_idempotent_and_keeps_the_data(database_url: str, clock: FakeClock) -> None:
    async with Store(database_url, clock=clock) as first:
        await first.create_transaction(record(clock))
    async with Store(database_url, clock=clock) as again:
        assert (await again.get_transaction("merchant", "order-1")).challenge == "pay-challenge-1"


async def test_a_database_of_an_unknown_schema_version_is_refused_at_open(database_url: str) -> None:
    async with Store(database_url):
        pass
    await set_schema_version(database_url, SCHEMA_VERSION + 41)
    with pytest.raises(ConfigurationError, match=f"schema version {SCHEMA_VERSION + 41}"):
        await Store(database_url).open()


def version_1_ddl(dialect: str) -> list[str]:
    """The schema of version 1: version 2's without spc_credentials.instrument_id (spc_embed/storage/schema.py)."""
    current = ddl(dialect)
    older = [statement.replace("    instrument_id TEXT NOT NULL,\n", "") for statement in current]
    assert sum(a != b for a, b in zip(current, older, strict=True)) == 1
    return older


V1_CREDENTIAL = (
    "INSERT INTO spc_credentials (credential_id, user_id, public_key, sign_count, alg, transports, aaguid,"
    " attestation_format, backup_eligible, backed_up, instrument_name, instrument_icon, enrolled_origin, created_at)"
    " VALUES ($1, 'alice', $2, 3, -7, '[\"internal\"]', '00000000-0000-0000-0000-000000000000', 'none', FALSE, FALSE,"
    " 'Visa ****1234', 'https://i.test/c.png', 'https://merchant.test', 1.0)"
)


async def make_version_1_database(database_url: str) -> None:
    """A database as spc-embed of schema version 1 left it, with one credential."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            for statement in version_1_ddl("sqlite"):
                conn.execute(statement)
            conn.execute("INSERT INTO spc_schema (id, version) VALUES (1, 1)")
            conn.execute(V1_CREDENTIAL.replace("$", "?"), (CREDENTIAL_ID, b"cose"))
    else:
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                for statement in version_1_ddl("postgresql"):
                    await conn.execute(statement)
                await conn.execute("INSERT INTO spc_schema (id, version) VALUES (1, 1)")
                await conn.execute(V1_CREDENTIAL, CREDENTIAL_ID, b"cose")
        finally:
            await conn.close()


async def schema_version(database_url: str) -> int:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return conn.execute("SELECT version FROM spc_schema").fetchone()[0]
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval("SELECT version FROM spc_schema")
    finally:
        await conn.close()


async def test_h6_a_version_1_database_is_migrated_to_version_2_keeping_its_credentials(
        database_url: str, clock: FakeClock) -> None:
    await make_version_1_database(database_url)
    async with Store(database_url, clock=clock) as store:
        migrated = await store.get_credential(CREDENTIAL_ID)
        # A credential enrolled before cards had ids is for the card its name names.
        assert (migrated.instrument_id, migrated.instrument_name, migrated.sign_count) == \
            ("Visa ****1234", "Visa ****1234", 3)
        await store.put_challenge(Challenge("reg-2", "registration", "token-2", "alice", clock() + 60))
        await store.add_credential(replace(migrated, credential_id=b"\x08" * 32, instrument_id="card-42"),
                                   challenge="reg-2", subject="token-2", token_id="token-2")
    assert await schema_version(database_url) == SCHEMA_VERSION == 2
    async with Store(database_url, clock=clock) as again:  # the step is idempotent: nothing left to migrate
        assert [c.instrument_id for c in await again.list_credentials("alice")] == ["Visa ****1234", "card-42"]


async def open_together(database_url: str, count: int) -> None:
    """Open ``count`` stores on one database at once, each on its own thread and loop (as processes would)."""
    stores = [Store(database_url) for _ in range(count)]

    def open_in_own_loop(store: Store) -> None:
        asyncio.run(store.open())

    with ThreadPoolExecutor(count) as pool:
        list(pool.map(open_in_own_loop, stores))
    for store in stores:
        await store.close()


async def test_h6_stores_opening_a_version_1_database_together_migrate_it_once(database_url: str) -> None:
    await make_version_1_database(database_url)
    await open_together(database_url, 6)
    assert await schema_version(database_url) == 2
    async with Store(database_url) as store:
        assert (await store.get_credential(CREDENTIAL_ID)).instrument_id == "Visa ****1234"


async def test_stores_opening_together_on_a_fresh_database_all_open(database_url: str) -> None:
    await open_together(database_url, 6)


async def test_a_sqlite_file_that_cannot_be_created_fails_at_open_naming_it(tmp_path) -> None:
    missing = tmp_path / "no-such-directory" / "spc.db"
    with pytest.raises(ConfigurationError, match=str(missing)):
        await Store(f"sqlite:///{missing}").open()


async def test_an_unreachable_postgresql_server_fails_at_open_naming_it() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port}/spc"):
        await Store(f"postgresql://spc:secret@127.0.0.1:{port}/spc").open()
    assert time.monotonic() - started < 5


def test_a_password_never_reaches_messages() -> None:
    assert "secret" not in repr(Store("postgresql://spc:secret@db.internal/spc"))


async def test_a_store_used_before_open_answers_storage_unavailable(tmp_path) -> None:
    with pytest.raises(StorageUnavailable) as caught:
        await Store(f"sqlite:///{tmp_path / 'spc.db'}").get_user("alice")
    assert caught.value.status == 503 and caught.value.code == "storage_unavailable"


async def test_opens_are_counted(database_url: str) -> None:
    store = Store(database_url)
    await store.open()
    await store.open()
    await store.close()
    assert await store.get_user("alice") is None  # still open: one close per open
    await store.close()
    with pytest.raises(StorageUnavailable):
        await store.get_user("alice")


async def test_several_event_loops_use_one_store(store: Store, clock: FakeClock) -> None:
    # TestClient and reloaders run an app on other loops than the one that opened it.
    def in_own_loop(n: int) -> list[str]:
        async def work() -> list[str]:
            for i in range(5):
                await store.create_transaction(record(clock, transaction_id=f"loop{n}-{i}", challenge=f"c{n}-{i}"))
            return [t.transaction_id for t in await store.find_transactions(["merchant"], transaction_id=f"loop{n}-4")]
        return asyncio.run(work())

    with ThreadPoolExecutor(3) as pool:
        found = list(pool.map(in_own_loop, range(3)))
    assert found == [["loop0-4"], ["loop1-4"], ["loop2-4"]]
    assert (await store.get_transaction("merchant", "loop2-0")).state == PENDING


async def test_sqlite_commits_are_durable(tmp_path) -> None:
    async with Store(f"sqlite:///{tmp_path / 'spc.db'}") as store:
        writer = store.backend._write_conn
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: fsync on every commit
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_another_process_holding_the_write_lock_does_not_stall_the_event_loop(
        tmp_path, clock: FakeClock) -> None:
    path = tmp_path / "spc.db"
    async with Store(f"sqlite:///{path}", clock=clock) as store:
        other = sqlite3.connect(path, isolation_level=None)  # another process's connection, as far as locks go
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(store.create_transaction(record(clock)))
        ticks = 0
        for _ in range(20):  # the loop keeps running while the write waits for the lock
            await asyncio.sleep(0.005)
            ticks += 1
        assert not write.done() and ticks == 20
        other.execute("COMMIT")
        await asyncio.wait_for(write, 1)
        assert (await store.get_transaction("merchant", "order-1")).state == PENDING
        other.close()


async def test_sqlite_opening_waits_for_another_process_starting_up_on_the_file(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another process holding the file's lock just as this one opens its writer (that process's own
    # start-up, a checkpoint): the writer's first statements wait like every connection's; only its
    # batches do not.
    path = tmp_path / "spc.db"
    connect = SQLiteBackend._connect
    opened: list[int] = []

    def locked_while_the_writer_opens(self: SQLiteBackend, *, busy_timeout_ms: int) -> sqlite3.Connection:
        opened.append(busy_timeout_ms)
        if len(opened) == 2:  # the schema step's connection is closed; the writer comes next
            other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            other.execute("PRAGMA locking_mode=EXCLUSIVE")  # in WAL mode, the lock that keeps readers out
            other.execute("BEGIN EXCLUSIVE")
            threading.Timer(0.3, lambda: (other.execute("COMMIT"), other.close())).start()
        return connect(self, busy_timeout_ms=busy_timeout_ms)

    monkeypatch.setattr(SQLiteBackend, "_connect", locked_while_the_writer_opens)
    async with Store(f"sqlite:///{path}") as store:
        assert store.backend._write_conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        assert await store.get_transaction("merchant", "none") is None
    assert len(opened) >= 2


async def test_sqlite_a_write_lock_held_past_the_busy_timeout_is_storage_unavailable(
        tmp_path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("spc_embed.storage.sqlite.BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "spc.db"
    async with Store(f"sqlite:///{path}", clock=clock) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(StorageUnavailable):
            await store.create_transaction(record(clock))
        assert 0.2 <= time.monotonic() - started < 1.5
        other.execute("ROLLBACK")
        other.close()
        await store.create_transaction(record(clock))  # the lock is free again: writes go through
        assert await store.get_transaction("merchant", "order-1") is not None


async def test_a_refused_write_in_a_shared_commit_leaves_the_others_written(store: Store, clock: FakeClock) -> None:
    # Thirty writes at once share commits; the twenty duplicates are refused alone.
    attempts = [store.create_transaction(record(clock, transaction_id=f"t{i % 10}", challenge=f"c{i}"))
                for i in range(30)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    assert sum(r is None for r in results) == 10
    assert all(isinstance(r, Conflict) for r in results if r is not None)
    written = {f"c{i}" for i, r in enumerate(results) if r is None}
    assert {(await store.get_transaction("merchant", f"t{i}")).challenge for i in range(10)} == written
    refused = [f"c{i}" for i, r in enumerate(results) if r is not None]
    assert [await store.find_transactions(["merchant"], challenge=c) for c in refused] == [[]] * 20


async def test_text_the_database_cannot_hold_is_a_400_not_a_crash(store: Store, clock: FakeClock) -> None:
    unstorable = ["\ud800"]  # a lone surrogate: no UTF-8 for it
    if store.backend.dialect == "postgresql":
        unstorable.append("user\x00id")  # PostgreSQL text cannot hold NUL
    for text in unstorable:
        with pytest.raises(InvalidRequest) as caught:
            await store.create_transaction(record(clock, user_id=text))
        assert caught.value.status == 400 and caught.value.code == "unstorable_value"
        with pytest.raises(InvalidRequest):
            await store.get_or_create_user(text, "name", "name", b"h" * 32)
        with pytest.raises(InvalidRequest):
            await store.get_transaction("merchant", text)
    assert await store.get_transaction("merchant", "order-1") is None


async def test_a_postgresql_outage_is_storage_unavailable_and_heals_by_itself(
        postgres_server, postgres_url: str, clock: FakeClock) -> None:
    async with Store(postgres_url, clock=clock) as store:
        await store.create_transaction(record(clock))
        with postgres_server.outage():
            for attempt in range(3):
                started = time.monotonic()
                with pytest.raises(StorageUnavailable):
                    await store.get_transaction("merchant", "order-1")
                with pytest.raises(StorageUnavailable):
                    await store.create_transaction(record(clock, transaction_id=f"during-{attempt}",
                                                          challenge=f"during-{attempt}"))
                assert time.monotonic() - started < 5
        deadline = time.monotonic() + 1
        while True:  # back within a second of the server's return, without reopening
            try:
                assert (await store.get_transaction("merchant", "order-1")).state == PENDING
                break
            except StorageUnavailable:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert await store.get_transaction("merchant", "during-0") is None  # nothing half-written


async def test_finalize_raced_against_opt_out_settles_once_without_deadlock(store: Store, clock: FakeClock) -> None:
    # One lock order (transaction, then credential) for every write: no deadlock, exactly one outcome.
    for round_ in range(15):
        transaction_id, challenge = f"race-{round_}", f"race-c{round_}"
        await store.create_transaction(record(clock, transaction_id=transaction_id, challenge=challenge))
        sign_count = (await store.get_credential(CREDENTIAL_ID)).sign_count
        results = await asyncio.gather(
            store.record_opt_out("merchant", transaction_id, reported_by="api_key"),
            store.finalize_transaction("merchant", transaction_id, challenge=challenge, credential_id=CREDENTIAL_ID,
                                       expected_sign_count=sign_count, new_sign_count=sign_count + 1,
                                       backed_up=False, method="spc", browser_bound_public_key=None),
            return_exceptions=True,
        )
        assert not any(isinstance(r, StorageUnavailable) for r in results), results
        assert sum(not isinstance(r, Exception) for r in results) == 1, results
        state = (await store.get_transaction("merchant", transaction_id)).state
        assert state == (FAILED if not isinstance(results[0], Exception) else SUCCEEDED)
