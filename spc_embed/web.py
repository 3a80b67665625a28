"""The thin adapter between Starlette and the core: the context, errors, bodies, origins, CORS.

One error boundary turns every refusal into ``{"code", "message"}`` with the
right status, and anything unexpected into a logged 500 without a traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Collection
from typing import Any

import orjson
from starlette import responses
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api_keys import presented_key
from .context import IssuerContext
from .encoding import loads_json
from .errors import Forbidden, InvalidRequest, PayloadTooLarge, SPCEmbedError, StorageUnavailable, UnsupportedMediaType
from .text import quoted, storable_text

logger = logging.getLogger("spc_embed")

JSON_HEADERS = {"Cache-Control": "no-store"}


class JSONResponse(responses.JSONResponse):
    """Starlette's JSONResponse (compact UTF-8 JSON), written by orjson.

    What orjson does not take (see :func:`~spc_embed.encoding.compact_json`)
    Starlette's own way writes, with its encoder built once.
    """

    _encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    def render(self, content: Any) -> bytes:
        try:
            return orjson.dumps(content)
        except TypeError:
            return self._encoder.encode(content).encode("utf-8")


def error_response(exc: SPCEmbedError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(exc.to_json(), status_code=exc.status, headers={**JSON_HEADERS, **(headers or {})})


async def handle_library_error(request: Request, exc: SPCEmbedError) -> Response:
    # The reason goes to the log; the body says only what the client may know.
    logger.info("refused %s %s: %s (%s)", request.method, request.url.path, exc.code, exc)
    return error_response(exc)


async def handle_storage_unavailable(request: Request, exc: StorageUnavailable) -> Response:
    # A handled exception, not a 500: Starlette's ServerErrorMiddleware would re-raise that and the
    # server would close the keep-alive connection. Not logged per request: the store reports the outage.
    logger.debug("storage unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(exc, headers=retry_after(exc))


def retry_after(exc: StorageUnavailable) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}


async def handle_http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    codes = {404: "not_found", 405: "method_not_allowed"}
    body = {"code": codes.get(status, "http_error"), "message": str(getattr(exc, "detail", "error"))}
    # Keep the exception's own headers: the router's 405 carries the Allow that RFC 9110 requires.
    headers = {**(getattr(exc, "headers", None) or {}), **JSON_HEADERS}
    if status == 405:
        headers["Allow"] = allowed_methods(request)
    return JSONResponse(body, status_code=status, headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method the path answers to. Starlette's router names only the first route that matched the path,
    and this app serves some paths with one route per method (a POST and its CORS preflight)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def handle_unexpected_error(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"code": "internal_error", "message": "internal error"}, status_code=500,
                        headers=JSON_HEADERS)


EXCEPTION_HANDLERS = {
    StorageUnavailable: handle_storage_unavailable,
    SPCEmbedError: handle_library_error,
    HTTPException: handle_http_error,
    Exception: handle_unexpected_error,
}


def issuer_context(request: Request) -> IssuerContext:
    """The issuer's context. ``request.app`` is the issuer's own app even when it is mounted in a host:
    Starlette sets ``scope["app"]`` to each application a request passes through, the innermost last."""
    context: IssuerContext = request.app.state.spc
    return context


def app_url(request: Request, name: str, **path_params: Any) -> str:
    """The public URL of one of the issuer app's routes: configured origin, mount path, route path.

    Not ``request.url_for``: that takes the scheme and host from the request,
    which behind a proxy (or on another name) is not the issuer's origin, and
    looks the name up in the host's router, where the issuer's route names
    are not.
    """
    return _app_url(request.app, name, tuple(sorted(path_params.items())))


@functools.lru_cache(maxsize=256)
def _app_url(app: Any, name: str, path_params: tuple[tuple[str, Any], ...]) -> str:
    # Routes do not change once built: look each URL up once (Starlette's lookup is tens of µs).
    context: IssuerContext = app.state.spc
    return context.url(app.url_path_for(name, **dict(path_params)))


def raw_header(scope: Scope, name: bytes) -> bytes | None:
    """The first ``name`` header (lower case) of a request's scope, as sent, found without building a
    ``Headers`` object and a ``KeyError`` per missing header (the payment path asks several)."""
    return next((value for key, value in scope["headers"] if key == name), None)


def header(request: Request, name: bytes) -> str | None:
    """:func:`raw_header` as text, as ``request.headers.get`` gives it."""
    value = raw_header(request.scope, name)
    return None if value is None else value.decode("latin-1")


def presented_api_key(request: Request) -> str | None:
    return presented_key(header(request, b"apikey"), header(request, b"authorization"))


async def read_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, within the configured size limit."""
    return json_object(await read_json(request, max_bytes=issuer_context(request).config.max_body_bytes))


async def read_json(request: Request, *, max_bytes: int) -> Any:
    """Read a JSON body strictly, refusing it as soon as it passes ``max_bytes``."""
    content_type = (header(request, b"content-type") or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise UnsupportedMediaType("the request body must be application/json")
    declared = header(request, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return loads_json(b"".join(chunks), field="request body")


def json_object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return value


def require_string(body: dict[str, Any], key: str, *, max_length: int = 4096) -> str:
    return storable_text(body.get(key), field=repr(key), max_length=max_length)


def require_origin(request: Request, allowed: Collection[str]) -> str:
    """CSRF defence for browser POSTs (docs/security.md W6): the Origin must be allowlisted."""
    origin = header(request, b"origin")
    if origin is None or origin == "null" or origin not in allowed:
        raise Forbidden(f"requests from origin {quoted(origin)} are not accepted here", code="origin_not_allowed")
    return origin


def browser_cors(allowed: Collection[str]) -> list[Middleware]:
    """CORS for a browser-facing endpoint's answers (docs/security.md W4): exact allowlisted origins only.

    No credentials are ever allowed (the assertion is the credential), and
    ``Vary: Origin`` keeps caches from serving one origin's answer to another.
    Put on a ``Route``, it wraps the route's own exception handling, so errors
    carry the headers too and the merchant page can read them. ``allowed``
    holds serialized origins only (``IssuerConfig`` refuses ``*`` and ``null``).
    """
    return [Middleware(BrowserCORS, allow_origins=frozenset(allowed))]


class BrowserCORS:
    """The answer headers Starlette's ``CORSMiddleware`` sends for these settings (allowed origins, no
    credentials, ``Retry-After`` exposed), written straight into the header list: on the payment path
    its per-request ``Headers`` objects cost more than the rest of the middleware stack (docs/benchmarks.md).
    Preflights are :func:`preflight`'s. tests/test_web.py compares the two for every case.
    """

    def __init__(self, app: ASGIApp, allow_origins: frozenset[str]) -> None:
        self.app = app
        self.allow_origins = allow_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = raw_header(scope, b"origin")
        allowed = origin is not None and origin.decode("latin-1") in self.allow_origins

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message["headers"] = list(message.get("headers", ()))
                if origin is not None:
                    _set_header(headers, b"access-control-expose-headers", b"Retry-After")
                    if allowed:
                        _set_header(headers, b"access-control-allow-origin", origin)
                vary = b", ".join([value for name, value in headers if name == b"vary"] + [b"Origin"])
                _set_header(headers, b"vary", vary)
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _set_header(headers: list[tuple[bytes, bytes]], name: bytes, value: bytes) -> None:
    """Set ``name`` (lower case) to ``value``, in place of the first of its kind, dropping the others."""
    found = [i for i, (key, _) in enumerate(headers) if key == name]
    for i in reversed(found[1:]):
        del headers[i]
    if found:
        headers[found[0]] = (name, value)
    else:
        headers.append((name, value))


async def preflight(request: Request) -> Response:
    """The CORS preflight of a browser-facing endpoint (docs/security.md W4).

    Written by hand, not left to CORSMiddleware: that answers an unlisted
    origin 400 and an allowed one 200 with the CORS-safelisted headers and a
    longer Vary, where this API answers 204 to both (documented in the OpenAPI
    description), allows exactly ``Content-Type`` (an API key never comes from
    a browser) and varies on Origin only. An unlisted origin (and ``null``)
    gets only ``Vary``.
    """
    headers = {"Vary": "Origin"}
    origin = header(request, b"origin")
    if origin and origin != "null" and origin in issuer_context(request).config.merchant_origins:
        headers.update({
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "600",
        })
    return Response(status_code=204, headers=headers)


_DEFAULT_HEADERS = ((b"content-security-policy", b"frame-ancestors 'none'"), (b"x-content-type-options", b"nosniff"))


class DefaultHeaders:
    """Pure ASGI middleware: issuer responses refuse framing unless a route allowed it (W1)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_defaults(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message["headers"] = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                for name, value in _DEFAULT_HEADERS:
                    if name not in names:
                        headers.append((name, value))
            await send(message)

        await self.app(scope, receive, send_with_defaults)


class WidgetFiles:
    """Static widget files, loadable as ES modules from the merchants' pages.

    A cross-origin ``<script type="module">`` needs CORS; only configured
    merchant origins get it (no credentials are involved).
    """

    def __init__(self, app: ASGIApp, merchant_origins: Collection[str]) -> None:
        self.app = app
        self.merchant_origins = frozenset(merchant_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = (raw_header(scope, b"origin") or b"").decode("latin-1")  # "" is no merchant's

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Vary"] = "Origin"
                headers["Cross-Origin-Resource-Policy"] = "cross-origin"
                if origin in self.merchant_origins:
                    headers["Access-Control-Allow-Origin"] = origin
            await send(message)

        await self.app(scope, receive, send_with_cors)
