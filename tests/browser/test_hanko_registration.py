"""Hanko's example passkey registration, frontend and backend, on the bank's own site in real Chromium.

The bank's site is the issuer's origin (the first-party tenant ``bank``). Its
backend routes are Hanko's ``/passkey/start-registration`` and
``/passkey/finalize-registration``: they call the issuer's
``/registration/initialize`` and ``/registration/finalize`` with the issuer
back office's admin key, the ``apiKey`` header and ``Content-Type:
application/json``, adding the card (spc-embed's instrument fields) to Hanko's
``{user_id, username}``. Its page runs Hanko's ``registerPasskey()`` as
published, with ``create()`` built on the issuer's ``widget/webauthn-json.js``
(which keeps the SPC ``payment`` extension that @github/webauthn-json's own
create() would drop). The passkey made there then confirms an SPC payment on
a merchant's checkout (docs/security.md R15).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from playwright.sync_api import BrowserContext, Page
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from factories import ADMIN_API_KEY, API_KEY, BANK_API_KEY

from .harness import TestCA, add_virtual_authenticator, list_credentials, set_spc_mode
from .sites import (
    MOUNT, Sites, initialize, issuer_post, open_checkout, pay, serve_sites, transaction_state, unique, verify_result,
)

# Hanko's frontend, as published, with create() from the issuer's webauthn-json module and a button to click.
BANK_PAGE = """<!doctype html>
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


class BankBackend:
    """Hanko's example backend; ``req.session.user`` is the ``user`` cookie, the issuer is ``baseUrl``."""

    def __init__(self) -> None:
        self.sites: Sites | None = None
        self.initialized: list[tuple[dict[str, Any], int, dict[str, Any]]] = []  # (request, status, answer)
        self.finalized: list[tuple[dict[str, Any], int, dict[str, Any]]] = []  # (credential, status, answer)

    def routes(self) -> tuple[Route, ...]:
        return (
            Route("/bank/passkeys", self.page),
            Route("/passkey/start-registration", self.start_registration, methods=["POST"]),
            Route("/passkey/finalize-registration", self.finalize_registration, methods=["POST"]),
            Route("/success", self.success),
        )

    async def page(self, request: Request) -> Response:
        response = HTMLResponse(BANK_PAGE % {"mount": MOUNT})
        response.set_cookie("user", request.query_params["user"], secure=True, httponly=True, samesite="strict")
        return response

    async def call_issuer(self, path: str, body: Any) -> httpx.Response:
        assert self.sites is not None
        headers = {"apiKey": ADMIN_API_KEY, "Content-Type": "application/json"}
        async with httpx.AsyncClient(verify=self.sites.ca.ssl_context()) as client:
            return await client.post(self.sites.issuer_api + path, headers=headers, content=json.dumps(body))

    async def start_registration(self, request: Request) -> Response:
        assert self.sites is not None
        user_id = request.cookies["user"]
        # Hanko's two fields, and the card the bank is enrolling (its own records).
        body = {
            "user_id": user_id, "username": f"{user_id}@bank.example",
            "instrument_id": "card-0042", "instrument_name": "Test Card ****0042",
            "instrument_icon": self.sites.issuer.url("/widget/card.png"),
        }
        answer = await self.call_issuer("/registration/initialize", body)
        self.initialized.append((body, answer.status_code, answer.json()))
        return JSONResponse(answer.json(), status_code=answer.status_code)

    async def finalize_registration(self, request: Request) -> Response:
        credential = await request.json()
        answer = await self.call_issuer("/registration/finalize", credential)  # forwarded as-is
        self.finalized.append((credential, answer.status_code, answer.json()))
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

    assert outcome == {"ok": True, "url": f"{sites.issuer_origin}/success"}, (outcome, bank_backend.finalized)
    _, status, options = bank_backend.initialized[-1]
    assert status == 200 and options["publicKey"]["extensions"] == {"payment": {"isPayment": True}}
    credential, status, answer = bank_backend.finalized[-1]
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
