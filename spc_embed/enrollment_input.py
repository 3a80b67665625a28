"""What the issuer's back office sends to enrol a cardholder, checked field by field before anything is stored.

Two calls take these fields from JSON: ``POST /enrollment/links`` (the iframe
link) and ``POST /registration/initialize`` (the issuer's own page). Each
field is refused on its own with a 400, a stable code and a message naming
the field, never echoing the text (H2); the same rules as
:class:`~spc_embed.tokens.EnrollmentToken`, which raises ConfigurationError
for in-process callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest
from .i18n import is_locale_tag
from .image_urls import image_url_problem
from .text import quoted, storable_text
from .tokens import MAX_INSTRUMENT_ID_LENGTH
from .transactions import MAX_USER_ID_LENGTH

MAX_NAME_LENGTH = 255  # user names and the card's name, as EnrollmentToken
# Policy: an icon is a URL or a small data: image; the browser fetches and shows it beside the card.
MAX_ICON_LENGTH = 16 * 1024


def text_field(body: Mapping[str, Any], name: str, *, max_length: int = MAX_NAME_LENGTH) -> str:
    return storable_text(body.get(name), field=repr(name), max_length=max_length)


def user_id_field(body: Mapping[str, Any]) -> str:
    return text_field(body, "user_id", max_length=MAX_USER_ID_LENGTH)


def optional_text_field(body: Mapping[str, Any], name: str, *, max_length: int = MAX_NAME_LENGTH) -> str | None:
    return None if body.get(name) is None else text_field(body, name, max_length=max_length)


def icon_field(body: Mapping[str, Any], name: str, *, max_length: int = MAX_ICON_LENGTH) -> str:
    """An icon the browser can fetch from a secure context (https, http on localhost, or a data: image),
    spelled as the browser will sign it (:mod:`spc_embed.image_urls`)."""
    value = text_field(body, name, max_length=max_length)
    problem = image_url_problem(value, local_http=True)
    if problem is not None:
        raise InvalidRequest(f"{name!r} {problem}", code="invalid_icon")
    return value


def locale_field(body: Mapping[str, Any], name: str = "locale") -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not is_locale_tag(value):
        raise InvalidRequest(f"{name!r} must be a language tag such as \"de\" or \"fr-CH\", got {quoted(value)}",
                             code="invalid_locale")
    return str(value)


@dataclass(frozen=True)
class Card:
    """The card (SPC instrument) a credential confirms payments for (docs/security.md H6)."""

    instrument_id: str
    instrument_name: str
    instrument_icon: str


def optional_card_fields(body: Mapping[str, Any]) -> Card | None:
    """The card in ``body`` if it names one; a card is all of its fields or none (``instrument_id`` optional)."""
    if all(body.get(name) is None for name in ("instrument_id", "instrument_name", "instrument_icon")):
        return None
    return card_fields(body)


def card_fields(body: Mapping[str, Any]) -> Card:
    """``instrument_name``, ``instrument_icon`` and ``instrument_id``, which defaults to the name (as links do)."""
    name = text_field(body, "instrument_name")
    icon = icon_field(body, "instrument_icon")
    instrument_id = optional_text_field(body, "instrument_id", max_length=MAX_INSTRUMENT_ID_LENGTH)
    return Card(instrument_id=instrument_id or name, instrument_name=name, instrument_icon=icon)
