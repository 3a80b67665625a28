"""Hanko's "Example payment transaction", frontend and backend, on the bank's own site in real Chromium.

The bank's site is the issuer's origin (the first-party tenant ``bank``,
docs/security.md A3). Its page runs Hanko's ``transactionWithPasskey(amount,
usedFor)`` as published, with ``get()`` converting JSON and buffers as
@github/webauthn-json does (written out below, since nothing is downloaded at
run time); its backend routes are Hanko's ``/passkey/start-transaction`` and
``/passkey/finalize-transaction``, calling the issuer with the bank's API key.
The cardholder's passkey is the payment credential enrolled in the issuer's
iframe on a merchant's checkout.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from factories import API_KEY, BANK_API_KEY

from .harness import TestCA
from .sites import Sites, enrol, issuer_post, serve_sites, transaction_state, unique, verify_result

# What @github/webauthn-json's get() does (its schema.ts): base64url options to buffers for
# navigator.credentials.get(), and the PublicKeyCredential back to JSON with the members it knows.
WEBAUTHN_JSON_GET = """
const toBuffer = (text) => Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
const toText = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
  .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
const pick = (object, names) => Object.fromEntries(names.filter((n) => object && n in object).map((n) => [n, object[n]]));
const EXTENSIONS = ["appid", "appidExclude", "credProps"];

export async function get(requestJSON) {
  const json = requestJSON.publicKey;
  const publicKey = {
    challenge: toBuffer(json.challenge),
    ...pick(json, ["timeout", "rpId", "userVerification"]),
  };
  if (json.allowCredentials) {
    publicKey.allowCredentials = json.allowCredentials.map((d) => ({...pick(d, ["type", "transports"]), id: toBuffer(d.id)}));
  }
  if (json.extensions) publicKey.extensions = pick(json.extensions, EXTENSIONS);
  const credential = await navigator.credentials.get({...pick(requestJSON, ["mediation", "signal"]), publicKey});
  const response = credential.response;
  return {
    type: credential.type,
    id: credential.id,
    rawId: toText(credential.rawId),
    authenticatorAttachment: credential.authenticatorAttachment ?? undefined,
    response: {
      clientDataJSON: toText(response.clientDataJSON),
      authenticatorData: toText(response.authenticatorData),
      signature: toText(response.signature),
      userHandle: response.userHandle ? toText(response.userHandle) : null,
    },
    clientExtensionResults: pick(credential.getClientExtensionResults(), EXTENSIONS),
  };
}
"""

# Hanko's frontend, as published.
BANK_PAGE = """<!doctype html>
<title>Test Bank · transfer</title>
<script type="module">
import { get } from "/bank/webauthn-json.js";

async function transactionWithPasskey(amount, usedFor) {
  const transactionOptions = await fetch("/passkey/start-transaction", {
    method: "POST",
    body: JSON.stringify({
      transactionId: "unique-transaction-identifier",
      transactionData: {
        amount,
        usedFor,
      },
    }),
  }).then((res) => res.json());

  // Open "select passkey" dialog
  const credential = await get(transactionOptions);

  // User selected a passkey to use.
  //
  // The returned `credential` object needs to be sent back to the
  // Passkey API as-is.
  return fetch("/passkey/finalize-transaction", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(credential),
  });
}

window.transactionWithPasskey = transactionWithPasskey;
window.ready = true;
</script>
"""


class BankBackend:
    """Hanko's example backend routes; ``req.session.user`` is the ``user`` cookie, the issuer is ``baseUrl``."""

    def __init__(self) -> None:
        self.sites: Sites | None = None
        self.initialized: list[dict[str, Any]] = []
        self.finalized: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (credential, answer)

    def routes(self) -> tuple[Route, ...]:
        return (
            Route("/bank/transfer", self.page),
            Route("/bank/webauthn-json.js", self.script),
            Route("/passkey/start-transaction", self.start_transaction, methods=["POST"]),
            Route("/passkey/finalize-transaction", self.finalize_transaction, methods=["POST"]),
            Route("/success", self.success),
        )

    async def page(self, request: Request) -> Response:
        response = HTMLResponse(BANK_PAGE)
        response.set_cookie("user", request.query_params["user"], secure=True, httponly=True, samesite="strict")
        return response

    async def script(self, request: Request) -> Response:
        return Response(WEBAUTHN_JSON_GET, media_type="text/javascript")

    async def call_issuer(self, path: str, body: Any) -> httpx.Response:
        assert self.sites is not None
        headers = {"apiKey": BANK_API_KEY, "Content-Type": "application/json"}
        async with httpx.AsyncClient(verify=self.sites.ca.ssl_context()) as client:
            return await client.post(self.sites.issuer_api + path, headers=headers, content=json.dumps(body))

    async def start_transaction(self, request: Request) -> Response:
        user_id = request.cookies["user"]
        # The page sends JSON without a Content-Type (text/plain); the backend reads it as JSON.
        transaction_body = json.loads(await request.body())
        answer = await self.call_issuer("/transaction/initialize", {
            "user_id": user_id,
            "transaction_id": transaction_body["transactionId"],
            "transaction_data": transaction_body["transactionData"],
        })
        self.initialized.append(answer.json())
        return JSONResponse(answer.json(), status_code=answer.status_code)

    async def finalize_transaction(self, request: Request) -> Response:
        credential = await request.json()
        answer = await self.call_issuer("/transaction/finalize", credential)
        self.finalized.append((credential, {"status": answer.status_code, **answer.json()}))
        return RedirectResponse("/success", status_code=303 if answer.is_success else 302)

    async def success(self, request: Request) -> Response:
        return HTMLResponse("<title>Success</title>")


@pytest.fixture(scope="module")
def bank_backend() -> BankBackend:
    return BankBackend()


@pytest.fixture(scope="module")
def sites(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory, bank_backend: BankBackend) -> Iterator[Sites]:
    with serve_sites(test_ca, tmp_path_factory.mktemp("issuer") / "issuer.db",
                     bank_routes=bank_backend.routes()) as served:
        bank_backend.sites = served
        yield served


def test_hanko_example_frontend_on_the_banks_own_site(context: BrowserContext, page: Page, sites: Sites,
                                                      bank_backend: BankBackend) -> None:
    _, user_id = enrol(context, page, sites, user_id=unique("hanko-user"))
    page.goto(f"{sites.issuer_origin}/bank/transfer?user={user_id}")
    page.wait_for_function("() => window.ready === true")

    outcome = page.evaluate("""async () => {
      const response = await window.transactionWithPasskey(123.45, "Buying a Hanko Cloud membership");
      return {ok: response.ok, url: response.url};
    }""")

    assert outcome == {"ok": True, "url": f"{sites.issuer_origin}/success"}, bank_backend.finalized
    options = bank_backend.initialized[-1]
    assert options["total"] == {"currency": "EUR", "value": "123.45"}
    credential, answer = bank_backend.finalized[-1]
    assert answer["status"] == 200, answer
    # A plain passkey assertion, made top-level on the bank's page, sent as-is.
    client_data_json = credential["response"]["clientDataJSON"]
    client_data = json.loads(base64.urlsafe_b64decode(client_data_json + "=" * (-len(client_data_json) % 4)))
    assert client_data["type"] == "webauthn.get" and client_data["origin"] == sites.issuer_origin
    assert not client_data.get("crossOrigin") and "topOrigin" not in client_data
    claims = verify_result(sites, answer["token"], audience="bank")
    assert claims["sub"] == user_id
    assert claims["trans"]["id"] == "unique-transaction-identifier"
    assert claims["trans"]["hash"] == options["transaction_hash"]
    assert claims["trans"]["method"] == "passkey"
    assert transaction_state(sites, "unique-transaction-identifier", tenant="bank") == "succeeded"

    # The same kind of assertion never confirms a third-party merchant's transaction.
    merchant_id = unique("order")
    started = issuer_post(sites, "/transaction/initialize", {
        "user_id": user_id, "transaction_id": merchant_id,
        "transaction_data": {"amount": "123.45", "currency": "EUR", "payee_name": "Test Shop",
                             "payee_origin": sites.merchant},
    }, api_key=API_KEY)
    assert started.status_code == 200, started.text
    refused = issuer_post(sites, "/transaction/finalize", {"transaction_id": merchant_id, "credential": credential})
    assert refused.status_code == 400 and refused.json()["code"] == "unexpected_type", refused.text
    assert transaction_state(sites, merchant_id) == "pending"

