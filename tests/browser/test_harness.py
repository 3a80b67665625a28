"""The harness end to end: two tiny cross-site apps, in-iframe enrolment, then SPC from the top page.

These apps are deliberately not spc_embed: they prove the browser setup alone, so a
failure here points at the machine or the harness, not at the library.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import pytest
from playwright.sync_api import Browser, BrowserContext, Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .harness import ServedApp, TestCA, add_virtual_authenticator, list_credentials, set_spc_mode, solid_png

CARD_PNG = solid_png(32, 20, (30, 80, 160))

B64URL_JS = """
const toB64url = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)))
  .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
const fromB64url = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
"""

ISSUER_FRAME = """<!doctype html>
<button id="enrol">Enrol</button>
<script>
const MERCHANT_ORIGIN = %(merchant)s;
%(b64url)s
document.getElementById("enrol").addEventListener("click", async () => {
  let message;
  try {
    const credential = await navigator.credentials.create({publicKey: {
      rp: {id: "issuer.test", name: "Test Issuer"},
      user: {id: crypto.getRandomValues(new Uint8Array(16)), name: "card-1234", displayName: "Card 1234"},
      challenge: crypto.getRandomValues(new Uint8Array(32)),
      pubKeyCredParams: [{type: "public-key", alg: -7}],
      authenticatorSelection: {authenticatorAttachment: "platform", residentKey: "required",
                               userVerification: "required"},
      extensions: {payment: {isPayment: true}},
    }});
    message = {ok: true, rawId: toB64url(credential.rawId),
               clientDataJSON: new TextDecoder().decode(credential.response.clientDataJSON)};
  } catch (error) {
    message = {ok: false, name: error.name, message: error.message};
  }
  parent.postMessage(message, MERCHANT_ORIGIN);
});
</script>
"""

MERCHANT_PAGE = """<!doctype html>
<iframe id="issuer" %(allow)s src="%(issuer)s/frame"></iframe>
<button id="pay">Pay</button>
<script>
const ISSUER_ORIGIN = %(issuer_json)s;
%(b64url)s
window.addEventListener("message", (event) => {
  if (event.origin === ISSUER_ORIGIN) window.frameResult = event.data;
});
// The test sets window.payment = {credentialId, challenge} (base64url) before clicking.
document.getElementById("pay").addEventListener("click", async () => {
  const request = new PaymentRequest([{supportedMethods: "secure-payment-confirmation", data: {
    rpId: "issuer.test",
    credentialIds: [fromB64url(window.payment.credentialId)],
    challenge: fromB64url(window.payment.challenge),
    instrument: {displayName: "Card ****1234", icon: ISSUER_ORIGIN + "/card.png"},
    payeeOrigin: location.origin,
    timeout: 60000,
  }}], {total: {label: "Total", amount: {currency: "USD", value: "5.00"}}});
  try {
    const response = await request.show();
    await response.complete("success");
    window.payResult = {ok: true,
                        clientDataJSON: new TextDecoder().decode(response.details.response.clientDataJSON)};
  } catch (error) {
    window.payResult = {ok: false, name: error.name, message: error.message};
  }
});
</script>
"""


def issuer_app(merchant_origin: str) -> Starlette:
    frame = ISSUER_FRAME % {"merchant": json.dumps(merchant_origin), "b64url": B64URL_JS}

    async def enrol_frame(request: Request) -> Response:
        return HTMLResponse(frame)

    async def card_icon(request: Request) -> Response:
        return Response(CARD_PNG, media_type="image/png")

    return Starlette(routes=[Route("/frame", enrol_frame), Route("/card.png", card_icon)])


def merchant_app(issuer_origin: str) -> Starlette:
    # The header caps what the iframe's allow attribute may delegate.
    headers = {"Permissions-Policy": f'payment=(self "{issuer_origin}")'}

    def page(allow: str) -> Callable[[Request], Any]:
        html = MERCHANT_PAGE % {
            "allow": allow,
            "issuer": issuer_origin,
            "issuer_json": json.dumps(issuer_origin),
            "b64url": B64URL_JS,
        }

        async def endpoint(request: Request) -> Response:
            return HTMLResponse(html, headers=headers)

        return endpoint

    return Starlette(
        routes=[Route("/", page(f'allow="payment {issuer_origin}"')), Route("/no-allow", page(""))]
    )


class Sites(NamedTuple):
    issuer: str
    merchant: str


@pytest.fixture(scope="module")
def sites(test_ca: TestCA) -> Iterator[Sites]:
    # Each app needs the other's origin, so both ports are reserved before either app is built.
    with ServedApp.reserve("issuer.test", test_ca) as issuer, ServedApp.reserve("merchant.test", test_ca) as merchant:
        issuer.start(issuer_app(merchant.origin))
        merchant.start(merchant_app(issuer.origin))
        yield Sites(issuer.origin, merchant.origin)


def enrol_in_frame(page: Page, url: str) -> dict[str, Any]:
    page.goto(url)
    # create() in a cross-origin iframe needs a user activation inside that frame.
    page.frame_locator("#issuer").locator("#enrol").click()
    page.wait_for_function("() => window.frameResult !== undefined")
    return page.evaluate("() => window.frameResult")


def test_create_in_cross_site_iframe(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator = add_virtual_authenticator(context, page)

    result = enrol_in_frame(page, sites.merchant + "/")

    assert result["ok"], result
    client_data = json.loads(result["clientDataJSON"])
    assert client_data["type"] == "webauthn.create"
    assert client_data["origin"] == sites.issuer
    assert client_data["crossOrigin"] is True
    assert client_data["topOrigin"] == sites.merchant
    credentials = list_credentials(*authenticator)
    assert len(credentials) == 1
    raw_id = base64.urlsafe_b64decode(result["rawId"] + "==")
    assert base64.b64decode(credentials[0]["credentialId"]) == raw_id
    assert credentials[0]["rpId"] == "issuer.test"


def test_create_without_allow_attribute_is_refused(context: BrowserContext, page: Page, sites: Sites) -> None:
    add_virtual_authenticator(context, page)

    result = enrol_in_frame(page, sites.merchant + "/no-allow")

    assert not result["ok"]
    assert result["name"] == "NotSupportedError", result


def test_spc_payment_from_merchant_page(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator = add_virtual_authenticator(context, page)
    enrolment = enrol_in_frame(page, sites.merchant + "/")
    assert enrolment["ok"], enrolment
    set_spc_mode(authenticator.cdp, "autoAccept")
    challenge = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()

    # Assign inside a function body: evaluating a bare expression would await its value.
    payment = {"credentialId": enrolment["rawId"], "challenge": challenge}
    page.evaluate("(payment) => { window.payment = payment; }", payment)
    page.click("#pay")  # show() wants a user activation, as a real checkout has
    page.wait_for_function("() => window.payResult !== undefined")
    result = page.evaluate("() => window.payResult")

    assert result["ok"], result
    client_data = json.loads(result["clientDataJSON"])
    assert client_data["type"] == "payment.get"
    assert client_data["challenge"] == challenge
    assert client_data["origin"] == sites.merchant
    assert client_data["payment"]["rpId"] == "issuer.test"
    assert client_data["payment"]["payeeOrigin"] == sites.merchant
    assert client_data["payment"]["total"] == {"currency": "USD", "value": "5.00"}
    assert client_data["payment"]["instrument"]["icon"] == sites.issuer + "/card.png"


def test_browser_factory_without_spc_flag(browser_factory: Callable[[bool], Browser], sites: Sites) -> None:
    context = browser_factory(False).new_context()
    try:
        page = context.new_page()
        page.goto(sites.merchant + "/")
        availability = page.evaluate("() => PaymentRequest.securePaymentConfirmationAvailability()")
    finally:
        context.close()

    # With the flag on, an authenticator-less page says "unavailable-no-user-verifying-platform-authenticator".
    assert availability == "unavailable-feature-not-enabled"
