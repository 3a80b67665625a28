from __future__ import annotations

import gzip
import logging
from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from spc_embed.merchant import SPCMerchantMiddleware

ISSUER = "https://issuer.test"
DELEGATED = f'(self "{ISSUER}")'
DEFAULT_POLICY = (
    f"payment={DELEGATED}, publickey-credentials-create={DELEGATED}, publickey-credentials-get={DELEGATED}"
)
SCRIPT = '<script type="module" src="https://issuer.test/spc/widget.js"></script>'
PAGE = "<!doctype html><html><head><title>Shop</title></head><body><p>Pay</p></body></html>"
INJECTED = PAGE.replace("</head>", SCRIPT + "</head>")


def client_for(endpoint: Any, methods: Sequence[str] = ("GET",), **options: Any) -> TestClient:
    options.setdefault("issuer_origins", [ISSUER])
    app = Starlette(
        routes=[Route("/", endpoint, methods=list(methods))],
        middleware=[Middleware(SPCMerchantMiddleware, **options)],
    )
    return TestClient(app)


def html(body: str = PAGE, headers: dict[str, str] | None = None, status: int = 200) -> Any:
    async def endpoint(request: Request) -> Response:
        return HTMLResponse(body, status_code=status, headers=headers)

    return endpoint


# --- Permissions-Policy -----------------------------------------------------


def test_html_page_gets_the_precomputed_policy() -> None:
    response = client_for(html()).get("/")
    assert response.headers["permissions-policy"] == DEFAULT_POLICY
    assert response.text == PAGE  # no script_url: the body is untouched


def test_existing_policy_is_merged() -> None:
    response = client_for(html(headers={"Permissions-Policy": 'camera=(), payment=(self "https://psp.test")'})).get("/")
    assert response.headers["permissions-policy"] == (
        f'camera=(), payment=(self "https://psp.test" "{ISSUER}"), '
        f"publickey-credentials-create={DELEGATED}, publickey-credentials-get={DELEGATED}"
    )


def test_several_policy_header_lines_are_merged_into_one() -> None:
    async def endpoint(request: Request) -> Response:
        response = HTMLResponse(PAGE)
        response.headers.append("Permissions-Policy", "camera=()")
        response.headers.append("Permissions-Policy", "payment=*")
        return response

    response = client_for(endpoint).get("/")
    assert response.headers.get_list("permissions-policy") == [
        f"camera=(), payment=*, publickey-credentials-create={DELEGATED}, publickey-credentials-get={DELEGATED}"
    ]


def test_disabled_payment_is_kept_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    client = client_for(html(headers={"Permissions-Policy": "payment=()"}))
    with caplog.at_level(logging.WARNING, logger="spc_embed.merchant"):
        first = client.get("/")
        second = client.get("/")
    for response in (first, second):
        assert response.headers["permissions-policy"].startswith("payment=(), ")
    warnings = [r for r in caplog.records if r.name == "spc_embed.merchant"]
    assert len(warnings) == 1
    assert "payment" in warnings[0].getMessage()
    assert warnings[0].levelno == logging.WARNING


def test_disabled_payment_is_delegated_when_overridden(caplog: pytest.LogCaptureFixture) -> None:
    client = client_for(html(headers={"Permissions-Policy": "payment=()"}), override_disabled_payment=True)
    with caplog.at_level(logging.WARNING, logger="spc_embed.merchant"):
        response = client.get("/")
    assert response.headers["permissions-policy"] == DEFAULT_POLICY
    assert not caplog.records


def test_unparseable_policy_is_left_as_sent_and_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    client = client_for(html(headers={"Permissions-Policy": "payment=(self"}))
    with caplog.at_level(logging.WARNING, logger="spc_embed.merchant"):
        response = client.get("/")
        client.get("/")
    assert response.headers["permissions-policy"] == "payment=(self"
    assert response.status_code == 200
    assert len(caplog.records) == 1
    assert "Unparseable" in caplog.records[0].getMessage()


def test_json_is_untouched() -> None:
    async def endpoint(request: Request) -> Response:
        return JSONResponse({"html": "</head>"})

    response = client_for(endpoint, script_url="https://issuer.test/spc/widget.js").get("/")
    assert "permissions-policy" not in response.headers
    assert response.json() == {"html": "</head>"}


@pytest.mark.parametrize("status", [204, 304])
def test_bodiless_statuses_are_untouched(status: int) -> None:
    async def endpoint(request: Request) -> Response:
        return Response(status_code=status, headers={"Content-Type": "text/html"})

    response = client_for(endpoint, script_url="/widget.js").get("/")
    assert response.status_code == status
    assert "permissions-policy" not in response.headers
    assert response.content == b""


def test_head_gets_the_policy_but_no_body_rewrite() -> None:
    response = client_for(html(), methods=("GET", "HEAD"), script_url="https://issuer.test/spc/widget.js").head("/")
    assert response.headers["permissions-policy"] == DEFAULT_POLICY
    assert response.headers["content-length"] == str(len(PAGE))
    assert response.content == b""


# --- Script injection ---------------------------------------------------------


def test_script_is_injected_before_head_close_with_corrected_length() -> None:
    response = client_for(html(), script_url="https://issuer.test/spc/widget.js").get("/")
    assert response.text == INJECTED
    assert response.headers["content-length"] == str(len(INJECTED))


def test_body_close_is_used_when_there_is_no_head_close() -> None:
    page = "<html><header>Shop</header><body><p>x</p></BODY></html>"
    response = client_for(html(page), script_url="/static/widget.js").get("/")
    assert response.text == page.replace("</BODY>", '<script type="module" src="/static/widget.js"></script></BODY>')
    assert response.headers["content-length"] == str(len(response.content))


def test_page_without_marker_is_unchanged() -> None:
    page = "<p>fragment</p>"
    response = client_for(html(page), script_url="/static/widget.js").get("/")
    assert response.text == page
    assert response.headers["content-length"] == str(len(page))


def test_script_attributes_are_escaped() -> None:
    client = client_for(
        html(),
        script_url='/w.js?a="1"&b=2',
        script_attrs={"integrity": 'sha384-"x"', "crossorigin": "anonymous", "async": True, "defer": False},
    )
    assert (
        '<script type="module" src="/w.js?a=&#34;1&#34;&amp;b=2" integrity="sha384-&#34;x&#34;" '
        'crossorigin="anonymous" async></script></head>'
    ) in client.get("/").text


def test_strong_etag_is_weakened_when_the_page_may_change() -> None:
    injected = client_for(html(headers={"ETag": '"v1"'}), script_url="/w.js").get("/")
    assert injected.headers["etag"] == 'W/"v1"'
    header_only = client_for(html(headers={"ETag": '"v1"'})).get("/")
    assert header_only.headers["etag"] == '"v1"'


def test_partial_content_is_not_injected() -> None:
    response = client_for(html(status=206), script_url="/w.js").get("/")
    assert response.text == PAGE


def test_gzip_compressed_page_is_untouched() -> None:
    page = PAGE.replace("<p>Pay</p>", "<p>Pay</p>" * 200)
    app = Starlette(
        routes=[Route("/", html(page))],
        middleware=[
            Middleware(SPCMerchantMiddleware, issuer_origins=[ISSUER], script_url="/w.js"),
            Middleware(GZipMiddleware),  # inner: the body reaches us compressed
        ],
    )
    raw: list[bytes] = []
    with TestClient(app).stream("GET", "/", headers={"Accept-Encoding": "gzip"}) as response:
        raw.extend(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["permissions-policy"] == DEFAULT_POLICY
    assert gzip.decompress(b"".join(raw)).decode() == page
    assert response.headers["content-length"] == str(len(b"".join(raw)))


def test_gzip_outside_compresses_the_injected_page() -> None:
    app = Starlette(
        routes=[Route("/", html(PAGE * 20))],
        middleware=[
            Middleware(GZipMiddleware),
            Middleware(SPCMerchantMiddleware, issuer_origins=[ISSUER], script_url="https://issuer.test/spc/widget.js"),
        ],
    )
    response = TestClient(app).get("/", headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"
    assert response.text.startswith(INJECTED)


# --- Streaming, driven through the raw ASGI interface ------------------------


def chunked_app(chunks: Sequence[bytes], events: list[Any], headers: list[tuple[bytes, bytes]]) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index, chunk in enumerate(chunks):
            events.append(("produce", index))
            await send({"type": "http.response.body", "body": chunk, "more_body": index < len(chunks) - 1})

    return app


async def drive(app: ASGIApp, events: list[Any], method: str = "GET") -> tuple[Message, bytes]:
    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        events.append(("send", message))

    scope = {"type": "http", "method": method, "path": "/", "headers": [], "query_string": b""}
    await app(scope, receive, send)
    sent = [m for kind, m in events if kind == "send"]
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0], body


def first_body_sent_before(events: list[Any], produced: int) -> bool:
    first_body = next(i for i, (kind, m) in enumerate(events) if kind == "send" and m["type"] == "http.response.body")
    return first_body < events.index(("produce", produced))


HTML_HEADERS = [(b"content-type", b"text/html; charset=utf-8")]
SPLIT_CHUNKS = [b"<html><head><title>x</title></he", b"ad><body>", b"x" * 1000, b"</body></html>"]
SPLIT_PAGE = b"".join(SPLIT_CHUNKS)


@pytest.mark.parametrize("split", range(1, 7))
async def test_streamed_marker_split_across_chunks_is_found(split: int) -> None:
    head_close = SPLIT_PAGE.index(b"</head>")
    at = head_close + split
    chunks = [SPLIT_PAGE[:at], SPLIT_PAGE[at:]]
    events: list[Any] = []
    app = SPCMerchantMiddleware(chunked_app(chunks, events, HTML_HEADERS), issuer_origins=[ISSUER], script_url="/w.js")
    start, body = await drive(app, events)
    assert body == SPLIT_PAGE.replace(b"</head>", b'<script type="module" src="/w.js"></script></head>')
    assert (b"permissions-policy", DEFAULT_POLICY.encode()) in start["headers"]


async def test_streamed_page_is_not_buffered_whole() -> None:
    events: list[Any] = []
    app = SPCMerchantMiddleware(
        chunked_app(SPLIT_CHUNKS, events, HTML_HEADERS), issuer_origins=[ISSUER], script_url="/w.js"
    )
    start, body = await drive(app, events)
    assert body == SPLIT_PAGE.replace(b"</head>", b'<script type="module" src="/w.js"></script></head>')
    assert "content-length" not in dict(start["headers"])
    # The page went out while the app was still producing it.
    assert first_body_sent_before(events, produced=len(SPLIT_CHUNKS) - 1)
    assert first_body_sent_before(events, produced=1)


async def test_streamed_page_without_marker_passes_through_unchanged() -> None:
    chunks = [b"<p>a</p><", b"/he", b"llo>", b"</headx>"]
    events: list[Any] = []
    app = SPCMerchantMiddleware(chunked_app(chunks, events, HTML_HEADERS), issuer_origins=[ISSUER], script_url="/w.js")
    _, body = await drive(app, events)
    assert body == b"".join(chunks)


async def test_content_length_page_in_chunks_gets_a_corrected_length() -> None:
    headers = [*HTML_HEADERS, (b"content-length", str(len(SPLIT_PAGE)).encode())]
    events: list[Any] = []
    app = SPCMerchantMiddleware(chunked_app(SPLIT_CHUNKS, events, headers), issuer_origins=[ISSUER], script_url="/w.js")
    start, body = await drive(app, events)
    assert body == SPLIT_PAGE.replace(b"</head>", b'<script type="module" src="/w.js"></script></head>')
    assert dict(start["headers"])[b"content-length"] == str(len(body)).encode()
    # Only the head area was held back, not the rest of the page.
    assert first_body_sent_before(events, produced=len(SPLIT_CHUNKS) - 1)


async def test_content_length_page_without_marker_is_released_after_the_scan_limit() -> None:
    chunks = [b"a" * 100] * 5
    headers = [*HTML_HEADERS, (b"content-length", b"500")]
    events: list[Any] = []
    app = SPCMerchantMiddleware(
        chunked_app(chunks, events, headers), issuer_origins=[ISSUER], script_url="/w.js", max_scan_bytes=150
    )
    start, body = await drive(app, events)
    assert body == b"a" * 500
    assert dict(start["headers"])[b"content-length"] == b"500"
    assert first_body_sent_before(events, produced=2)


@pytest.mark.parametrize(("encoding", "injected"), [(b"br", False), (b"GZIP", False), (b"identity", True)])
async def test_encoded_body_is_never_rewritten(encoding: bytes, injected: bool) -> None:
    # Compressed bytes can contain "</head>" by chance; inserting there would corrupt them.
    headers = [*HTML_HEADERS, (b"content-encoding", encoding)]
    events: list[Any] = []
    app = SPCMerchantMiddleware(chunked_app([PAGE.encode()], events, headers), issuer_origins=[ISSUER], script_url="/w.js")
    start, body = await drive(app, events)
    assert body == (INJECTED.replace(SCRIPT, '<script type="module" src="/w.js"></script>') if injected else PAGE).encode()
    assert (b"permissions-policy", DEFAULT_POLICY.encode()) in start["headers"]


async def test_malformed_content_length_is_passed_through_untouched() -> None:
    headers = [*HTML_HEADERS, (b"content-length", b"12abc")]
    events: list[Any] = []
    app = SPCMerchantMiddleware(chunked_app([PAGE.encode()], events, headers), issuer_origins=[ISSUER], script_url="/w.js")
    start, body = await drive(app, events)
    assert body == PAGE.encode()
    assert dict(start["headers"])[b"content-length"] == b"12abc"


async def test_messages_that_cannot_be_rewritten_release_the_held_start() -> None:
    events: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.early_hint", "links": []})
        headers = [*HTML_HEADERS, (b"content-length", b"100")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": "/srv/page.html"})

    middleware = SPCMerchantMiddleware(app, issuer_origins=[ISSUER], script_url="/w.js")
    await drive(middleware, events)
    assert [m["type"] for _, m in events] == [
        "http.response.early_hint", "http.response.start", "http.response.pathsend"
    ]
    start = events[1][1]
    assert dict(start["headers"])[b"content-length"] == b"100"
    assert dict(start["headers"])[b"permissions-policy"] == DEFAULT_POLICY.encode()


async def test_head_request_is_not_held_or_rewritten() -> None:
    headers = [*HTML_HEADERS, (b"content-length", b"10")]
    events: list[Any] = []
    app = SPCMerchantMiddleware(chunked_app([b""], events, headers), issuer_origins=[ISSUER], script_url="/w.js")
    start, body = await drive(app, events, method="HEAD")
    assert events[0] == ("send", start)  # sent before the app produced any body
    assert dict(start["headers"])[b"content-length"] == b"10"


# --- Other scopes and configuration -------------------------------------------


def test_websocket_and_lifespan_pass_through() -> None:
    seen: list[str] = []

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        seen.append("startup")
        yield
        seen.append("shutdown")

    app = Starlette(
        routes=[WebSocketRoute("/ws", echo)],
        middleware=[Middleware(SPCMerchantMiddleware, issuer_origins=[ISSUER], script_url="/w.js")],
        lifespan=lifespan,
    )
    with TestClient(app) as client:
        with client.websocket_connect("/ws") as websocket:
            websocket.send_text("</head>")
            assert websocket.receive_text() == "</head>"
    assert seen == ["startup", "shutdown"]


async def test_non_http_scopes_get_the_original_send() -> None:
    received: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        received.append(send)

    async def send(message: Message) -> None:
        pass

    async def receive() -> Message:
        return {}

    middleware = SPCMerchantMiddleware(app, issuer_origins=[ISSUER])
    await middleware({"type": "lifespan"}, receive, send)
    await middleware({"type": "websocket"}, receive, send)
    assert received == [send, send]


@pytest.mark.parametrize(
    "options",
    [
        {"issuer_origins": ["https://issuer.test/"]},
        {"issuer_origins": ["http://issuer.test"]},
        {"issuer_origins": []},
        {"issuer_origins": [ISSUER], "features": ["PAYMENT"]},
        {"issuer_origins": [ISSUER], "script_url": "javascript:alert(1)"},
        {"issuer_origins": [ISSUER], "script_url": "//evil.test/w.js"},
        {"issuer_origins": [ISSUER], "script_url": "/w.js", "script_attrs": {"src": "/x.js"}},
        {"issuer_origins": [ISSUER], "script_url": "/w.js", "script_attrs": {"a b": "c"}},
        {"issuer_origins": [ISSUER], "script_attrs": {"async": True}},
        {"issuer_origins": [ISSUER], "max_scan_bytes": 0},
    ],
)
def test_bad_configuration_raises_value_error_at_construction(options: dict[str, Any]) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:  # pragma: no cover
        pass

    with pytest.raises(ValueError):
        SPCMerchantMiddleware(app, **options)


def test_a_single_origin_string_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        SPCMerchantMiddleware(html(), issuer_origins=ISSUER)
