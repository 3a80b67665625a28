"""The merchant's ``<iframe>`` tag for the issuer's SPC page.

Its ``allow`` attribute must delegate the same features to the same origin as
the merchant's Permissions-Policy header (docs/security.md W2); without it the
browser refuses ``payment`` and WebAuthn inside the frame (docs/browser-testing.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal
from urllib.parse import urlsplit

import jinja2
from markupsafe import Markup, escape

from ..origins import serialized_origin, url_origin
from .permissions_policy import DEFAULT_FEATURES, validate_features

# What a screen reader's list of frames says for each purpose (pass ``title`` in your page's language).
TITLES = {
    "enrollment": "Set up faster checkout with your bank",
    "payment": "Confirm your payment with your bank",
}
# The issuer's frame paths (Issuer.enrollment_url, initialize's fallback_url) and what they are for.
_PURPOSE_OF_PATH = {"enroll": "enrollment", "pay": "payment"}


def issuer_iframe(
    src: str,
    *,
    issuer_origin: str | None = None,
    features: Iterable[str] = DEFAULT_FEATURES,
    purpose: Literal["enrollment", "payment"] | None = None,
    title: str | None = None,
    width: str | int = "100%",
    height: str | int = "360",
    id: str | None = None,  # noqa: A002 - named after the HTML attribute
    css_class: str | None = None,
) -> Markup:
    """Render the issuer iframe with every attribute HTML-escaped.

    ``issuer_origin`` defaults to the origin of ``src``. There is never a
    ``sandbox`` attribute: a sandboxed frame has an opaque origin, and WebAuthn
    and SPC refuse to run there. ``title`` names the frame for screen readers;
    by default it says what the frame is for (``purpose``, else read from the
    issuer's path: ``/enroll`` or ``/pay``). An empty title is refused.

    The frame reports its content's height; ``fitIssuerFrame(iframe)`` from
    ``spc-merchant.js`` sizes it to fit (``mountEnrollment``/``mountFallback`` do so themselves).
    """
    src_origin = url_origin(src)
    if title is None:
        purpose = purpose or _PURPOSE_OF_PATH.get(urlsplit(src).path.rstrip("/").rpartition("/")[2])  # type: ignore[assignment]
        if purpose not in TITLES:
            raise ValueError("say what this frame is for: purpose='enrollment' or 'payment', or a title")
        title = TITLES[purpose]
    if not isinstance(title, str) or not title.strip():
        raise ValueError("the iframe title must say what the frame is for; an empty title names nothing")
    origin = src_origin if issuer_origin is None else serialized_origin(issuer_origin)
    allow = "; ".join(f"{feature} {origin}" for feature in validate_features(features))
    attributes: list[tuple[str, str | int | None]] = [
        ("src", src),
        ("allow", allow),
        ("title", title),
        ("width", width),
        ("height", height),
        ("id", id),
        ("class", css_class),
    ]
    rendered = "".join(f' {name}="{escape(value)}"' for name, value in attributes if value is not None)
    return Markup(f"<iframe{rendered}></iframe>")


def install_jinja_globals(env: jinja2.Environment, name: str = "spc_iframe") -> None:
    """Make ``issuer_iframe`` callable from templates, e.g. ``templates.env``."""
    env.globals[name] = issuer_iframe
