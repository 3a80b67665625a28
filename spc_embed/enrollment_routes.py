"""Enrolment inside the issuer iframe: the page, its options, its verification.

    GET  /enroll?token=…   the iframe page (framable only by the token's merchant)
    POST /enroll/options   {"token"} -> PublicKeyCredentialCreationOptionsJSON
    POST /enroll/verify    {"token", "credential"} -> {"outcome": "enrolled", ...}

The POSTs come from the iframe's own document, so their Origin must be the
issuer's; the signed enrolment token in the body is the CSRF state (W6). The
workflow is :mod:`spc_embed.enrollment_service`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import enrollment_service
from .encoding import b64url_encode
from .headers import page_headers
from .web import JSON_HEADERS, JSONResponse, app_url, issuer_context, read_body, require_origin, require_string


async def enroll_page(request: Request) -> Response:
    ctx = issuer_context(request)
    page = await enrollment_service.enrollment_page(ctx, request.query_params.get("token"))
    token, error = page.token, page.error
    # The issuer's choice in the link, else the browser's Accept-Language, else the issuer's default.
    frame_locale = ctx.catalogs.choose(token.locale if token else None, request.headers.get("accept-language"))
    context = {
        "config": {
            "token": page.live_token,
            "optionsUrl": app_url(request, "enroll_options"),
            "verifyUrl": app_url(request, "enroll_verify"),
            "merchantOrigin": token.merchant_origin if token else None,
            "error": error.to_json() if error else None,
        },
        "token": token,
        "error": error,
        "rp_name": ctx.config.rp_name,
        "widget_url": app_url(request, "widget", path="").rstrip("/"),
        "frame_locale": frame_locale,
    }
    # An error page carries no authority, so any configured merchant may
    # show it; a working page only the merchant the token names.
    ancestors = [token.merchant_origin] if token else sorted(ctx.config.merchant_origins)
    return ctx.templates.TemplateResponse(
        request, "spc_embed/enroll.html", context, status_code=error.status if error else 200,
        headers={**page_headers(frame_ancestor_origins=ancestors), **frame_locale.response_headers},
    )


async def enroll_options(request: Request) -> Response:
    ctx = issuer_context(request)
    require_origin(request, {ctx.config.origin})
    body = await read_body(request)
    options = await enrollment_service.enrollment_options(ctx, require_string(body, "token"))
    return JSONResponse(options, headers=JSON_HEADERS)


async def enroll_verify(request: Request) -> Response:
    ctx = issuer_context(request)
    require_origin(request, {ctx.config.origin})
    body = await read_body(request)
    enrolled = await enrollment_service.verify_enrollment(ctx, require_string(body, "token"), body.get("credential"))
    return JSONResponse({"outcome": "enrolled", "credentialId": b64url_encode(enrolled.credential_id)},
                        headers=JSON_HEADERS)


ROUTES = [
    Route(enrollment_service.ENROLL_PAGE_PATH, enroll_page, methods=["GET"], name="enroll_page"),
    Route("/enroll/options", enroll_options, methods=["POST"], name="enroll_options"),
    Route("/enroll/verify", enroll_verify, methods=["POST"], name="enroll_verify"),
]
