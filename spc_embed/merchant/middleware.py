"""Merchant-side ASGI middleware for embedding the issuer's SPC iframe.

On HTML responses it delegates the SPC features to the issuer in the
``Permissions-Policy`` header (docs/security.md W2) and can inject the issuer's
widget script before ``</head>`` without buffering the page.

Put it inside any compression middleware (``middleware=[Middleware(GZipMiddleware),
Middleware(SPCMerchantMiddleware, ...)]``): compressed bodies are left alone.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping, Sequence

from markupsafe import escape
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..origins import url_origin
from .permissions_policy import (
    DEFAULT_FEATURES,
    PermissionsPolicyParseError,
    delegate_features,
    validate_origins,
)

logger = logging.getLogger("spc_embed.merchant")

DEFAULT_MAX_SCAN_BYTES = 64 * 1024

# `</head` or `</body` plus a character that can end the tag name, so that
# `</header>` is not mistaken for the head close.
_MARKER = re.compile(rb"</(?:head|body)[\t\n\f\r />]", re.IGNORECASE)
_MARKER_PREFIXES = (b"</head", b"</body")
_MARKER_PREFIX_LEN = 6
_ATTR_NAME = re.compile(r"[a-z][a-z0-9_.:-]*\Z")
_NO_BODY_STATUSES = frozenset({204, 304})

# Per-response states of _Injector.
_AWAIT_START, _PASS, _STREAM, _HOLD = range(4)


class SPCMerchantMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        issuer_origins: Sequence[str],
        features: Iterable[str] = DEFAULT_FEATURES,
        override_disabled_payment: bool = False,
        script_url: str | None = None,
        script_attrs: Mapping[str, str | bool] | None = None,
        max_scan_bytes: int = DEFAULT_MAX_SCAN_BYTES,
    ) -> None:
        if script_attrs and script_url is None:
            raise ValueError("script_attrs was given without a script_url")
        if max_scan_bytes < 1:
            raise ValueError(f"max_scan_bytes must be positive, got {max_scan_bytes}")
        self.app = app
        self.issuer_origins = validate_origins(issuer_origins)
        self.features = tuple(features)
        # Applies to every delegated feature, not only `payment`.
        self.override_disabled = override_disabled_payment
        # Most pages send no policy of their own: that header is computed once.
        self.default_policy = delegate_features(None, self.issuer_origins, features=self.features).header
        self.default_policy_raw = (b"permissions-policy", self.default_policy.encode("latin-1"))
        self.snippet: bytes | None = None
        if script_url is not None:
            self.snippet = script_tag(script_url, script_attrs or {})
        self.max_scan_bytes = max_scan_bytes
        # An app sends few distinct policies: merge each once, which also makes
        # the warnings below fire once per distinct header value.
        self._merged_policy = functools.lru_cache(maxsize=256)(self._merge_policy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif self.snippet is None or scope["method"] == "HEAD":
            # HEAD still gets the policy header; it has no body to inject into.
            await self.app(scope, receive, self._policy_sender(send))
        else:
            await self.app(scope, receive, _Injector(self, send, self.snippet).send)

    def _policy_sender(self, send: Send) -> Send:
        # Headers only, the common case: a closure rather than a per-response
        # object, and one comparison per body message.
        delegate = self.delegate

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                delegate(message)
            await send(message)

        return send_with_policy

    def delegate(self, start: Message) -> dict[bytes, bytes] | None:
        """Put the policy on an HTML response's start message; return its headers, or None if left alone."""
        status = start["status"]
        if status < 200 or status in _NO_BODY_STATUSES:
            return None
        raw = start.get("headers", ())
        if type(raw) is not list:
            raw = list(raw)  # any iterable of pairs, per ASGI
        # ASGI header names are lowercase. Of repeated names the last wins here,
        # which is all the checks below need.
        headers = dict(raw)
        if not _is_html(headers.get(b"content-type")):
            return None
        if b"permissions-policy" not in headers:
            # A new list: the app may send the same Response object again.
            start["headers"] = [*raw, self.default_policy_raw]
            return headers
        start["headers"] = raw
        mutable = MutableHeaders(scope=start)
        # Several header lines form one comma-joined field (RFC 9110 §5.3).
        merged = self._merged_policy(", ".join(mutable.getlist("permissions-policy")))
        if merged is not None:
            mutable["Permissions-Policy"] = merged
        return headers

    def _merge_policy(self, existing: str) -> str | None:
        try:
            merged = delegate_features(
                existing,
                self.issuer_origins,
                features=self.features,
                override_disabled=self.override_disabled,
            )
        except PermissionsPolicyParseError as exc:
            # Browsers ignore an unparseable header as a whole; rewriting it would
            # silently drop whatever the app meant, so leave it for the app to fix.
            logger.warning("Leaving the app's Permissions-Policy unchanged: %s", exc)
            return None
        if merged.left_disabled:
            logger.warning(
                "The app's Permissions-Policy %r disables %s, so the issuer iframe cannot "
                "use it; pass override_disabled_payment=True to delegate it anyway",
                existing,
                ", ".join(merged.left_disabled),
            )
        return merged.header


def script_tag(script_url: str, attrs: Mapping[str, str | bool]) -> bytes:
    """The ``<script type="module">`` tag to inject, HTML-escaped and ASCII-only."""
    # A same-origin path, or an https (local http) URL: never javascript: or data:.
    if not (script_url.startswith("/") and not script_url.startswith("//")):
        url_origin(script_url)
    parts = [f'<script type="module" src="{escape(script_url)}"']
    for name, value in attrs.items():
        if not _ATTR_NAME.match(name) or name in ("src", "type"):
            raise ValueError(f"{name!r} cannot be used as a script attribute")
        if value is True:
            parts.append(f" {name}")
        elif value is not False:
            parts.append(f' {name}="{escape(value)}"')
    tag = "".join(parts) + "></script>"
    # ASCII reads the same in any ASCII-compatible page encoding.
    if not tag.isascii():
        raise ValueError(f"The script tag must be ASCII, got {tag!r}")
    return tag.encode("ascii")


@functools.lru_cache(maxsize=64)
def _is_html(content_type: bytes | None) -> bool:
    # Cached: an app sends a handful of distinct Content-Type values.
    return content_type is not None and content_type.partition(b";")[0].strip().lower() == b"text/html"


def _is_encoded(content_encoding: bytes) -> bool:
    return content_encoding.strip().lower() not in (b"", b"identity")


def _set_header(start: Message, name: bytes, value: bytes) -> None:
    # The start message's headers are a list of our own by now (see delegate()).
    headers = start["headers"]
    index = 0
    for key, _ in headers:
        if key == name:
            headers[index] = (name, value)
        index += 1


def _partial_marker_len(data: bytes) -> int:
    """Length of the tail of ``data`` that the next chunk could complete into a marker."""
    tail = data[-_MARKER_PREFIX_LEN:].lower()
    start = tail.find(b"<")
    while start != -1:
        if any(prefix.startswith(tail[start:]) for prefix in _MARKER_PREFIXES):
            return len(tail) - start
        start = tail.find(b"<", start + 1)
    return 0


def _insert(data: bytes, at: int, snippet: bytes) -> bytes:
    # Join memoryview slices: one copy of the page instead of two.
    with memoryview(data) as view:
        return b"".join((view[:at], snippet, view[at:]))


class _Injector:
    """State of one response whose body may be rewritten, so that the middleware instance holds none."""

    __slots__ = ("middleware", "downstream", "snippet", "state", "start", "content_length", "pending")

    def __init__(self, middleware: SPCMerchantMiddleware, downstream: Send, snippet: bytes) -> None:
        self.middleware = middleware
        self.downstream = downstream
        self.snippet = snippet
        self.state = _AWAIT_START
        # _STREAM: the tail that may start a marker; _HOLD: the body held back so far.
        self.pending = b""
        # `start` (the held http.response.start) and `content_length` are set by hold().

    async def send(self, message: Message) -> None:
        if self.state == _PASS:
            await self.downstream(message)
        elif message["type"] == "http.response.start":
            if not self.hold(message):
                await self.downstream(message)
        elif message["type"] != "http.response.body":
            # pathsend, trailers, extensions: nothing we can rewrite.
            await self.release()
            await self.downstream(message)
        elif self.state == _HOLD:
            await self.on_held_body(message)
        else:
            await self.on_streamed_body(message)

    def hold(self, message: Message) -> bool:
        """Prepare to rewrite the body; True if the start message is held back until the marker is found."""
        self.state = _PASS
        headers = self.middleware.delegate(message)
        if headers is None:
            return False
        encoding = headers.get(b"content-encoding")
        # 206 carries a byte range of the page: inserting bytes would corrupt it.
        if message["status"] == 206 or (encoding is not None and _is_encoded(encoding)):
            return False
        length = headers.get(b"content-length")
        etag = headers.get(b"etag")
        if length is None:
            # Chunked: send headers now and scan the chunks as they stream past.
            self.state = _STREAM
        elif length.isdigit():
            # The new Content-Length depends on finding the marker: hold the
            # headers until it is found or max_scan_bytes have gone by.
            self.state = _HOLD
            self.start = message
            self.content_length = int(length)
        else:
            return False
        if etag is not None and not etag.startswith(b"W/"):
            # The page may change: a strong ETag would let If-Range splice byte ranges
            # of the unmodified page into the modified one (nginx's sub_filter does the same).
            _set_header(message, b"etag", b"W/" + etag)
        return self.state == _HOLD

    async def on_streamed_body(self, message: Message) -> None:
        data = self.pending + message.get("body", b"") if self.pending else message.get("body", b"")
        self.pending = b""
        match = _MARKER.search(data)
        if match is not None:
            data = _insert(data, match.start(), self.snippet)
            self.state = _PASS
        elif message.get("more_body", False):
            keep = _partial_marker_len(data)
            if keep:
                data, self.pending = data[:-keep], data[-keep:]
        else:
            self.state = _PASS
        message["body"] = data
        await self.downstream(message)

    async def on_held_body(self, message: Message) -> None:
        pending = self.pending
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        if pending:
            data = pending + body
            # Rescan the held tail: a marker may straddle the previous chunk.
            match = _MARKER.search(data, max(0, len(pending) - _MARKER_PREFIX_LEN))
        else:
            data = body
            match = _MARKER.search(data)
        start = self.start
        if match is not None:
            snippet = self.snippet
            at = match.start()
            # One copy of the page: the tail goes in as a memoryview slice.
            data = b"".join((data[:at], snippet, memoryview(data)[at:]))
            _set_header(start, b"content-length", b"%d" % (self.content_length + len(snippet)))
        elif more_body and len(data) < self.middleware.max_scan_bytes:
            self.pending = data
            return
        # Found, or past the head area / end of body: send the page unchanged from here on.
        self.pending = b""
        self.state = _PASS
        await self.downstream(start)
        message["body"] = data
        await self.downstream(message)

    async def release(self) -> None:
        """Send what is held back, unchanged, and stop rewriting."""
        if self.state == _HOLD:
            await self.downstream(self.start)
            if self.pending:
                await self.downstream({"type": "http.response.body", "body": self.pending, "more_body": True})
        elif self.state == _STREAM:
            if self.pending:
                await self.downstream({"type": "http.response.body", "body": self.pending, "more_body": True})
        else:
            return  # still waiting for http.response.start: keep its policy work to do
        self.pending = b""
        self.state = _PASS
