"""widget/spc-merchant.js on its own terms: availability, the iframes it mounts, and whom it listens to."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from .harness import TestCA, add_virtual_authenticator
from .sites import Sites, enrol, frame_result, mount_frame, open_checkout, serve_sites, unique
from .test_enrollment import enrollment_url


@pytest.fixture(scope="module")
def sites(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    with serve_sites(test_ca, tmp_path_factory.mktemp("issuer") / "issuer.db") as served:
        yield served


AVAILABILITY = "() => window.spc.availability()"
WITHOUT_AVAILABILITY_API = "() => { delete PaymentRequest.securePaymentConfirmationAvailability; }"


@pytest.mark.parametrize("spc_enabled", [True, False], ids=["spc-flag-on", "spc-flag-off"])
def test_availability(browser_factory: Callable[[bool], Browser], sites: Sites, spc_enabled: bool) -> None:
    context = browser_factory(spc_enabled).new_context()
    try:
        page = context.new_page()
        open_checkout(page, sites)
        no_authenticator = page.evaluate(AVAILABILITY)
        add_virtual_authenticator(context, page)
        native = page.evaluate(AVAILABILITY)
        # Browsers without securePaymentConfirmationAvailability(): the canMakePayment() probe.
        page.evaluate(WITHOUT_AVAILABILITY_API)
        probe = page.evaluate(AVAILABILITY)
        page.evaluate("() => { delete window.PaymentRequest; }")
        no_payment_request = page.evaluate(AVAILABILITY)
    finally:
        context.close()

    if spc_enabled:
        assert no_authenticator == {"status": "unavailable", "reason": "no-user-verifying-platform-authenticator"}
        assert native == {"status": "available"}
        assert probe == {"status": "available"}
    else:
        assert no_authenticator == native == {"status": "unavailable", "reason": "feature-not-enabled"}
        assert probe == {"status": "unavailable", "reason": "cannot-make-payment"}
    assert no_payment_request == {"status": "unavailable", "reason": "no-payment-request"}


def test_mounted_iframe_delegates_to_the_issuer_only(page: Page, sites: Sites) -> None:
    open_checkout(page, sites)
    url, _ = enrollment_url(sites, user_id=unique("cardholder"))  # type: ignore[arg-type]

    mount_frame(page, "enrollment", url)
    iframe = page.locator("#spc-slot iframe")

    origin = sites.issuer_origin
    assert iframe.get_attribute("allow") == (
        f"payment {origin}; publickey-credentials-create {origin}; publickey-credentials-get {origin}"
    )
    assert iframe.get_attribute("sandbox") is None
    assert iframe.get_attribute("src") == url
    # Named for what it is for, as screen readers list frames; a title that says nothing is refused.
    assert iframe.get_attribute("title") == "Set up faster checkout with your bank"
    for title in ("", "  ", None):
        refused = page.evaluate("""([url, title]) => {
          try { window.spc.mountFallback(document.createElement("div"), url, {title}); return null; }
          catch (error) { return error.name; }
        }""", [url, title])
        assert refused == "TypeError", title
    # An issuerOrigin that is not the URL's own origin is a programming error, caught at once.
    for wrong in (origin + "/", origin.replace("https:", "http:"), sites.merchant):
        error = page.evaluate(
            """([url, issuerOrigin]) => {
              try { window.spc.mountFallback(document.body, url, {issuerOrigin}); return null; }
              catch (error) { return error.name; }
            }""",
            [url, wrong],
        )
        assert error == "TypeError", wrong
    assert page.locator("iframe").count() == 1
    # The fallback frame's own default title.
    page.evaluate("""(url) => {
      const slot = document.createElement("div");
      slot.id = "fallback-slot";
      document.body.append(slot);
      window.spc.mountFallback(slot, url);
    }""", url)
    assert page.locator("#fallback-slot iframe").get_attribute("title") == "Confirm your payment with your bank"


def test_messages_not_from_the_mounted_iframe_are_ignored(context: BrowserContext, page: Page,
                                                          sites: Sites) -> None:
    add_virtual_authenticator(context, page)
    open_checkout(page, sites)
    page.evaluate("""() => {
      window.seen = [];
      window.addEventListener("message", (event) => window.seen.push(event.origin));
    }""")
    url, _ = enrollment_url(sites, user_id=unique("cardholder"))  # type: ignore[arg-type]
    mount_frame(page, "enrollment", url)
    page.frame_locator("#spc-slot iframe").locator("#spc-enroll-button:enabled").wait_for()

    forged = {"source": "spc-embed", "type": "enrollment", "outcome": "enrolled", "credentialId": "forged"}
    # 1. The top page itself (any script on it): origin is the merchant's.
    page.evaluate("(data) => { window.postMessage(data, '*'); }", forged)
    # 2. A frame of another site.
    page.evaluate("(src) => { const f = document.createElement('iframe'); f.src = src; document.body.append(f); }",
                  sites.shop + "/fake-sender")
    # 3. A genuine issuer frame, but not the one mounted: an enrolment link that is not valid
    #    reports "invalid_token" from the issuer origin.
    page.evaluate("(src) => { const f = document.createElement('iframe'); f.src = src; document.body.append(f); }",
                  url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB"))
    # 1 from the page, 2 from the shop's frame, 1 from the other issuer frame.
    page.wait_for_function("(issuer) => window.seen.length >= 4 && window.seen.includes(issuer)",
                           arg=sites.issuer_origin)
    page.wait_for_timeout(100)

    seen = page.evaluate("() => window.seen")
    assert sorted(set(seen)) == sorted({sites.merchant, sites.shop, sites.issuer_origin}), seen
    assert page.evaluate("() => window.frameResult") is None

    # The mounted frame's own report is the one that counts.
    page.frame_locator("#spc-slot iframe").locator("#spc-enroll-button").click()
    message = frame_result(page)
    assert message["outcome"] == "enrolled", message
    assert message["credentialId"] != "forged"


def test_confirm_payment_without_passkey_or_payment_request(page: Page, sites: Sites) -> None:
    open_checkout(page, sites)
    # What initialize returns for a user without passkeys (and, alike, for an unknown user).
    init = page.evaluate("(body) => window.shop.initialize(body)", {
        "user_id": unique("nobody"), "transaction_id": unique("order"),
        "transaction_data": {"amount": "5.00", "currency": "EUR", "payee_name": "Test Shop"},
    })
    assert init["secure_payment_confirmation"]["credentialIds"] == []

    no_credentials = page.evaluate("(init) => window.spc.confirmPayment(init)", init)
    page.evaluate("() => { delete window.PaymentRequest; }")
    fake = json.loads(json.dumps(init))
    fake["secure_payment_confirmation"].update(credentialIds=["AAAA"], instrument={"displayName": "x", "icon": "x"})
    no_payment_request = page.evaluate("(init) => window.spc.confirmPayment(init)", fake)

    assert no_credentials["outcome"] == "unavailable" and no_credentials["code"] == "no_credentials"
    assert no_payment_request["outcome"] == "unavailable" and no_payment_request["code"] == "no-payment-request"


def test_enrolment_through_mount_enrollment(context: BrowserContext, page: Page, sites: Sites) -> None:
    _, user_id = enrol(context, page, sites)

    message = page.evaluate("() => window.frameResult")
    assert message["source"] == "spc-embed" and message["type"] == "enrollment"
    assert message["outcome"] == "enrolled" and message["credentialId"]


def frame_box(page: Page) -> dict[str, float]:
    """The mounted iframe's inner height (its borders aside), and its document's own height inside it."""
    outer = page.locator("#spc-slot iframe").evaluate("(iframe) => iframe.clientHeight")
    frame = page.wait_for_selector("#spc-slot iframe").content_frame()
    assert frame is not None
    inner = frame.evaluate("() => document.documentElement.getBoundingClientRect().height")
    return {"iframe": outer, "document": inner}


def test_the_frame_fits_its_content_and_only_its_own_reports_count(context: BrowserContext, page: Page,
                                                                  sites: Sites) -> None:
    add_virtual_authenticator(context, page)
    page.set_viewport_size({"width": 320, "height": 700})
    open_checkout(page, sites)
    url, _ = enrollment_url(sites, user_id=unique("cardholder"))  # type: ignore[arg-type]
    mount_frame(page, "enrollment", url)
    page.frame_locator("#spc-slot iframe").locator("#spc-enroll-button:enabled").wait_for()
    page.wait_for_timeout(200)
    narrow = frame_box(page)
    assert abs(narrow["iframe"] - narrow["document"]) <= 1, narrow  # fits: no scrolling, nothing cut off
    assert narrow["iframe"] > 360  # taller than the mount's default height: it grew to its content

    page.set_viewport_size({"width": 1280, "height": 700})
    page.wait_for_timeout(200)
    wide = frame_box(page)
    assert abs(wide["iframe"] - wide["document"]) <= 1 and wide["iframe"] < narrow["iframe"], (wide, narrow)

    # Reports from anyone else change nothing: the page itself, another site's frame, another issuer frame.
    forged = {"source": "spc-embed", "type": "resize", "height": 1500}
    page.evaluate("(data) => { window.postMessage(data, '*'); }", forged)
    page.evaluate("(src) => { const f = document.createElement('iframe'); f.src = src; document.body.append(f); }",
                  sites.shop + "/fake-sender")
    page.evaluate("(src) => { const f = document.createElement('iframe'); f.src = src; document.body.append(f); }",
                  url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB"))
    page.wait_for_function("() => document.querySelectorAll('body > iframe').length === 2")
    page.wait_for_timeout(500)
    assert frame_box(page)["iframe"] == wide["iframe"]

    # The issuer's own frame is held to bounds, and to numbers.
    frame = page.wait_for_selector("#spc-slot iframe").content_frame()
    assert frame is not None
    for height, expected in ((10**9, 2000), (-5, 80), ("900", 80)):
        frame.evaluate("(height) => parent.postMessage({source: 'spc-embed', type: 'resize', height}, '*')", height)
        page.wait_for_timeout(100)
        assert frame_box(page)["iframe"] == expected, height


def test_fit_issuer_frame_fits_a_frame_the_page_made_itself(context: BrowserContext, page: Page,
                                                           sites: Sites) -> None:
    # As a page that renders issuer_iframe() in its template and only loads the script to fit it.
    add_virtual_authenticator(context, page)
    page.set_viewport_size({"width": 320, "height": 700})
    open_checkout(page, sites)
    url, _ = enrollment_url(sites, user_id=unique("cardholder"))  # type: ignore[arg-type]
    page.evaluate("""([url, issuer]) => {
      const iframe = document.createElement("iframe");
      iframe.src = url;
      iframe.height = "200";
      iframe.allow = `payment ${issuer}; publickey-credentials-create ${issuer}`;
      document.getElementById("spc-slot").append(iframe);
      window.spc.fitIssuerFrame(iframe);
    }""", [url, sites.issuer_origin])
    page.frame_locator("#spc-slot iframe").locator("#spc-enroll-button:enabled").wait_for()
    page.wait_for_timeout(200)

    box = frame_box(page)
    assert abs(box["iframe"] - box["document"]) <= 1 and box["iframe"] > 200, box
