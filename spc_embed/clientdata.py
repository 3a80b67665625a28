"""Strict parsing and checking of clientDataJSON (WebAuthn L3 §5.8.1).

py_webauthn's parser drops ``topOrigin`` and ``payment`` and decodes the
challenge leniently, so this module reads the client data itself: once into a
frozen :class:`ClientData` (malformed input is :class:`InvalidRequest`), then
against what the ceremony expects (the C.type ... C.topOrigin steps of §7.1 and §7.2), where
each failure raises the caller's :class:`VerificationError` subclass with a
stable ``code``; values the client sent are
quoted with :func:`~spc_embed.text.quoted`. docs/security.md R1-R4, A3, A4, P1, P2, H3.
"""

from __future__ import annotations

import hmac
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .encoding import b64url_decode, loads_json
from .errors import InvalidRequest, VerificationError
from .text import quoted

# Policy: challenges are at least 16 random bytes (WebAuthn L3 §13.4.3 asks for 16).
MIN_CHALLENGE_BYTES = 16


@dataclass(frozen=True)
class ClientData:
    type: str
    challenge: str  # exactly as sent: canonical base64url text
    origin: str
    cross_origin: bool | None
    top_origin: str | None
    payment: dict[str, Any] | None  # SPC's CollectedClientPaymentData, unvalidated inside
    raw: bytes


def _malformed(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_client_data")


def parse_client_data(raw: bytes) -> ClientData:
    """Parse clientDataJSON bytes strictly; unknown extra keys are allowed (§5.8.1.2)."""
    if not isinstance(raw, bytes):
        raise _malformed("clientDataJSON must be bytes")
    try:
        data = loads_json(raw, field="clientDataJSON")
    except InvalidRequest as exc:
        raise _malformed(exc.message) from exc
    if not isinstance(data, dict):
        raise _malformed("clientDataJSON must be a JSON object")
    for name in ("type", "challenge", "origin"):
        if not isinstance(data.get(name), str):
            raise _malformed(f"clientDataJSON.{name} must be a string")
    try:
        challenge_bytes = b64url_decode(data["challenge"], field="clientDataJSON.challenge")
    except InvalidRequest as exc:
        raise _malformed(exc.message) from exc
    if len(challenge_bytes) < MIN_CHALLENGE_BYTES:
        raise _malformed(
            f"clientDataJSON.challenge has {len(challenge_bytes)} bytes, expected at least {MIN_CHALLENGE_BYTES}"
        )
    cross_origin = data.get("crossOrigin")
    if "crossOrigin" in data and not isinstance(cross_origin, bool):
        raise _malformed("clientDataJSON.crossOrigin must be a JSON boolean")
    top_origin = data.get("topOrigin")
    if "topOrigin" in data and not isinstance(top_origin, str):
        raise _malformed("clientDataJSON.topOrigin must be a string")
    payment = data.get("payment")
    if "payment" in data and not isinstance(payment, dict):
        raise _malformed("clientDataJSON.payment must be a JSON object")
    return ClientData(
        type=data["type"], challenge=data["challenge"], origin=data["origin"],
        cross_origin=cross_origin, top_origin=top_origin, payment=payment, raw=raw,
    )


def _require_collection(name: str, value: object) -> None:
    # A bare string is a Collection[str] too, and `in` would then match substrings.
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a collection of origins, not {type(value).__name__}")


def check_client_data(
    cd: ClientData,
    *,
    expected_type: str,
    expected_challenge: str,
    expected_origins: Collection[str],
    allowed_top_origins: Collection[str] | None,
    error: type[VerificationError],
) -> None:
    """Check type, challenge, origin and the crossOrigin/topOrigin pair; raise ``error`` on the first mismatch.

    ``allowed_top_origins=None`` refuses every cross-origin ceremony.
    """
    _require_collection("expected_origins", expected_origins)
    if allowed_top_origins is not None:
        _require_collection("allowed_top_origins", allowed_top_origins)
    # §7.1/§7.2: verify C.type is the ceremony's type, exactly.
    if cd.type != expected_type:
        raise error(f"Unexpected clientDataJSON.type {quoted(cd.type)}, expected {expected_type!r}",
                    code="unexpected_type")
    # §7.1/§7.2: verify C.challenge; both are canonical base64url, so equal text is equal bytes.
    if not hmac.compare_digest(cd.challenge.encode(), expected_challenge.encode()):
        raise error(
            f"Unexpected clientDataJSON.challenge {quoted(cd.challenge)}, expected {expected_challenge!r}",
            code="challenge_mismatch",
        )
    # §7.1/§7.2: verify C.origin is an expected origin (exact string, no normalisation).
    if cd.origin not in expected_origins:
        raise error(
            f"Unexpected clientDataJSON.origin {quoted(cd.origin)}, expected one of {sorted(expected_origins)}",
            code="origin_mismatch",
        )
    if cd.cross_origin is True:
        # §7.1/§7.2: if C.crossOrigin is true, verify the RP expects to be framed.
        if allowed_top_origins is None:
            raise error(
                "clientDataJSON.crossOrigin is true, expected a same-origin ceremony", code="cross_origin_not_allowed"
            )
        # Policy: the top origin is required, so the embedding merchant is always checked.
        if cd.top_origin is None:
            raise error("clientDataJSON.crossOrigin is true but topOrigin is missing", code="top_origin_missing")
        # §7.1/§7.2: verify C.topOrigin is a page the RP expects to be framed by.
        if cd.top_origin not in allowed_top_origins:
            raise error(
                f"Unexpected clientDataJSON.topOrigin {quoted(cd.top_origin)}, "
                f"expected one of {sorted(allowed_top_origins)}",
                code="top_origin_mismatch",
            )
    elif cd.top_origin is not None:
        # §7.1/§7.2: if C.topOrigin is present, verify C.crossOrigin is true.
        raise error(
            f"clientDataJSON.topOrigin {quoted(cd.top_origin)} present with crossOrigin {cd.cross_origin}, "
            "expected true",
            code="top_origin_without_cross_origin",
        )
