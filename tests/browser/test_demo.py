"""The demo (``python -m example_merchant``) driven in real Chromium, and started as users start it.

The in-browser tests build the demo's two apps with its own factories and serve
them over plain HTTP on ``localhost`` and ``merchant.localhost``, exactly the
hosts the demo uses: Chromium treats both as secure contexts and resolves
``*.localhost`` to loopback by itself (the harness maps only the ``.test`` hosts).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

from spc_embed import Store
from spc_embed.storage import Credential

from .harness import TEST_HOSTS, ServedApp, add_virtual_authenticator, list_credentials

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # example_merchant lives at the top of the checkout
    sys.path.insert(0, str(REPO))

from example_merchant import Bank, DemoSecrets, create_bank, create_shop  # noqa: E402


class Demo(NamedTuple):
    bank: Bank
    bank_origin: str
    shop_origin: str
    database: Path


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data_dir = tmp_path_factory.mktemp("demo")
    with ServedApp.reserve("localhost") as bank_site, ServedApp.reserve("merchant.localhost") as shop_site:
        bank = create_bank(origin=bank_site.origin, shop_origin=shop_site.origin, data_dir=data_dir,
                           demo_secrets=DemoSecrets.generate())
        shop = create_shop(origin=shop_site.origin, bank_origin=bank_site.origin,
                           enrollment_url=bank.enrollment_url)
        bank_site.start(bank.app)
        shop_site.start(shop)
        yield Demo(bank, bank_site.origin, shop_site.origin, data_dir / "bank.db")


def stored_credentials(demo: Demo) -> list[Credential]:
    async def read() -> list[Credential]:
        store = Store(f"sqlite:///{demo.database}")
        try:
            return await store.list_credentials(demo.bank.cardholder.user_id)
        finally:
            await store.close()

    # Playwright's sync API keeps an event loop running in this thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()


def test_demo_origins_are_plain_http_localhost(demo: Demo) -> None:
    assert re.fullmatch(r"http://localhost:\d+", demo.bank_origin)
    assert re.fullmatch(r"http://merchant\.localhost:\d+", demo.shop_origin)
    assert demo.bank.issuer.config.rp_id == "localhost"
    # Nothing maps these names for the browser: it resolves *.localhost itself.
    assert not any("localhost" in host for host in TEST_HOSTS)


def test_enrolment_through_the_demo_checkout(context: BrowserContext, page: Page, demo: Demo) -> None:
    authenticator = add_virtual_authenticator(context, page)
    before = len(stored_credentials(demo))

    page.goto(demo.shop_origin + "/checkout")
    frame = page.frame_locator("#spc-enroll-frame")
    frame.locator("#spc-enroll-button").click()  # the user activation create() needs
    result = page.locator("#enrolment-result[data-outcome]")
    result.wait_for()

    assert result.get_attribute("data-outcome") == "enrolled", result.inner_text()
    assert "set up" in result.inner_text()
    assert "All set" in frame.locator("#spc-status").inner_text()
    credentials = stored_credentials(demo)
    assert len(credentials) == before + 1
    assert credentials[-1].enrolled_origin == demo.shop_origin
    assert credentials[-1].instrument_name == demo.bank.cardholder.card_name
    held = list_credentials(*authenticator)
    assert len(held) == 1 and held[0]["rpId"] == "localhost"

    # The bank's own page lists the new device.
    page.goto(demo.bank_origin + "/")
    assert page.locator("#devices li").count() == len(credentials)
    assert demo.shop_origin in page.locator("#devices").inner_text()


def test_demo_checkout_without_platform_authenticator(page: Page, demo: Demo) -> None:
    # No virtual authenticator: Chromium on Linux has no platform authenticator of its own.
    page.goto(demo.shop_origin + "/checkout")
    result = page.locator("#enrolment-result[data-outcome]")
    result.wait_for()

    assert result.get_attribute("data-outcome") == "unsupported"
    assert "pay as usual" in result.inner_text()


def test_demo_shop_delegates_to_the_bank(demo: Demo) -> None:
    response = httpx.get(demo.shop_origin.replace("merchant.localhost", "127.0.0.1") + "/checkout",
                         headers={"Host": demo.shop_origin.removeprefix("http://")})

    assert response.status_code == 200
    policy = response.headers["permissions-policy"]
    for feature in ("payment", "publickey-credentials-create", "publickey-credentials-get"):
        assert f'{feature}=(self "{demo.bank_origin}")' in policy
    assert f'allow="payment {demo.bank_origin}' in response.text


# The command users run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_python_m_example_merchant_serves_both_sites(tmp_path: Path) -> None:
    bank_port, shop_port = free_port(), free_port()
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "example_merchant", "--bank-port", str(bank_port), "--shop-port", str(shop_port),
         "--data-dir", str(data_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        urls = {
            f"http://localhost:{bank_port}/": ("127.0.0.1", bank_port, f"localhost:{bank_port}", "Demo Bank"),
            f"http://merchant.localhost:{shop_port}/": ("127.0.0.1", shop_port, f"merchant.localhost:{shop_port}",
                                                        "Demo Shop"),
            f"http://merchant.localhost:{shop_port}/checkout": ("127.0.0.1", shop_port,
                                                                f"merchant.localhost:{shop_port}", "spc-enroll-frame"),
        }
        deadline = time.monotonic() + 30
        pending = dict(urls)
        while pending:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, f"not serving {sorted(pending)}"
            for url, (ip, port, host, marker) in list(pending.items()):
                path = url.split(host, 1)[1]
                try:
                    response = httpx.get(f"http://{ip}:{port}{path}", headers={"Host": host}, timeout=2)
                except httpx.TransportError:
                    continue
                if response.status_code == 200:
                    assert marker in response.text, url
                    del pending[url]
            time.sleep(0.1)
        assert (data_dir / "bank.db").exists()

        process.send_signal(signal.SIGINT)  # Ctrl+C
        output, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, output
    for url in (f"http://localhost:{bank_port}/", f"http://merchant.localhost:{shop_port}/"):
        assert url in output
    assert "DEMO ONLY" in output
    assert "Traceback" not in output
    for port in (bank_port, shop_port):  # both sites really stopped
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)


def test_python_m_example_merchant_refuses_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "example_merchant", "--bank-port", str(free_port()), "--shop-port", str(port),
             "--data-dir", str(tmp_path)],
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )

    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
