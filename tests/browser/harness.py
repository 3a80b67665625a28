"""Real-browser test harness: trusted TLS sites on *.test names, system Chromium, CDP helpers.

The recipe behind every choice here is docs/browser-testing.md. Servers run in
their own threads, so tests drive Playwright's sync API and stay synchronous.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import trustme
import uvicorn
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, Playwright

# Distinct registrable domains, so issuer and merchant are cross-site as in production.
TEST_HOSTS = ("issuer.test", "merchant.test", "shop.test")

SpcMode = Literal["autoAccept", "autoReject", "autoOptOut", "autoChooseToAuthAnotherWay", "none"]


def find_chromium(playwright: Playwright | None = None) -> str | None:
    """The browser to launch: $SPC_CHROMIUM, Debian's chromium, then Playwright's own build.

    Pass the running `playwright` if there is one: the sync API cannot nest a second.
    """
    candidate = os.environ.get("SPC_CHROMIUM")
    if candidate:
        return candidate if Path(candidate).exists() else None
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    # A developer's laptop may have run `playwright install`; CI never does.
    if playwright is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as own:
            bundled = own.chromium.executable_path
    else:
        bundled = playwright.chromium.executable_path
    return bundled if Path(bundled).exists() else None


class TestCA:
    """A throwaway CA, one server certificate for every test host, and an NSS DB trusting it."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, directory: Path | None = None) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="spc-ca-")
            directory = Path(self._tmp.name)
        self.directory = directory
        self._ca = trustme.CA()
        cert = self._ca.issue_cert(*TEST_HOSTS, "localhost", "127.0.0.1")
        self.ca_pem = self.directory / "ca.pem"
        self.cert_file = self.directory / "server-cert.pem"
        self.key_file = self.directory / "server-key.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_pem))
        cert.cert_chain_pems[0].write_to_path(str(self.cert_file))
        cert.private_key_pem.write_to_path(str(self.key_file))
        # Chromium on Linux reads trust anchors from $HOME/.pki/nssdb: a private HOME
        # makes it trust this CA without --ignore-certificate-errors.
        self.home = self.directory / "home"
        nssdb = self.home / ".pki" / "nssdb"
        nssdb.mkdir(parents=True)
        certutil = ["certutil", "-d", f"sql:{nssdb}"]
        subprocess.run([*certutil, "-N", "--empty-password"], check=True, capture_output=True)
        subprocess.run(
            [*certutil, "-A", "-t", "C,,", "-n", "test-ca", "-i", str(self.ca_pem)],
            check=True,
            capture_output=True,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A client context (for httpx) that trusts only this CA."""
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class ServedApp:
    """An ASGI app served by uvicorn in a background thread on a port reserved up front.

    Reserving first lets a test know each site's origin before building the apps,
    which need each other's origins; uvicorn then serves the very socket we bound,
    so no other process can take the port in between.
    """

    def __init__(self, host_name: str = "localhost", *, ca: TestCA | None = None) -> None:
        self.host_name = host_name
        self._ca = ca
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def reserve(cls, host_name: str, ca: TestCA | None = None) -> ServedApp:
        """Bind a port for `host_name`; HTTPS with `ca`'s certificate, plain HTTP without."""
        return cls(host_name, ca=ca)

    @property
    def origin(self) -> str:
        scheme = "https" if self._ca else "http"
        return f"{scheme}://{self.host_name}:{self.port}"

    def start(self, app: Any, *, timeout: float = 10.0) -> ServedApp:
        tls = {"ssl_certfile": str(self._ca.cert_file), "ssl_keyfile": str(self._ca.key_file)} if self._ca else {}
        # A short graceful timeout: Chromium keeps connections alive and stop() should not wait on them.
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, **tls)
        self._server = server = uvicorn.Server(config)
        # uvicorn installs signal handlers only on the main thread, so a thread is safe.
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._sock]}, name=f"uvicorn-{self.origin}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.origin} did not start (see uvicorn's log above)")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout=5)
        self._sock.close()  # uvicorn closes it too; this covers a never-started reservation

    def __enter__(self) -> ServedApp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def launch_browser(
    playwright: Playwright, ca: TestCA, *, executable_path: str | None = None, spc_enabled: bool = True
) -> Browser:
    """Headless system Chromium that trusts `ca` and resolves the test hosts to loopback."""
    executable_path = executable_path or find_chromium(playwright)
    if executable_path is None:
        raise RuntimeError("No Chromium found: set SPC_CHROMIUM or apt-get install chromium")
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--host-resolver-rules=" + ", ".join(f"MAP {host} 127.0.0.1" for host in TEST_HOSTS),
    ]
    if spc_enabled:
        # SPC is off by default in Linux Chromium; this is the browser-side feature name.
        args.append("--enable-features=SecurePaymentConfirmationBrowser")
    return playwright.chromium.launch(
        executable_path=executable_path, headless=True, args=args, env={**os.environ, "HOME": str(ca.home)}
    )


class VirtualAuthenticator(NamedTuple):
    cdp: CDPSession
    authenticator_id: str


def add_virtual_authenticator(context: BrowserContext, page: Page) -> VirtualAuthenticator:
    """A user-verifying platform authenticator on `page`; iframes on the page use it too."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
        "automaticPresenceSimulation": True,
    }
    result = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})
    return VirtualAuthenticator(cdp, result["authenticatorId"])


def set_spc_mode(cdp: CDPSession, mode: SpcMode) -> None:
    """Answer the SPC dialog automatically (headless Chromium cannot show it)."""
    cdp.send("Page.setSPCTransactionMode", {"mode": mode})


def list_credentials(cdp: CDPSession, authenticator_id: str) -> list[dict[str, Any]]:
    """The authenticator's credentials; `credentialId` is standard base64, not base64url."""
    return cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]


def solid_png(width: int = 32, height: int = 20, rgb: tuple[int, int, int] = (30, 80, 160)) -> bytes:
    """A real, decodable PNG: SPC rejects an instrument icon it cannot fetch and decode."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


__all__ = [
    "TEST_HOSTS",
    "ServedApp",
    "SpcMode",
    "TestCA",
    "VirtualAuthenticator",
    "add_virtual_authenticator",
    "click_in_settled_frame",
    "find_chromium",
    "launch_browser",
    "list_credentials",
    "set_spc_mode",
    "solid_png",
]


T = TypeVar("T")


def click_in_settled_frame(page: Page, frame_selector: str, target: str, *, timeout_s: float = 10) -> None:
    """Click ``target`` inside an issuer frame once that frame has stopped changing size.

    The frames report their height and the merchant page resizes them just
    after load. A click that Chromium routes to a cross-origin frame while it
    is being resized can be lost (seen here with Chromium 156), so wait until
    the frame's box is the same on two looks 100 ms apart.
    """
    frame = page.locator(frame_selector)
    deadline = time.monotonic() + timeout_s
    previous = frame.bounding_box()
    while time.monotonic() < deadline:
        page.wait_for_timeout(100)
        current = frame.bounding_box()
        if current == previous and current is not None:
            break
        previous = current
    page.frame_locator(frame_selector).locator(target).click()


def read_database(database: Path | str, query: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``query(store)`` on a Store of our own: what another process of the issuer would see.

    Playwright's sync API keeps an event loop running in the test's thread, so
    the query gets a fresh loop on a worker thread.
    """
    from spc_embed.storage import Store

    async def read() -> T:
        async with Store(f"sqlite:///{database}") as store:
            return await query(store)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, read()).result()
