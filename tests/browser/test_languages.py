"""The frames in the cardholder's language, in real Chromium: chosen by the enrolment link's locale, by
initialize's, or by the browser's Accept-Language; an issuer's catalog over the shipped ones; right to left.

The issuer here has a catalog directory of its own (as ``Issuer(locale_directories=[...])``): German
with one string of its own wording, and Arabic, which the package does not ship.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Frame, Page

from .accessibility import WIDTHS, axe_violations, settle, settled_fit, sideways_overflow
from .harness import TestCA, add_virtual_authenticator
from .sites import Sites, enrol, frame_result, mount_frame, open_checkout, serve_sites, unique

SLOT_FRAME = "#spc-slot iframe"
ISSUER_GERMAN = {"Use this device for faster checkout": "Mit diesem Gerät künftig schneller bezahlen"}
ARABIC = {
    "Faster checkout on this device": "دفع أسرع على هذا الجهاز",
    "Use this device for faster checkout": "استخدم هذا الجهاز للدفع بشكل أسرع",
    "Your fingerprint or face never leaves this device.": "لا تغادر بصمتك أو وجهك هذا الجهاز أبدًا.",
    "All set. Next time you pay with this card, confirm with this device's fingerprint, face or screen lock.":
        "تم الإعداد. في المرة القادمة، أكّد الدفع ببصمة هذا الجهاز أو وجهك أو قفل الشاشة.",
}


def write_catalog(directory: Path, locale: str, messages: dict[str, str]) -> None:
    target = directory / locale / "LC_MESSAGES"
    target.mkdir(parents=True)
    entries = "".join(f'msgid "{key}"\nmsgstr "{value}"\n\n' for key, value in messages.items())
    (target / "spc_embed.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n' + entries, encoding="utf-8")


@pytest.fixture(scope="module")
def sites(test_ca: TestCA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    catalogs = tmp_path_factory.mktemp("issuer-catalogs")
    write_catalog(catalogs, "de", ISSUER_GERMAN)
    write_catalog(catalogs, "ar", ARABIC)
    with serve_sites(test_ca, tmp_path_factory.mktemp("issuer") / "issuer.db",
                     locale_directories=(catalogs,)) as served:
        yield served


@pytest.fixture
def new_context(browser_factory: Callable[[bool], Browser]) -> Iterator[Callable[..., BrowserContext]]:
    """``new_context(locale=..., spc=True)``: a context whose browser asks for that language (Accept-Language)."""
    made: list[BrowserContext] = []

    def make(*, locale: str = "en-US", spc: bool = True) -> BrowserContext:
        context = browser_factory(spc).new_context(locale=locale)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


def enrollment_link(sites: Sites, *, locale: str | None = None, user_id: str | None = None) -> str:
    user_id = user_id or unique("cardholder")
    return sites.issuer.enrollment_url(
        user_id=user_id, user_name=f"{user_id}@example.com", user_display_name="Alex Doe",
        instrument_name="Test Card ****4242", instrument_icon=sites.issuer.url("/widget/card.png"),
        merchant_origin=sites.merchant, locale=locale,
    )


def issuer_frame(page: Page, outcome: str = "ready") -> Frame:
    handle = page.wait_for_selector(SLOT_FRAME)
    frame = handle.content_frame()
    assert frame is not None
    frame.wait_for_selector(f"main[data-outcome='{outcome}']")
    return frame


def language(frame: Frame) -> tuple[str | None, str | None]:
    return frame.get_attribute("html", "lang"), frame.get_attribute("html", "dir")


def enrol_here(context: BrowserContext, sites: Sites, link: str) -> tuple[Page, Frame]:
    """The test shop's checkout in ``context``, with the enrolment frame of ``link`` mounted and ready."""
    page = context.new_page()
    add_virtual_authenticator(context, page)
    open_checkout(page, sites)
    mount_frame(page, "enrollment", link)
    return page, issuer_frame(page)


def test_the_links_locale_comes_first(new_context: Callable[..., BrowserContext], sites: Sites) -> None:
    # The browser asks for French; the issuer knows this cardholder reads German.
    page, frame = enrol_here(new_context(locale="fr-FR"), sites, enrollment_link(sites, locale="de"))

    assert language(frame) == ("de", "ltr")
    assert frame.inner_text("h1") == "Schneller bezahlen mit diesem Gerät"
    assert frame.title().startswith("Schneller bezahlen einrichten · ")
    frame.click("#spc-enroll-button")
    message = frame_result(page)

    assert message["outcome"] == "enrolled" and message["lang"] == "de"
    assert message["message"].startswith("Fertig.") and frame.inner_text("#spc-status") == message["message"]


def test_without_a_locale_the_browsers_language(new_context: Callable[..., BrowserContext], sites: Sites) -> None:
    _, french = enrol_here(new_context(locale="fr-CH"), sites, enrollment_link(sites))
    _, english = enrol_here(new_context(locale="it-IT"), sites, enrollment_link(sites))  # no Italian: the default

    assert language(french) == ("fr", "ltr")
    assert french.inner_text("h1") == "Paiement plus rapide sur cet appareil"
    assert french.inner_text("#spc-enroll-button") == "Utiliser cet appareil pour payer plus vite"
    assert language(english) == ("en", "ltr")
    assert english.inner_text("h1") == "Faster checkout on this device"


def test_an_issuer_catalog_overrides_a_shipped_string(new_context: Callable[..., BrowserContext],
                                                      sites: Sites) -> None:
    _, frame = enrol_here(new_context(locale="de-DE"), sites, enrollment_link(sites))

    assert frame.inner_text("#spc-enroll-button") == "Mit diesem Gerät künftig schneller bezahlen"
    assert frame.inner_text("h1") == "Schneller bezahlen mit diesem Gerät"  # not overridden: the shipped German


def initialize_with(page: Page, user_id: str, *, locale: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": user_id, "transaction_id": unique("order"),
        "transaction_data": {"amount": "1234.56", "currency": "EUR", "payee_name": "Test Shop",
                             "payee_origin": page.evaluate("() => location.origin")},
    }
    if locale:
        body["locale"] = locale
    return page.evaluate("(body) => window.shop.initialize(body)", body)


def test_the_fallback_frame_speaks_initializes_locale(new_context: Callable[..., BrowserContext],
                                                     sites: Sites) -> None:
    context = new_context(locale="de-DE", spc=False)
    page = context.new_page()
    _, user_id = enrol(context, page, sites)
    french = initialize_with(page, user_id, locale="fr")

    mount_frame(page, "payment", french["fallback_url"])
    frame = issuer_frame(page)
    assert language(frame) == ("fr", "ltr")
    assert frame.inner_text("h1") == "Confirmez votre paiement"
    assert frame.inner_text("#spc-pay-amount") == "1\u202f234,56\xa0€"
    assert frame.inner_text("#spc-pay-button") == "Confirmer avec cet appareil"
    frame.click("#spc-pay-button")
    message = frame_result(page)
    assert message["outcome"] == "confirmed" and message["lang"] == "fr"
    assert frame.inner_text("#spc-status") == "Paiement confirmé. Vous pouvez continuer dans la boutique."

    # Without a locale at initialize, the browser's: German, German amounts.
    german = initialize_with(page, user_id, locale=None)
    mount_frame(page, "payment", german["fallback_url"])
    frame = issuer_frame(page)
    assert language(frame) == ("de", "ltr")
    assert frame.inner_text("#spc-pay-amount") == "1.234,56\xa0€"
    assert frame.inner_text("#spc-pay-button") == "Mit diesem Gerät bestätigen"


def test_right_to_left(new_context: Callable[..., BrowserContext], sites: Sites) -> None:
    page, frame = enrol_here(new_context(locale="en-US"), sites, enrollment_link(sites, locale="ar"))
    problems: dict[str, Any] = {}

    assert language(frame) == ("ar", "rtl")
    assert frame.inner_text("#spc-enroll-button") == ARABIC["Use this device for faster checkout"]
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        settle(page)
        found = {"axe": axe_violations(frame), "fit": settled_fit(page, frame), "page": sideways_overflow(page)}
        if found["axe"] or found["fit"]["cut"] or found["fit"]["down"] or found["fit"]["sideways"] or found["page"]:
            problems[f"{width} px"] = found
        # Right to left: the text starts at the right edge of the frame.
        edges = frame.evaluate("""() => {
          const frame = document.querySelector("main").getBoundingClientRect();
          const heading = document.querySelector("h1");
          const range = document.createRange();
          range.selectNodeContents(heading);
          return [frame.right - range.getBoundingClientRect().right, getComputedStyle(heading).direction];
        }""")
        assert edges[1] == "rtl" and edges[0] < 25, edges

    frame.click("#spc-enroll-button")
    issuer_frame(page, "enrolled")
    assert frame.inner_text("#spc-status") == ARABIC[
        "All set. Next time you pay with this card, confirm with this device's fingerprint, face or screen lock."]
    assert problems == {}
