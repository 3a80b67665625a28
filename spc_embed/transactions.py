"""What a merchant asks the issuer to confirm: the transaction data, its hash, its states.

``transaction_data`` (the body member of ``POST /transaction/initialize``) is a
JSON object with these members; every other member is free-form and kept:

``amount`` (required)
    A decimal string in the one canonical spelling this library accepts,
    ``^(0|[1-9][0-9]*)(\\.[0-9]{1,4})?$``: no sign, no exponent, no leading
    zeros, no spaces, at most :data:`MAX_FRACTION_DIGITS` fraction digits (the
    most any ISO 4217 currency has). Numbers (``123.45``) are refused: a float
    has no single decimal spelling.
``currency`` (required)
    An ISO 4217 code in upper case, ``^[A-Z]{3}$``.
``payee_name`` / ``payee_origin`` (at least one)
    What the browser shows as the payee. ``payee_origin`` is an ``https``
    origin exactly as a browser serializes it (lower case, no default port,
    no path), because the browser signs its serialization.
``merchant_origin`` (optional)
    The page origin that will call SPC (one of the tenant's configured
    origins); required when the tenant has more than one origin.
``payment_entities_logos`` (optional)
    A list of ``{"url", "label"}`` logos of the payment entities involved.

**Amount comparison (docs/security.md S5).** No normalisation is applied: the
canonical spelling is the only one accepted, initialize hands that exact
string to the merchant page as ``total.value``, and the browser signs the
string it was given. Two amounts are equal when they are equal as
:class:`~decimal.Decimal` *and* have the same scale (``Decimal.as_tuple()``),
which for canonical strings is the same as string equality. So ``"100"`` and
``"100.00"`` are different amounts here: the page did not show the user the
value the issuer recorded, and a verifier that accepted any spelling would be
a verifier that accepted what it had not issued. ``"1e2"`` and ``"-1"`` are not
canonical and are refused outright.

**Canonical JSON and the hash.** The transaction hash is SHA-256 over the
RFC 8785 (JCS) serialization of ``transaction_data`` exactly as the merchant
sent it, encoded as unpadded base64url. For the values accepted here (strings,
booleans, null, integers of at most 2**53-1 in magnitude, arrays and objects;
no floats) JCS is: members sorted by the UTF-16 code units of their names, no
whitespace, strings UTF-8 with only ``"``, ``\\`` and control characters
escaped. A merchant can recompute it with any JCS library.

**States** move forward only: ``pending`` to ``succeeded`` (a verified
assertion), ``failed`` (the user opted out) or ``expired`` (its TTL passed).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeGuard
from urllib.parse import urlsplit

from .encoding import b64url_encode
from .errors import InvalidRequest
from .text import quoted, storable_text

MAX_FRACTION_DIGITS = 4
MAX_INTEGER_DIGITS = 15
AMOUNT_PATTERN = re.compile(rf"(0|[1-9][0-9]{{0,{MAX_INTEGER_DIGITS - 1}}})(\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?")
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")
MAX_TRANSACTION_ID_LENGTH = 128  # as the Hanko Passkey API
MAX_USER_ID_LENGTH = 255
MAX_TEXT_LENGTH = 255
MAX_LOGOS = 8
MAX_DEPTH = 8
MAX_CANONICAL_BYTES = 16 * 1024
MAX_SAFE_INTEGER = 2**53 - 1

RESERVED_FIELDS = frozenset({
    "amount", "currency", "payee_name", "payee_origin", "merchant_origin", "payment_entities_logos",
})

PENDING, SUCCEEDED, FAILED, EXPIRED = "pending", "succeeded", "failed", "expired"
STATES = (PENDING, SUCCEEDED, FAILED, EXPIRED)
FINAL_STATES = frozenset({SUCCEEDED, FAILED, EXPIRED})
METHOD_SPC, METHOD_FALLBACK = "spc", "fallback"
METHOD_PASSKEY = "passkey"  # a first-party page's webauthn.get: the browser showed no amount


def can_transition(current: str, new: str) -> bool:
    """States only move forward: from pending to one final state, never back."""
    return current == PENDING and new in FINAL_STATES


def _invalid(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_transaction_data")


def is_canonical_amount(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and AMOUNT_PATTERN.fullmatch(value) is not None


def amounts_equal(a: str, b: str) -> bool:
    """Equal value *and* scale, both canonical (see the module docstring: "100" != "100.00")."""
    if not (is_canonical_amount(a) and is_canonical_amount(b)):
        return False
    return Decimal(a).as_tuple() == Decimal(b).as_tuple()


def is_payee_origin(value: object) -> bool:
    """An https origin spelled as the browser serializes it (SPC: payeeOrigin must be https)."""
    if not isinstance(value, str) or value != value.lower() or len(value) > MAX_TEXT_LENGTH:
        return False
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https" and bool(parts.hostname) and port != 443
        and not (parts.path or parts.query or parts.fragment or parts.username or parts.password)
        and value == f"https://{parts.netloc}"
    )


def is_image_url(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 * 1024 and value.startswith(("https://", "data:image/"))


@dataclass(frozen=True)
class PaymentEntityLogo:
    url: str
    label: str

    def to_json(self) -> dict[str, str]:
        return {"url": self.url, "label": self.label}


@dataclass(frozen=True)
class TransactionData:
    """Validated ``transaction_data``; ``raw`` is the object as sent, which is what gets hashed."""

    amount: str
    currency: str
    payee_name: str | None
    payee_origin: str | None
    merchant_origin: str | None
    logos: tuple[PaymentEntityLogo, ...]
    raw: Mapping[str, Any]
    hash: str  # of ``raw``: base64url SHA-256 of its RFC 8785 JSON


def _optional_text(data: Mapping[str, Any], key: str) -> str | None:
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT_LENGTH:
        raise _invalid(f"transaction_data.{key} must be a non-empty string of at most {MAX_TEXT_LENGTH} characters")
    # What the browser shows as the payee: no control characters (H2).
    return storable_text(value, field=f"transaction_data.{key}", max_length=MAX_TEXT_LENGTH)


def _logos(value: object) -> tuple[PaymentEntityLogo, ...]:
    if not isinstance(value, list) or len(value) > MAX_LOGOS:
        raise _invalid(f"transaction_data.payment_entities_logos must be a list of at most {MAX_LOGOS} logos")
    logos = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"url", "label"} or not is_image_url(item["url"]) \
                or not isinstance(item["label"], str) or not item["label"] or len(item["label"]) > MAX_TEXT_LENGTH:
            raise _invalid('each payment entity logo must be {"url": https:// or data:image/ URL, "label": text}')
        storable_text(item["label"], field="transaction_data.payment_entities_logos label", max_length=MAX_TEXT_LENGTH)
        logos.append(PaymentEntityLogo(url=item["url"], label=item["label"]))
    return tuple(logos)


def parse_transaction_data(data: object) -> TransactionData:
    """Validate ``transaction_data`` (see the module docstring); raise InvalidRequest on the first problem."""
    if not isinstance(data, dict):
        raise _invalid("transaction_data must be a JSON object")
    # Refuses floats, deep nesting, oversize data and lone surrogates early; hashed once, here.
    digest = b64url_encode(hashlib.sha256(canonical_json(data)).digest())
    amount = data.get("amount")
    if not is_canonical_amount(amount):
        raise _invalid(
            f"transaction_data.amount {quoted(amount)} must be a decimal string such as \"100.00\": digits, an optional "
            f"point and 1 to {MAX_FRACTION_DIGITS} fraction digits, no sign, exponent or leading zeros"
        )
    currency = data.get("currency")
    if not isinstance(currency, str) or not CURRENCY_PATTERN.fullmatch(currency):
        raise _invalid(f"transaction_data.currency {quoted(currency)} must be an upper-case ISO 4217 code such as \"EUR\"")
    payee_name = _optional_text(data, "payee_name")
    payee_origin = _optional_text(data, "payee_origin")
    if payee_name is None and payee_origin is None:
        raise _invalid("transaction_data needs payee_name, payee_origin or both")
    if payee_origin is not None and not is_payee_origin(payee_origin):
        raise _invalid(f"transaction_data.payee_origin {quoted(payee_origin)} must be an https origin such as "
                       "\"https://shop.example\" (lower case, no path, no default port)")
    merchant_origin = _optional_text(data, "merchant_origin")
    logos = _logos(data["payment_entities_logos"]) if "payment_entities_logos" in data else ()
    return TransactionData(
        amount=amount, currency=currency, payee_name=payee_name, payee_origin=payee_origin,
        merchant_origin=merchant_origin, logos=logos, raw=data, hash=digest,
    )


def resolve_merchant_origin(data: TransactionData, tenant_origins: tuple[str, ...]) -> str:
    """The page origin that will call SPC: the one named, or the tenant's only origin."""
    if data.merchant_origin is not None:
        if data.merchant_origin not in tenant_origins:
            raise _invalid(f"transaction_data.merchant_origin {quoted(data.merchant_origin)} is not an origin of this "
                           f"merchant, expected one of {list(tenant_origins)}")
        return data.merchant_origin
    if len(tenant_origins) != 1:
        raise _invalid(f"this merchant has several origins: name the calling page in transaction_data.merchant_origin "
                       f"(one of {list(tenant_origins)})")
    return tenant_origins[0]


def validate_identifier(value: object, *, field: str, max_length: int) -> str:
    """An identifier from a request (user, transaction, card): non-empty, bounded and storable (H2)."""
    return storable_text(value, field=field, max_length=max_length)


# Canonical JSON (RFC 8785 for the JSON subset accepted here).


def _check_value(value: Any, depth: int) -> bool:
    """Refuse what canonical JSON here cannot hold; True when every key sorts alike in code points and UTF-16."""
    if depth > MAX_DEPTH:
        raise _invalid(f"transaction_data nests deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise _invalid(f"integer {quoted(value)} in transaction_data is outside ±(2**53-1); send it as a string")
        return True
    if isinstance(value, float):
        raise _invalid("transaction_data must not contain non-integer numbers; send amounts as strings such as \"12.30\"")
    if isinstance(value, list):
        return all([_check_value(item, depth + 1) for item in value])
    if isinstance(value, dict):
        plain = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise _invalid("transaction_data object keys must be strings")
            # Code point and UTF-16 order differ only between U+E000-U+FFFF and astral characters.
            plain = _check_value(item, depth + 1) and plain and (not key or max(key) < "\ue000")
        return plain
    raise _invalid(f"transaction_data holds a {type(value).__name__}, which is not JSON")


def _jcs(value: Any) -> str:
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-16-be"))
        return "{" + ",".join(_jcs(k) + ":" + _jcs(v) for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_jcs(v) for v in value) + "]"
    # json.dumps matches ECMAScript JSON.stringify for str/int/bool/None with ensure_ascii=False.
    return json.dumps(value, ensure_ascii=False)


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """RFC 8785 serialization of ``data`` (integers, strings, booleans, null, arrays, objects)."""
    plain = _check_value(data, 0)
    try:
        # The C encoder with sorted keys is RFC 8785 for this subset when keys sort alike (about 10x faster).
        text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")) if plain else _jcs(data)
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a "\ud800" escape (H2)
        raise InvalidRequest("transaction_data contains a lone UTF-16 surrogate, which cannot be stored",
                             code="invalid_text") from exc
    if len(encoded) > MAX_CANONICAL_BYTES:
        raise _invalid(f"transaction_data is larger than {MAX_CANONICAL_BYTES} bytes")
    return encoded


def transaction_hash(data: Mapping[str, Any]) -> str:
    """Unpadded base64url SHA-256 of the canonical JSON of ``data``."""
    return b64url_encode(hashlib.sha256(canonical_json(data)).digest())
