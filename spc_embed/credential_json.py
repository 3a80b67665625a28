"""The envelope that RegistrationResponseJSON and AuthenticationResponseJSON share.

Both are what ``PublicKeyCredential.toJSON()`` gives: ``id``, ``rawId``,
``type`` and a ``response`` object with base64url members, all read
strictly (docs/security.md P1, P2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .encoding import b64url_decode
from .errors import InvalidRequest
from .text import quoted


def invalid_credential(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_credential")


def b64_member(container: Mapping[str, Any], key: str, field: str) -> bytes:
    try:
        return b64url_decode(container.get(key), field=field)
    except InvalidRequest as exc:
        raise invalid_credential(exc.message) from exc


def read_envelope(credential: object) -> tuple[bytes, dict[str, Any]]:
    """Return the credential's rawId bytes and its ``response`` object."""
    if not isinstance(credential, dict):
        raise invalid_credential("credential must be a JSON object")
    raw_id = b64_member(credential, "rawId", "rawId")
    # Both are canonical base64url, so equal text means equal bytes.
    if credential.get("id") != credential["rawId"]:
        raise invalid_credential("credential id must equal rawId")
    if credential.get("type") != "public-key":
        raise invalid_credential(f"credential type {quoted(credential.get('type'))}, expected 'public-key'")
    response = credential.get("response")
    if not isinstance(response, dict):
        raise invalid_credential("credential response must be a JSON object")
    return raw_id, response
