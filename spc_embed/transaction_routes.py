"""The transaction API, the result keys and credential management: named handlers and their routes.

Server to server (API key in the ``apiKey`` header, as the Hanko Passkey API,
or ``Authorization: Bearer``; no CORS):

    POST   /transaction/initialize   merchant key   {"user_id", "transaction_id", "transaction_data", "show_opt_out"?}
    GET    /transactions?user_id=    merchant key (its own) or admin key (all merchants)
    GET    /credentials?user_id=     admin key
    GET    /credentials/{id}         admin key
    PATCH  /credentials/{id}         admin key      {"name"}
    DELETE /credentials/{id}         admin key

Server to server *or* from the merchant's page (CORS for the merchants'
origins only, no credentials; without an API key the merchant is the one
whose origins include the request's ``Origin``):

    POST /transaction/finalize  {"transaction_id", "credential"} or, as the Hanko
                                 Passkey API, the bare credential (the transaction
                                 is found by its challenge)          -> {"token"}
    POST /transaction/opt-out   {"transaction_id", "opt_out_token"}  -> {"outcome": "opted_out"}
                                 (opt_out_token: from initialize; only needed without an API key)

Public: ``GET /.well-known/jwks.json``, ``GET /openapi.json`` and ``GET /healthz``.

The fallback iframe's page and its finalize are in :mod:`spc_embed.pay_routes`;
the workflow behind every endpoint is in :mod:`spc_embed.payment_service` and
:mod:`spc_embed.credential_service` (its decisions are documented there).
Handlers read the request, call the service and shape the answer.

Credential management and cross-merchant listings need an admin key
(``IssuerConfig.admin_api_keys``): credentials belong to the bank's
cardholder, not to any one merchant.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import credential_service, payment_service
from .encoding import b64url_encode
from .openapi import openapi_document
from .storage import Credential, TransactionRecord
from .web import (
    JSON_HEADERS,
    JSONResponse,
    app_url,
    browser_cors,
    issuer_context,
    preflight,
    presented_api_key,
    read_body,
    require_origin,
)


@dataclass(frozen=True)
class Caller:
    tenants: list[str]  # whom the caller may act for
    reported_by: str  # for the records
    from_page: bool  # no API key: a merchant's page, known by an Origin any program can send


def caller(request: Request) -> Caller:
    """Who is calling a browser-facing endpoint.

    With an API key, its merchant; without one, the merchants owning the
    page's Origin, which must be allowlisted exactly (W6).
    """
    ctx = issuer_context(request)
    presented = presented_api_key(request)
    if presented is not None:
        return Caller([ctx.api_keys.merchant(presented).id], "api_key", from_page=False)
    origin = require_origin(request, ctx.config.merchant_origins)
    return Caller([m.id for m in ctx.config.merchants_for_origin(origin)], f"origin {origin}", from_page=True)


# Server to server


async def initialize(request: Request) -> Response:
    ctx = issuer_context(request)
    merchant = ctx.api_keys.merchant(presented_api_key(request))
    initialized = await payment_service.initialize(ctx, merchant, await read_body(request))
    return JSONResponse({
        **initialized.options,
        "transaction_id": initialized.transaction_id,
        "transaction_hash": initialized.transaction_hash,
        "merchant_origin": initialized.merchant_origin,
        "expires_at": initialized.expires_at,
        "fallback_url": app_url(request, "pay_page") + "?handle=" + initialized.handle,
        "opt_out_token": initialized.opt_out_token,
    }, headers=JSON_HEADERS)


async def list_transactions(request: Request) -> Response:
    ctx = issuer_context(request)
    merchant = ctx.api_keys.admin_or_merchant(presented_api_key(request))
    records = await payment_service.transactions_of(ctx, request.query_params.get("user_id"),
                                                    tenant_id=merchant.id if merchant else None)
    return JSONResponse({"transactions": [transaction_json(r) for r in records]}, headers=JSON_HEADERS)


async def list_credentials(request: Request) -> Response:
    ctx = issuer_context(request)
    ctx.api_keys.admin(presented_api_key(request))
    found = await credential_service.credentials_of(ctx, request.query_params.get("user_id"))
    return JSONResponse({"credentials": [credential_json(c) for c in found]}, headers=JSON_HEADERS)


async def get_credential(request: Request) -> Response:
    ctx = issuer_context(request)
    ctx.api_keys.admin(presented_api_key(request))
    found = await credential_service.live_credential(ctx, request.path_params["credential_id"])
    return JSONResponse(credential_json(found), headers=JSON_HEADERS)


async def rename_credential(request: Request) -> Response:
    ctx = issuer_context(request)
    ctx.api_keys.admin(presented_api_key(request))
    name = credential_service.credential_name((await read_body(request)).get("name"))
    found = await credential_service.live_credential(ctx, request.path_params["credential_id"])
    renamed = await credential_service.rename_credential(ctx, found, name)
    return JSONResponse(credential_json(renamed), headers=JSON_HEADERS)


async def revoke_credential(request: Request) -> Response:
    ctx = issuer_context(request)
    ctx.api_keys.admin(presented_api_key(request))
    found = await credential_service.live_credential(ctx, request.path_params["credential_id"])
    await credential_service.revoke_credential(ctx, found)
    return Response(status_code=204, headers=JSON_HEADERS)


async def jwks(request: Request) -> Response:
    return JSONResponse(issuer_context(request).result_signer.jwks(), headers={"Cache-Control": "public, max-age=300"})


async def healthz(request: Request) -> Response:
    # For load balancers: one trivial query, no authentication, nothing revealed.
    # A database that does not answer raises StorageUnavailable: 503 with Retry-After.
    await issuer_context(request).store.ping()
    return JSONResponse({"status": "ok"}, headers=JSON_HEADERS)


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(issuer_context(request)), headers={"Cache-Control": "no-cache"})


# Server to server, or from the merchant page (CORS: see transaction_routes())


async def finalize(request: Request) -> Response:
    ctx = issuer_context(request)
    tenants = caller(request).tenants
    body = await read_body(request)
    if "credential" in body:
        transaction_id = payment_service.transaction_id_of(body.get("transaction_id"))
        token = await payment_service.finalize(ctx, tenants, body["credential"], transaction_id=transaction_id)
    else:  # the Hanko Passkey API shape: the credential itself, found by its challenge
        token = await payment_service.finalize(ctx, tenants, body)
    return JSONResponse({"token": token}, headers=JSON_HEADERS)


async def opt_out(request: Request) -> Response:
    ctx = issuer_context(request)
    who = caller(request)
    body = await read_body(request)
    transaction_id = payment_service.transaction_id_of(body.get("transaction_id"))
    await payment_service.opt_out(ctx, who.tenants, transaction_id, reported_by=who.reported_by,
                                  from_page=who.from_page, proof=body.get("opt_out_token"))
    return JSONResponse({"outcome": "opted_out", "transaction_id": transaction_id}, headers=JSON_HEADERS)


def transaction_routes(merchant_origins: Collection[str]) -> list[Route]:
    """The routes; the browser-facing ones answer the merchants' pages with CORS (W4)."""
    cors = browser_cors(merchant_origins)
    return [
        Route("/transaction/initialize", initialize, methods=["POST"], name="initialize"),
        Route("/transaction/finalize", finalize, methods=["POST"], name="finalize", middleware=cors),
        Route("/transaction/finalize", preflight, methods=["OPTIONS"], name="finalize_preflight"),
        Route("/transaction/opt-out", opt_out, methods=["POST"], name="opt_out", middleware=cors),
        Route("/transaction/opt-out", preflight, methods=["OPTIONS"], name="opt_out_preflight"),
        Route("/transactions", list_transactions, methods=["GET"], name="transactions"),
        Route("/credentials", list_credentials, methods=["GET"], name="credentials"),
        Route("/credentials/{credential_id}", get_credential, methods=["GET"], name="credential"),
        Route("/credentials/{credential_id}", rename_credential, methods=["PATCH"], name="rename_credential"),
        Route("/credentials/{credential_id}", revoke_credential, methods=["DELETE"], name="revoke_credential"),
        Route("/.well-known/jwks.json", jwks, methods=["GET"], name="jwks"),
        Route("/openapi.json", openapi, methods=["GET"], name="openapi"),
        Route("/healthz", healthz, methods=["GET"], name="healthz"),
    ]


def transaction_json(record: TransactionRecord) -> dict[str, Any]:
    return {
        "tenant_id": record.tenant_id,
        "transaction_id": record.transaction_id,
        "user_id": record.user_id,
        "state": record.state,
        "failure_reason": record.failure_reason,
        "method": record.method,
        "credential_id": b64url_encode(record.credential_id) if record.credential_id else None,
        "merchant_origin": record.merchant_origin,
        "instrument_id": record.expected.get("instrument_id"),
        "transaction_data": record.data,
        "transaction_hash": record.data_hash,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "finalized_at": record.finalized_at,
        "browser_bound_public_key": (b64url_encode(record.browser_bound_public_key)
                                     if record.browser_bound_public_key else None),
    }


def credential_json(credential: Credential) -> dict[str, Any]:
    return {
        "id": b64url_encode(credential.credential_id),
        "user_id": credential.user_id,
        "name": credential.nickname,
        "instrument_id": credential.instrument_id,
        "instrument_name": credential.instrument_name,
        "instrument_icon": credential.instrument_icon,
        "enrolled_origin": credential.enrolled_origin,
        "aaguid": credential.aaguid,
        "transports": list(credential.transports),
        "backup_eligible": credential.backup_eligible,
        "backed_up": credential.backed_up,
        "created_at": credential.created_at,
        "last_used_at": credential.last_used_at,
    }
