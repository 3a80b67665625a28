"""Run the demo: ``python -m example_merchant [--bank-port 8000] [--shop-port 8001] [--data-dir DIR]``.

Both sites are served by one process. Plain HTTP on ``localhost`` and
``merchant.localhost`` works without certificates: browsers treat both as
secure contexts and resolve ``*.localhost`` to the loopback address.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from .bank import DemoSecrets, create_bank
from .shop import create_shop


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


async def serve(apps: Sequence[tuple[Any, socket.socket]], *, log_level: str) -> None:
    servers = [
        (_Server(uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=2)), sock)
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
    parser.add_argument("--bank-port", type=int, default=8000, help="bank (issuer) port (default 8000)")
    parser.add_argument("--shop-port", type=int, default=8001, help="shop (merchant) port (default 8001)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the bank keeps its database (default: a temporary directory, removed on exit)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    if args.bank_port == args.shop_port:
        parser.error("--bank-port and --shop-port must differ")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bank_origin = f"http://localhost:{args.bank_port}"
    shop_origin = f"http://merchant.localhost:{args.shop_port}"
    with contextlib.ExitStack() as cleanup:
        bank_socket = cleanup.enter_context(listen(args.host, args.bank_port))
        shop_socket = cleanup.enter_context(listen(args.host, args.shop_port))
        if args.data_dir is None:
            data_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="spc-embed-demo-")))
        else:
            data_dir = args.data_dir
            data_dir.mkdir(parents=True, exist_ok=True)
        bank = create_bank(origin=bank_origin, shop_origin=shop_origin, data_dir=data_dir,
                           demo_secrets=DemoSecrets.generate())
        shop = create_shop(origin=shop_origin, bank_origin=bank_origin, enrollment_url=bank.enrollment_url)
        print(
            "spc-embed demo\n"
            f"  Bank (issuer, rpId \"{bank.issuer.config.rp_id}\"):  {bank_origin}/\n"
            f"  Shop (merchant):                   {shop_origin}/\n"
            f"  Checkout with enrolment:           {shop_origin}/checkout\n"
            f"  Bank database:                     {data_dir / 'bank.db'}"
            f"{'' if args.data_dir else '  (temporary, removed on exit)'}\n"
            "\n"
            "  DEMO ONLY: the bank's token secret, its result-signing key (EC P-256) and the shop's\n"
            "  API key were generated just now and exist only in this process's memory. A real\n"
            "  issuer configures its own secret_keys and signing_keys (see the README).\n"
            "\n"
            "Open the checkout in Chrome or Chromium. Press Ctrl+C to stop.",
            flush=True,
        )
        asyncio.run(serve([(bank.app, bank_socket), (shop, shop_socket)], log_level=args.log_level))
    return 0


if __name__ == "__main__":
    sys.exit(main())
