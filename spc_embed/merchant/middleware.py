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
_INSPECTED = frozenset({b"content-type", b"content-encoding", b"content-length", b"etag", b"permissions-policy"})

# Per-response states of _Responder.
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
            return
        # HEAD still gets the policy header; it has no body to inject into.
        snippet = None if scope["method"] == "HEAD" else self.snippet
        await self.app(scope, receive, _Responder(self, send, snippet).send)

    def apply_policy(self, headers: MutableHeaders, app_sent_policy: bool) -> None:
        if not app_sent_policy:
            headers.raw.append(self.default_policy_raw)
            return
        existing = headers.getlist("permissions-policy")
        # Several header lines form one comma-joined field (RFC 9110 §5.3).
        merged = self._merged_policy(", ".join(existing))
        if merged is not None:
            headers["Permissions-Policy"] = merged

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


def _is_html(content_type: bytes | None) -> bool:
    return content_type is not None and content_type.partition(b";")[0].strip().lower() == b"text/html"


def _is_encoded(content_encoding: bytes | None) -> bool:
    return content_encoding is not None and content_encoding.strip().lower() not in (b"", b"identity")


def _weaken_etag(headers: MutableHeaders, etag: bytes | None) -> None:
    # The page may change: a strong ETag would let If-Range splice byte ranges
    # of the unmodified page into the modified one (nginx's sub_filter does the same).
    if etag is not None and not etag.startswith(b"W/"):
        headers["etag"] = "W/" + etag.decode("latin-1")


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


class _Responder:
    """State of one response, so that the middleware instance holds none."""

    __slots__ = ("middleware", "downstream", "snippet", "state", "start", "content_length", "pending")

    def __init__(self, middleware: SPCMerchantMiddleware, downstream: Send, snippet: bytes | None) -> None:
        self.middleware = middleware
        self.downstream = downstream
        self.snippet = snippet
        self.state = _AWAIT_START
        self.start: Message = {}
        self.content_length = 0
        # _STREAM: the tail that may start a marker; _HOLD: the body held back so far.
        self.pending = b""

    async def send(self, message: Message) -> None:
        if self.state == _PASS:
            await self.downstream(message)
        elif message["type"] == "http.response.start":
            await self.on_start(message)
        elif message["type"] != "http.response.body":
            # pathsend, trailers, extensions: nothing we can rewrite.
            await self.release()
            await self.downstream(message)
        elif self.state == _STREAM:
            await self.on_streamed_body(message)
        else:
            await self.on_held_body(message)

    async def on_start(self, message: Message) -> None:
        self.state = _PASS
        status = message["status"]
        message.setdefault("headers", [])
        headers = MutableHeaders(scope=message)
        # One pass over the raw headers (ASGI names are lowercase): Headers.get()
        # raises and catches a KeyError for every absent name.
        seen = {name: value for name, value in headers.raw if name in _INSPECTED}
        if status < 200 or status in _NO_BODY_STATUSES or not _is_html(seen.get(b"content-type")):
            await self.downstream(message)
            return
        self.middleware.apply_policy(headers, app_sent_policy=b"permissions-policy" in seen)
        # 206 carries a byte range of the page: inserting bytes would corrupt it.
        if self.snippet is None or status == 206 or _is_encoded(seen.get(b"content-encoding")):
            await self.downstream(message)
            return
        length = seen.get(b"content-length")
        if length is not None and not length.isdigit():
            await self.downstream(message)
            return
        _weaken_etag(headers, seen.get(b"etag"))
        if length is None:
            # Chunked: send headers now and scan the chunks as they stream past.
            self.state = _STREAM
            await self.downstream(message)
        else:
            # The new Content-Length depends on finding the marker: hold the
            # headers until it is found or max_scan_bytes have gone by.
            self.state = _HOLD
            self.start = message
            self.content_length = int(length)

    async def on_streamed_body(self, message: Message) -> None:
        snippet = self.snippet or b""
        data = self.pending + message.get("body", b"") if self.pending else message.get("body", b"")
        self.pending = b""
        match = _MARKER.search(data)
        if match is not None:
            data = _insert(data, match.start(), snippet)
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
        snippet = self.snippet or b""
        # Rescan the held tail: a marker may straddle the previous chunk.
        resume = max(0, len(self.pending) - _MARKER_PREFIX_LEN)
        body = message.get("body", b"")
        data = self.pending + body if self.pending else body
        more_body = message.get("more_body", False)
        match = _MARKER.search(data, resume)
        if match is not None:
            data = _insert(data, match.start(), snippet)
            MutableHeaders(scope=self.start)["content-length"] = str(self.content_length + len(snippet))
        elif more_body and len(data) < self.middleware.max_scan_bytes:
            self.pending = data
            return
        # Found, or past the head area / end of body: send the page unchanged from here on.
        self.pending = b""
        self.state = _PASS
        await self.downstream(self.start)
        await self.downstream({"type": "http.response.body", "body": data, "more_body": more_body})

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
