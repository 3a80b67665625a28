"""Storage of transactions: uniqueness by the database, one atomic finalize, forward-only states."""

from __future__ import annotations

import asyncio

import pytest

from factories import FakeClock
from spc_embed.errors import AssertionRejected, ChallengeError, Conflict
from spc_embed.storage import Challenge, Credential, Store, TransactionRecord, payment_subject
from spc_embed.transactions import EXPIRED, FAILED, PENDING, SUCCEEDED

CREDENTIAL_ID = b"\x07" * 32


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path, clock) -> Store:
    db = Store(f"sqlite:///{tmp_path / 'spc.db'}", clock=clock)
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


async def challenge_used(store: Store, challenge: str) -> bool:
    found = await store.get_challenge(challenge)
    assert found is not None
    return found.used_at is not None


async def test_create_and_read_a_transaction(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    stored = await store.get_transaction("merchant", "order-1")
    assert stored == record(clock)
    challenge = await store.get_challenge("pay-challenge-1")
    assert challenge.purpose == "payment" and challenge.subject == payment_subject("merchant", "order-1")


async def test_t2_duplicate_transaction_id_in_a_tenant_is_conflict(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    with pytest.raises(Conflict) as caught:
        await store.create_transaction(record(clock, challenge="another", user_id="bob"))
    assert caught.value.code == "transaction_exists" and caught.value.status == 409
    assert await store.get_challenge("another") is None  # nothing of the refused insert is left


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
    assert await challenge_used(store, "pay-challenge-1")


async def test_a12_a_moved_sign_count_rolls_everything_back(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    with pytest.raises(AssertionRejected) as caught:
        await finalize(store, expected_sign_count=4)
    assert caught.value.code == "credential_in_use"
    assert (await store.get_transaction("merchant", "order-1")).state == PENDING
    assert (await store.get_credential(CREDENTIAL_ID)).sign_count == 5
    assert not await challenge_used(store, "pay-challenge-1")


async def test_a_revoked_credential_rolls_everything_back(store: Store, clock: FakeClock) -> None:
    await store.create_transaction(record(clock))
    await store.revoke_credential("alice", CREDENTIAL_ID)
    with pytest.raises(AssertionRejected):
        await finalize(store)
    assert (await store.get_transaction("merchant", "order-1")).state == PENDING
    assert not await challenge_used(store, "pay-challenge-1")


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
    assert not await challenge_used(store, "pay-challenge-1")


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
    assert await challenge_used(store, "pay-challenge-1")
    assert await store.latest_opt_out("merchant", "alice") == clock()
    assert await store.latest_opt_out("shop", "alice") is None
    assert [o.transaction_id for o in await store.list_opt_outs("alice")] == ["order-1"]
    with pytest.raises(Conflict):
        await store.record_opt_out("merchant", "order-1", reported_by="api_key")
    with pytest.raises(ChallengeError):
        await finalize(store)


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
