"""Throughput of SPCMerchantMiddleware on a 50 KB HTML page, through raw ASGI.

No network and no server: each request is a direct call of the ASGI app with a
hand-made scope and a send() that only counts bytes, so the numbers show the
middleware's own cost. Run: ``python bench/bench_middleware.py [iterations]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from spc_embed.merchant import SPCMerchantMiddleware

ISSUER = "https://issuer.test"
HEAD = b"<!doctype html><html><head><meta charset=utf-8><title>Shop</title></head><body>\n"
ROW = b'<div class="product"><h2>Item</h2><p>A fine thing to buy.</p><a href="/buy">Buy</a></div>\n'
PAGE = HEAD + ROW * ((50 * 1024 - len(HEAD)) // len(ROW)) + b"</body></html>\n"
CHUNK = 8 * 1024


async def page(request: Request) -> Response:
    return Response(PAGE, media_type="text/html")


async def page_with_policy(request: Request) -> Response:
    return Response(PAGE, media_type="text/html", headers={"Permissions-Policy": "camera=(), geolocation=(self)"})


async def streamed_page(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(PAGE), CHUNK):
            yield PAGE[start : start + CHUNK]

    return StreamingResponse(chunks(), media_type="text/html")


def build(endpoint: Any, **options: Any) -> ASGIApp:
    middleware = [Middleware(SPCMerchantMiddleware, issuer_origins=[ISSUER], **options)] if options else []
    return Starlette(routes=[Route("/", endpoint)], middleware=middleware)


SCOPE: dict[str, Any] = {
    "type": "http",
    # spec_version 2.4: StreamingResponse need not poll receive() for a disconnect.
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "https",
    "path": "/",
    "raw_path": b"/",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"merchant.test"), (b"accept", b"text/html")],
    "server": ("merchant.test", 443),
    "client": ("127.0.0.1", 50000),
}


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def run(app: ASGIApp, iterations: int) -> tuple[float, int]:
    received = 0

    async def send(message: Message) -> None:
        nonlocal received
        received += len(message.get("body", b""))

    started = time.perf_counter()
    for _ in range(iterations):
        await app(dict(SCOPE), receive, send)
    return time.perf_counter() - started, received // iterations


async def main(iterations: int, rounds: int = 7) -> None:
    script = {"script_url": "https://issuer.test/spc/widget.js"}
    cases: list[tuple[str, ASGIApp]] = [
        ("no middleware", build(page)),
        ("header only", build(page, override_disabled_payment=False)),
        ("header merge (app sent a policy)", build(page_with_policy, override_disabled_payment=False)),
        ("header + script injection", build(page, **script)),
        ("no middleware, streamed 8 KiB chunks", build(streamed_page)),
        ("header + injection, streamed", build(streamed_page, **script)),
    ]
    for _, app in cases:
        await run(app, 200)  # warm-up: lazily built middleware stacks, caches
    # Interleave the cases round by round and keep each one's best round, so a
    # burst of load on a shared machine does not land on one case only.
    best = {name: float("inf") for name, _ in cases}
    sizes: dict[str, int] = {}
    for _ in range(rounds):
        for name, app in cases:
            elapsed, sizes[name] = await run(app, iterations)
            best[name] = min(best[name], elapsed)
    print(f"page {len(PAGE)} bytes, {iterations} requests per round, best of {rounds} interleaved rounds")
    print(f"{'case':40} {'req/s':>9} {'us/req':>8} {'bytes':>7} {'vs baseline':>12}")
    baselines: dict[bool, float] = {}
    for name, _ in cases:
        per_request = best[name] / iterations * 1e6
        baseline = baselines.setdefault("streamed" in name, per_request)
        ratio = per_request / baseline
        extra = "" if name.startswith("no middleware") else f"  (+{per_request - baseline:.1f} us)"
        print(f"{name:40} {iterations / best[name]:9.0f} {per_request:8.1f} {sizes[name]:7d} {ratio:11.2f}x{extra}")

if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
