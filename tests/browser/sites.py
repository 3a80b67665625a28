"""Two real sites for the payment tests: the issuer app and a test shop that uses widget/spc-merchant.js.

The issuer is the real spc_embed app mounted at /spc on ``https://issuer.test:P``.
The shop (``https://merchant.test:P``, and the same app on ``https://shop.test:P``)
is what a merchant integration looks like: its backend calls the issuer's
``/transaction/initialize`` server to server with its API key, and its checkout
page loads ``spc-merchant.js`` from the issuer's ``/widget/`` and pays on a click.
Servers last a module (:func:`serve_sites`); each test uses its own user and
transaction ids, so tests share them without sharing state.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import jwt
from factories import ADMIN_API_KEY, API_KEY, BANK_API_KEY, make_issuer
from playwright.sync_api import BrowserContext, Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from spc_embed import Issuer, Merchant, Store

from .harness import ServedApp, TestCA, VirtualAuthenticator, add_virtual_authenticator, read_database
from .test_enrollment import FEATURES, enrollment_url

MOUNT = "/spc"
T = TypeVar("T")

CHECKOUT_PAGE = """<!doctype html>
<title>Test shop · checkout</title>
<h1>Checkout</h1>
<button id="pay" type="button">Pay</button>
<div id="spc-slot"></div>
<script type="module">
import * as spc from %(script)s;
const ISSUER = %(issuer)s;
window.spc = spc;
window.shop = {
  issuerOrigin: ISSUER,
  finalizeUrl: ISSUER + "%(mount)s/transaction/finalize",
  optOutUrl: ISSUER + "%(mount)s/transaction/opt-out",
  payOptions: {},
  // The shop's backend initializes with the issuer server to server (its API key stays there).
  async initialize(body) {
    const response = await fetch("/api/initialize", {method: "POST", body: JSON.stringify(body),
                                                     headers: {"Content-Type": "application/json"}});
    const data = await response.json();
    if (!response.ok) throw new Error(JSON.stringify(data));
    window.init = data;
    return data;
  },
  mount(kind, url, options = {}) {
    const slot = document.getElementById("spc-slot");
    slot.replaceChildren();  // one issuer frame at a time
    const mounted = kind === "enrollment" ? spc.mountEnrollment(slot, url, {issuerOrigin: ISSUER, ...options})
                                          : spc.mountFallback(slot, url, {issuerOrigin: ISSUER, ...options});
    window.frameMessages = [];
    window.frameResult = undefined;
    mounted.then((data) => { window.frameResult = data; });
  },
};
// show() needs a user activation, as a real checkout's Pay button gives it.
document.getElementById("pay").addEventListener("click", async () => {
  window.result = undefined;
  window.result = await spc.confirmPayment(window.init, window.shop.payOptions);
});
window.shop.ready = true;
</script>
"""

# Served by a *different* site than the checkout: a stranger trying to speak for the issuer.
FAKE_SENDER = """<!doctype html>
<script type="module">
parent.postMessage({source: "spc-embed", type: "enrollment", outcome: "enrolled", credentialId: "forged"}, "*");
parent.postMessage({source: "spc-embed", type: "payment", outcome: "confirmed", token: "forged"}, "*");
parent.postMessage({source: "spc-embed", type: "resize", height: 1500}, "*");
document.title = "sent";
</script>
"""


def shop_app(issuer_origin: str, issuer_api: str, ca: TestCA) -> Starlette:
    """The merchant: a checkout page and a backend that talks to the issuer with its API key."""
    # Delegate payment and WebAuthn to the issuer only (docs/security.md W2); the iframe's allow matches.
    header = ", ".join(f'{feature}=(self "{issuer_origin}")' for feature in FEATURES)
    context = ca.ssl_context()

    async def checkout(request: Request) -> Response:
        html = CHECKOUT_PAGE % {
            "script": json.dumps(issuer_origin + MOUNT + "/widget/spc-merchant.js"),
            "issuer": json.dumps(issuer_origin),
            "mount": MOUNT,
        }
        return HTMLResponse(html, headers={"Permissions-Policy": header})

    async def forward(request: Request, path: str) -> Response:
        # *.test names resolve only inside Chromium: the backend reaches the issuer as localhost.
        async with httpx.AsyncClient(verify=context) as client:
            answer = await client.post(issuer_api + path, json=await request.json(), headers={"apiKey": API_KEY})
        return JSONResponse(answer.json(), status_code=answer.status_code)

    async def initialize(request: Request) -> Response:
        return await forward(request, "/transaction/initialize")

    async def finalize(request: Request) -> Response:
        return await forward(request, "/transaction/finalize")

    async def fake_sender(request: Request) -> Response:
        return HTMLResponse(FAKE_SENDER)

    return Starlette(routes=[
        Route("/checkout", checkout),
        Route("/api/initialize", initialize, methods=["POST"]),
        Route("/api/finalize", finalize, methods=["POST"]),
        Route("/fake-sender", fake_sender),
    ])


@dataclass(frozen=True)
class Sites:
    issuer: Issuer
    issuer_origin: str
    issuer_api: str  # the same app at https://localhost:P/spc, for server-to-server calls from the tests
    merchant: str
    shop: str
    database: Path
    ca: TestCA

    @property
    def checkout(self) -> str:
        return self.merchant + "/checkout"


@contextmanager
def serve_sites(ca: TestCA, database: Path, *, locale_directories: tuple[Path, ...] = (),
                bank_routes: tuple[BaseRoute, ...] = ()) -> Iterator[Sites]:
    """The issuer, the merchant and the shop, served for a module.

    ``bank_routes`` are the bank's own pages, served on the issuer's origin
    beside the mount (the first-party tenant ``bank``, whose key is
    ``BANK_API_KEY``, is that origin); ``ADMIN_API_KEY`` is the issuer
    back office's key.
    """
    with (
        ServedApp.reserve("issuer.test", ca) as issuer_site,
        ServedApp.reserve("merchant.test", ca) as merchant_site,
        ServedApp.reserve("shop.test", ca) as shop_site,
    ):
        issuer = make_issuer(
            database, mount_path=MOUNT, issuer_origin=issuer_site.origin, merchant_origin=merchant_site.origin,
            other_merchant_origin=shop_site.origin, locale_directories=locale_directories,
            # The payee the checkout shows (docs/security.md H7); the long name lays out the frames' worst case.
            merchant_name="Test Shop",
            merchant_payees=({"name": "A shop with a rather long name, Ltd.", "origin": merchant_site.origin},),
            extra_merchants=(Merchant(id="bank", name="Test Bank", origins=(issuer_site.origin,),
                                      api_keys=(BANK_API_KEY,), default_currency="EUR"),),
            admin_api_keys=(ADMIN_API_KEY,),
        )
        issuer_api = f"https://localhost:{issuer_site.port}{MOUNT}"
        issuer_site.start(Starlette(routes=[*bank_routes, Mount(MOUNT, app=issuer.app)], lifespan=issuer.lifespan))
        merchant_site.start(shop_app(issuer_site.origin, issuer_api, ca))
        shop_site.start(shop_app(issuer_site.origin, issuer_api, ca))
        yield Sites(issuer, issuer_site.origin, issuer_api, merchant_site.origin, shop_site.origin, database, ca)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# The issuer, seen from outside the browser


def issuer_post(sites: Sites, path: str, body: Any, *, api_key: str | None = API_KEY) -> httpx.Response:
    headers = {"apiKey": api_key} if api_key else {}
    return httpx.post(sites.issuer_api + path, json=body, headers=headers, verify=sites.ca.ssl_context())


def finalize(sites: Sites, transaction_id: str, credential: dict[str, Any]) -> httpx.Response:
    """The merchant backend's server-to-server finalize."""
    return issuer_post(sites, "/transaction/finalize", {"transaction_id": transaction_id, "credential": credential})



def read_store(sites: Sites, query: Callable[[Store], Awaitable[T]]) -> T:
    return read_database(sites.database, query)


def transaction_state(sites: Sites, transaction_id: str, tenant: str = "merchant") -> str:
    record = read_store(sites, lambda store: store.get_transaction(tenant, transaction_id))
    assert record is not None, transaction_id
    return record.state


def verify_result(sites: Sites, token: str, *, audience: str = "merchant") -> dict[str, Any]:
    """What a merchant backend does with a token: verify it with PyJWT against the published JWKS."""
    jwks = httpx.get(sites.issuer_api + "/.well-known/jwks.json", verify=sites.ca.ssl_context()).json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, key=key, algorithms=["ES256"], audience=audience, issuer=sites.issuer.base_url,
                      options={"require": ["iss", "sub", "aud", "iat", "exp", "jti", "cred", "trans"]})


# The checkout page


def open_checkout(page: Page, sites: Sites, *, site: str | None = None) -> None:
    page.goto((site or sites.merchant) + "/checkout")
    page.wait_for_function("() => window.shop?.ready === true")


def mount_frame(page: Page, kind: str, url: str) -> None:
    page.evaluate("([kind, url]) => { window.shop.mount(kind, url); }", [kind, url])


def frame_result(page: Page, *, settle_ms: int = 100) -> dict[str, Any]:
    page.wait_for_function("() => window.frameResult !== undefined")
    page.wait_for_timeout(settle_ms)
    return page.evaluate("() => window.frameResult")


def enrol(context: BrowserContext, page: Page, sites: Sites, *,
          user_id: str | None = None) -> tuple[VirtualAuthenticator, str]:
    """A virtual authenticator on ``page``, and a passkey for a new cardholder made in the issuer iframe."""
    authenticator = add_virtual_authenticator(context, page)
    url, user_id = enrollment_url(sites, user_id=user_id or unique("cardholder"))  # type: ignore[arg-type]
    open_checkout(page, sites)
    mount_frame(page, "enrollment", url)
    # create() in a cross-origin iframe needs a user activation in that frame.
    page.frame_locator("#spc-slot iframe").locator("#spc-enroll-button").click()
    message = frame_result(page, settle_ms=0)
    assert message["outcome"] == "enrolled", message
    return authenticator, user_id


def initialize(page: Page, user_id: str, *, amount: str = "100.00", show_opt_out: bool = False,
               transaction_id: str | None = None, **data: Any) -> dict[str, Any]:
    """The shop's page asks its backend, which asks the issuer; returns initialize's response."""
    merchant = page.evaluate("() => location.origin")
    body = {
        "user_id": user_id,
        "transaction_id": transaction_id or unique("order"),
        "transaction_data": {"amount": amount, "currency": "EUR", "payee_name": "Test Shop",
                             "payee_origin": merchant, "order": "A-1042", **data},
        "show_opt_out": show_opt_out,
    }
    return page.evaluate("(body) => window.shop.initialize(body)", body)


def pay(page: Page, *, finalize: bool = True, opt_out: bool = False) -> dict[str, Any]:
    """Click Pay: spc-merchant.js runs SPC with initialize's data; returns the typed outcome."""
    page.evaluate(
        """([finalize, optOut]) => {
          window.shop.payOptions = {
            finalizeUrl: finalize ? window.shop.finalizeUrl : undefined,
            optOutUrl: optOut ? window.shop.optOutUrl : undefined,
            onResult: (result) => { window.onResultCalls = (window.onResultCalls || 0) + 1; },
          };
        }""",
        [finalize, opt_out],
    )
    page.click("#pay")
    page.wait_for_function("() => window.result !== undefined")
    result = page.evaluate("() => window.result")
    assert page.evaluate("() => window.onResultCalls") == 1
    page.evaluate("() => { window.onResultCalls = 0; }")
    return result


__all__ = [
    "Sites", "enrol", "finalize", "frame_result", "initialize", "issuer_post", "mount_frame", "open_checkout",
    "pay", "read_store", "serve_sites", "transaction_state", "unique", "verify_result",
]
