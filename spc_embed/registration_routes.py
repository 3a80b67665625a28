"""Enrolling a cardholder, called by the issuer's own backend with an admin API key (server to server, no CORS):

    POST /registration/initialize  {"user_id", "username", "display_name"?, "icon"?,
                                    "instrument_id"?, "instrument_name"?, "instrument_icon"?}
                                   -> {"publicKey": PublicKeyCredentialCreationOptionsJSON}
    POST /registration/finalize    the RegistrationResponseJSON, as-is -> {"token"}
                                   (admin key or none: the challenge is the authority)
    POST /enrollment/links         {"user_id", "user_name", "user_display_name", "instrument_name",
                                    "instrument_icon", "merchant_origin", "instrument_id"?, "locale"?}
                                   -> {"url", "expires_at"}

The first two are the Hanko Passkey API's registration calls, for a page on
the issuer's own origin (:mod:`spc_embed.registration_service`); the third
mints the iframe enrolment link that :meth:`~spc_embed.Issuer.enrollment_url`
mints in process (:func:`spc_embed.enrollment_service.enrollment_link`).
Initialize and the links take admin keys only: a merchant must never enrol an
authenticator for a cardholder. Finalize needs no key, as Hanko's: it completes
only a registration an admin key started, with that registration's challenge.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import enrollment_service, registration_service
from .web import JSON_HEADERS, JSONResponse, issuer_context, presented_api_key, read_body


async def registration_initialize(request: Request) -> Response:
    ctx = issuer_context(request)
    ctx.api_keys.admin(presented_api_key(request))
    options = await registration_service.initialize(ctx, await read_body(request))
    return JSONResponse(options, headers=JSON_HEADERS)


async def registration_finalize(request: Request) -> Response:
    ctx = issuer_context(request)
    # As the Hanko Passkey API's: no key needed, the challenge initialize issued (admin only,
    # single use, bound to its user) is the authority (R15); a key, if sent, must be the admin's.
    presented = presented_api_key(request)
    if presented is not None:
        ctx.api_keys.admin(presented)
    # The body is the credential itself, as Hanko's.
    token = await registration_service.finalize(ctx, await read_body(request))
    return JSONResponse({"token": token}, headers=JSON_HEADERS)


async def enrollment_links(request: Request) -> Response:
    ctx = issuer_context(request)
    ctx.api_keys.admin(presented_api_key(request))
    link = enrollment_service.enrollment_link(ctx, await read_body(request))
    return JSONResponse({"url": link.url, "expires_at": link.expires_at}, headers=JSON_HEADERS)


ROUTES = [
    Route("/registration/initialize", registration_initialize, methods=["POST"], name="registration_initialize"),
    Route("/registration/finalize", registration_finalize, methods=["POST"], name="registration_finalize"),
    Route("/enrollment/links", enrollment_links, methods=["POST"], name="enrollment_links"),
]
