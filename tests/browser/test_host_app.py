"""A merchant app that knows nothing of SPC but the merchant kit, across two real HTTPS sites.

The host is an ordinary Starlette shop with its own security headers
(``Permissions-Policy: camera=(), microphone=(), payment=(self)``) and Jinja2
templates. It adds exactly what the README tells a merchant to add:

- ``SPCMerchantMiddleware(issuer_origins=[issuer])``, which merges the
  delegation into the app's own header and injects the issuer's
  ``spc-merchant.js`` into its HTML pages;
- ``install_jinja_globals``, so a template writes ``{{ spc_iframe(url) }}``;
- a few lines of page script calling ``confirmPayment``, and a backend that
  calls ``/transaction/initialize`` and verifies the result JWT against the JWKS.

It never writes a Permissions-Policy for the issuer, an ``allow`` attribute or
any WebAuthn code itself. The issuer (``https://issuer.test``) and the host
(``https://merchant.test``) are distinct sites with certificates from the
harness CA, as in production.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jinja2
import jwt
import pytest
from factories import API_KEY, make_issuer
from playwright.sync_api import BrowserContext, Page
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spc_embed import Issuer, Store
from spc_embed.merchant import SPCMerchantMiddleware, install_jinja_globals

from .harness import ServedApp, TestCA, add_virtual_authenticator, set_spc_mode

MOUNT = "/spc"
HOST_POLICY = "camera=(), microphone=(), payment=(self)"

TEMPLATES = {
    "base.html": """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{% block title %}{% endblock %} · Host Shop</title>{% block head %}{% endblock %}</head>
<body>
<header>Host Shop</header>
{% block main %}{% endblock %}
<footer id="page-end">© Host Shop</footer>
</body>
</html>""",
    # After the issuer has authenticated the cardholder, it hands the host an enrolment URL.
    "faster_checkout.html": """{% extends "base.html" %}
{% block title %}Faster checkout{% endblock %}
{% block main %}
<h1>Faster checkout</h1>
{{ spc_iframe(enrollment_url, title="Set up faster checkout with your bank", id="bank-frame", height=420) }}
{% endblock %}""",
    "checkout.html": """{% extends "base.html" %}
{% block title %}Checkout{% endblock %}
{% block head %}<script type="application/json" id="host-config">{{ config|tojson }}</script>{% endblock %}
{% block main %}
<h1>Checkout</h1>
<p>Total: {{ amount }} EUR</p>
<button id="pay" type="button">Pay</button>
<p id="result"></p>
<script type="module">
const config = JSON.parse(document.getElementById("host-config").textContent);
const { confirmPayment } = await import(config.merchantScript);
const result = document.getElementById("result");
document.getElementById("pay").addEventListener("click", async () => {
  const init = await (await fetch("/pay/start", { method: "POST" })).json();
  // Finalize cross-origin at the issuer: the page gets the token and hands it to the backend.
  const outcome = await confirmPayment(init, { finalizeUrl: config.finalizeUrl });
  if (outcome.outcome !== "confirmed") {
    result.dataset.outcome = outcome.outcome;
    result.textContent = outcome.code;
    return;
  }
  const response = await fetch("/pay/complete", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ transaction_id: init.transaction_id, token: outcome.token }),
  });
  const verified = await response.json();
  result.dataset.outcome = response.ok ? "paid" : "rejected";
  result.textContent = JSON.stringify(verified);
});
document.getElementById("pay").dataset.ready = "true";
</script>
{% endblock %}""",
}


class HostSecurityHeaders:
    """The host's own header policy, from before it ever heard of SPC."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"permissions-policy", HOST_POLICY.encode()))
            await send(message)

        await self.app(scope, receive, send_with_policy if scope["type"] == "http" else send)


@dataclass
class HostState:
    user_id: str = ""
    enrollment_url: str = ""
    transactions: dict[str, dict[str, Any]] | None = None


def host_app(*, issuer_origin: str, issuer_api: str, ca: TestCA, state: HostState) -> Starlette:
    templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.DictLoader(TEMPLATES), autoescape=True))
    install_jinja_globals(templates.env)  # {{ spc_iframe(url, ...) }}
    merchant_script = issuer_origin + MOUNT + "/widget/spc-merchant.js"
    state.transactions = {}

    async def faster_checkout(request: Request) -> Response:
        return templates.TemplateResponse(request, "faster_checkout.html", {"enrollment_url": state.enrollment_url})

    async def checkout(request: Request) -> Response:
        return templates.TemplateResponse(request, "checkout.html", {"amount": "42.00", "config": {
            "merchantScript": merchant_script, "finalizeUrl": issuer_origin + MOUNT + "/transaction/finalize",
        }})

    async def start(request: Request) -> Response:
        transaction_id = f"host-{uuid.uuid4().hex[:12]}"
        data = {"amount": "42.00", "currency": "EUR", "payee_name": "Host Shop",
                "payee_origin": str(request.base_url).rstrip("/")}
        async with httpx.AsyncClient(verify=ca.ssl_context()) as client:
            answer = await client.post(issuer_api + "/transaction/initialize", headers={"apiKey": API_KEY}, json={
                "user_id": state.user_id, "transaction_id": transaction_id, "transaction_data": data})
        init = answer.json()
        state.transactions[transaction_id] = init  # type: ignore[index]
        return JSONResponse(init, status_code=answer.status_code)

    async def complete(request: Request) -> Response:
        body = await request.json()
        init = (state.transactions or {}).get(body.get("transaction_id"))
        if init is None:
            return JSONResponse({"error": "unknown transaction"}, status_code=404)
        async with httpx.AsyncClient(verify=ca.ssl_context()) as client:
            jwks = (await client.get(issuer_api + "/.well-known/jwks.json")).json()
        token = body.get("token", "")
        try:
            key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
            claims = jwt.decode(token, key=key, algorithms=["ES256"], audience="merchant",
                                issuer=issuer_origin + MOUNT, options={"require": ["exp", "trans"]})
        except (jwt.PyJWTError, KeyError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if claims["trans"]["id"] != init["transaction_id"] or claims["trans"]["hash"] != init["transaction_hash"]:
            return JSONResponse({"error": "not this transaction"}, status_code=400)
        return JSONResponse(claims)

    return Starlette(
        routes=[
            Route("/account/faster-checkout", faster_checkout),
            Route("/checkout", checkout),
            Route("/pay/start", start, methods=["POST"]),
            Route("/pay/complete", complete, methods=["POST"]),
        ],
        middleware=[
            Middleware(HostSecurityHeaders),
            # The merchant kit: delegation merged into the host's policy, and the issuer's script on every page.
            Middleware(SPCMerchantMiddleware, issuer_origins=[issuer_origin], override_disabled_payment=False,
                       script_url=merchant_script, script_attrs={"id": "spc-merchant-script"}),
        ],
    )


@dataclass(frozen=True)
class Sites:
    issuer: Issuer
    issuer_origin: str
    host: str
    database: Path
    state: HostState


@pytest.fixture(scope="module")
def sites(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    database = tmp_path_factory.mktemp("host-app") / "issuer.db"
    with ServedApp.reserve("issuer.test", test_ca) as issuer_site, \
            ServedApp.reserve("merchant.test", test_ca) as host_site:
        issuer = make_issuer(database, mount_path=MOUNT, issuer_origin=issuer_site.origin,
                             merchant_origin=host_site.origin, merchant_name="Host Shop")
        state = HostState()
        issuer_site.start(Starlette(routes=[Mount(MOUNT, app=issuer.app)], lifespan=issuer.lifespan))
        # The host's backend reaches the issuer at localhost: the .test names resolve in the browser only.
        host_site.start(host_app(issuer_origin=issuer_site.origin, ca=test_ca, state=state,
                                 issuer_api=f"https://localhost:{issuer_site.port}{MOUNT}"))
        yield Sites(issuer, issuer_site.origin, host_site.origin, database, state)


def read_store(sites: Sites, query: Callable[[Store], Any]) -> Any:
    async def read() -> Any:
        async with Store(f"sqlite:///{sites.database}") as store:  # another process's view
            return await query(store)

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API keeps a loop running in this thread
        return pool.submit(asyncio.run, read()).result()


def test_host_pages_get_the_delegation_merged_and_the_script(page: Page, sites: Sites) -> None:
    response = page.goto(sites.host + "/checkout")
    assert response is not None and response.ok

    policy = response.headers["permissions-policy"]
    issuer = f'"{sites.issuer_origin}"'
    assert "camera=()" in policy and "microphone=()" in policy  # the host's own directives survive
    assert f"payment=(self {issuer})" in policy  # the issuer joins the host's existing allowlist
    assert f"publickey-credentials-create=(self {issuer})" in policy
    assert f"publickey-credentials-get=(self {issuer})" in policy
    # Injected before </head>, with the Content-Length grown to match: the page arrives whole.
    script = page.locator("head script#spc-merchant-script")
    assert script.get_attribute("type") == "module"
    assert script.get_attribute("src") == sites.issuer_origin + MOUNT + "/widget/spc-merchant.js"
    assert page.locator("#page-end").inner_text() == "© Host Shop"


def test_host_app_enrols_and_pays_with_spc(context: BrowserContext, page: Page, sites: Sites) -> None:
    user_id = f"host-cardholder-{uuid.uuid4().hex[:8]}"
    # The issuer's backend, after its own step-up, hands the host an enrolment URL for its origin.
    sites.state.user_id = user_id
    sites.state.enrollment_url = sites.issuer.enrollment_url(
        user_id=user_id, user_name=f"{user_id}@example.com", user_display_name="Alex Doe",
        instrument_name="Test Card ****4242", instrument_icon=sites.issuer.url("/widget/card.png"),
        merchant_origin=sites.host,
    )
    authenticator = add_virtual_authenticator(context, page)
    set_spc_mode(authenticator.cdp, "autoAccept")

    page.goto(sites.host + "/account/faster-checkout")
    iframe = page.locator("iframe#bank-frame")
    assert iframe.get_attribute("sandbox") is None
    assert iframe.get_attribute("allow") == "; ".join(
        f"{feature} {sites.issuer_origin}"
        for feature in ("payment", "publickey-credentials-create", "publickey-credentials-get"))
    frame = page.frame_locator("iframe#bank-frame")
    frame.locator("#spc-enroll-button").click()  # create() in the cross-site frame needs this activation
    frame.locator("#spc-enroll[data-outcome='enrolled']").wait_for()
    credentials = read_store(sites, lambda store: store.list_credentials(user_id))
    assert len(credentials) == 1 and credentials[0].enrolled_origin == sites.host

    page.goto(sites.host + "/checkout")
    page.locator("#pay[data-ready='true']").click()
    result = page.locator("#result[data-outcome]")
    result.wait_for()
    assert result.get_attribute("data-outcome") == "paid", result.inner_text()
    claims = json.loads(result.inner_text())

    assert claims["sub"] == user_id and claims["aud"] == "merchant"
    assert claims["trans"]["method"] == "spc"
    record = read_store(sites, lambda store: store.get_transaction("merchant", claims["trans"]["id"]))
    assert record.state == "succeeded" and record.method == "spc"
    # Two sites over HTTPS: the browser signed the host's https origin as payee and top origin.
    assert record.data["payee_origin"] == sites.host
    assert record.merchant_origin == sites.host
