"""The fallback where SPC is not available: Chromium started without the SPC feature.

The cardholder enrols in the issuer iframe as usual (creating a passkey needs no
SPC), then the shop finds SPC unavailable and mounts the issuer's fallback
iframe (initialize's ``fallback_url``). The user confirms inside it, the
frame calls ``navigator.credentials.get()`` and the issuer's ``/pay/finalize``,
and the token reaches the merchant page through ``postMessage``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from .harness import TestCA
from .sites import (
    Sites,
    enrol,
    frame_result,
    initialize,
    issuer_post,
    mount_frame,
    open_checkout,
    pay,
    read_store,
    serve_sites,
    transaction_state,
    unique,
    verify_result,
)
from .test_enrollment import WITHOUT_FEATURE_POLICY


@pytest.fixture(scope="module")
def sites(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    with serve_sites(test_ca, tmp_path_factory.mktemp("issuer") / "issuer.db") as served:
        yield served


@pytest.fixture
def context(browser_factory: Callable[[bool], Browser]) -> Iterator[BrowserContext]:
    """A context of the browser launched without --enable-features=SecurePaymentConfirmationBrowser."""
    context = browser_factory(False).new_context()
    yield context
    context.close()


def pay_button(page: Page):  # noqa: ANN201 - a Playwright Locator
    return page.frame_locator("#spc-slot iframe").locator("#spc-pay-button")


def test_fallback_iframe_confirms_the_transaction(context: BrowserContext, page: Page, sites: Sites) -> None:
    _, user_id = enrol(context, page, sites)
    init = initialize(page, user_id)

    assert page.evaluate("() => window.spc.availability()") == {
        "status": "unavailable", "reason": "feature-not-enabled",
    }
    # confirmPayment says so too (show() rejects with NotSupportedError): the shop falls back.
    attempted = pay(page)
    assert attempted["outcome"] == "unavailable" and attempted["code"] == "NotSupportedError", attempted
    assert init["fallback_url"].startswith(sites.issuer.url("/pay?handle="))
    mount_frame(page, "payment", init["fallback_url"])
    frame = page.frame_locator("#spc-slot iframe")
    assert frame.locator("#spc-pay-amount").inner_text() == "€100.00"  # the frame's language is English here
    assert "Test Shop" in frame.locator("#spc-pay-payee").inner_text()
    assert frame.locator("#spc-pay-card").inner_text() == "Test Card ****4242"
    pay_button(page).click()  # get() in a cross-origin iframe: the click gives the activation
    message = frame_result(page)

    assert message["outcome"] == "confirmed", message
    assert message["source"] == "spc-embed" and message["type"] == "payment"
    assert message["transactionId"] == init["transaction_id"]
    claims = verify_result(sites, message["token"])
    assert claims["trans"] == {"id": init["transaction_id"], "hash": init["transaction_hash"], "method": "fallback",
                               "instrument_id": "Test Card ****4242"}
    assert claims["sub"] == user_id and claims["aud"] == "merchant"
    assert claims["cred"] == init["publicKey"]["allowCredentials"][0]["id"]
    assert transaction_state(sites, init["transaction_id"]) == "succeeded"
    record = read_store(sites, lambda store: store.get_transaction("merchant", init["transaction_id"]))
    assert record.method == "fallback"
    status = page.frame_locator("#spc-slot iframe").locator("#spc-status")
    assert "Payment confirmed" in status.inner_text()
    assert pay_button(page).is_hidden()


def test_fallback_cancel_then_retry(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator, user_id = enrol(context, page, sites)
    init = initialize(page, user_id)
    authenticator.cdp.send("WebAuthn.setUserVerified", {
        "authenticatorId": authenticator.authenticator_id, "isUserVerified": False,
    })
    # onMessage follows the frame past its first report.
    page.evaluate("""(url) => {
      window.shop.mount("payment", url, {onMessage: (data) => window.frameMessages.push(data)});
    }""", init["fallback_url"])
    pay_button(page).click()

    first = frame_result(page)
    assert first["outcome"] == "cancelled" and first["code"] == "NotAllowedError", first
    assert "cancelled" in page.frame_locator("#spc-slot iframe").locator("#spc-status").inner_text()
    assert transaction_state(sites, init["transaction_id"]) == "pending"

    authenticator.cdp.send("WebAuthn.setUserVerified", {
        "authenticatorId": authenticator.authenticator_id, "isUserVerified": True,
    })
    assert pay_button(page).inner_text() == "Try again"
    pay_button(page).click()
    page.wait_for_function("() => window.frameMessages.length === 2")
    second = page.evaluate("() => window.frameMessages[1]")
    assert second["outcome"] == "confirmed", second
    assert verify_result(sites, second["token"])["trans"]["method"] == "fallback"
    assert transaction_state(sites, init["transaction_id"]) == "succeeded"


def test_fallback_for_user_without_passkey_reports_failure(context: BrowserContext, page: Page,
                                                           sites: Sites) -> None:
    open_checkout(page, sites)
    init = initialize(page, unique("unknown-user"))

    mount_frame(page, "payment", init["fallback_url"])
    message = frame_result(page)

    assert message["outcome"] == "failed" and message["code"] == "no_credentials", message
    assert "token" not in message
    assert pay_button(page).is_hidden()
    assert "No device is set up" in page.frame_locator("#spc-slot iframe").locator("#spc-status").inner_text()
    assert transaction_state(sites, init["transaction_id"]) == "pending"


@pytest.mark.parametrize("policy_introspection", [True, False], ids=["detected-on-load", "get-error"])
def test_fallback_iframe_without_delegation_reports_permission_missing(
    context: BrowserContext, page: Page, sites: Sites, policy_introspection: bool,
) -> None:
    # With document.featurePolicy the frame knows on load; without it (other browsers) get()'s error tells.
    if not policy_introspection:
        context.add_init_script(WITHOUT_FEATURE_POLICY)
    _, user_id = enrol(context, page, sites)
    init = initialize(page, user_id)

    # An iframe tag without allow="publickey-credentials-get ...", the page's header notwithstanding.
    page.evaluate("""([url, issuer]) => {
      const frame = document.createElement("iframe");
      frame.src = url;
      document.getElementById("spc-slot").replaceChildren(frame);
      window.frameResult = undefined;
      window.addEventListener("message", (event) => {
        if (event.origin === issuer && event.source === frame.contentWindow && event.data.type === "payment") {
          window.frameResult = event.data;
        }
      });
    }""", [init["fallback_url"], sites.issuer_origin])
    if not policy_introspection:
        pay_button(page).click()
    message = frame_result(page)

    assert message["outcome"] == "failed" and message["code"] == "permission_missing", message
    assert "doesn't let your bank" in page.frame_locator("#spc-slot iframe").locator("#spc-status").inner_text()
    assert pay_button(page).is_hidden()
    assert transaction_state(sites, init["transaction_id"]) == "pending"


def test_fallback_reports_a_transaction_closed_meanwhile(context: BrowserContext, page: Page, sites: Sites) -> None:
    _, user_id = enrol(context, page, sites)
    init = initialize(page, user_id, show_opt_out=True)
    mount_frame(page, "payment", init["fallback_url"])
    pay_button(page).wait_for()
    # While the frame is open, the transaction is closed elsewhere (here: an opt-out reported by the shop).
    closed = issuer_post(sites, "/transaction/opt-out", {"transaction_id": init["transaction_id"]})
    assert closed.status_code == 200, closed.text

    pay_button(page).click()  # get() succeeds; the issuer refuses to finalize
    message = frame_result(page)

    assert message["outcome"] == "failed" and message["code"] == "transaction_failed", message
    assert "token" not in message
    status = page.frame_locator("#spc-slot iframe").locator("#spc-status").inner_text()
    assert status == "This payment can no longer be confirmed here. Please start again from the checkout."
    assert pay_button(page).is_hidden()
    assert transaction_state(sites, init["transaction_id"]) == "failed"
