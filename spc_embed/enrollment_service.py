"""The enrolment workflow, apart from HTTP: the iframe page's token, the options, the verification.

The issuer's backend mints a signed enrolment token for one user and one
merchant origin (:meth:`~spc_embed.Issuer.enrollment_url`); the token is the
only authority here. It must be authentic, unexpired, name a merchant still
configured, and be unused; the registration challenge is bound to it, and the
credential, the challenge and the token are consumed in one write. The
ceremony must run in the issuer's iframe on that merchant's page
(``crossOrigin`` true, ``topOrigin`` the token's merchant): a link opened
top-level, outside the page it was minted for, enrols nothing
(docs/security.md H8).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .clientdata import parse_client_data
from .context import IssuerContext
from .encoding import b64url_decode, b64url_encode
from .enrollment_input import card_fields, locale_field, text_field, user_id_field
from .errors import (
    ChallengeError,
    ConfigurationError,
    InvalidRequest,
    SPCEmbedError,
    TokenError,
    TokenExpired,
    TokenUsed,
)
from .registration import registration_options, verify_registration
from .storage import Challenge, Credential
from .text import quoted
from .tokens import MAX_TOKEN_LENGTH, EnrollmentToken

REGISTRATION = "registration"
ENROLL_PAGE_PATH = "/enroll"  # the route's path, here so that a link can be minted without a request


@dataclass(frozen=True)
class EnrollmentLink:
    url: str  # the iframe page with its token, for the merchant page named in it
    expires_at: int  # Unix time after which the token is refused


def enrollment_link(ctx: IssuerContext, body: Mapping[str, Any]) -> EnrollmentLink:
    """Mint a single-use enrolment token from the back office's fields and return the iframe URL.

    Every field is checked here, each with its own stable code, before anything
    is minted; nothing is stored until the link is used. This is the one way
    links are made: :meth:`~spc_embed.Issuer.enrollment_url` (in process) and
    ``POST /enrollment/links`` (over HTTP) both call it.
    """
    user_id = user_id_field(body)
    user_name = text_field(body, "user_name")
    user_display_name = text_field(body, "user_display_name")
    card = card_fields(body)
    merchant_origin = body.get("merchant_origin")
    if not isinstance(merchant_origin, str) or ctx.config.merchant_for_origin(merchant_origin) is None:
        raise InvalidRequest(f"'merchant_origin' {quoted(merchant_origin)} is not an origin of any configured "
                             "merchant (scheme://host[:port], exactly as configured)", code="unknown_merchant_origin")
    locale = locale_field(body)
    try:
        token = ctx.enrollment_tokens.mint(EnrollmentToken(
            user_id=user_id, user_name=user_name, user_display_name=user_display_name,
            instrument_name=card.instrument_name, instrument_icon=card.instrument_icon,
            merchant_origin=merchant_origin, locale=locale, instrument_id=card.instrument_id,
        ))
    except ConfigurationError as exc:  # the fields above passed the same rules; kept as a 400, never a 500
        raise InvalidRequest(str(exc)) from exc
    # Policy: a token the page could not read back (SignedTokens.loads) is refused now, not when it is opened.
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidRequest(f"the enrolment link would carry a token longer than {MAX_TOKEN_LENGTH} characters; "
                             "use an https:// URL for 'instrument_icon' rather than a data: URL, or shorter names",
                             code="enrollment_link_too_long")
    return EnrollmentLink(url=ctx.url(ENROLL_PAGE_PATH) + "?token=" + token,
                          expires_at=int(ctx.clock()) + ctx.config.enrollment_ttl)


@dataclass(frozen=True)
class EnrollmentPage:
    """What the enrolment iframe shows: a live token to enrol with, or why not (and for which merchant)."""

    token: EnrollmentToken | None  # also set for an expired or used token, so the right merchant sees the error
    live_token: str | None  # the token to send back with options and verify; None on error
    error: SPCEmbedError | None


async def live_token(ctx: IssuerContext, value: object) -> EnrollmentToken:
    """The enrolment token ``value`` carries, if it may still be used."""
    token = ctx.enrollment_tokens.load(value)
    if ctx.config.merchant_for_origin(token.merchant_origin) is None:
        raise TokenError("this link names a merchant that is no longer configured")
    if await ctx.store.is_token_used(token.token_id):
        raise TokenUsed("this enrolment link has already been used")
    return token


async def enrollment_page(ctx: IssuerContext, value: object) -> EnrollmentPage:
    try:
        token = await live_token(ctx, value)
    except TokenExpired as exc:
        return EnrollmentPage(token=ctx.enrollment_tokens.load_expired(exc), live_token=None, error=exc)
    except TokenUsed as exc:
        return EnrollmentPage(token=ctx.enrollment_tokens.load(value), live_token=None, error=exc)
    except (TokenError, InvalidRequest) as exc:  # InvalidRequest: a token no signer can read (H2)
        return EnrollmentPage(token=None, live_token=None, error=exc)
    return EnrollmentPage(token=token, live_token=value if isinstance(value, str) else None, error=None)


async def enrollment_options(ctx: IssuerContext, token_value: str) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptionsJSON for the token's user, with a challenge bound to the token."""
    config, store = ctx.config, ctx.store
    token = await live_token(ctx, token_value)
    user = await store.get_or_create_user(
        token.user_id, token.user_name, token.user_display_name, secrets.token_bytes(32)
    )
    existing = await store.list_credentials(user.user_id)
    challenge = b64url_encode(secrets.token_bytes(32))
    await store.put_challenge(Challenge(
        challenge=challenge, purpose=REGISTRATION, subject=token.token_id, user_id=user.user_id,
        expires_at=store.now() + config.challenge_ttl,
    ))
    return registration_options(
        rp_id=config.rp_id, rp_name=config.rp_name, user_handle=user.user_handle,
        user_name=user.name, user_display_name=user.display_name, challenge=challenge,
        exclude_credential_ids=[c.credential_id for c in existing],
        timeout_ms=config.challenge_ttl * 1000,
    )


async def verify_enrollment(ctx: IssuerContext, token_value: str, credential: object) -> Credential:
    """Verify the new credential and store it, consuming its challenge and the token; return it."""
    config, store = ctx.config, ctx.store
    token = await live_token(ctx, token_value)
    challenge = await _issued_challenge(ctx, credential, token)
    verified = verify_registration(
        credential=credential,
        expected_challenge=challenge.challenge,
        expected_rp_id=config.rp_id,
        expected_origin=config.origin,
        allowed_top_origins=[token.merchant_origin],
        allowed_attestation_formats=config.allowed_attestation_formats,
        # Enrolment runs in the iframe on the token's merchant page only, never top-level (H8).
        require_cross_origin=True,
    )
    stored = Credential(
        credential_id=verified.credential_id, user_id=token.user_id, public_key=verified.public_key,
        sign_count=verified.sign_count, alg=verified.alg, transports=verified.transports,
        aaguid=verified.aaguid, attestation_format=verified.attestation_format,
        backup_eligible=verified.backup_eligible, backed_up=verified.backed_up,
        instrument_name=token.instrument_name, instrument_icon=token.instrument_icon,
        instrument_id=token.instrument_id or token.instrument_name,
        enrolled_origin=verified.top_origin or token.merchant_origin, created_at=store.now(),
    )
    await store.add_credential(stored, challenge=challenge.challenge, subject=token.token_id, token_id=token.token_id)
    return stored


async def _issued_challenge(ctx: IssuerContext, credential: Any, token: EnrollmentToken) -> Challenge:
    """The challenge this ceremony was given (R2): ours, live, unused, for this very token."""
    try:
        raw = credential["response"]["clientDataJSON"]
    except (TypeError, KeyError) as exc:
        raise InvalidRequest("credential.response.clientDataJSON is missing") from exc
    client_data = parse_client_data(b64url_decode(raw, field="clientDataJSON"))
    challenge = await ctx.store.get_challenge(client_data.challenge)
    if (
        challenge is None
        or challenge.purpose != REGISTRATION
        or challenge.subject != token.token_id
        or challenge.used_at is not None
        or challenge.expires_at <= ctx.store.now()
    ):
        raise ChallengeError("the challenge was not issued for this enrolment, has expired or was used")
    return challenge
