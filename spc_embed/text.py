"""The one place where text from a request becomes text the issuer stores, signs or quotes.

JSON lets a client send what no database column holds: a lone UTF-16
surrogate (``"\\ud800"``) cannot be encoded as UTF-8 at all, and PostgreSQL
refuses NUL in text. Such a value must be refused with a 400 before it
reaches the database, a signer or an error message, never discovered there
as a 500 (docs/security.md H2). :func:`storable_text` is that check for every
identifier, token, handle and name; :func:`quoted` is how an error message
shows a value it was given, so the message itself never fails to build (H3).
"""

from __future__ import annotations

import re

from .errors import InvalidRequest

# C0 controls (NUL among them), DEL, C1 controls, and UTF-16 surrogates, which
# in a Python string from JSON are always lone (a valid pair decodes to one
# character). None of them belongs in an identifier or a name shown to a user.
_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

QUOTE_LIMIT = 64


def _describe(character: str) -> str:
    code = ord(character)
    if 0xD800 <= code <= 0xDFFF:
        return f"U+{code:04X} (a lone UTF-16 surrogate)"
    if code == 0:
        return "U+0000 (NUL)"
    return f"U+{code:04X} (a control character)"


def storable_text(value: object, *, field: str, max_length: int, allow_empty: bool = False) -> str:
    """``value`` if it is a string the issuer can store, sign and show; InvalidRequest (400) otherwise.

    Wrong type, empty (or blank) and too long are ``invalid_request``; a
    character no backend can store is ``invalid_text``. Messages name the
    field and the code point, never the text itself.
    """
    if not isinstance(value, str) or len(value) > max_length or (not allow_empty and not value.strip()):
        requirement = "a string" if allow_empty else "a non-empty string"
        raise InvalidRequest(f"{field} must be {requirement} of at most {max_length} characters")
    found = _UNSTORABLE.search(value)
    if found is not None:
        raise InvalidRequest(
            f"{field} contains {_describe(found.group())} at index {found.start()}, which cannot be stored",
            code="invalid_text",
        )
    return value


def is_storable(value: str) -> bool:
    return _UNSTORABLE.search(value) is None


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """A value for an error message: repr-quoted (escapes surrogates and controls) and at most ``limit`` long."""
    if isinstance(value, str):
        text = repr(value[:limit])
        return text + "…" if len(value) > limit else text
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<an integer of {value.bit_length()} bits>"  # repr of a huge int is slow, or refused
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
