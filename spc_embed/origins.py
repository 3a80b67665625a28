"""Serialized origins: the one spelling browsers use, so exact string comparison works.

Origins end up in CSP, Permissions-Policy and allowlists and are compared
as strings, so anything but a browser's own serialization (a path, a
default port, upper case, stray characters) would never match, or would
inject into a header.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

DEFAULT_PORTS = {"https": 443, "http": 80}
HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\Z")


def is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def url_origin(url: str) -> str:
    """Return the serialized origin of ``url``, which must be a secure-context URL.

    Policy: https only, except http on ``localhost`` and ``*.localhost``, which
    browsers treat as secure contexts (the plain-HTTP development setup).
    """
    if url != url.strip() or not url.isascii() or not url.isprintable():
        raise ValueError(
            f"{url!r} must be printable ASCII without surrounding whitespace "
            "(write international host names in their xn-- form)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL: {exc}") from exc
    host = parts.hostname or ""
    if parts.scheme not in DEFAULT_PORTS or not HOST_NAME.match(host):
        raise ValueError(f"{url!r} is not an absolute http(s) URL with a DNS host name")
    if parts.scheme == "http" and not is_localhost(host):
        raise ValueError(f"{url!r} must use https (http is only accepted for localhost and *.localhost)")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r} must not contain credentials")
    suffix = "" if port is None or port == DEFAULT_PORTS[parts.scheme] else f":{port}"
    return f"{parts.scheme}://{host}{suffix}"


def serialized_origin(value: str) -> str:
    """Return ``value`` if it is exactly a serialized origin, else raise ValueError."""
    origin = url_origin(value)
    if value != origin:
        raise ValueError(
            f"{value!r} is not a serialized origin (scheme://host[:port], lowercase, "
            f"no path and no default port); expected {origin!r}"
        )
    return value
