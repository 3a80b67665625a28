"""The payment workflow called directly, without HTTP: a real store on a temporary SQLite file,
credentials enrolled through the enrolment service by the software authenticator, genuine assertions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from factories import ISSUER_ORIGIN, MERCHANT_ORIGIN, FakeClock, make_issuer
from payment_helpers import (
    CARD_ICON,
    CARD_NAME,
    RP_ID,
    TRANSACTION_DATA,
    b64decode,
    fallback_assertion,
    jwt_claims,
    spc_assertion,
)
from softauthn import SoftAuthenticator, b64url

import spc_embed.payment
import spc_embed.payment_service
from spc_embed import enrollment_service, payment_service
from spc_embed.context import IssuerContext
from spc_embed.encoding import b64url_decode
from spc_embed.errors import AssertionRejected, Conflict, InvalidRequest, NotFound
from spc_embed.tokens import EnrollmentToken


@dataclass
class Bank:
    ctx: IssuerContext
    merchant: Any
    auth: SoftAuthenticator
    credential_id: bytes
    clock: FakeClock

    async def initialize(self, transaction_id: str, *, user_id: str = "alice", **body: Any) -> Any:
        return await payment_service.initialize(self.ctx, self.merchant, {
            "user_id": user_id, "transaction_id": transaction_id, "transaction_data": TRANSACTION_DATA, **body})

    async def state(self, transaction_id: str) -> str:
        record = await self.ctx.store.get_transaction("merchant", transaction_id)
        return record.state


async def enrol(ctx: IssuerContext, auth: SoftAuthenticator, user_id: str = "alice") -> bytes:
    token = ctx.enrollment_tokens.mint(EnrollmentToken(
        user_id=user_id, user_name=f"{user_id}@example.com", user_display_name=user_id.title(),
        instrument_name=CARD_NAME, instrument_icon=CARD_ICON, merchant_origin=MERCHANT_ORIGIN,
    ))
    options = await enrollment_service.enrollment_options(ctx, token)
    credential = auth.create(rp_id=RP_ID, challenge=options["challenge"], origin=ISSUER_ORIGIN,
                             user_handle=b64decode(options["user"]["id"]), cross_origin=True,
                             top_origin=MERCHANT_ORIGIN)
    return (await enrollment_service.verify_enrollment(ctx, token, credential)).credential_id


@pytest.fixture
async def bank(tmp_path: Path, database_url: str) -> AsyncIterator[Bank]:
    clock = FakeClock(1_800_000_000.0)
    issuer = make_issuer(tmp_path / "spc.db", clock=clock, database_url=database_url)
    async with issuer.lifespan():
        auth = SoftAuthenticator()
        credential_id = await enrol(issuer.context, auth)
        yield Bank(issuer.context, issuer.config.merchant("merchant"), auth, credential_id, clock)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every parse of an AuthenticationResponseJSON, wherever the library does it."""
    calls: list[object] = []
    real = spc_embed.payment.parse_authentication_response

    def counting(credential: object) -> Any:
        calls.append(credential)
        return real(credential)

    monkeypatch.setattr(spc_embed.payment, "parse_authentication_response", counting)
    monkeypatch.setattr(spc_embed.payment_service, "parse_authentication_response", counting)
    return calls


async def test_initialize_offers_the_enrolled_credential_and_stores_a_pending_transaction(bank: Bank) -> None:
    initialized = await bank.initialize("order-1")
    spc = initialized.options["secure_payment_confirmation"]
    assert spc["credentialIds"] == [b64url(bank.credential_id)]
    assert spc["instrument"]["displayName"] == CARD_NAME
    assert initialized.options["total"] == {"currency": "EUR", "value": "100.00"}
    assert initialized.merchant_origin == MERCHANT_ORIGIN
    assert initialized.expires_at == int(bank.clock.now) + bank.ctx.config.transaction_ttl
    assert bank.ctx.payment_handles.load(initialized.handle) == ("merchant", "order-1")
    assert await bank.state("order-1") == "pending"
    with pytest.raises(Conflict) as repeated:
        await bank.initialize("order-1")
    assert repeated.value.code == "transaction_exists"


async def test_initialize_validates_its_body(bank: Bank) -> None:
    with pytest.raises(InvalidRequest):
        await bank.initialize("order-1", show_opt_out="yes")
    with pytest.raises(InvalidRequest) as bad_data:
        await payment_service.initialize(bank.ctx, bank.merchant, {
            "user_id": "alice", "transaction_id": "t", "transaction_data": {**TRANSACTION_DATA, "amount": -1}})
    assert bad_data.value.code == "invalid_transaction_data"


async def test_finalize_by_transaction_id_parses_the_credential_once(bank: Bank, parses: list[object]) -> None:
    initialized = await bank.initialize("order-1")
    assertion = spc_assertion(bank.auth, initialized.options)

    token = await payment_service.finalize(bank.ctx, ["merchant"], assertion, transaction_id="order-1")

    assert len(parses) == 1
    claims = jwt_claims(token)
    assert claims["trans"] == {"id": "order-1", "hash": initialized.transaction_hash, "method": "spc",
                               "instrument_id": CARD_NAME}
    assert claims["aud"] == "merchant" and claims["sub"] == "alice" and claims["cred"] == b64url(bank.credential_id)
    assert await bank.state("order-1") == "succeeded"
    with pytest.raises(Conflict) as replayed:
        await payment_service.finalize(bank.ctx, ["merchant"], assertion, transaction_id="order-1")
    assert replayed.value.code == "transaction_already_finalized"


async def test_finalize_bare_credential_is_found_by_its_challenge_and_parsed_once(
        bank: Bank, parses: list[object]) -> None:
    initialized = await bank.initialize("order-1")
    token = await payment_service.finalize(bank.ctx, ["merchant"], spc_assertion(bank.auth, initialized.options))
    assert len(parses) == 1
    assert jwt_claims(token)["trans"]["id"] == "order-1"


async def test_finalize_reads_the_transaction_and_the_credential_in_one_query(
        bank: Bank, monkeypatch: pytest.MonkeyPatch) -> None:
    initialized = await bank.initialize("order-1")
    second_reads: list[bytes] = []
    read_credential = bank.ctx.store.get_credential

    async def get_credential(credential_id: bytes) -> Any:
        second_reads.append(credential_id)
        return await read_credential(credential_id)

    monkeypatch.setattr(bank.ctx.store, "get_credential", get_credential)
    await payment_service.finalize(bank.ctx, ["merchant"], spc_assertion(bank.auth, initialized.options),
                                   transaction_id="order-1")
    other = await bank.initialize("order-2")
    await payment_service.finalize(bank.ctx, ["merchant"], spc_assertion(bank.auth, other.options))
    assert second_reads == []
    assert await bank.state("order-1") == await bank.state("order-2") == "succeeded"


async def test_initialize_reads_the_credentials_in_the_write_that_stores_the_transaction(
        bank: Bank, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_separate_read(*args: object) -> None:
        raise AssertionError("initialize read the credentials outside its write")

    monkeypatch.setattr(bank.ctx.store, "payable_credentials", no_separate_read)
    initialized = await bank.initialize("order-1")
    assert initialized.options["publicKey"]["allowCredentials"][0]["id"] == b64url(bank.credential_id)
    token = await payment_service.finalize(bank.ctx, ["merchant"], spc_assertion(bank.auth, initialized.options),
                                           transaction_id="order-1")
    assert jwt_claims(token)["trans"]["id"] == "order-1"


async def test_s8_a_challenge_is_32_bytes_the_time_then_26_random_bytes(bank: Bank) -> None:
    before = time.time()
    challenges = [b64url_decode((await bank.initialize(f"order-{n}")).options["publicKey"]["challenge"])
                  for n in range(2)]
    after = time.time()
    assert [len(c) for c in challenges] == [32, 32]
    for challenge in challenges:
        # Real time, not the issuer's clock: it only orders the database's index of challenges.
        assert before * 1000 - 1 <= int.from_bytes(challenge[:6], "big") <= after * 1000 + 1
    assert challenges[0][6:] != challenges[1][6:]


async def test_finalize_for_another_tenant_finds_nothing(bank: Bank) -> None:
    initialized = await bank.initialize("order-1")
    with pytest.raises(NotFound) as missing:
        await payment_service.finalize(bank.ctx, ["shop"], spc_assertion(bank.auth, initialized.options),
                                       transaction_id="order-1")
    assert missing.value.code == "transaction_not_found"
    assert await bank.state("order-1") == "pending"


async def test_an_unknown_transaction_is_answered_before_the_credential_is_read(bank: Bank) -> None:
    with pytest.raises(NotFound):
        await payment_service.finalize(bank.ctx, ["merchant"], {"id": "not a credential"}, transaction_id="nope")


async def test_a_refused_assertion_leaves_the_transaction_pending(bank: Bank) -> None:
    initialized = await bank.initialize("order-1")
    options = {**initialized.options, "total": {"currency": "EUR", "value": "1.00"}}
    with pytest.raises(AssertionRejected) as refused:
        await payment_service.finalize(bank.ctx, ["merchant"], spc_assertion(bank.auth, options),
                                       transaction_id="order-1")
    assert refused.value.code == "total_mismatch"
    assert await bank.state("order-1") == "pending"


async def test_a_transaction_past_its_ttl_is_expired(bank: Bank) -> None:
    initialized = await bank.initialize("order-1")
    assertion = spc_assertion(bank.auth, initialized.options)
    bank.clock.advance(bank.ctx.config.transaction_ttl)
    with pytest.raises(Conflict) as expired:
        await payment_service.finalize(bank.ctx, ["merchant"], assertion, transaction_id="order-1")
    assert expired.value.code == "transaction_expired"
    with pytest.raises(Conflict):
        await payment_service.opt_out(bank.ctx, ["merchant"], "order-1", reported_by="api_key")
    (listed,) = await payment_service.transactions_of(bank.ctx, "alice", tenant_id="merchant")
    assert listed.state == "expired"


async def test_opt_out_fails_the_transaction_and_stops_offering_the_credential(bank: Bank) -> None:
    await bank.initialize("order-1", show_opt_out=True)
    recorded = await payment_service.opt_out(bank.ctx, ["merchant"], "order-1",
                                             reported_by=f"origin {MERCHANT_ORIGIN}")
    assert recorded.credential_ids == (b64url(bank.credential_id),)
    assert await bank.state("order-1") == "failed"
    with pytest.raises(Conflict) as again:
        await payment_service.opt_out(bank.ctx, ["merchant"], "order-1", reported_by="api_key")
    assert again.value.code == "transaction_failed"
    after = await bank.initialize("order-2")
    assert after.options["secure_payment_confirmation"]["credentialIds"] == []


async def test_the_fallback_page_and_its_finalize(bank: Bank, parses: list[object]) -> None:
    initialized = await bank.initialize("order-1")
    page = await payment_service.fallback_page(bank.ctx, initialized.handle)
    assert page.error is None and page.handle == initialized.handle
    assert page.record is not None and page.record.transaction_id == "order-1"
    assert page.expected is not None and page.expected.amount == "100.00"

    token = await payment_service.fallback_finalize(bank.ctx, page.handle,
                                                    fallback_assertion(bank.auth, initialized.options))

    assert len(parses) == 1
    assert jwt_claims(token)["trans"]["method"] == "fallback"
    done = await payment_service.fallback_page(bank.ctx, initialized.handle)
    assert done.handle is None and done.error is not None and done.error.code == "transaction_already_finalized"
    assert done.record is not None  # still shown to the merchant that framed it


async def test_the_fallback_page_explains_what_cannot_be_confirmed(bank: Bank) -> None:
    nobody = await bank.initialize("order-1", user_id="nobody")
    page = await payment_service.fallback_page(bank.ctx, nobody.handle)
    assert page.handle is None and page.error is not None and page.error.code == "no_credentials"
    forged = await payment_service.fallback_page(bank.ctx, "forged.handle.value")
    assert forged.record is None and forged.error is not None and forged.error.code == "invalid_token"
    unknown = await payment_service.fallback_page(bank.ctx, bank.ctx.payment_handles.mint("merchant", "never"))
    assert unknown.error is not None and unknown.error.code == "invalid_token"
