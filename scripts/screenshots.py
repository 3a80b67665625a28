"""Screenshots of every step of the demo, for the README, taken from the real thing.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--chromium /usr/bin/chromium]

Starts ``python -m example_merchant`` on free ports, drives it with Playwright
in the system Chromium (SPC feature on, a virtual authenticator, the SPC dialog
answered by CDP's ``autoAccept``), and writes one PNG per step. The native SPC
dialog is browser UI, not page content: no page screenshot can show it.
Needs the test extras (``pip install -e ".[test,demo]"``); never run
``playwright install``: this uses Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, Playwright, sync_playwright

REPO = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1000, "height": 700}
SPC_FLAG = "--enable-features=SecurePaymentConfirmationBrowser"


def port(preferred: int) -> int:
    """The README's port when it is free, so the pictures match the text; any free port otherwise."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_chromium(explicit: str | None) -> str:
    for candidate in (explicit, os.environ.get("SPC_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("No Chromium found: pass --chromium, set SPC_CHROMIUM or `apt-get install chromium`")


@contextmanager
def running_demo(data_dir: Path) -> Iterator[tuple[str, str]]:
    bank_port, shop_port = port(8000), port(8001)
    process = subprocess.Popen(
        [sys.executable, "-m", "example_merchant", "--bank-port", str(bank_port), "--shop-port", str(shop_port),
         "--data-dir", str(data_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise SystemExit("the demo did not start:\n" + (process.stdout.read() if process.stdout else ""))
            try:
                httpx.get(f"http://127.0.0.1:{shop_port}/", timeout=1, headers={"Host": f"merchant.localhost:{shop_port}"})
                httpx.get(f"http://127.0.0.1:{bank_port}/", timeout=1, headers={"Host": f"localhost:{bank_port}"})
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit("the demo did not answer within 30 s") from None
                time.sleep(0.1)
        yield f"http://localhost:{bank_port}", f"http://merchant.localhost:{shop_port}"
    finally:
        process.terminate()
        process.communicate(timeout=15)


def launch(playwright: Playwright, chromium: str, *, spc: bool) -> Browser:
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--hide-scrollbars"]
    if spc:
        args.append(SPC_FLAG)
    return playwright.chromium.launch(executable_path=chromium, headless=True, args=args)


def authenticator(context: BrowserContext, page: Page) -> tuple[CDPSession, str]:
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True,
    }})
    return cdp, added["authenticatorId"]


class Shooter:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[Path] = []

    def __call__(self, page: Page, name: str, *, full_page: bool = False) -> None:
        path = self.out / f"{name}.png"
        page.wait_for_timeout(150)  # let fonts and the iframes' layout settle
        height = page.evaluate("Math.ceil(document.body.getBoundingClientRect().bottom) + 16")
        # A short page is cut at its end instead of padded to the viewport.
        clip = None if full_page or height >= VIEWPORT["height"] else {"x": 0, "y": 0, "width": VIEWPORT["width"],
                                                                         "height": height}
        page.screenshot(path=str(path), full_page=full_page, clip=clip, animations="disabled", caret="hide")
        self.written.append(path)
        print(f"  {path.relative_to(REPO) if path.is_relative_to(REPO) else path}  ({path.stat().st_size // 1024} KB)")


def add_to_cart(page: Page, shop: str, sku: str) -> None:
    page.goto(shop + "/")
    page.locator(f'.product[data-sku="{sku}"] button').click()
    page.wait_for_url(shop + "/cart")


def go_pay(page: Page, shop: str) -> None:
    page.goto(shop + "/checkout")
    page.locator("#pay-button:enabled").click()


def wait_for_receipt(page: Page) -> None:
    page.locator("#receipt").wait_for(state="visible", timeout=20_000)


def take(out: Path, chromium: str) -> list[Path]:
    shoot = Shooter(out)
    with tempfile.TemporaryDirectory(prefix="spc-screenshots-") as data, running_demo(Path(data)) as (bank, shop), \
            sync_playwright() as playwright:
        with_spc = launch(playwright, chromium, spc=True)
        context = with_spc.new_context(viewport=VIEWPORT)
        page = context.new_page()
        cdp, authenticator_id = authenticator(context, page)
        cdp.send("Page.setSPCTransactionMode", {"mode": "autoAccept"})

        # 1. The shop and its cart.
        page.goto(shop + "/")
        shoot(page, "01-shop-products")
        add_to_cart(page, shop, "beans")
        add_to_cart(page, shop, "cup")
        shoot(page, "02-shop-cart")

        # 2. First purchase: no device yet, the bank's own step-up in its iframe.
        go_pay(page, shop)
        step_up = page.frame_locator("#step-up-frame")
        step_up.locator("#code").fill("123456")
        page.locator("#step-up-frame").scroll_into_view_if_needed()
        shoot(page, "03-bank-step-up", full_page=True)
        step_up.locator("#step-up-submit").click()
        wait_for_receipt(page)

        # 3. Paid with the code; the bank offers enrolment in the iframe.
        enrol = page.frame_locator("#enrolment-slot iframe").locator("#spc-enroll-button")
        enrol.wait_for(state="visible")
        shoot(page, "04-enrolment-iframe", full_page=True)
        enrol.click()
        # The frame says it; the page keeps its own copy hidden.
        page.locator("#enrolment-result[data-outcome]").wait_for(state="attached")

        # 4. Second purchase: Secure Payment Confirmation, then the verified claims.
        add_to_cart(page, shop, "grinder")
        go_pay(page, shop)
        wait_for_receipt(page)
        shoot(page, "05-spc-result", full_page=True)

        # 5. Third purchase in a browser without SPC: the bank's fallback iframe.
        held = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]
        without_spc = launch(playwright, chromium, spc=False)
        other = without_spc.new_context(viewport=VIEWPORT)
        page2 = other.new_page()
        cdp2, authenticator2 = authenticator(other, page2)
        cdp2.send("WebAuthn.addCredential", {"authenticatorId": authenticator2, "credential": held[0]})
        add_to_cart(page2, shop, "beans")
        add_to_cart(page2, shop, "beans")
        go_pay(page2, shop)
        frame = page2.frame_locator("#bank-frame-slot iframe")
        frame.locator("#spc-pay-button:enabled").wait_for()
        shoot(page2, "06-fallback-iframe", full_page=True)
        frame.locator("#spc-pay-button").click()
        wait_for_receipt(page2)
        shoot(page2, "07-fallback-result", full_page=True)

        # 6. The bank: a transfer on its own site with the same passkey, then the device and transactions.
        page2.goto(bank + "/")
        page2.click("#transfer-button")
        page2.locator("#transfer-result[data-outcome]").wait_for(state="attached")
        page2.goto(bank + "/")
        shoot(page2, "08-bank-devices-transactions", full_page=True)
        without_spc.close()
        with_spc.close()
    return shoot.written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--chromium", default=None, help="the browser (default: $SPC_CHROMIUM, /usr/bin/chromium)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    chromium = find_chromium(args.chromium)
    print(f"Screenshots of the demo into {out}")
    written = take(out, chromium)
    for stale in set(out.glob("*.png")) - set(written):
        if re.fullmatch(r"\d\d-[a-z0-9-]+\.png", stale.name):
            stale.unlink()  # a step that no longer exists
    return 0


if __name__ == "__main__":
    sys.exit(main())
