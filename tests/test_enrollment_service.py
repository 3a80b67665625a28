"""The enrolment workflow called directly, without HTTP: a real store on a temporary SQLite file and
credentials created by the software authenticator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from factories import ISSUER_ORIGIN, MERCHANT_ORIGIN, FakeClock, make_issuer
from payment_helpers import CARD_ICON, CARD_NAME, RP_ID, b64decode
from softauthn import SoftAuthenticator

from spc_embed import enrollment_service
from spc_embed.context import IssuerContext
from spc_embed.errors import ChallengeError, TokenUsed
from spc_embed.tokens import EnrollmentToken


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def ctx(tmp_path: Path, clock: FakeClock, database_url: str) -> AsyncIterator[IssuerContext]:
    issuer = make_issuer(tmp_path / "spc.db", clock=clock, database_url=database_url)
    async with issuer.lifespan():
        yield issuer.context


def mint(ctx: IssuerContext, user_id: str = "alice") -> str:
    return ctx.enrollment_tokens.mint(EnrollmentToken(
        user_id=user_id, user_name=f"{user_id}@example.com", user_display_name=user_id.title(),
        instrument_name=CARD_NAME, instrument_icon=CARD_ICON, merchant_origin=MERCHANT_ORIGIN,
    ))


def create(options: dict[str, Any], auth: SoftAuthenticator | None = None) -> dict[str, Any]:
    return (auth or SoftAuthenticator()).create(
        rp_id=RP_ID, challenge=options["challenge"], origin=ISSUER_ORIGIN,
        user_handle=b64decode(options["user"]["id"]), cross_origin=True, top_origin=MERCHANT_ORIGIN)


async def test_options_then_verify_stores_the_credential_and_uses_the_token(ctx: IssuerContext) -> None:
    token = mint(ctx)
    page = await enrollment_service.enrollment_page(ctx, token)
    assert page.error is None and page.live_token == token and page.token is not None
    options = await enrollment_service.enrollment_options(ctx, token)
    assert options["rp"]["id"] == RP_ID and options["excludeCredentials"] == []

    enrolled = await enrollment_service.verify_enrollment(ctx, token, create(options))

    (stored,) = await ctx.store.list_credentials("alice")
    assert stored.credential_id == enrolled.credential_id
    assert stored.instrument_name == CARD_NAME and stored.enrolled_origin == MERCHANT_ORIGIN
    with pytest.raises(TokenUsed):
        await enrollment_service.enrollment_options(ctx, token)
    used = await enrollment_service.enrollment_page(ctx, token)
    assert used.error is not None and used.error.code == "token_used"
    assert used.live_token is None and used.token is not None  # shown to the merchant the token names


async def test_a_challenge_of_another_enrolment_is_refused(ctx: IssuerContext) -> None:
    first, second = mint(ctx), mint(ctx)
    options = await enrollment_service.enrollment_options(ctx, first)
    with pytest.raises(ChallengeError):
        await enrollment_service.verify_enrollment(ctx, second, create(options))
    assert await ctx.store.list_credentials("alice") == []


async def test_an_expired_or_forged_link_is_an_error_page(ctx: IssuerContext, clock: FakeClock) -> None:
    token = mint(ctx)
    clock.advance(ctx.config.enrollment_ttl + 1)
    expired = await enrollment_service.enrollment_page(ctx, token)
    assert expired.error is not None and expired.error.code == "token_expired"
    assert expired.token is not None and expired.token.merchant_origin == MERCHANT_ORIGIN
    forged = await enrollment_service.enrollment_page(ctx, "forged.token.value")
    assert forged.error is not None and forged.token is None and forged.live_token is None
