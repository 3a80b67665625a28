"""The demo (``python -m example_merchant``) driven in real Chromium, and started as users start it.

The in-browser tests build the demo's two apps with its own factories and serve
them as the demo does: plain HTTP on ``localhost`` and ``merchant.localhost``
(Chromium treats both as secure contexts and resolves ``*.localhost`` to
loopback by itself), and, for ``--https``, ``issuer.test`` and ``merchant.test``
with the harness CA. The shop's backend reaches the bank over the network
with httpx, as in the demo.

The demo bank has one cardholder, so the journey is ordered as a customer lives
it: the module-scoped ``device`` fixture is the first purchase (step-up with a
one-time code, then enrolment in the bank's iframe); every later purchase
brings that device into a fresh browser context by copying the passkey into
the context's virtual authenticator (with the bank's current sign count).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect

from spc_embed import Store
from spc_embed.storage import Credential, TransactionRecord

from .harness import (
    TEST_HOSTS,
    ServedApp,
    TestCA,
    VirtualAuthenticator,
    add_virtual_authenticator,
    click_in_settled_frame,
    list_credentials,
    read_database,
    set_spc_mode,
)

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # example_merchant lives at the top of the checkout
    sys.path.insert(0, str(REPO))

from example_merchant import (  # noqa: E402
    BANK_TENANT_ID,
    DEMO_ONE_TIME_CODE,
    SHOP_ID,
    Bank,
    BankConnection,
    DemoSecrets,
    create_bank,
    create_shop,
)

FEATURES = ("payment", "publickey-credentials-create", "publickey-credentials-get")


@dataclass(frozen=True)
class Demo:
    bank: Bank
    bank_origin: str
    shop_origin: str
    database: Path
    api_origin: str
    verify: Any
    secrets: DemoSecrets

    def jwks(self) -> dict[str, Any]:
        return httpx.get(self.api_origin + "/spc/.well-known/jwks.json", verify=self.verify).json()


@contextmanager
def serve_demo(data_dir: Path, *, ca: TestCA | None = None) -> Iterator[Demo]:
    """The demo's two apps, wired exactly as ``python -m example_merchant`` (``--https`` with ``ca``) wires them."""
    bank_host, shop_host = ("issuer.test", "merchant.test") if ca else ("localhost", "merchant.localhost")
    with ServedApp.reserve(bank_host, ca) as bank_site, ServedApp.reserve(shop_host, ca) as shop_site:
        secrets = DemoSecrets.generate()
        bank = create_bank(origin=bank_site.origin, shop_origin=shop_site.origin, data_dir=data_dir,
                           demo_secrets=secrets)
        # With --https the .test names resolve in the browser only: the backend calls the bank at localhost.
        api_origin = f"https://localhost:{bank_site.port}" if ca else bank_site.origin
        verify = ca.ssl_context() if ca else True
        shop = create_shop(
            origin=shop_site.origin,
            bank=BankConnection(origin=bank_site.origin, api_origin=api_origin, api_key=secrets.shop_api_key,
                                merchant_id=SHOP_ID, user_id=bank.cardholder.user_id,
                                card_name=bank.cardholder.card_name, verify=verify),
            session_key=secrets.shop_session_key,
        )
        bank_site.start(bank.app)
        shop_site.start(shop)
        yield Demo(bank, bank_site.origin, shop_site.origin, data_dir / "bank.db", api_origin, verify, secrets)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with serve_demo(tmp_path_factory.mktemp("demo")) as served:
        yield served



def read_store(demo: Demo, query: Callable[[Store], Any]) -> Any:
    return read_database(demo.database, query)


def stored_credentials(demo: Demo) -> list[Credential]:
    return read_store(demo, lambda store: store.list_credentials(demo.bank.cardholder.user_id))


def transaction(demo: Demo, order_id: str) -> TransactionRecord:
    record = read_store(demo, lambda store: store.get_transaction(SHOP_ID, order_id))
    assert record is not None, order_id
    return record


# The customer's steps


def fill_cart(page: Page, demo: Demo, *skus: str) -> None:
    for sku in skus:
        page.goto(demo.shop_origin + "/")
        page.locator(f'.product[data-sku="{sku}"] button').click()
        page.wait_for_url(demo.shop_origin + "/cart")


def click_pay(page: Page, demo: Demo) -> None:
    page.goto(demo.shop_origin + "/cart")
    page.click("#to-checkout")
    page.locator("#pay-button:enabled").click()  # enabled once checkout.js has loaded spc-merchant.js


def enter_code(page: Page, code: str) -> None:
    frame = page.frame_locator("#step-up-frame")
    frame.locator("#code").fill(code)
    frame.locator("#step-up-submit").click()


def receipt(page: Page) -> dict[str, Any]:
    """The order as the shop shows it once paid, with the verified claims (if any) by name."""
    box = page.locator("#receipt")
    box.wait_for(state="visible", timeout=20_000)
    claims = {}
    for row in page.locator("#claims tr").all():
        name, value = (cell.inner_text() for cell in row.locator("td").all())
        claims[name] = value
    summary = page.locator("#receipt-summary").inner_text()
    order_id = re.search(r"Order (order-[0-9a-f]+)", summary)
    assert order_id, summary
    return {"method": box.get_attribute("data-method"), "order_id": order_id.group(1), "summary": summary,
            "claims": claims}


def checkout_status(page: Page) -> tuple[str | None, str]:
    status = page.locator("#checkout-status")
    return status.get_attribute("data-state"), status.inner_text()


def verify_like_a_merchant(demo: Demo, claims_on_page: dict[str, str], order_id: str) -> None:
    """The page's claims are what the shop's backend verified; check them against the bank's own records."""
    record = transaction(demo, order_id)
    assert record.state == "succeeded"
    assert claims_on_page["iss"] == demo.bank.issuer.base_url
    assert claims_on_page["aud"] == SHOP_ID
    assert claims_on_page["sub"] == demo.bank.cardholder.user_id
    assert claims_on_page["trans.id"] == order_id
    assert claims_on_page["trans.hash"] == record.data_hash
    assert claims_on_page["trans.method"] == record.method
    assert claims_on_page["cred"] == base64.urlsafe_b64encode(record.credential_id or b"").rstrip(b"=").decode()
    # The signing key the shop used is one the bank publishes.
    assert {key["kid"] for key in demo.jwks()["keys"]}


# The device: a passkey made at the first purchase, carried into later browser contexts


@dataclass(frozen=True)
class Device:
    credential: dict[str, Any]  # WebAuthn.getCredentials' entry: private key included
    first_purchase: dict[str, Any]
    wrong_code_messages: list[str]
    enrolment_outcome: str
    enrolment_text: str  # the shop's own line below the bank's frame
    enrolment_frame_text: str  # what the bank's frame said
    page_text_after_enrolment: str  # the shop's page, its frames left out
    step_up_texts: dict[str, str]


def bring_device(context: BrowserContext, page: Page, demo: Demo, device: Device) -> VirtualAuthenticator:
    """This browser context's authenticator holds the enrolled passkey, at the bank's current sign count."""
    authenticator = add_virtual_authenticator(context, page)
    sign_count = stored_credentials(demo)[0].sign_count
    authenticator.cdp.send("WebAuthn.addCredential", {
        "authenticatorId": authenticator.authenticator_id,
        "credential": {**device.credential, "signCount": sign_count},
    })
    return authenticator


@pytest.fixture(scope="module")
def device(browser: Browser, demo: Demo) -> Iterator[Device]:
    """The first purchase: no passkey yet, so the bank steps up with a one-time code, then offers enrolment."""
    assert stored_credentials(demo) == [], "the first purchase must find the cardholder without a device"
    context = browser.new_context()
    try:
        page = context.new_page()
        authenticator = add_virtual_authenticator(context, page)
        set_spc_mode(authenticator.cdp, "autoAccept")
        fill_cart(page, demo, "beans", "cup")
        click_pay(page, demo)

        frame = page.frame_locator("#step-up-frame")
        step_up_texts = {"amount": frame.locator("#step-up-amount").inner_text(),
                         "payee": frame.locator("#step-up-payee").inner_text()}
        wrong = []
        for _ in range(2):  # of three attempts: the third is the right code
            enter_code(page, "000000")
            error = frame.locator("#step-up-error")
            if wrong:  # each attempt loads a new page: read its message, not the one still shown
                expect(error).not_to_have_text(wrong[-1])
            wrong.append(error.inner_text())
        enter_code(page, DEMO_ONE_TIME_CODE)
        first = receipt(page)

        enrolment_frame = page.frame_locator("#enrolment-slot iframe")
        click_in_settled_frame(page, "#enrolment-slot iframe", "#spc-enroll-button")
        result = page.locator("#enrolment-result[data-outcome]")
        result.wait_for(state="attached")
        held = list_credentials(*authenticator)
        assert len(held) == 1, held
        yield Device(credential=held[0], first_purchase=first, wrong_code_messages=wrong,
                     enrolment_outcome=result.get_attribute("data-outcome") or "",
                     enrolment_text=result.evaluate("(element) => element.textContent"),
                     enrolment_frame_text=enrolment_frame.locator("#spc-status").inner_text(),
                     page_text_after_enrolment=page.locator("body").inner_text(), step_up_texts=step_up_texts)
    finally:
        context.close()


def test_demo_origins_are_plain_http_localhost(demo: Demo) -> None:
    assert re.fullmatch(r"http://localhost:\d+", demo.bank_origin)
    assert re.fullmatch(r"http://merchant\.localhost:\d+", demo.shop_origin)
    assert demo.bank.issuer.config.rp_id == "localhost"
    # Nothing maps these names for the browser: it resolves *.localhost itself.
    assert not any("localhost" in host for host in TEST_HOSTS)


def test_demo_shop_delegates_to_the_bank(demo: Demo) -> None:
    response = httpx.get(demo.shop_origin.replace("merchant.localhost", "127.0.0.1") + "/checkout",
                         headers={"Host": demo.shop_origin.removeprefix("http://")})

    assert response.status_code == 200
    policy = response.headers["permissions-policy"]
    for feature in FEATURES:
        assert f'{feature}=(self "{demo.bank_origin}")' in policy
    # The page loads the bank's merchant script; the shop's own JS is only glue.
    assert f"{demo.bank_origin}/spc/widget/spc-merchant.js" in response.text


def test_first_purchase_steps_up_with_a_code_then_enrols(demo: Demo, device: Device) -> None:
    # The bank's own page showed what it was asked to approve, refused a wrong code, accepted the right one.
    assert device.step_up_texts == {"amount": "21.50 EUR", "payee": "Demo Shop"}
    assert device.wrong_code_messages == ["That code is not right. 2 attempts left.",
                                          "That code is not right. 1 attempt left."]
    first = device.first_purchase
    assert first["method"] == "one-time code"
    assert "21.50 EUR" in first["summary"]
    assert first["claims"] == {}  # a step-up is the bank's word to the shop's backend, not an SPC token
    step_ups = [s for s in demo.bank.step_ups.values() if s.transaction_id == first["order_id"]]
    assert [s.status for s in step_ups] == ["passed"]

    # Then the bank's enrolment iframe made a passkey for this cardholder, at this shop.
    assert device.enrolment_outcome == "enrolled", device.enrolment_frame_text
    # Said once, by the bank's frame: the shop's page does not repeat it below.
    assert device.enrolment_frame_text.startswith("All set."), device.enrolment_frame_text
    assert device.enrolment_text == ""
    assert "All set" not in device.page_text_after_enrolment and "set up" not in device.enrolment_text
    credentials = stored_credentials(demo)
    assert len(credentials) == 1
    assert credentials[0].enrolled_origin == demo.shop_origin
    assert credentials[0].instrument_name == demo.bank.cardholder.card_name
    assert credentials[0].instrument_icon == demo.bank.card_icon_url == demo.bank_origin + "/static/card.png"
    assert device.credential["rpId"] == "localhost"
    assert base64.b64decode(device.credential["credentialId"]) == credentials[0].credential_id


def test_second_purchase_confirms_with_spc(browser: Browser, demo: Demo, device: Device) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        authenticator = bring_device(context, page, demo, device)
        fill_cart(page, demo, "grinder")

        # The customer closes the SPC dialog first: nothing is lost, they try again.
        set_spc_mode(authenticator.cdp, "autoReject")
        click_pay(page, demo)
        page.locator("#retry-spc:visible").wait_for()
        assert checkout_status(page)[0] == "cancelled"
        assert page.locator("#use-code").is_visible()
        set_spc_mode(authenticator.cdp, "autoAccept")
        page.click("#retry-spc")
        paid = receipt(page)
    finally:
        context.close()

    assert paid["method"] == "spc"
    assert "49.00 EUR" in paid["summary"] and "Secure Payment Confirmation" in paid["summary"]
    assert paid["claims"]["trans.method"] == "spc"
    verify_like_a_merchant(demo, paid["claims"], paid["order_id"])
    record = transaction(demo, paid["order_id"])
    # HTTP demo: no payeeOrigin (PaymentRequest wants https there); the browser showed and signed payeeName.
    assert record.data["payee_name"] == "Demo Shop" and "payee_origin" not in record.data
    assert record.data["order"]["items"] == [{"sku": "grinder", "quantity": 1, "price": "49.00"}]


def test_the_banks_own_site_confirms_a_transfer_with_the_same_passkey(browser: Browser, demo: Demo,
                                                                       device: Device) -> None:
    """The bank is a first-party tenant of its own issuer: Hanko's transaction flow, a plain passkey."""
    context = browser.new_context()
    try:
        page = context.new_page()
        bring_device(context, page, demo, device)
        page.goto(demo.bank_origin + "/")
        page.click("#transfer-button")
        result = page.locator("#transfer-result[data-outcome]")
        result.wait_for(state="attached")
        outcome = (result.get_attribute("data-outcome"), result.get_attribute("data-method"), result.inner_text())
        page.goto(demo.bank_origin + "/")
        listed = page.locator('#transactions tr[data-status="confirmed"]', has_text="Demo Bank").inner_text()
    finally:
        context.close()

    assert outcome == ("confirmed", "passkey", "Done: the transfer is confirmed."), outcome
    transfers = read_store(demo, lambda store: store.list_transactions(demo.bank.cardholder.user_id,
                                                                        tenant_id=BANK_TENANT_ID))
    assert [(t.state, t.method, t.data) for t in transfers] == [
        ("succeeded", "passkey", {"amount": 123.45, "usedFor": "Transfer to your savings account"})]
    assert "123.45 EUR" in listed and "this device, on the bank's site" in listed, listed


def test_a_code_after_closing_the_dialog_says_what_happens_now(browser: Browser, demo: Demo,
                                                              device: Device) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        authenticator = bring_device(context, page, demo, device)
        set_spc_mode(authenticator.cdp, "autoReject")
        fill_cart(page, demo, "cup")
        click_pay(page, demo)
        page.locator("#use-code:visible").wait_for()
        closed = checkout_status(page)
        page.click("#use-code")
        page.frame_locator("#step-up-frame").locator("#code").wait_for()
        during_code = checkout_status(page)
        enter_code(page, DEMO_ONE_TIME_CODE)
        paid = receipt(page)
    finally:
        context.close()

    assert closed[0] == "cancelled" and "You closed the confirmation" in closed[1]
    # Above the bank's code frame, the line says what is happening now, not the closed dialog.
    assert during_code[0] == "step-up" and "closed" not in during_code[1] and "one-time code" in during_code[1]
    assert paid["method"] == "one-time code"


def test_third_purchase_without_spc_uses_the_fallback_iframe(
    browser_factory: Callable[[bool], Browser], demo: Demo, device: Device,
) -> None:
    context = browser_factory(False).new_context()  # Chromium without SecurePaymentConfirmationBrowser
    try:
        page = context.new_page()
        bring_device(context, page, demo, device)
        fill_cart(page, demo, "beans", "beans")
        click_pay(page, demo)

        frame = page.frame_locator("#bank-frame-slot iframe")
        frame.locator("#spc-pay-button:enabled").wait_for()
        state, text = checkout_status(page)
        assert state == "fallback" and "feature-not-enabled" in text
        assert frame.locator("#spc-pay-amount").inner_text() == "€25.00"
        assert frame.locator("#spc-pay-payee").inner_text() == "Demo Shop"
        assert frame.locator("#spc-pay-card").inner_text() == demo.bank.cardholder.card_name
        allow = page.locator("#bank-frame-slot iframe").get_attribute("allow") or ""
        assert f"publickey-credentials-get {demo.bank_origin}" in allow
        frame.locator("#spc-pay-button").click()  # get() inside the bank's frame; the click is the activation
        paid = receipt(page)

        # The bank shows the cardholder's device and every purchase of the journey.
        page.goto(demo.bank_origin + "/")
        devices = [row.inner_text() for row in page.locator("#devices tr[data-credential-id]").all()]
        rows = {row.get_attribute("data-transaction-id"): row.inner_text()
                for row in page.locator("#transactions tr[data-transaction-id]").all()}
    finally:
        context.close()

    assert paid["method"] == "fallback"
    assert paid["claims"]["trans.method"] == "fallback"
    verify_like_a_merchant(demo, paid["claims"], paid["order_id"])

    assert len(devices) == 1
    assert demo.shop_origin in devices[0] and "not used yet" not in devices[0]
    assert "one-time code" in rows[device.first_purchase["order_id"]]
    assert "confirmed" in rows[device.first_purchase["order_id"]]
    assert "this device, in the bank's frame" in rows[paid["order_id"]]
    # Every purchase of the journey so far, as the bank's records have it.
    how = {"spc": "Secure Payment Confirmation", "fallback": "this device, in the bank's frame",
           "passkey": "this device, on the bank's site"}
    records = read_store(demo, lambda store: store.list_transactions(demo.bank.cardholder.user_id))
    for record in records:
        if record.state == "succeeded":
            assert how[record.method or ""] in rows[record.transaction_id]
            assert f"{record.data['amount']} EUR" in rows[record.transaction_id]


def test_without_a_platform_authenticator_the_code_still_works(browser: Browser, demo: Demo,
                                                             device: Device) -> None:
    # The cardholder has a passkey, but this browser has no authenticator at all.
    context = browser.new_context()
    try:
        page = context.new_page()
        fill_cart(page, demo, "cup")
        click_pay(page, demo)
        # SPC is unavailable here, so the bank's frame is tried; it cannot confirm either.
        page.locator("#checkout-status[data-state='fallback-failed']").wait_for()
        assert page.locator("#checkout-status").get_attribute("data-code") == "unsupported"
        # The bank's frame said why, in the customer's words; the shop says what to do next.
        assert "can't confirm payments" in page.frame_locator("#bank-frame-slot iframe").locator("#spc-status").inner_text()
        assert "one-time code" in checkout_status(page)[1]
        page.click("#use-code")
        enter_code(page, DEMO_ONE_TIME_CODE)
        paid = receipt(page)
        enrolment_offered = page.locator("#enrolment").is_visible()
    finally:
        context.close()

    assert paid["method"] == "one-time code"
    assert not enrolment_offered
    assert len(stored_credentials(demo)) == 1


def test_verify_another_way_steps_up_and_knows_the_device(browser: Browser, demo: Demo, device: Device) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        authenticator = bring_device(context, page, demo, device)
        set_spc_mode(authenticator.cdp, "autoChooseToAuthAnotherWay")
        fill_cart(page, demo, "cup")
        click_pay(page, demo)
        enter_code(page, DEMO_ONE_TIME_CODE)  # the bank's regular challenge instead
        paid = receipt(page)
        # Enrolment is offered again (the chooser may be on another device); this one already has the passkey.
        click_in_settled_frame(page, "#enrolment-slot iframe", "#spc-enroll-button")
        outcome = page.locator("#enrolment-result[data-outcome]")
        outcome.wait_for(state="attached")
        enrolment = outcome.get_attribute("data-outcome")
    finally:
        context.close()

    assert paid["method"] == "one-time code"
    assert enrolment == "already_enrolled"
    assert transaction(demo, paid["order_id"]).state == "pending"  # the SPC transaction was never used
    assert len(stored_credentials(demo)) == 1


def test_opting_out_stops_spc_at_this_shop(browser: Browser, tmp_path: Path) -> None:
    # Its own bank and shop: an opt-out changes what the bank offers this shop from then on.
    with serve_demo(tmp_path) as demo:
        context = browser.new_context()
        try:
            page = context.new_page()
            authenticator = add_virtual_authenticator(context, page)
            fill_cart(page, demo, "cup")
            click_pay(page, demo)
            enter_code(page, DEMO_ONE_TIME_CODE)
            receipt(page)
            click_in_settled_frame(page, "#enrolment-slot iframe", "#spc-enroll-button")
            page.locator("#enrolment-result[data-outcome='enrolled']").wait_for(state="attached")

            set_spc_mode(authenticator.cdp, "autoOptOut")
            fill_cart(page, demo, "beans")
            click_pay(page, demo)
            page.frame_locator("#step-up-frame").locator("#code").wait_for()
            state, text = checkout_status(page)
            enter_code(page, DEMO_ONE_TIME_CODE)
            paid = receipt(page)
            enrolment_offered = page.locator("#enrolment").is_visible()
        finally:
            context.close()
        opt_outs = read_store(demo, lambda store: store.list_opt_outs(demo.bank.cardholder.user_id))
        opted_out = transaction(demo, opt_outs[0].transaction_id) if opt_outs else None

    assert state == "step-up" and "won't be asked" in text
    assert paid["method"] == "one-time code"
    assert not enrolment_offered
    # The page reported it to the bank (optOutUrl), which recorded it against that transaction.
    assert len(opt_outs) == 1 and opt_outs[0].tenant_id == SHOP_ID
    assert opted_out is not None and opted_out.state == "failed"


# Drawn red or orange, as Mastercard's circles are; the demo's Visa has none of it.
COUNT_MASTERCARD_PIXELS = """async (src) => {
  const image = new Image();
  image.src = src;
  await image.decode();
  const canvas = Object.assign(document.createElement("canvas"), { width: image.width, height: image.height });
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const { data } = context.getImageData(0, 0, image.width, image.height);
  let count = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] > 128 && data[i] > 215 && data[i + 1] < 180 && data[i + 2] < 70) count++;
  }
  return count;
}"""


def test_the_card_named_visa_is_drawn_as_one(browser: Browser, demo: Demo) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(demo.bank_origin + "/")
        shown = page.locator(".card-line img").first.get_attribute("src")
        demo_art = page.evaluate(COUNT_MASTERCARD_PIXELS, demo.bank.card_icon_url)
        generic_art = page.evaluate(COUNT_MASTERCARD_PIXELS, demo.bank.issuer.url("/widget/card.png"))
    finally:
        context.close()

    assert "Visa" in demo.bank.cardholder.card_name
    assert shown == demo.bank.card_icon_url
    assert generic_art > 100  # the check sees the circles where they are drawn
    assert demo_art == 0


def test_both_sites_have_a_favicon(browser: Browser, demo: Demo) -> None:
    context = browser.new_context()
    missing: list[str] = []
    icons = []
    try:
        page = context.new_page()
        page.on("response", lambda response: missing.append(response.url) if response.status == 404 else None)
        for origin in (demo.shop_origin, demo.bank_origin):
            page.goto(origin + "/")
            icons.append(page.locator("link[rel=icon]").evaluate("(link) => link.href"))
    finally:
        context.close()

    assert missing == []
    for origin, icon in zip((demo.shop_origin, demo.bank_origin), icons, strict=True):
        assert icon.startswith(origin + "/")
        for path in (icon.removeprefix(origin), "/favicon.ico"):  # browsers ask for it whatever the page names
            # merchant.localhost resolves in the browser only: ask the loopback address, naming the host.
            host = origin.split("://")[1]
            response = httpx.get(f"http://127.0.0.1:{host.rsplit(':', 1)[1]}{path}", headers={"Host": host})
            assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml", path


def test_bank_step_up_refuses_strangers(demo: Demo) -> None:
    body = {"user_id": demo.bank.cardholder.user_id, "transaction_id": "t-1", "amount": "1.00",
            "currency": "EUR", "payee_name": "Someone"}
    for headers in ({}, {"apiKey": "wrong"}):
        response = httpx.post(demo.api_origin + "/api/step-ups", json=body, headers=headers)
        assert response.status_code == 401 and response.json()["code"] == "invalid_api_key"
    assert httpx.get(demo.api_origin + "/api/step-ups/nope").status_code == 401

    created = httpx.post(demo.api_origin + "/api/step-ups", json=body, headers={"apiKey": demo.secrets.shop_api_key})
    assert created.status_code == 201
    page_url = created.json()["url"]
    page = httpx.get(page_url)
    # Only the shop that asked may frame the page; the code form posts to the bank itself.
    assert f"frame-ancestors {demo.shop_origin}" in page.headers["content-security-policy"]
    assert "form-action 'self'" in page.headers["content-security-policy"]
    # A code posted from anywhere but the bank's own page is refused, and uses up no attempt.
    forged = httpx.post(page_url, content=f"code={DEMO_ONE_TIME_CODE}", headers={
        "Origin": demo.shop_origin, "Content-Type": "application/x-www-form-urlencoded"})
    assert forged.status_code == 403
    step_up = demo.bank.step_ups[page_url.rsplit("/", 1)[1]]
    assert (step_up.status, step_up.attempts) == ("pending", 0)
    for _ in range(3):
        httpx.post(page_url, content="code=000000", headers={
            "Origin": demo.bank_origin, "Content-Type": "application/x-www-form-urlencoded"})
    assert step_up.status == "failed"  # three wrong codes
    late = httpx.post(page_url, content=f"code={DEMO_ONE_TIME_CODE}", headers={
        "Origin": demo.bank_origin, "Content-Type": "application/x-www-form-urlencoded"})
    assert step_up.status == "failed" and "could not verify you" in late.text


# --https: two real sites


@pytest.fixture(scope="module")
def https_demo(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with serve_demo(tmp_path_factory.mktemp("https-demo"), ca=test_ca) as served:
        yield served


def test_https_demo_enrols_and_pays_with_payee_origin(browser: Browser, https_demo: Demo) -> None:
    demo = https_demo
    assert re.fullmatch(r"https://issuer\.test:\d+", demo.bank_origin)
    assert re.fullmatch(r"https://merchant\.test:\d+", demo.shop_origin)
    context = browser.new_context()
    try:
        page = context.new_page()
        authenticator = add_virtual_authenticator(context, page)
        set_spc_mode(authenticator.cdp, "autoAccept")
        fill_cart(page, demo, "cup")
        click_pay(page, demo)
        enter_code(page, DEMO_ONE_TIME_CODE)
        assert receipt(page)["method"] == "one-time code"
        click_in_settled_frame(page, "#enrolment-slot iframe", "#spc-enroll-button")
        page.locator("#enrolment-result[data-outcome='enrolled']").wait_for(state="attached")

        fill_cart(page, demo, "grinder")
        click_pay(page, demo)
        paid = receipt(page)
    finally:
        context.close()

    assert paid["method"] == "spc"
    verify_like_a_merchant(demo, paid["claims"], paid["order_id"])
    record = transaction(demo, paid["order_id"])
    # Two real sites: the browser showed and signed the shop's https origin as the payee.
    assert record.data["payee_origin"] == demo.shop_origin
    assert record.expected["payee_origin"] == demo.shop_origin
    assert stored_credentials(demo)[0].enrolled_origin == demo.shop_origin


# The command users run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def run_demo(*args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "example_merchant", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def wait_until_serving(process: subprocess.Popen[str], urls: dict[str, tuple[str, dict[str, Any], str]]) -> None:
    """``urls``: name -> (URL to fetch, httpx options, text the answer must contain)."""
    deadline = time.monotonic() + 30
    pending = dict(urls)
    while pending:
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, f"not serving {sorted(pending)}"
        for name, (url, options, marker) in list(pending.items()):
            try:
                response = httpx.get(url, timeout=2, **options)
            except httpx.TransportError:
                continue
            if response.status_code == 200:
                assert marker in response.text, name
                del pending[name]
        time.sleep(0.1)


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)  # Ctrl+C
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert "Traceback" not in output
    return output


def test_python_m_example_merchant_serves_both_sites(tmp_path: Path) -> None:
    bank_port, shop_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    with run_demo("--bank-port", str(bank_port), "--shop-port", str(shop_port), "--data-dir", str(data_dir)) as process:
        bank_host = {"headers": {"Host": f"localhost:{bank_port}"}}
        shop_host = {"headers": {"Host": f"merchant.localhost:{shop_port}"}}
        wait_until_serving(process, {
            "bank": (f"http://127.0.0.1:{bank_port}/", bank_host, "Demo Bank"),
            "shop": (f"http://127.0.0.1:{shop_port}/", shop_host, "Demo Shop"),
            "checkout": (f"http://127.0.0.1:{shop_port}/checkout", shop_host, "spc-merchant.js"),
            "merchant script": (f"http://127.0.0.1:{bank_port}/spc/widget/spc-merchant.js", bank_host,
                                "confirmPayment"),
        })
        assert (data_dir / "bank.db").exists()
        output = stop(process)

    for url in (f"http://localhost:{bank_port}/", f"http://merchant.localhost:{shop_port}/"):
        assert url in output
    assert "DEMO ONLY" in output
    assert "--enable-features=SecurePaymentConfirmationBrowser" in output
    for port in (bank_port, shop_port):  # both sites really stopped
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)


def test_python_m_example_merchant_https(tmp_path: Path, playwright_instance: Playwright, chromium_path: str) -> None:
    bank_port, shop_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    with run_demo("--https", "--bank-port", str(bank_port), "--shop-port", str(shop_port),
                  "--data-dir", str(data_dir)) as process:
        ca_file = data_dir / "ca.pem"
        deadline = time.monotonic() + 30
        while not ca_file.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        trusted = {"verify": ssl.create_default_context(cafile=str(ca_file))}
        wait_until_serving(process, {
            # The certificate names localhost too: that is where the shop's backend reaches the bank.
            "bank": (f"https://localhost:{bank_port}/spc/.well-known/jwks.json", trusted, '"keys"'),
            "shop": (f"https://localhost:{shop_port}/", trusted, "Demo Shop"),
        })

        # Do what the start-up output says: a Chromium with that HOME trusts the demo CA by itself.
        home = data_dir / "browser-home"
        if shutil.which("certutil"):
            browser = playwright_instance.chromium.launch(
                executable_path=chromium_path, headless=True, env={**os.environ, "HOME": str(home)},
                args=["--no-sandbox", "--disable-gpu",
                      "--host-resolver-rules=MAP issuer.test 127.0.0.1, MAP merchant.test 127.0.0.1",
                      "--enable-features=SecurePaymentConfirmationBrowser"],
            )
            try:
                page = browser.new_page()
                page.goto(f"https://merchant.test:{shop_port}/")
                page.locator(".product").first.wait_for()
                page.goto(f"https://issuer.test:{bank_port}/")
                assert "Demo Bank" in page.title()
            finally:
                browser.close()
        output = stop(process)

    assert f"https://merchant.test:{shop_port}/" in output and f"https://issuer.test:{bank_port}/" in output
    assert str(ca_file) in output
    assert "--host-resolver-rules=" in output and "MAP issuer.test 127.0.0.1, MAP merchant.test 127.0.0.1" in output
    assert "--enable-features=SecurePaymentConfirmationBrowser" in output
    assert "DEMO ONLY" in output
    if shutil.which("certutil"):
        assert f"HOME={home}" in output


def test_python_m_example_merchant_refuses_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "example_merchant", "--bank-port", str(free_port()), "--shop-port", str(port),
             "--data-dir", str(tmp_path)],
            cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
        )

    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_shop_verifies_the_bank_token_before_fulfilling(demo: Demo) -> None:
    """The shop's verifier on its own, fed tokens genuinely signed by the bank."""
    from example_merchant.shop import BankClient, Order, ShopError

    signer = demo.bank.issuer.result_signer
    connection = BankConnection(origin=demo.bank_origin, api_origin=demo.api_origin, api_key="unused",
                                merchant_id=SHOP_ID, user_id="u", card_name="c")
    order = Order(id="order-a", items=[], total="1.00", created_at=0, transaction_hash="hash-a")

    def token(*, tenant: str = SHOP_ID, transaction_id: str = "order-a", transaction_hash: str = "hash-a") -> str:
        return signer.sign(user_id="u", tenant_id=tenant, credential_id=b"c", transaction_id=transaction_id,
                           transaction_hash=transaction_hash, method="spc")

    async def check(presented: str) -> str:
        async with httpx.AsyncClient(verify=demo.verify) as client:
            try:
                claims = await BankClient(connection, client).verify_result(presented, order)
            except ShopError as exc:
                return exc.message
        return "accepted " + claims["trans"]["id"]

    def run(presented: str) -> str:
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, check(presented)).result()

    assert run(token()) == "accepted order-a"
    assert "another transaction" in run(token(transaction_id="order-b"))
    assert "other transaction data" in run(token(transaction_hash="hash-b"))
    assert "Audience doesn't match" in run(token(tenant="another-shop"))
    assert "unknown key" in run(jwt.encode({"a": 1}, "k" * 32, algorithm="HS256", headers={"kid": "nope"}))
    header, payload, signature = token().split(".")
    assert "did not verify" in run(f"{header}.{payload}.{signature[::-1]}")
