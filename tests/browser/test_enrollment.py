"""Enrolment inside the issuer iframe, in real Chromium, across two HTTPS sites.

The issuer is the real spc_embed app mounted at /spc in a host Starlette app;
the merchant is a tiny page that embeds the iframe and records the messages it
receives from the issuer origin. Outcomes are checked on all three sides: the
frame's text, the parent's messages and the issuer's database.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

import pytest
from factories import FakeClock, make_issuer
from playwright.sync_api import BrowserContext, Frame, Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route

from spc_embed import Issuer
from spc_embed.storage import Credential

from .harness import ServedApp, TestCA, add_virtual_authenticator, list_credentials, read_database

FEATURES = ("payment", "publickey-credentials-create", "publickey-credentials-get")

MERCHANT_PAGE = """<!doctype html>
<title>Checkout</title>
<h1>Checkout</h1>
<iframe id="spc-frame" %(allow)s src="%(src)s" width="420" height="380"></iframe>
<script>
const ISSUER_ORIGIN = %(issuer)s;
window.messages = [];
window.heights = [];
window.addEventListener("message", (event) => {
  // Exact origin match (docs/security.md W3): anything else is someone else's message.
  if (event.origin === ISSUER_ORIGIN && event.data && event.data.source === "spc-embed") {
    // The frame's size reports are kept apart from its outcome.
    if (event.data.type === "resize") window.heights.push(event.data.height);
    else window.messages.push(event.data);
  }
});
</script>
"""

# Run in every frame before its scripts: takes away the browser's own JSON
# helpers (and policy introspection) so the manual code paths are exercised.
WITHOUT_NATIVE_JSON = """
delete PublicKeyCredential.parseCreationOptionsFromJSON;
delete PublicKeyCredential.parseRequestOptionsFromJSON;
delete PublicKeyCredential.prototype.toJSON;
"""
WITHOUT_FEATURE_POLICY = "delete Document.prototype.featurePolicy;"


def merchant_app(issuer_origin: str) -> Starlette:
    """A merchant checkout; ``?frame=URL&allow=all|payment|none&header=delegate|self`` picks the
    iframe, its ``allow`` attribute and whether the page's own header delegates to the issuer."""
    headers = {
        "delegate": ", ".join(f'{feature}=(self "{issuer_origin}")' for feature in FEATURES),
        # Allowed for the page itself only: caps whatever the iframe's allow asks for.
        "self": ", ".join(f"{feature}=(self)" for feature in FEATURES),
    }

    async def checkout(request: Request) -> Response:
        allow = {
            "all": "; ".join(f"{feature} {issuer_origin}" for feature in FEATURES),
            "payment": f"payment {issuer_origin}",
            "none": None,
        }[request.query_params.get("allow", "all")]
        html = MERCHANT_PAGE % {
            "allow": f'allow="{allow}"' if allow else "",
            "src": request.query_params["frame"].replace('"', "&quot;"),
            "issuer": json.dumps(issuer_origin),
        }
        header = headers[request.query_params.get("header", "delegate")]
        return HTMLResponse(html, headers={"Permissions-Policy": header})

    return Starlette(routes=[Route("/checkout", checkout)])


class Sites(NamedTuple):
    issuer: Issuer
    issuer_origin: str
    merchant: str
    shop: str
    clock: FakeClock
    database: Path


@pytest.fixture(scope="module")
def sites(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    database = tmp_path_factory.mktemp("issuer") / "issuer.db"
    clock = FakeClock(time.time())
    with (
        ServedApp.reserve("issuer.test", test_ca) as issuer_site,
        ServedApp.reserve("merchant.test", test_ca) as merchant_site,
        ServedApp.reserve("shop.test", test_ca) as shop_site,
    ):
        issuer = make_issuer(
            database, mount_path="/spc", clock=clock, issuer_origin=issuer_site.origin,
            merchant_origin=merchant_site.origin, other_merchant_origin=shop_site.origin,
        )
        issuer_site.start(Starlette(routes=[Mount("/spc", app=issuer.app)], lifespan=issuer.lifespan))
        merchant_site.start(merchant_app(issuer_site.origin))
        shop_site.start(merchant_app(issuer_site.origin))
        yield Sites(issuer, issuer_site.origin, merchant_site.origin, shop_site.origin, clock, database)


_users = iter(range(1_000_000))


def enrollment_url(sites: Sites, *, user_id: str | None = None, merchant_origin: str | None = None) -> tuple[str, str]:
    """A fresh enrolment iframe URL (and its user id), as the issuer's backend would mint it."""
    user_id = user_id or f"cardholder-{next(_users)}"
    url = sites.issuer.enrollment_url(
        user_id=user_id, user_name=f"{user_id}@example.com", user_display_name="Alex Doe",
        instrument_name="Test Card ****4242", instrument_icon=sites.issuer.url("/widget/card.png"),
        merchant_origin=merchant_origin or sites.merchant,
    )
    return url, user_id


def open_checkout(page: Page, frame_url: str, *, allow: str = "all", header: str = "delegate",
                  site: str | None = None, sites: Sites) -> None:
    query = urlencode({"frame": frame_url, "allow": allow, "header": header})
    page.goto(f"{site or sites.merchant}/checkout?{query}")


def frame(page: Page) -> Frame:
    handle = page.wait_for_selector("#spc-frame")
    content = handle.content_frame()
    assert content is not None
    return content


def wait_for_message(page: Page) -> dict[str, Any]:
    page.wait_for_function("() => window.messages.length > 0")
    # Let any (wrong) second message arrive before counting.
    page.wait_for_timeout(100)
    messages = page.evaluate("() => window.messages")
    assert len(messages) == 1, messages
    return messages[0]


def click_enrol(page: Page) -> None:
    # create() inside a cross-origin iframe needs a user activation in that frame.
    button = page.frame_locator("#spc-frame").locator("#spc-enroll-button")
    button.click()  # auto-waits until enroll.js has enabled it


def status_text(page: Page) -> str:
    status = page.frame_locator("#spc-frame").locator("#spc-status")
    status.wait_for(state="visible")
    return status.inner_text()



def stored_credentials(sites: Sites, user_id: str) -> list[Credential]:
    return read_database(sites.database, lambda store: store.list_credentials(user_id))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("json_helpers", ["native", "manual"])
@pytest.mark.parametrize("allow", ["all", "payment"])
def test_enrolment_in_iframe_succeeds(context: BrowserContext, page: Page, sites: Sites, json_helpers: str,
                                      allow: str) -> None:
    # allow="payment" alone only works if extensions.payment.isPayment reached create():
    # it proves the payment extension survives both JSON code paths.
    if json_helpers == "manual":
        context.add_init_script(WITHOUT_NATIVE_JSON)
    authenticator = add_virtual_authenticator(context, page)
    url, user_id = enrollment_url(sites)

    open_checkout(page, url, allow=allow, sites=sites)
    native = frame(page).evaluate("() => typeof PublicKeyCredential.parseCreationOptionsFromJSON")
    assert native == ("function" if json_helpers == "native" else "undefined")
    click_enrol(page)
    message = wait_for_message(page)

    assert message["outcome"] == "enrolled", message
    assert message["source"] == "spc-embed" and message["type"] == "enrollment"
    assert message["code"] == "enrolled"
    assert "All set" in status_text(page)
    stored = stored_credentials(sites, user_id)
    assert len(stored) == 1
    assert stored[0].enrolled_origin == sites.merchant
    assert b64url(stored[0].credential_id) == message["credentialId"]
    assert stored[0].instrument_name == "Test Card ****4242"
    held = list_credentials(*authenticator)
    assert len(held) == 1
    assert base64.b64decode(held[0]["credentialId"]) == stored[0].credential_id
    assert held[0]["rpId"] == "issuer.test"
    assert held[0]["isResidentCredential"] is True


@pytest.mark.parametrize("policy_introspection", [True, False], ids=["detected-on-load", "create-error"])
def test_no_allow_attribute_reports_permission_missing(context: BrowserContext, page: Page, sites: Sites,
                                                       policy_introspection: bool) -> None:
    # With document.featurePolicy the frame knows before any click; without it
    # (other browsers) create()'s NotSupportedError is what tells.
    if not policy_introspection:
        context.add_init_script(WITHOUT_FEATURE_POLICY)
    authenticator = add_virtual_authenticator(context, page)
    url, user_id = enrollment_url(sites)

    open_checkout(page, url, allow="none", sites=sites)
    if not policy_introspection:
        click_enrol(page)
    message = wait_for_message(page)

    assert message["outcome"] == "permission_missing", message
    expected_code = "permission_missing" if policy_introspection else "NotSupportedError"
    assert message["code"] == expected_code
    assert "doesn't let your bank" in status_text(page)
    assert page.frame_locator("#spc-frame").locator("#spc-enroll-button").is_hidden()
    assert stored_credentials(sites, user_id) == []
    assert list_credentials(*authenticator) == []


def test_w2_merchant_header_without_the_issuer_caps_the_allow_attribute(
        context: BrowserContext, page: Page, sites: Sites) -> None:
    # The iframe asks for payment and WebAuthn for the issuer, but the page's own
    # Permissions-Policy keeps them to itself: the browser refuses create().
    context.add_init_script(WITHOUT_FEATURE_POLICY)
    authenticator = add_virtual_authenticator(context, page)
    url, user_id = enrollment_url(sites)

    open_checkout(page, url, allow="all", header="self", sites=sites)
    click_enrol(page)
    message = wait_for_message(page)

    assert message["outcome"] == "permission_missing", message
    assert message["code"] == "NotSupportedError"
    assert stored_credentials(sites, user_id) == []
    assert list_credentials(*authenticator) == []


def test_token_for_another_merchant_does_not_render(context: BrowserContext, page: Page, sites: Sites) -> None:
    add_virtual_authenticator(context, page)
    url, user_id = enrollment_url(sites, merchant_origin=sites.shop)

    open_checkout(page, url, sites=sites)
    content = frame(page)
    content.wait_for_load_state()
    page.wait_for_timeout(300)

    # Chromium replaces a frame refused by frame-ancestors with its error page.
    assert content.url.startswith("chrome-error://"), content.url
    assert content.query_selector("#spc-enroll") is None
    assert page.evaluate("() => window.messages") == []
    assert stored_credentials(sites, user_id) == []

    # Control: the very same URL works on the merchant it was minted for.
    open_checkout(page, url, sites=sites, site=sites.shop)
    click_enrol(page)
    assert wait_for_message(page)["outcome"] == "enrolled"
    assert stored_credentials(sites, user_id)[0].enrolled_origin == sites.shop


def test_expired_token_shows_error(context: BrowserContext, page: Page, sites: Sites) -> None:
    add_virtual_authenticator(context, page)
    url, user_id = enrollment_url(sites)
    sites.clock.advance(sites.issuer.config.enrollment_ttl + 1)

    open_checkout(page, url, sites=sites)
    message = wait_for_message(page)

    assert message["outcome"] == "token_expired", message
    assert message["code"] == "token_expired"
    assert "expired" in status_text(page)
    assert page.frame_locator("#spc-frame").locator("#spc-enroll-button").is_hidden()
    assert stored_credentials(sites, user_id) == []


def test_expired_while_open_reports_token_expired(context: BrowserContext, page: Page, sites: Sites) -> None:
    add_virtual_authenticator(context, page)
    url, user_id = enrollment_url(sites)

    open_checkout(page, url, sites=sites)
    page.frame_locator("#spc-frame").locator("#spc-enroll-button:enabled").wait_for()
    sites.clock.advance(sites.issuer.config.enrollment_ttl + 1)
    click_enrol(page)
    message = wait_for_message(page)

    assert message["outcome"] == "token_expired", message
    assert "expired" in status_text(page)
    assert stored_credentials(sites, user_id) == []


def test_reused_token_shows_error(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator = add_virtual_authenticator(context, page)
    url, user_id = enrollment_url(sites)
    open_checkout(page, url, sites=sites)
    click_enrol(page)
    assert wait_for_message(page)["outcome"] == "enrolled"

    open_checkout(page, url, sites=sites)
    message = wait_for_message(page)

    assert message["outcome"] == "token_used", message
    assert message["code"] == "token_used"
    assert "already been used" in status_text(page)
    assert len(stored_credentials(sites, user_id)) == 1
    assert len(list_credentials(*authenticator)) == 1


def test_tampered_token_reports_invalid_token(context: BrowserContext, page: Page, sites: Sites) -> None:
    url, _ = enrollment_url(sites)

    open_checkout(page, url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB"), sites=sites)
    message = wait_for_message(page)

    assert message["outcome"] == "invalid_token", message
    assert "not valid" in status_text(page)


def test_second_enrolment_on_same_device_reports_already_enrolled(context: BrowserContext, page: Page,
                                                                  sites: Sites) -> None:
    authenticator = add_virtual_authenticator(context, page)
    first, user_id = enrollment_url(sites)
    open_checkout(page, first, sites=sites)
    click_enrol(page)
    assert wait_for_message(page)["outcome"] == "enrolled"

    # A new link for the same cardholder: the options exclude the stored credential.
    second, _ = enrollment_url(sites, user_id=user_id)
    open_checkout(page, second, sites=sites)
    click_enrol(page)
    message = wait_for_message(page)

    assert message["outcome"] == "already_enrolled", message
    assert message["code"] == "InvalidStateError"
    assert "already set up" in status_text(page)
    assert len(stored_credentials(sites, user_id)) == 1
    assert len(list_credentials(*authenticator)) == 1


def test_user_verification_refused_reports_cancelled_and_allows_retry(context: BrowserContext, page: Page,
                                                                     sites: Sites) -> None:
    authenticator = add_virtual_authenticator(context, page)
    authenticator.cdp.send("WebAuthn.setUserVerified", {
        "authenticatorId": authenticator.authenticator_id, "isUserVerified": False,
    })
    url, user_id = enrollment_url(sites)

    open_checkout(page, url, sites=sites)
    click_enrol(page)
    message = wait_for_message(page)

    assert message["outcome"] == "cancelled", message
    assert message["code"] == "NotAllowedError"
    assert "cancelled" in status_text(page)
    assert stored_credentials(sites, user_id) == []

    # The link is still unused: the cardholder can simply try again.
    authenticator.cdp.send("WebAuthn.setUserVerified", {
        "authenticatorId": authenticator.authenticator_id, "isUserVerified": True,
    })
    page.evaluate("() => { window.messages.length = 0; }")
    button = page.frame_locator("#spc-frame").locator("#spc-enroll-button")
    assert button.inner_text() == "Try again"
    button.click()
    assert wait_for_message(page)["outcome"] == "enrolled"
    assert len(stored_credentials(sites, user_id)) == 1


def test_without_platform_authenticator_reports_unsupported(page: Page, sites: Sites) -> None:
    url, user_id = enrollment_url(sites)

    open_checkout(page, url, sites=sites)
    message = wait_for_message(page)

    assert message["outcome"] == "unsupported", message
    assert "can't confirm payments" in status_text(page)
    assert stored_credentials(sites, user_id) == []
