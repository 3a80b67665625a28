"""The cardholder's frames and the demo, audited in real Chromium: axe-core (WCAG 2.1 A and AA) in every
state at 1280 and 320 px wide, frames that fit their content, and keyboard-only journeys.

The frames are mounted by widget/spc-merchant.js on the test shop (tests/browser/sites.py), as a
merchant mounts them, so their height follows their content. Every check runs at both widths by
resizing the same page: a state is reached once and audited twice.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Frame, Page, Route

from .accessibility import WIDTHS, axe_violations, focus, settle, settled_fit, sideways_overflow
from .harness import TestCA, add_virtual_authenticator, click_in_settled_frame, set_spc_mode
from .sites import Sites, enrol, frame_result, initialize, mount_frame, open_checkout, serve_sites, unique
from .test_demo import Demo, enter_code, fill_cart, receipt, serve_demo
from .test_enrollment import enrollment_url

SLOT_FRAME = "#spc-slot iframe"


@pytest.fixture(scope="module")
def sites(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    with serve_sites(test_ca, tmp_path_factory.mktemp("issuer") / "issuer.db") as served:
        yield served


@pytest.fixture
def no_spc_context(browser_factory: Callable[[bool], Browser]) -> Iterator[BrowserContext]:
    """Chromium without SPC: where merchants mount the fallback frame."""
    context = browser_factory(False).new_context()
    yield context
    context.close()


def issuer_frame(page: Page) -> Frame:
    handle = page.wait_for_selector(SLOT_FRAME)
    frame = handle.content_frame()
    assert frame is not None
    frame.wait_for_load_state()
    return frame


def audit_frame(page: Page, state: str) -> dict[str, Any]:
    """axe in the issuer frame and its fit in the page, at each width; returns what failed, by width."""
    problems: dict[str, Any] = {}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        settle(page)
        frame = issuer_frame(page)
        fit = settled_fit(page, frame)
        found = {"axe": axe_violations(frame), "frame": fit, "page": sideways_overflow(page)}
        if found["axe"] or found["frame"]["cut"] or found["frame"]["down"] or found["frame"]["sideways"] \
                or found["page"]:
            problems[f"{state} at {width} px"] = found
    return problems


def wait_for_outcome(page: Page, outcome: str) -> None:
    issuer_frame(page).wait_for_selector(f"main[data-outcome='{outcome}']")


# Every state of the enrolment frame


def test_enrolment_frame_states_pass_axe_and_fit(context: BrowserContext, page: Page, sites: Sites) -> None:
    problems: dict[str, Any] = {}
    open_checkout(page, sites)

    # Without an authenticator: "unsupported", decided on load.
    mount_frame(page, "enrollment", enrollment_url(sites, user_id=unique("cardholder"))[0])  # type: ignore[arg-type]
    wait_for_outcome(page, "unsupported")
    problems |= audit_frame(page, "enrolment unsupported")

    authenticator = add_virtual_authenticator(context, page)
    url, user_id = enrollment_url(sites, user_id=unique("cardholder"))  # type: ignore[arg-type]
    mount_frame(page, "enrollment", url)
    wait_for_outcome(page, "ready")
    problems |= audit_frame(page, "enrolment ready")

    authenticator.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator.authenticator_id,
                                                       "isUserVerified": False})
    click_in_settled_frame(page, SLOT_FRAME, "#spc-enroll-button")
    wait_for_outcome(page, "cancelled")
    problems |= audit_frame(page, "enrolment cancelled")

    authenticator.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator.authenticator_id,
                                                       "isUserVerified": True})
    click_in_settled_frame(page, SLOT_FRAME, "#spc-enroll-button")
    wait_for_outcome(page, "enrolled")
    problems |= audit_frame(page, "enrolment enrolled")

    mount_frame(page, "enrollment", enrollment_url(sites, user_id=user_id)[0])  # type: ignore[arg-type]
    page.frame_locator(SLOT_FRAME).locator("#spc-enroll-button:enabled").click()
    wait_for_outcome(page, "already_enrolled")
    problems |= audit_frame(page, "enrolment already enrolled")

    mount_frame(page, "enrollment", url)  # used up
    wait_for_outcome(page, "token_used")
    problems |= audit_frame(page, "enrolment link used")

    mount_frame(page, "enrollment", sites.issuer.url("/enroll?token=forged"))
    wait_for_outcome(page, "invalid_token")
    problems |= audit_frame(page, "enrolment link not valid")

    assert problems == {}


# Every state of the fallback frame


def test_fallback_frame_states_pass_axe_and_fit(no_spc_context: BrowserContext, sites: Sites) -> None:
    problems: dict[str, Any] = {}
    page = no_spc_context.new_page()
    authenticator, user_id = enrol(no_spc_context, page, sites)

    init = initialize(page, user_id, amount="1234.56", payee_name="A shop with a rather long name, Ltd.")
    mount_frame(page, "payment", init["fallback_url"])
    wait_for_outcome(page, "ready")
    problems |= audit_frame(page, "fallback ready")

    authenticator.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator.authenticator_id,
                                                       "isUserVerified": False})
    page.evaluate("(url) => window.shop.mount('payment', url, {onMessage: () => {}})", init["fallback_url"])
    page.frame_locator(SLOT_FRAME).locator("#spc-pay-button:enabled").click()
    wait_for_outcome(page, "cancelled")
    problems |= audit_frame(page, "fallback cancelled")

    authenticator.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator.authenticator_id,
                                                       "isUserVerified": True})
    page.frame_locator(SLOT_FRAME).locator("#spc-pay-button").click()
    wait_for_outcome(page, "confirmed")
    problems |= audit_frame(page, "fallback confirmed")

    mount_frame(page, "payment", init["fallback_url"])  # settled meanwhile
    wait_for_outcome(page, "failed")
    problems |= audit_frame(page, "fallback already confirmed")

    no_passkey = initialize(page, unique("unknown-user"))
    mount_frame(page, "payment", no_passkey["fallback_url"])
    wait_for_outcome(page, "failed")
    problems |= audit_frame(page, "fallback without a passkey")

    mount_frame(page, "payment", sites.issuer.url("/pay?handle=forged"))
    wait_for_outcome(page, "failed")
    problems |= audit_frame(page, "fallback link not valid")

    assert problems == {}


# Keyboard only


class HeldRequests:
    """Requests to the issuer held back until released: a step the test can look at while it is pending."""

    def __init__(self, context: BrowserContext, pattern: str) -> None:
        self.routes: list[Route] = []
        context.route(pattern, lambda route: self.routes.append(route))

    def wait(self, page: Page) -> None:
        for _ in range(100):
            if self.routes:
                return
            page.wait_for_timeout(50)
        raise AssertionError("the request was never sent")

    def release(self) -> None:
        while self.routes:
            self.routes.pop().continue_()


def press(page: Page, key: str) -> None:
    page.keyboard.press(key)
    page.wait_for_timeout(50)


def test_keyboard_only_enrolment(context: BrowserContext, page: Page, sites: Sites) -> None:
    authenticator = add_virtual_authenticator(context, page)
    url, _ = enrollment_url(sites, user_id=unique("cardholder"))  # type: ignore[arg-type]
    open_checkout(page, sites)
    mount_frame(page, "enrollment", url)
    wait_for_outcome(page, "ready")
    frame = issuer_frame(page)
    held = HeldRequests(context, "**/spc/enroll/options")

    press(page, "Tab")
    assert focus(page, frame) == "page:#pay"
    press(page, "Tab")
    assert focus(page, frame) == "frame:#spc-enroll-button"

    # The device refuses the fingerprint: the cardholder tries again from where they are.
    authenticator.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator.authenticator_id,
                                                       "isUserVerified": False})
    press(page, "Enter")
    held.wait(page)
    assert focus(page, frame) == "frame:#spc-enroll-button"  # pending: still on the button, never the body
    assert frame.get_attribute("#spc-enroll-button", "aria-disabled") == "true"
    press(page, "Enter")  # a second press while pending does nothing
    held.release()
    wait_for_outcome(page, "cancelled")
    assert focus(page, frame) == "frame:#spc-enroll-button"
    assert frame.inner_text("#spc-enroll-button") == "Try again"
    assert frame.get_attribute("#spc-status", "role") == "status"
    assert frame.get_attribute("#spc-status", "aria-live") is None  # announced by the live region

    authenticator.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator.authenticator_id,
                                                       "isUserVerified": True})
    press(page, "Space")
    held.wait(page)
    assert focus(page, frame) == "frame:#spc-enroll-button"
    held.release()
    wait_for_outcome(page, "enrolled")
    # The button is gone: the focus is on the outcome, read once (the live region is quiet for it).
    assert focus(page, frame) == "frame:#spc-status"
    assert "All set" in frame.inner_text("#spc-status")
    assert frame.get_attribute("#spc-status", "aria-live") == "off"
    assert frame_result(page)["outcome"] == "cancelled"  # the first report; onMessage would follow the rest


def test_keyboard_only_fallback_payment(no_spc_context: BrowserContext, sites: Sites) -> None:
    page = no_spc_context.new_page()
    authenticator, user_id = enrol(no_spc_context, page, sites)
    init = initialize(page, user_id)
    page.evaluate("""(url) => {
      window.shop.mount("payment", url, {onMessage: (data) => window.frameMessages.push(data)});
    }""", init["fallback_url"])
    wait_for_outcome(page, "ready")
    frame = issuer_frame(page)
    held = HeldRequests(no_spc_context, "**/spc/pay/finalize")
    page.evaluate("() => document.activeElement.blur()")

    press(page, "Tab")
    assert focus(page, frame) == "page:#pay"
    press(page, "Tab")
    assert focus(page, frame) == "frame:#spc-pay-button"

    authenticator.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator.authenticator_id,
                                                       "isUserVerified": False})
    press(page, "Enter")
    wait_for_outcome(page, "cancelled")
    # Cancelled: "Try again" is where the focus already is, not seven Tab presses away.
    assert focus(page, frame) == "frame:#spc-pay-button"
    assert frame.inner_text("#spc-pay-button") == "Try again"

    authenticator.cdp.send("WebAuthn.setUserVerified", {"authenticatorId": authenticator.authenticator_id,
                                                       "isUserVerified": True})
    press(page, "Enter")
    held.wait(page)
    assert focus(page, frame) == "frame:#spc-pay-button"  # finalizing: the focus stays in the frame
    assert frame.get_attribute("#spc-pay-button", "aria-disabled") == "true"
    held.release()
    wait_for_outcome(page, "confirmed")
    assert focus(page, frame) == "frame:#spc-status"
    assert "Payment confirmed" in frame.inner_text("#spc-status")
    messages = page.evaluate("() => window.frameMessages")
    assert [m["outcome"] for m in messages] == ["cancelled", "confirmed"]
    # The outcome events carry the sentence the frame showed, and its language, for the page's own live region.
    assert messages[1]["message"] == frame.inner_text("#spc-status") and messages[1]["lang"] == "en"


# The demo's pages


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    with tempfile.TemporaryDirectory(prefix="spc-demo-") as data_dir, serve_demo(Path(data_dir)) as served:
        yield served


def audit_page(page: Page, name: str, frame_selector: str | None = None) -> dict[str, Any]:
    problems: dict[str, Any] = {}
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        settle(page, 150)
        found: dict[str, Any] = {"axe": axe_violations(page), "page": sideways_overflow(page)}
        if frame_selector:
            frame = page.wait_for_selector(frame_selector).content_frame()
            assert frame is not None
            found["frame axe"] = axe_violations(frame)
            fit = settled_fit(page, frame)
            found["frame"] = fit if fit["cut"] or fit["down"] or fit["sideways"] else None
        if any(found.values()):
            problems[f"{name} at {width} px"] = found
    return problems


def test_demo_pages_pass_axe_at_both_widths(browser: Browser, demo: Demo) -> None:
    problems: dict[str, Any] = {}
    context = browser.new_context()
    try:
        page = context.new_page()
        authenticator = add_virtual_authenticator(context, page)
        set_spc_mode(authenticator.cdp, "autoAccept")
        page.goto(demo.shop_origin + "/")
        problems |= audit_page(page, "shop: products")
        fill_cart(page, demo, "beans", "cup")
        problems |= audit_page(page, "shop: cart")
        page.goto(demo.shop_origin + "/checkout")
        page.locator("#pay-button:enabled").wait_for()
        problems |= audit_page(page, "shop: checkout")

        page.click("#pay-button")
        step_up = page.frame_locator("#step-up-frame")
        step_up.locator("#code").wait_for()
        problems |= audit_page(page, "shop: the bank's step-up", "#step-up-frame")
        enter_code(page, "000000")
        step_up.locator("#step-up-error").wait_for()
        problems |= audit_page(page, "shop: a wrong code", "#step-up-frame")
        code = page.wait_for_selector("#step-up-frame").content_frame()
        assert code is not None and focus(page, code) == "frame:#code"  # back on the input, which the error describes
        assert code.get_attribute("#code", "aria-invalid") == "true"
        assert code.get_attribute("#code", "aria-describedby") == "step-up-error"

        enter_code(page, "123456")
        receipt(page)
        assert focus(page) == "page:#receipt-heading"  # "Paid" is said once the bank's frame is gone
        page.frame_locator("#enrolment-slot iframe").locator("#spc-enroll-button:enabled").wait_for()
        problems |= audit_page(page, "shop: paid, enrolment offered", "#enrolment-slot iframe")
        click_in_settled_frame(page, "#enrolment-slot iframe", "#spc-enroll-button")
        page.locator("#enrolment-result[data-outcome]").wait_for(state="attached")
        problems |= audit_page(page, "shop: enrolled", "#enrolment-slot iframe")

        page.goto(demo.shop_origin + "/orders")
        problems |= audit_page(page, "shop: orders")
        page.goto(demo.bank_origin + "/")
        problems |= audit_page(page, "bank: devices and transactions")
        remove = page.locator("#devices button").first
        assert remove.evaluate("(button) => button.textContent").startswith("Remove the device set up at ")

        fill_cart(page, demo, "grinder")
        page.goto(demo.shop_origin + "/checkout")
        page.locator("#pay-button:enabled").click()
        receipt(page)
        problems |= audit_page(page, "shop: paid with SPC")
    finally:
        context.close()

    assert problems == {}
