"""Run the demo: ``python -m example_merchant [--https] [--bank-port 8000] [--shop-port 8001] [--data-dir DIR]``.

Both sites are served by one process. Plain HTTP on ``localhost`` and
``merchant.localhost`` works without certificates: browsers treat both as
secure contexts and resolve ``*.localhost`` to the loopback address. With
``--https`` they are two real sites, ``https://issuer.test`` and
``https://merchant.test``, with certificates from a CA generated for the demo.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from .bank import SHOP_ID, DemoSecrets, create_bank
from .shop import BankConnection, create_shop
from .tls import DemoTLS

SPC_FLAG = "--enable-features=SecurePaymentConfirmationBrowser"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to us, so one Ctrl+C stops both sites.

    Each uvicorn.Server installs its own handlers and re-raises the signal
    when it stops; with two servers in one loop only one would see it.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(host: str, port: int) -> socket.socket:
    """Bind up front: a busy port is a one-line error before anything starts, not a traceback."""
    try:
        return socket.create_server((host, port))
    except OSError as exc:
        raise SystemExit(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}. "
                         "Is the demo already running? Choose others with --bank-port/--shop-port.") from None


async def serve(apps: Sequence[tuple[Any, socket.socket]], *, log_level: str, tls: DemoTLS | None) -> None:
    options: dict[str, Any] = {"ssl_certfile": str(tls.cert_file), "ssl_keyfile": str(tls.key_file)} if tls else {}
    servers = [
        (_Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=2, **options)), sock)
        for app, sock in apps
    ]
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server, _ in servers:
            server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop)
    await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in servers))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m example_merchant",
        description="spc-embed demo: a bank (issuer) and a shop (merchant) on two origins.",
    )
    parser.add_argument("--https", action="store_true",
                        help="serve https://issuer.test and https://merchant.test with a generated demo CA "
                             "(default: http://localhost and http://merchant.localhost)")
    parser.add_argument("--bank-port", type=int, default=8000, help="bank (issuer) port (default 8000)")
    parser.add_argument("--shop-port", type=int, default=8001, help="shop (merchant) port (default 8001)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the bank keeps its database (and, with --https, the demo CA, reused on the "
                             "next start); default: a temporary directory, removed on exit")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    if args.bank_port == args.shop_port:
        parser.error("--bank-port and --shop-port must differ")
    return args


def browser_instructions(tls: DemoTLS, shop_origin: str, data_dir: Path) -> str:
    rules = "MAP issuer.test 127.0.0.1, MAP merchant.test 127.0.0.1"
    flags = f"--host-resolver-rules={shlex.quote(rules)} {SPC_FLAG}"
    lines = [
        "HTTPS with a CA generated for this demo:",
        f"  CA certificate:  {tls.ca_file}",
        "  The browser must resolve the .test names to this machine and trust that CA.",
    ]
    if tls.browser_home is not None:
        lines += [
            "  Chromium on Linux, with a private NSS database that already trusts it (nothing system-wide):",
            (f"    HOME={shlex.quote(str(tls.browser_home))} chromium "
             f"--user-data-dir={shlex.quote(str(data_dir / 'browser-profile'))} \\"),
            f"      {flags} \\",
            f"      {shop_origin}/",
        ]
    lines += [
        "  Or trust ca.pem yourself (and remove it after the demo):",
        f"    Linux (Chrome/Chromium):  certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n spc-embed-demo -i {tls.ca_file}",
        f"    macOS:    security add-trusted-cert -r trustRoot -k ~/Library/Keychains/login.keychain-db {tls.ca_file}",
        f"    Windows:  certutil -user -addstore Root {tls.ca_file}",
        f"  then start Chrome or Chromium with: {flags}",
        "  (SecurePaymentConfirmationBrowser is needed on Linux only; Chrome on macOS and Windows has SPC on.)",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.https:
        bank_origin = f"https://issuer.test:{args.bank_port}"
        shop_origin = f"https://merchant.test:{args.shop_port}"
        # The .test names resolve only in a browser told so: the shop's backend calls the bank at localhost.
        bank_api_origin = f"https://localhost:{args.bank_port}"
    else:
        bank_origin = f"http://localhost:{args.bank_port}"
        shop_origin = f"http://merchant.localhost:{args.shop_port}"
        bank_api_origin = bank_origin
    with contextlib.ExitStack() as cleanup:
        bank_socket = cleanup.enter_context(listen(args.host, args.bank_port))
        shop_socket = cleanup.enter_context(listen(args.host, args.shop_port))
        if args.data_dir is None:
            data_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="spc-embed-demo-")))
        else:
            data_dir = args.data_dir.resolve()
            data_dir.mkdir(parents=True, exist_ok=True)
        tls = DemoTLS.create(data_dir) if args.https else None
        secrets = DemoSecrets.generate()
        bank = create_bank(origin=bank_origin, shop_origin=shop_origin, data_dir=data_dir, demo_secrets=secrets)
        shop = create_shop(
            origin=shop_origin,
            bank=BankConnection(
                origin=bank_origin, api_origin=bank_api_origin, api_key=secrets.shop_api_key, merchant_id=SHOP_ID,
                user_id=bank.cardholder.user_id, card_name=bank.cardholder.card_name,
                verify=tls.client_context() if tls else True,
            ),
            session_key=secrets.shop_session_key,
        )
        temporary = "" if args.data_dir else "  (temporary, removed on exit)"
        rows = [
            ("Shop (merchant), start here", f"{shop_origin}/"),
            (f'Bank (issuer, rpId "{bank.issuer.config.rp_id}")', f"{bank_origin}/"),
            ("spc-embed mounted at", bank.issuer.base_url),
            ("Shop backend -> bank API", f"{bank_api_origin}/spc  (server to server, httpx)"),
            ("Bank database", f"{data_dir / 'bank.db'}{temporary}"),
        ]
        width = max(len(label) for label, _ in rows) + 2
        print(
            "spc-embed demo\n"
            + "".join(f"  {label + ':':<{width}}{value}\n" for label, value in rows)
            + "\n"
            "  DEMO ONLY: the bank's token secret, its result-signing key (EC P-256), the shop's API key\n"
            "  and session key, and the bank site's own API key were generated just now and exist only\n"
            "  in this process's memory; the one-time code is always 123456. A real issuer configures\n"
            "  its own secret_keys and signing_keys (see the README).\n",
            flush=True,
        )
        if tls:
            print(browser_instructions(tls, shop_origin, data_dir) + "\n", flush=True)
        else:
            print(
                "Open the shop in Chrome (desktop) or Chromium. On Linux start Chromium with\n"
                f"  {SPC_FLAG}\n"
                "for Secure Payment Confirmation; without it the shop uses the bank's fallback frame.\n"
                "Confirming needs a fingerprint, face or screen lock (a platform authenticator).\n",
                flush=True,
            )
        print("Press Ctrl+C to stop.", flush=True)
        asyncio.run(serve([(bank.app, bank_socket), (shop, shop_socket)], log_level=args.log_level, tls=tls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
