"""The transaction API, the result keys, credential management and the fallback iframe.

Server to server (API key in the ``apiKey`` header, as the Hanko Passkey API,
or ``Authorization: Bearer``; no CORS):

    POST   /transaction/initialize   merchant key   {"user_id", "transaction_id", "transaction_data", "show_opt_out"?}
    GET    /transactions?user_id=    merchant key (its own) or admin key (all merchants)
    GET    /credentials?user_id=     admin key
    PATCH  /credentials/{id}         admin key      {"name"}
    DELETE /credentials/{id}         admin key

Server to server *or* from the merchant's page (CORS for the merchants'
origins only, no credentials; without an API key the merchant is the one
whose origins include the request's ``Origin``):

    POST /transaction/finalize  {"transaction_id", "credential"} or, as the Hanko
                                 Passkey API, the bare credential (the transaction
                                 is found by its challenge)          -> {"token"}
    POST /transaction/opt-out   {"transaction_id"}                   -> {"outcome": "opted_out"}

Public: ``GET /.well-known/jwks.json`` and ``GET /openapi.json``.

The fallback iframe (the page loads ``widget/pay.js``):

    GET  /pay?handle=…    the page, framable only by the transaction's merchant origin
    POST /pay/finalize    {"handle", "credential"} from the iframe itself -> {"token"}

``pay.js`` reads ``<script type="application/json" id="spc-pay-config">``::

    {"handle":         the signed handle, to send back to finalizeUrl (null on error),
     "finalizeUrl":    absolute URL of POST /pay/finalize,
     "merchantOrigin": the exact postMessage target (null when unknown),
     "transactionId":  the merchant's transaction id,
     "publicKey":      PublicKeyCredentialRequestOptionsJSON for navigator.credentials.get(),
     "display":        {"amount", "currency", "payeeName", "payeeOrigin",
                        "instrumentName", "instrumentIcon"},
     "error":          null or {"code", "message"} (then there is nothing to confirm)}

and reports to the merchant page with ``postMessage(message, merchantOrigin)``::

    {"source": "spc-embed", "type": "payment", "transactionId",
     "outcome": "confirmed" | "cancelled" | "failed", "token"?, "code"?, "message"?}

Decisions, each also in the OpenAPI descriptions:

- The fallback token goes to the iframe, which posts it to the merchant page;
  the merchant's backend must verify it against the JWKS (``aud`` = its id,
  ``trans.id`` = its transaction) before relying on it, exactly as for SPC.
- An unknown user and a user without usable credentials get the same 200:
  ``credentialIds``/``allowCredentials`` empty and ``instrument`` null (SPC needs
  at least one id, so the merchant page knows to offer enrolment instead), and
  a stored pending transaction in both cases, so even a repeated id answers 409
  alike (SECURITY.md S11).
- Opt-out (SPC ``showOptOut``): the spec leaves acting on it to the party the
  user told; the issuer records it, fails the transaction, burns its challenge,
  and stops offering this user's credentials to *this merchant* (those enrolled
  before the opt-out), which a forged report can only do to the reporting
  merchant itself. Revoking credentials for every merchant stays the issuer
  backend's decision (``DELETE /credentials/{id}``), informed by the records.
- Credential management and cross-merchant listings need an admin key
  (``IssuerConfig.admin_api_keys``): credentials belong to the bank's
  cardholder, not to any one merchant.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import Merchant
from .encoding import b64url_decode, b64url_encode
from .errors import (
    AssertionRejected, Conflict, InvalidRequest, NotFound, SPCEmbedError, TokenError, Unauthorized,
)
from .headers import page_headers
from .payment import (
    ExpectedPayment, parse_authentication_response, payment_request_options, verify_fallback_assertion,
    verify_payment_assertion,
)
from .storage import Credential, TransactionRecord
from .tokens import SignedTokens
from .transactions import (
    EXPIRED, FAILED, MAX_TEXT_LENGTH, MAX_TRANSACTION_ID_LENGTH, MAX_USER_ID_LENGTH, PENDING, SUCCEEDED,
    parse_transaction_data, resolve_merchant_origin, validate_identifier,
)
from .web import JSON_HEADERS, cors_headers, error_response, json_object, read_json, require_origin

if TYPE_CHECKING:
    from .issuer import Issuer

PAYMENT_HANDLE_SALT = "spc-embed.payment-handle.v1"

STATE_ERRORS = {
    SUCCEEDED: ("this transaction has already been confirmed", "transaction_already_finalized"),
    FAILED: ("this transaction has failed (the user opted out)", "transaction_failed"),
    EXPIRED: ("this transaction has expired; initialize a new one", "transaction_expired"),
}


class PaymentHandles:
    """Signed handles naming one tenant's transaction, for the fallback iframe URL."""

    def __init__(self, secret_keys: Collection[str], *, max_age: int, clock: Callable[[], float]) -> None:
        self._tokens = SignedTokens(list(secret_keys), salt=PAYMENT_HANDLE_SALT, max_age=max_age, clock=clock)

    def mint(self, tenant_id: str, transaction_id: str) -> str:
        return self._tokens.dumps({"tenant": tenant_id, "transaction": transaction_id})

    def load(self, value: object) -> tuple[str, str]:
        payload = self._tokens.loads(value)
        tenant, transaction = payload.get("tenant"), payload.get("transaction")
        if not isinstance(tenant, str) or not isinstance(transaction, str):
            raise TokenError("this link is not valid (unexpected payload)")
        return tenant, transaction


class ApiKeys:
    """Constant-time lookup of API keys: every stored digest is compared, match or not (T1)."""

    def __init__(self, merchants: Collection[Merchant], admin_hashes: Collection[str]) -> None:
        self._entries: list[tuple[bytes, Merchant | None]] = [
            *((bytes.fromhex(h), m) for m in merchants for h in m.api_key_hashes),
            *((bytes.fromhex(h), None) for h in admin_hashes),
        ]

    @staticmethod
    def presented(request: Request) -> str | None:
        header = request.headers.get("apikey")
        authorization = request.headers.get("authorization")
        bearer = None
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthorized("the Authorization header must be 'Bearer <API key>'", code="invalid_api_key")
            bearer = value.strip()
        if header is not None and bearer is not None and not hmac.compare_digest(header, bearer):
            raise Unauthorized("the apiKey and Authorization headers name different keys", code="invalid_api_key")
        return header if header is not None else bearer

    def lookup(self, key: str) -> tuple[bool, Merchant | None]:
        """(matched, merchant): merchant None with matched True is the admin."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found: tuple[bool, Merchant | None] = (False, None)
        for stored, merchant in self._entries:
            if hmac.compare_digest(digest, stored):
                found = (True, merchant)
        return found


def _unauthorized() -> Unauthorized:
    # One code and message for missing, wrong, revoked and other-tenant keys.
    return Unauthorized("a valid API key is required (apiKey header or Authorization: Bearer)", code="invalid_api_key")


def transaction_routes(issuer: Issuer) -> list[Route]:
    config, store = issuer.config, issuer.store
    keys = ApiKeys(config.merchants, config.admin_api_key_hashes)
    browser_origins = config.merchant_origins

    def admin_or_merchant_key(request: Request) -> Merchant | None:
        presented = keys.presented(request)
        if presented is None:
            raise _unauthorized()
        matched, merchant = keys.lookup(presented)
        if not matched:
            raise _unauthorized()
        return merchant

    def merchant_key(request: Request) -> Merchant:
        merchant = admin_or_merchant_key(request)
        if merchant is None:
            raise _unauthorized()
        return merchant

    def admin_key(request: Request) -> None:
        if admin_or_merchant_key(request) is not None:
            raise _unauthorized()

    def caller_tenants(request: Request) -> tuple[list[str], dict[str, str], str]:
        """Tenants the caller may act for, the CORS headers to send, and who reported (for the records)."""
        if keys.presented(request) is not None:
            return [merchant_key(request).id], {}, "api_key"
        # W6: a browser call without a key must come from a merchant page (exact Origin match).
        origin = require_origin(request, browser_origins)
        return [m.id for m in config.merchants_for_origin(origin)], cors_headers(request, browser_origins), \
            f"origin {origin}"

    def with_cors(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Errors of a browser-facing endpoint carry the same CORS headers, so the page can read them."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except SPCEmbedError as exc:
                cors = cors_headers(request, browser_origins) if request.headers.get("origin") else {}
                return error_response(exc, headers=cors)

        return endpoint

    async def body_of(request: Request) -> dict[str, Any]:
        return json_object(await read_json(request, max_bytes=config.max_body_bytes))

    async def pending(record: TransactionRecord) -> None:
        if record.state == PENDING and record.expires_at <= store.now():
            await store.expire_due()
            record_state = EXPIRED
        else:
            record_state = record.state
        if record_state != PENDING:
            message, code = STATE_ERRORS[record_state]
            raise Conflict(message, code=code)

    async def stored_credential(credential_id: bytes) -> Credential:
        found = await store.get_credential(credential_id)
        if found is None:
            raise AssertionRejected("this credential cannot confirm this transaction", code="credential_not_allowed")
        return found

    async def complete(record: TransactionRecord, credential: object, *, fallback: bool) -> str:
        """Verify (SPC or fallback) and finalize atomically; return the result token."""
        await pending(record)
        parsed = parse_authentication_response(credential)
        stored = await stored_credential(parsed.credential_id)
        verify = verify_fallback_assertion if fallback else verify_payment_assertion
        verified = verify(credential=credential, expected=ExpectedPayment.from_json(record.expected),
                          stored_credential=stored)
        await store.finalize_transaction(
            record.tenant_id, record.transaction_id, challenge=record.challenge,
            credential_id=verified.credential_id, expected_sign_count=stored.sign_count,
            new_sign_count=verified.sign_count, backed_up=verified.backed_up, method=verified.method,
            browser_bound_public_key=verified.browser_bound_public_key,
        )
        return issuer.result_signer.sign(
            user_id=record.user_id, tenant_id=record.tenant_id, credential_id=verified.credential_id,
            transaction_id=record.transaction_id, transaction_hash=record.data_hash, method=verified.method,
        )

    async def one_transaction(tenants: list[str], *, transaction_id: str | None = None,
                              challenge: str | None = None) -> TransactionRecord:
        found = await store.find_transactions(tenants, transaction_id=transaction_id, challenge=challenge)
        if not found:
            raise NotFound("no such transaction for this merchant", code="transaction_not_found")
        if len(found) > 1:
            raise InvalidRequest("several merchants share this origin and transaction id; call with an API key",
                                 code="ambiguous_transaction")
        return found[0]

    # Server to server

    async def initialize(request: Request) -> Response:
        merchant = merchant_key(request)
        body = await body_of(request)
        user_id = validate_identifier(body.get("user_id"), field="user_id", max_length=MAX_USER_ID_LENGTH)
        transaction_id = validate_identifier(body.get("transaction_id"), field="transaction_id",
                                             max_length=MAX_TRANSACTION_ID_LENGTH)
        data = parse_transaction_data(body.get("transaction_data"))
        show_opt_out = body.get("show_opt_out", False)
        if not isinstance(show_opt_out, bool):
            raise InvalidRequest("show_opt_out must be true or false")
        merchant_origin = resolve_merchant_origin(data, merchant.origins)
        # S11: the same queries and the same answer whether the user is unknown or has no credentials.
        user, usable = await store.payable_credentials(merchant.id, user_id)
        newest = usable[-1] if usable else None
        now = store.now()
        expected = ExpectedPayment(
            challenge=b64url_encode(secrets.token_bytes(32)), rp_id=config.rp_id, issuer_origin=config.origin,
            merchant_origin=merchant_origin, user_id=user_id,
            user_handle=user.user_handle if user and usable else None,
            credential_ids=tuple(c.credential_id for c in usable), amount=data.amount, currency=data.currency,
            payee_name=data.payee_name, payee_origin=data.payee_origin,
            instrument_name=newest.instrument_name if newest else None,
            instrument_icon=newest.instrument_icon if newest else None,
            logos=data.logos, timeout_ms=config.transaction_ttl * 1000, show_opt_out=show_opt_out,
        )
        options = payment_request_options(expected)
        await store.create_transaction(TransactionRecord(
            tenant_id=merchant.id, transaction_id=transaction_id, user_id=user_id, data=dict(data.raw),
            data_hash=data.hash, challenge=expected.challenge, expected=expected.to_json(),
            merchant_origin=merchant_origin, credential_ids=tuple(b64url_encode(c) for c in expected.credential_ids),
            state=PENDING, created_at=now, expires_at=now + config.transaction_ttl,
        ))
        handle = issuer.payment_handles.mint(merchant.id, transaction_id)
        return JSONResponse({
            **options,
            "transaction_id": transaction_id,
            "transaction_hash": data.hash,
            "merchant_origin": merchant_origin,
            "expires_at": int(now + config.transaction_ttl),
            "fallback_url": issuer.url("/pay?handle=" + handle),
        }, headers=JSON_HEADERS)

    async def list_transactions(request: Request) -> Response:
        merchant = admin_or_merchant_key(request)
        user_id = validate_identifier(request.query_params.get("user_id"), field="user_id",
                                      max_length=MAX_USER_ID_LENGTH)
        records = await store.list_transactions(user_id, tenant_id=merchant.id if merchant else None)
        return JSONResponse({"transactions": [_transaction_json(r) for r in records]}, headers=JSON_HEADERS)

    async def list_credentials(request: Request) -> Response:
        admin_key(request)
        user_id = validate_identifier(request.query_params.get("user_id"), field="user_id",
                                      max_length=MAX_USER_ID_LENGTH)
        found = await store.list_credentials(user_id)
        return JSONResponse({"credentials": [_credential_json(c) for c in found]}, headers=JSON_HEADERS)

    async def live_credential(request: Request) -> Credential:
        try:
            credential_id = b64url_decode(request.path_params["credential_id"], field="credential id")
        except InvalidRequest:
            credential_id = b""
        found = await store.get_credential(credential_id) if credential_id else None
        if found is None or found.revoked_at is not None:
            raise NotFound("no such credential", code="credential_not_found")
        return found

    async def credential(request: Request) -> Response:
        admin_key(request)
        found = await live_credential(request)
        if request.method == "DELETE":
            if not await store.revoke_credential(found.user_id, found.credential_id):
                raise NotFound("no such credential", code="credential_not_found")
            return Response(status_code=204, headers=JSON_HEADERS)
        body = await body_of(request)
        name = body.get("name")
        if not isinstance(name, str) or len(name) > MAX_TEXT_LENGTH:
            raise InvalidRequest(f"'name' must be a string of at most {MAX_TEXT_LENGTH} characters")
        if not await store.rename_credential(found.user_id, found.credential_id, name):
            raise NotFound("no such credential", code="credential_not_found")
        renamed = await store.get_credential(found.credential_id)
        return JSONResponse(_credential_json(renamed or found), headers=JSON_HEADERS)

    async def jwks(request: Request) -> Response:
        return JSONResponse(issuer.result_signer.jwks(), headers={"Cache-Control": "public, max-age=300"})

    async def openapi(request: Request) -> Response:
        from .openapi import openapi_document

        return JSONResponse(openapi_document(issuer), headers={"Cache-Control": "no-cache"})

    # Server to server, or from the merchant page

    async def finalize(request: Request) -> Response:
        tenants, cors, _ = caller_tenants(request)
        body = await body_of(request)
        if "credential" in body:
            transaction_id = validate_identifier(body.get("transaction_id"), field="transaction_id",
                                                 max_length=MAX_TRANSACTION_ID_LENGTH)
            credential = body["credential"]
            record = await one_transaction(tenants, transaction_id=transaction_id)
        else:  # the Hanko Passkey API shape: the credential itself, found by its challenge
            credential = body
            challenge = parse_authentication_response(credential).client_data.challenge
            record = await one_transaction(tenants, challenge=challenge)
        token = await complete(record, credential, fallback=False)
        return JSONResponse({"token": token}, headers={**JSON_HEADERS, **cors})

    async def opt_out(request: Request) -> Response:
        tenants, cors, reported_by = caller_tenants(request)
        body = await body_of(request)
        transaction_id = validate_identifier(body.get("transaction_id"), field="transaction_id",
                                             max_length=MAX_TRANSACTION_ID_LENGTH)
        record = await one_transaction(tenants, transaction_id=transaction_id)
        await pending(record)
        await store.record_opt_out(record.tenant_id, record.transaction_id, reported_by=reported_by)
        return JSONResponse({"outcome": "opted_out", "transaction_id": transaction_id},
                            headers={**JSON_HEADERS, **cors})

    async def preflight(request: Request) -> Response:
        # W4: allowlisted origins get CORS; any other origin (and "null") gets only Vary.
        return Response(status_code=204, headers=cors_headers(request, browser_origins))

    # The fallback iframe

    async def pay_page(request: Request) -> Response:
        raw = request.query_params.get("handle")
        error: SPCEmbedError | None = None
        record: TransactionRecord | None = None
        try:
            tenant_id, transaction_id = issuer.payment_handles.load(raw)
            record = await store.get_transaction(tenant_id, transaction_id)
            if record is None:
                raise TokenError("this link names no transaction")
            await pending(record)
            if not record.credential_ids:
                raise Conflict("no payment credential is set up for this card on this account",
                               code="no_credentials")
        except SPCEmbedError as exc:
            error = exc
        expected = ExpectedPayment.from_json(record.expected) if record else None
        context = {
            "config": {
                "handle": raw if record and not error else None,
                "finalizeUrl": issuer.url("/pay/finalize"),
                "merchantOrigin": record.merchant_origin if record else None,
                "transactionId": record.transaction_id if record else None,
                "publicKey": payment_request_options(expected)["publicKey"] if expected and not error else None,
                "display": _display(expected) if expected else None,
                "error": error.to_json() if error else None,
            },
            "payment": _display(expected) if expected else None,
            "error": error,
            "rp_name": config.rp_name,
            "widget_url": issuer.url("/widget"),
        }
        # An error page with no transaction carries no authority: any merchant may frame it.
        ancestors = [record.merchant_origin] if record else sorted(config.merchant_origins)
        return issuer.templates.TemplateResponse(
            request, "spc_embed/pay.html", context, status_code=error.status if error else 200,
            headers=page_headers(frame_ancestor_origins=ancestors),
        )

    async def pay_finalize(request: Request) -> Response:
        # The iframe's own document posts here: Origin is the issuer, the signed handle is the state (W6).
        require_origin(request, {config.origin})
        body = await body_of(request)
        tenant_id, transaction_id = issuer.payment_handles.load(body.get("handle"))
        record = await store.get_transaction(tenant_id, transaction_id)
        if record is None:
            raise NotFound("no such transaction", code="transaction_not_found")
        token = await complete(record, body.get("credential"), fallback=True)
        return JSONResponse({"token": token}, headers=JSON_HEADERS)

    return [
        Route("/transaction/initialize", initialize, methods=["POST"]),
        Route("/transaction/finalize", with_cors(finalize), methods=["POST"]),
        Route("/transaction/finalize", preflight, methods=["OPTIONS"]),
        Route("/transaction/opt-out", with_cors(opt_out), methods=["POST"]),
        Route("/transaction/opt-out", preflight, methods=["OPTIONS"]),
        Route("/transactions", list_transactions, methods=["GET"]),
        Route("/credentials", list_credentials, methods=["GET"]),
        Route("/credentials/{credential_id}", credential, methods=["PATCH", "DELETE"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/pay", pay_page, methods=["GET"]),
        Route("/pay/finalize", pay_finalize, methods=["POST"]),
    ]


def _display(expected: ExpectedPayment) -> dict[str, Any]:
    return {
        "amount": expected.amount, "currency": expected.currency, "payeeName": expected.payee_name,
        "payeeOrigin": expected.payee_origin, "instrumentName": expected.instrument_name,
        "instrumentIcon": expected.instrument_icon,
    }


def _transaction_json(record: TransactionRecord) -> dict[str, Any]:
    return {
        "tenant_id": record.tenant_id,
        "transaction_id": record.transaction_id,
        "user_id": record.user_id,
        "state": record.state,
        "failure_reason": record.failure_reason,
        "method": record.method,
        "credential_id": b64url_encode(record.credential_id) if record.credential_id else None,
        "merchant_origin": record.merchant_origin,
        "transaction_data": record.data,
        "transaction_hash": record.data_hash,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "finalized_at": record.finalized_at,
        "browser_bound_public_key": (b64url_encode(record.browser_bound_public_key)
                                     if record.browser_bound_public_key else None),
    }


def _credential_json(credential: Credential) -> dict[str, Any]:
    return {
        "id": b64url_encode(credential.credential_id),
        "user_id": credential.user_id,
        "name": credential.nickname,
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
