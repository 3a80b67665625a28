"""The web layer's own ASGI middleware: the same headers as the Starlette pieces they stand in for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from spc_embed.web import BrowserCORS, DefaultHeaders

ALLOWED = frozenset({"https://merchant.test", "https://shop.test:8443"})


def run(app: Any, request_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response headers ``app`` sends for a POST with ``request_headers``."""
    sent: list[Message] = []
    scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": request_headers}

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return list(sent[0]["headers"])


def answering(status: int, headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        # A fresh list each time: the middleware under test may change it in place.
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


REQUESTS = {
    "no origin": [(b"content-type", b"application/json")],
    "allowed origin": [(b"origin", b"https://merchant.test")],
    "other allowed origin": [(b"origin", b"https://shop.test:8443")],
    "unlisted origin": [(b"origin", b"https://evil.test")],
    "null origin": [(b"origin", b"null")],
    "origin with a path": [(b"origin", b"https://merchant.test/")],
    "two origins, the first allowed": [(b"origin", b"https://merchant.test"), (b"origin", b"https://evil.test")],
    "two origins, the first unlisted": [(b"origin", b"https://evil.test"), (b"origin", b"https://merchant.test")],
    "latin-1 origin": [(b"origin", "https://m\u00e9rchant.test".encode("latin-1"))],
}
RESPONSES = {
    "json": [(b"content-length", b"2"), (b"content-type", b"application/json")],
    "with vary": [(b"content-type", b"application/json"), (b"vary", b"Accept-Language")],
    "two varys": [(b"vary", b"Accept-Language"), (b"content-type", b"application/json"), (b"vary", b"Cookie")],
    "cors headers already": [(b"access-control-allow-origin", b"https://x.test"),
                             (b"access-control-expose-headers", b"X-A"), (b"access-control-expose-headers", b"X-B")],
    "none": [],
}


@pytest.mark.parametrize("request_name", REQUESTS)
@pytest.mark.parametrize("response_name", RESPONSES)
def test_browser_cors_sends_what_starlettes_cors_middleware_sends(request_name: str, response_name: str) -> None:
    inner = answering(200, RESPONSES[response_name])
    starlette = CORSMiddleware(inner, allow_origins=ALLOWED, allow_methods=("POST",), allow_headers=("Content-Type",),
                               expose_headers=("Retry-After",), max_age=600)
    ours = BrowserCORS(inner, allow_origins=ALLOWED)

    expected = run(starlette, REQUESTS[request_name])
    got = run(ours, REQUESTS[request_name])

    assert sorted(got) == sorted(expected)
    # And what that means, stated plainly for the main cases:
    if request_name == "allowed origin":
        assert (b"access-control-allow-origin", b"https://merchant.test") in got
    if request_name in ("unlisted origin", "null origin", "no origin") and response_name != "cors headers already":
        assert not any(name == b"access-control-allow-origin" for name, _ in got)
    assert any(name == b"vary" and b"Origin" in value for name, value in got)


@pytest.mark.parametrize("response_headers, expected", [
    ([], [(b"content-security-policy", b"frame-ancestors 'none'"), (b"x-content-type-options", b"nosniff")]),
    # A route that allowed framing keeps its own policy; a header spelled in capitals still counts.
    ([(b"Content-Security-Policy", b"frame-ancestors https://merchant.test")],
     [(b"Content-Security-Policy", b"frame-ancestors https://merchant.test"), (b"x-content-type-options", b"nosniff")]),
    ([(b"x-content-type-options", b"nosniff"), (b"content-type", b"text/html")],
     [(b"x-content-type-options", b"nosniff"), (b"content-type", b"text/html"),
      (b"content-security-policy", b"frame-ancestors 'none'")]),
])
def test_default_headers_are_added_only_where_missing(response_headers: list[tuple[bytes, bytes]],
                                                      expected: list[tuple[bytes, bytes]]) -> None:
    assert run(DefaultHeaders(answering(200, response_headers)), []) == expected


def test_default_headers_take_a_tuple_of_headers() -> None:
    # ASGI allows any iterable of pairs; the middleware must not assume a list.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": ((b"vary", b"Origin"),)})
        await send({"type": "http.response.body", "body": b""})

    assert run(DefaultHeaders(app), [])[0] == (b"vary", b"Origin")
    starlette = CORSMiddleware(app, allow_origins=ALLOWED, allow_methods=("POST",), expose_headers=("Retry-After",))
    request = [(b"origin", b"https://merchant.test")]
    assert run(BrowserCORS(app, allow_origins=ALLOWED), request) == run(starlette, request)
