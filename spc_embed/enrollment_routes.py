"""Enrolment inside the issuer iframe: the page, its options, its verification.

    GET  /enroll?token=…   the iframe page (framable only by the token's merchant)
    POST /enroll/options   {"token"} -> PublicKeyCredentialCreationOptionsJSON
    POST /enroll/verify    {"token", "credential"} -> {"outcome": "enrolled", ...}

The POSTs come from the iframe's own document, so their Origin must be the
issuer's; the signed enrolment token in the body is the CSRF state (W6).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .clientdata import parse_client_data
from .encoding import b64url_decode, b64url_encode
from .errors import ChallengeError, InvalidRequest, SPCEmbedError, TokenError, TokenExpired, TokenUsed
from .headers import page_headers
from .registration import registration_options, verify_registration
from .storage import Challenge, Credential
from .tokens import EnrollmentToken
from .web import JSON_HEADERS, json_object, read_json, require_origin, require_string

if TYPE_CHECKING:
    from .issuer import Issuer

REGISTRATION = "registration"


def enrollment_routes(issuer: Issuer) -> list[Route]:
    config = issuer.config
    store = issuer.store

    async def load_live_token(value: object) -> EnrollmentToken:
        token = issuer.enrollment_tokens.load(value)
        if config.merchant_for_origin(token.merchant_origin) is None:
            raise TokenError("this link names a merchant that is no longer configured")
        if await store.is_token_used(token.token_id):
            raise TokenUsed("this enrolment link has already been used")
        return token

    async def enroll_page(request: Request) -> Response:
        token: EnrollmentToken | None = None
        error: SPCEmbedError | None = None
        raw = request.query_params.get("token")
        try:
            token = await load_live_token(raw)
        except TokenExpired as exc:
            token, error = issuer.enrollment_tokens.load_expired(exc), exc
        except TokenUsed as exc:
            token, error = issuer.enrollment_tokens.load(raw), exc
        except TokenError as exc:
            error = exc
        # An error page carries no authority, so any configured merchant may
        # show it; a working page only the merchant the token names.
        ancestors = [token.merchant_origin] if token else sorted(config.merchant_origins)
        context = {
            "config": {
                "token": raw if token and not error else None,
                "optionsUrl": issuer.url("/enroll/options"),
                "verifyUrl": issuer.url("/enroll/verify"),
                "merchantOrigin": token.merchant_origin if token else None,
                "error": error.to_json() if error else None,
            },
            "token": token,
            "error": error,
            "rp_name": config.rp_name,
            "widget_url": issuer.url("/widget"),
        }
        return issuer.templates.TemplateResponse(
            request, "spc_embed/enroll.html", context,
            status_code=error.status if error else 200,
            headers=page_headers(frame_ancestor_origins=ancestors),
        )

    async def enroll_options(request: Request) -> Response:
        require_origin(request, {config.origin})
        body = json_object(await read_json(request, max_bytes=config.max_body_bytes))
        token = await load_live_token(require_string(body, "token"))
        user = await store.get_or_create_user(
            token.user_id, token.user_name, token.user_display_name, secrets.token_bytes(32)
        )
        existing = await store.list_credentials(user.user_id)
        challenge = b64url_encode(secrets.token_bytes(32))
        await store.put_challenge(Challenge(
            challenge=challenge, purpose=REGISTRATION, subject=token.token_id, user_id=user.user_id,
            expires_at=store.now() + config.challenge_ttl,
        ))
        options = registration_options(
            rp_id=config.rp_id, rp_name=config.rp_name, user_handle=user.user_handle,
            user_name=user.name, user_display_name=user.display_name, challenge=challenge,
            exclude_credential_ids=[c.credential_id for c in existing],
            timeout_ms=config.challenge_ttl * 1000,
        )
        return JSONResponse(options, headers=JSON_HEADERS)

    async def enroll_verify(request: Request) -> Response:
        require_origin(request, {config.origin})
        body = json_object(await read_json(request, max_bytes=config.max_body_bytes))
        token = await load_live_token(require_string(body, "token"))
        credential = body.get("credential")
        challenge = await _issued_challenge(credential, token)
        verified = verify_registration(
            credential=credential,
            expected_challenge=challenge.challenge,
            expected_rp_id=config.rp_id,
            expected_origin=config.origin,
            allowed_top_origins=[token.merchant_origin],
            allowed_attestation_formats=config.allowed_attestation_formats,
        )
        await store.add_credential(
            Credential(
                credential_id=verified.credential_id, user_id=token.user_id, public_key=verified.public_key,
                sign_count=verified.sign_count, alg=verified.alg, transports=verified.transports,
                aaguid=verified.aaguid, attestation_format=verified.attestation_format,
                backup_eligible=verified.backup_eligible, backed_up=verified.backed_up,
                instrument_name=token.instrument_name, instrument_icon=token.instrument_icon,
                enrolled_origin=verified.top_origin or config.origin, created_at=store.now(),
            ),
            challenge=challenge.challenge, subject=token.token_id, token_id=token.token_id,
        )
        return JSONResponse(
            {"outcome": "enrolled", "credentialId": b64url_encode(verified.credential_id)}, headers=JSON_HEADERS
        )

    async def _issued_challenge(credential: Any, token: EnrollmentToken) -> Challenge:
        """The challenge this ceremony was given (R2): ours, live, unused, for this very token."""
        try:
            raw = credential["response"]["clientDataJSON"]
        except (TypeError, KeyError) as exc:
            raise InvalidRequest("credential.response.clientDataJSON is missing") from exc
        client_data = parse_client_data(b64url_decode(raw, field="clientDataJSON"))
        challenge = await store.get_challenge(client_data.challenge)
        if (
            challenge is None
            or challenge.purpose != REGISTRATION
            or challenge.subject != token.token_id
            or challenge.used_at is not None
            or challenge.expires_at <= store.now()
        ):
            raise ChallengeError("the challenge was not issued for this enrolment, has expired or was used")
        return challenge

    return [
        Route("/enroll", enroll_page, methods=["GET"]),
        Route("/enroll/options", enroll_options, methods=["POST"]),
        Route("/enroll/verify", enroll_verify, methods=["POST"]),
    ]
