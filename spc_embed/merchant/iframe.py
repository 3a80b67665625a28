"""The merchant's ``<iframe>`` tag for the issuer's SPC page.

Its ``allow`` attribute must delegate the same features to the same origin as
the merchant's Permissions-Policy header (docs/security.md W2); without it the
browser refuses ``payment`` and WebAuthn inside the frame (docs/browser-testing.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import jinja2
from markupsafe import Markup, escape

from ..origins import serialized_origin, url_origin
from .permissions_policy import DEFAULT_FEATURES, validate_features


def issuer_iframe(
    src: str,
    *,
    issuer_origin: str | None = None,
    features: Iterable[str] = DEFAULT_FEATURES,
    title: str = "Card verification",
    width: str | int = "100%",
    height: str | int = "360",
    id: str | None = None,  # noqa: A002 - named after the HTML attribute
    css_class: str | None = None,
) -> Markup:
    """Render the issuer iframe with every attribute HTML-escaped.

    ``issuer_origin`` defaults to the origin of ``src``. There is never a
    ``sandbox`` attribute: a sandboxed frame has an opaque origin, and WebAuthn
    and SPC refuse to run there.
    """
    src_origin = url_origin(src)
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
