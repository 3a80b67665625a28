"""Hanko's examples, frontend and backend, on the bank's own site in real Chromium.

The bank's site is the issuer's origin (the first-party tenant ``bank``,
docs/security.md A3 and R15). Its backend routes are those of Hanko's
"Example Implementation" (``/passkey/start-registration``,
``/passkey/finalize-registration``: the issuer's ``/registration/*`` with the
back office's admin key, adding the card to Hanko's ``{user_id, username}``)
and "Example payment transaction" (``/passkey/start-transaction``,
``/passkey/finalize-transaction``: ``/transaction/*`` with the bank's own
key), each with the ``apiKey`` header and ``Content-Type: application/json``.
Its pages run Hanko's ``registerPasskey()`` and ``transactionWithPasskey()``
as published: ``create()`` is built on the issuer's ``widget/webauthn-json.js``
(which keeps the SPC ``payment`` extension that @github/webauthn-json's own
create() would drop), ``get()`` converts as @github/webauthn-json does
(written out below, since nothing is downloaded at run time).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from factories import ADMIN_API_KEY, API_KEY, BANK_API_KEY
from playwright.sync_api import BrowserContext, Page
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .harness import TestCA, add_virtual_authenticator, list_credentials, set_spc_mode
from .sites import (
    MOUNT,
    Sites,
    enrol,
    initialize,
    issuer_post,
    open_checkout,
    pay,
    serve_sites,
    transaction_state,
    unique,
    verify_result,
)

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

# Hanko's frontend, as published, with create() from the issuer's webauthn-json module and a button to click.
REGISTRATION_PAGE = """<!doctype html>
<title>Test Bank · passkeys</title>
<button id="register" type="button">Add a passkey</button>
<script type="module">
import { parseCreationOptions, credentialToJSON } from "%(mount)s/widget/webauthn-json.js";

// @github/webauthn-json's create(): JSON options in, JSON credential out.
async function create(creationOptions) {
  const publicKey = parseCreationOptions(creationOptions.publicKey);
  return credentialToJSON(await navigator.credentials.create({ publicKey }));
}

async function registerPasskey() {
  // Let's send a request to our backend to start the registration process.
  // The response JSON can directly be passed to create(...) below.
  const creationOptions = await fetch("/passkey/start-registration", {
    method: "POST",
  }).then((res) => res.json());

  // Open "create passkey" dialog
  const credential = await create(creationOptions);

  // User successfully created a passkey on their device.
  //
  // The resulting `credential` object needs to be sent back to the
  // Passkey API as-is, through our backend:
  //
  // frontend → backend → passkey API
  return fetch("/passkey/finalize-registration", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(credential),
  });
}

document.getElementById("register").addEventListener("click", async () => {
  try {
    const response = await registerPasskey();
    window.outcome = { ok: response.ok, url: response.url };
  } catch (error) {
    window.outcome = { error: String(error) };
  }
});
window.ready = true;
</script>
"""


TRANSFER_PAGE = """<!doctype html>
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
    """Hanko's example backends; ``req.session.user`` is the ``user`` cookie, the issuer is ``baseUrl``.

    Every call to the issuer is recorded as (what was sent, status, answer).
    """

    def __init__(self) -> None:
        self.sites: Sites | None = None
        self.calls: dict[str, list[tuple[Any, int, dict[str, Any]]]] = {}

    def routes(self) -> tuple[Route, ...]:
        return (
            Route("/bank/passkeys", self.page(REGISTRATION_PAGE % {"mount": MOUNT})),
            Route("/bank/transfer", self.page(TRANSFER_PAGE)),
            Route("/bank/webauthn-json.js", self.script),
            Route("/passkey/start-registration", self.start_registration, methods=["POST"]),
            Route("/passkey/finalize-registration", self.finalize_registration, methods=["POST"]),
            Route("/passkey/start-transaction", self.start_transaction, methods=["POST"]),
            Route("/passkey/finalize-transaction", self.finalize_transaction, methods=["POST"]),
            Route("/success", self.success),
        )

    def last(self, path: str) -> tuple[Any, int, dict[str, Any]]:
        return self.calls[path][-1]

    @staticmethod
    def page(html: str) -> Any:
        async def serve(request: Request) -> Response:
            response = HTMLResponse(html)
            response.set_cookie("user", request.query_params["user"], secure=True, httponly=True, samesite="strict")
            return response

        return serve

    async def script(self, request: Request) -> Response:
        return Response(WEBAUTHN_JSON_GET, media_type="text/javascript")

    async def call_issuer(self, path: str, body: Any, *, api_key: str) -> httpx.Response:
        assert self.sites is not None
        headers = {"apiKey": api_key, "Content-Type": "application/json"}
        async with httpx.AsyncClient(verify=self.sites.ca.ssl_context()) as client:
            answer = await client.post(self.sites.issuer_api + path, headers=headers, content=json.dumps(body))
        self.calls.setdefault(path, []).append((body, answer.status_code, answer.json()))
        return answer

    async def start_registration(self, request: Request) -> Response:
        assert self.sites is not None
        user_id = request.cookies["user"]
        # Hanko's two fields, and the card the bank is enrolling (its own records).
        answer = await self.call_issuer("/registration/initialize", {
            "user_id": user_id, "username": f"{user_id}@bank.example",
            "instrument_id": "card-0042", "instrument_name": "Test Card ****0042",
            "instrument_icon": self.sites.issuer.url("/widget/card.png"),
        }, api_key=ADMIN_API_KEY)
        return JSONResponse(answer.json(), status_code=answer.status_code)

    async def finalize_registration(self, request: Request) -> Response:
        answer = await self.call_issuer("/registration/finalize", await request.json(), api_key=ADMIN_API_KEY)
        return RedirectResponse("/success", status_code=303 if answer.is_success else 302)

    async def start_transaction(self, request: Request) -> Response:
        # The page sends JSON without a Content-Type (text/plain); the backend reads it as JSON.
        transaction_body = json.loads(await request.body())
        answer = await self.call_issuer("/transaction/initialize", {
            "user_id": request.cookies["user"],
            "transaction_id": transaction_body["transactionId"],
            "transaction_data": transaction_body["transactionData"],
        }, api_key=BANK_API_KEY)
        return JSONResponse(answer.json(), status_code=answer.status_code)

    async def finalize_transaction(self, request: Request) -> Response:
        answer = await self.call_issuer("/transaction/finalize", await request.json(), api_key=BANK_API_KEY)
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


def client_data(credential: dict[str, Any]) -> dict[str, Any]:
    value = credential["response"]["clientDataJSON"]
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def registration_claims(sites: Sites, token: str) -> dict[str, Any]:
    """What the bank's backend may do with Hanko's token: verify it against the issuer's JWKS."""
    jwks = httpx.get(sites.issuer_api + "/.well-known/jwks.json", verify=sites.ca.ssl_context()).json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims: dict[str, Any] = jwt.decode(token, key=key, algorithms=["ES256"], audience=sites.issuer.config.rp_id,
                                        issuer=sites.issuer.base_url,
                                        options={"require": ["iss", "sub", "aud", "iat", "exp", "jti", "cred"]})
    return claims


def register_on_the_banks_site(page: Page, sites: Sites, user_id: str) -> dict[str, Any]:
    page.goto(f"{sites.issuer_origin}/bank/passkeys?user={user_id}")
    page.wait_for_function("() => window.ready === true")
    page.click("#register")
    page.wait_for_function("() => window.outcome !== undefined")
    outcome: dict[str, Any] = page.evaluate("() => window.outcome")
    return outcome


def test_hanko_registration_on_the_banks_site_then_an_spc_payment_on_a_merchant(
        context: BrowserContext, page: Page, sites: Sites, bank_backend: BankBackend) -> None:
    authenticator = add_virtual_authenticator(context, page)
    user_id = unique("hanko-registrant")

    outcome = register_on_the_banks_site(page, sites, user_id)

    assert outcome == {"ok": True, "url": f"{sites.issuer_origin}/success"}, (outcome, bank_backend.calls)
    _, status, options = bank_backend.last("/registration/initialize")
    assert status == 200 and options["publicKey"]["extensions"] == {"payment": {"isPayment": True}}
    credential, status, answer = bank_backend.last("/registration/finalize")
    assert status == 200, answer
    # Made top-level on the bank's own page, not in a frame.
    signed = client_data(credential)
    assert signed["type"] == "webauthn.create" and signed["origin"] == sites.issuer_origin
    assert not signed.get("crossOrigin") and "topOrigin" not in signed
    claims = registration_claims(sites, answer["token"])
    assert (claims["sub"], claims["cred"], claims["aud"]) == (user_id, credential["id"], [sites.issuer.config.rp_id])
    assert "trans" not in claims
    [held] = list_credentials(authenticator.cdp, authenticator.authenticator_id)
    assert base64.b64decode(held["credentialId"]) == base64.urlsafe_b64decode(credential["id"] + "==")
    listed = httpx.get(sites.issuer_api + "/credentials", params={"user_id": user_id},
                       headers={"apiKey": ADMIN_API_KEY}, verify=sites.ca.ssl_context()).json()["credentials"]
    assert [(c["id"], c["instrument_id"], c["enrolled_origin"]) for c in listed] == [
        (credential["id"], "card-0042", sites.issuer_origin)]

    # The same passkey confirms an SPC payment on a third-party merchant's checkout.
    open_checkout(page, sites)
    init = initialize(page, user_id)
    assert init["secure_payment_confirmation"]["credentialIds"] == [credential["id"]]
    set_spc_mode(authenticator.cdp, "autoAccept")

    result = pay(page)

    assert result["outcome"] == "confirmed", result
    paid = verify_result(sites, result["token"])
    assert (paid["sub"], paid["cred"]) == (user_id, credential["id"])
    assert paid["trans"]["method"] == "spc" and paid["trans"]["instrument_id"] == "card-0042"
    assert client_data(result["credential"])["payment"]["instrument"]["displayName"] == "Test Card ****0042"
    assert transaction_state(sites, init["transaction_id"]) == "succeeded"


def test_a_merchant_key_cannot_start_a_registration(sites: Sites) -> None:
    """Served over HTTPS too: the merchant's own key, like no key, is 401 before anything is stored."""
    body = {"user_id": unique("stranger"), "username": "someone"}
    for key in (API_KEY, BANK_API_KEY, None):
        refused = issuer_post(sites, "/registration/initialize", body, api_key=key)
        assert refused.status_code == 401 and refused.json()["code"] == "invalid_api_key", refused.text


def test_hanko_example_frontend_on_the_banks_own_site(context: BrowserContext, page: Page, sites: Sites,
                                                      bank_backend: BankBackend) -> None:
    _, user_id = enrol(context, page, sites, user_id=unique("hanko-user"))
    page.goto(f"{sites.issuer_origin}/bank/transfer?user={user_id}")
    page.wait_for_function("() => window.ready === true")

    outcome = page.evaluate("""async () => {
      const response = await window.transactionWithPasskey(123.45, "Buying a Hanko Cloud membership");
      return {ok: response.ok, url: response.url};
    }""")

    assert outcome == {"ok": True, "url": f"{sites.issuer_origin}/success"}, bank_backend.calls
    _, _, options = bank_backend.last("/transaction/initialize")
    assert options["total"] == {"currency": "EUR", "value": "123.45"}
    credential, status, answer = bank_backend.last("/transaction/finalize")
    assert status == 200, answer
    # A plain passkey assertion, made top-level on the bank's page, sent as-is.
    signed = client_data(credential)
    assert signed["type"] == "webauthn.get" and signed["origin"] == sites.issuer_origin
    assert not signed.get("crossOrigin") and "topOrigin" not in signed
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

