"""The fallback iframe, where SPC is unavailable: its page and its finalize.

    GET  /pay?handle=…    the page, framable only by the transaction's merchant origin
    POST /pay/finalize    {"handle", "credential"} from the iframe itself -> {"token"}

The page loads ``widget/pay.js``, which reads
``<script type="application/json" id="spc-pay-config">``::

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

The fallback token goes to the iframe, which posts it to the merchant page;
the merchant's backend must verify it against the JWKS (``aud`` = its id,
``trans.id`` = its transaction) before relying on it, exactly as for SPC.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import payment_service
from .errors import StorageUnavailable
from .headers import page_headers
from .payment import ExpectedPayment, payment_request_options
from .web import JSON_HEADERS, JSONResponse, app_url, issuer_context, read_body, require_origin, retry_after


async def pay_page(request: Request) -> Response:
    ctx = issuer_context(request)
    page = await payment_service.fallback_page(ctx, request.query_params.get("handle"))
    record, expected, error = page.record, page.expected, page.error
    # initialize's locale, else the browser's Accept-Language, else the issuer's default.
    frame_locale = ctx.catalogs.choose(expected.locale if expected else None, request.headers.get("accept-language"))
    context = {
        "config": {
            "handle": page.handle,
            "finalizeUrl": app_url(request, "pay_finalize"),
            "merchantOrigin": record.merchant_origin if record else None,
            "transactionId": record.transaction_id if record else None,
            "publicKey": payment_request_options(expected)["publicKey"] if expected and not error else None,
            "display": display_json(expected) if expected else None,
            "error": error.to_json() if error else None,
        },
        "payment": display_json(expected) if expected else None,
        # The frame shows the amount the cardholder's way ("1.234,50 €"); the SPC dialog formats its own.
        "amount": frame_locale.format_amount(expected.amount, expected.currency) if expected else None,
        "error": error,
        "rp_name": ctx.config.rp_name,
        "widget_url": app_url(request, "widget", path="").rstrip("/"),
        "frame_locale": frame_locale,
    }
    # An error page with no transaction carries no authority: any merchant may frame it.
    headers = page_headers(frame_ancestor_origins=[record.merchant_origin] if record
                           else sorted(ctx.config.merchant_origins))
    headers.update(frame_locale.response_headers)
    if isinstance(error, StorageUnavailable):
        headers.update(retry_after(error))
    return ctx.templates.TemplateResponse(request, "spc_embed/pay.html", context,
                                          status_code=error.status if error else 200, headers=headers)


async def pay_finalize(request: Request) -> Response:
    # The iframe's own document posts here: Origin is the issuer, the signed handle is the state (W6).
    ctx = issuer_context(request)
    require_origin(request, {ctx.config.origin})
    body = await read_body(request)
    token = await payment_service.fallback_finalize(ctx, body.get("handle"), body.get("credential"))
    return JSONResponse({"token": token}, headers=JSON_HEADERS)


def display_json(expected: ExpectedPayment) -> dict[str, Any]:
    return {
        "amount": expected.amount, "currency": expected.currency, "payeeName": expected.payee_name,
        "payeeOrigin": expected.payee_origin, "instrumentName": expected.instrument_name,
        "instrumentIcon": expected.instrument_icon,
    }


ROUTES = [
    Route("/pay", pay_page, methods=["GET"], name="pay_page"),
    Route("/pay/finalize", pay_finalize, methods=["POST"], name="pay_finalize"),
]
