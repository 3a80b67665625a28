"""Security header values, as pure functions of the configuration.

The issuer iframe must be frameable by exactly the merchants allowed for it
(CSP ``frame-ancestors``; no ``X-Frame-Options``, which cannot express an
allowlist and would conflict) and must itself be allowed to use payment and
WebAuthn (``Permissions-Policy``). Every other issuer page refuses framing.
"""

from __future__ import annotations

from collections.abc import Iterable

FRAME_FEATURES = ("payment", "publickey-credentials-create", "publickey-credentials-get")


def frame_ancestors(origins: Iterable[str]) -> str:
    """``frame-ancestors`` for the given origins, ``'none'`` when there are none."""
    allowed = sorted(set(origins))
    return "frame-ancestors " + (" ".join(allowed) if allowed else "'none'")


def content_security_policy(*, frame_ancestor_origins: Iterable[str] = ()) -> str:
    """A strict CSP for issuer pages: own scripts and styles only, no inline code."""
    return "; ".join((
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        # The card art may be served from the issuer's CDN.
        "img-src 'self' https: data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        frame_ancestors(frame_ancestor_origins),
    ))


def frame_permissions_policy(features: Iterable[str] = FRAME_FEATURES) -> str:
    """Let the framed document itself use these features (the parent still has to delegate)."""
    return ", ".join(f"{feature}=(self)" for feature in features)


def page_headers(*, frame_ancestor_origins: Iterable[str] = ()) -> dict[str, str]:
    """Headers for an HTML page of the issuer; framable only by the given origins."""
    ancestors = tuple(frame_ancestor_origins)
    headers = {
        "Content-Security-Policy": content_security_policy(frame_ancestor_origins=ancestors),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }
    if ancestors:
        headers["Permissions-Policy"] = frame_permissions_policy()
    return headers
