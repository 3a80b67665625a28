"""What a merchant asks the issuer to confirm: the transaction data, its hash, its states.

``transaction_data`` (the body member of ``POST /transaction/initialize``) is a
JSON object with these members; every other member is free-form and kept:

``amount`` (required)
    A decimal string in the one canonical spelling this library accepts,
    ``^(0|[1-9][0-9]*)(\\.[0-9]{1,4})?$``: no sign, no exponent, no leading
    zeros, no spaces, at most :data:`MAX_FRACTION_DIGITS` fraction digits (the
    most any ISO 4217 currency has) and :data:`MAX_INTEGER_DIGITS` integer
    digits. Or a JSON number written the same way (``123.45``, as the Hanko
    Passkey API's examples send it): its *spelling* is its text exactly as it
    appears in the request body, so ``100.10`` is shown to the cardholder as
    ``100.10`` and ``100`` as ``100``. A number is refused when its text has an
    exponent (``1e2``), a sign (``-1``, also ``-0``), too many digits, or when an
    IEEE double (what the hash, and the merchant's JSON library, hold) cannot
    hold its value exactly enough to read back as the same decimal: with
    ``Decimal(text) != Decimal(repr(float(text)))`` the amount shown and the
    amount hashed would differ; such an amount must be sent as a string. A
    Python ``int`` or ``float`` passed in-process (no text) is spelled as
    ``str``/``repr`` spell it.
``currency`` (required unless the merchant has a ``default_currency``)
    An ISO 4217 code in upper case, ``^[A-Z]{3}$``. Left out, the merchant's
    :attr:`~spc_embed.config.Merchant.default_currency` is shown and signed.
``payee_name`` / ``payee_origin`` (optional when the merchant has a default payee)
    What the browser shows as the payee. ``payee_origin`` is an ``https``
    origin exactly as a browser serializes it (lower case, no default port,
    no path), because the browser signs its serialization. With neither, the
    payee shown is the merchant itself: its ``name`` and, when it has exactly
    one https origin, that origin (``http://localhost`` is not https and is
    never a payee origin). A merchant with neither needs one of the two sent.
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
canonical and are refused outright, as strings and as numbers.

**Defaults are shown, never written into the data.** A currency or payee
taken from the merchant's configuration goes into what the browser shows
(:class:`~spc_embed.payment.ExpectedPayment`), and so into what it signs; the
``transaction_data`` stored and hashed stays exactly as the merchant sent it.

**Canonical JSON and the hash.** The transaction hash is SHA-256 over the
RFC 8785 (JCS) serialization of ``transaction_data`` exactly as the merchant
sent it, encoded as unpadded base64url. Accepted values are strings, booleans,
null, integers of at most 2**53-1 in magnitude, finite non-integer numbers,
arrays and objects. JCS writes members sorted by the UTF-16 code units of
their names, no whitespace, strings UTF-8 with only ``"``, ``\\`` and control
characters escaped, and numbers as ECMAScript's ``Number::toString`` writes
the IEEE double they parse to (``100.10`` as ``100.1``, ``1E2`` as ``100``):
JCS hashes values, the amount's spelling is kept beside it. Data with a
non-integer number goes through the ``rfc8785`` package; data without (the
usual case) through ``orjson`` with sorted keys, which writes the same bytes for it. A
merchant can recompute the hash with any JCS library.

**States** move forward only: ``pending`` to ``succeeded`` (a verified
assertion), ``failed`` (the user opted out) or ``expired`` (its TTL passed).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeGuard
from urllib.parse import urlsplit

import orjson
import rfc8785

from .encoding import JSONNumber, b64url_encode
from .errors import InvalidRequest
from .image_urls import image_url_problem
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


def amount_spelling(value: object) -> str:
    """The amount as the cardholder is shown it: a canonical string as is, a number as written (module docstring)."""
    if isinstance(value, str):
        if not is_canonical_amount(value):
            raise _invalid(
                f"transaction_data.amount {quoted(value)} must be a decimal string such as \"100.00\": digits, an "
                f"optional point and 1 to {MAX_FRACTION_DIGITS} fraction digits, no sign, exponent or leading zeros"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _invalid(f"transaction_data.amount must be a decimal string such as \"100.00\" or a JSON number such "
                       f"as 100.00, not {_json_kind(value)}")
    return _number_spelling(value.text if isinstance(value, JSONNumber) else repr(value))


def _json_kind(value: object) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"


def _number_spelling(text: str) -> str:
    """``text`` of a JSON number amount, if it is one this library shows as written; else how to write it."""
    shown = text if len(text) <= 40 else text[:40] + "…"  # a number may be thousands of digits long
    if "e" in text or "E" in text:
        raise _invalid(f"transaction_data.amount {shown} has an exponent; write the digits out, such as 100 or 123.45")
    if text.startswith("-"):
        raise _invalid(f"transaction_data.amount {shown} has a sign; write an amount of 0 or more without one, "
                       "such as 123.45")
    whole, _, fraction = text.partition(".")
    if len(fraction) > MAX_FRACTION_DIGITS:
        raise _invalid(f"transaction_data.amount {shown} has {len(fraction)} fraction digits; no currency uses more "
                       f"than {MAX_FRACTION_DIGITS}: round it, such as 123.45")
    if len(whole) > MAX_INTEGER_DIGITS:
        raise _invalid(f"transaction_data.amount {shown} has more than {MAX_INTEGER_DIGITS} integer digits")
    if not is_canonical_amount(text):  # in-process floats: nan, inf
        raise _invalid(f"transaction_data.amount {shown} must be a number such as 123.45 or a string such as \"123.45\"")
    # The hash holds the IEEE double, the page shows the text: they must be one decimal (module docstring).
    if Decimal(text) != Decimal(repr(float(text))):
        raise _invalid(f"transaction_data.amount {text} has more digits than a JSON number (an IEEE double) holds "
                       f"exactly; send it as a string: \"{text}\"")
    return text


def amounts_equal(a: str, b: str) -> bool:
    """Equal value *and* scale, both canonical (see the module docstring: "100" != "100.00").

    A canonical amount (no leading zeros, no sign, no exponent) is the one
    spelling of its value and scale, so equal spellings are exactly that.
    """
    return is_canonical_amount(a) and is_canonical_amount(b) and a == b


def is_payee_origin(value: object) -> bool:
    """An https origin spelled as the browser serializes it (SPC: payeeOrigin must be https)."""
    return isinstance(value, str) and len(value) <= MAX_TEXT_LENGTH and _is_payee_origin(value)


@functools.lru_cache(maxsize=1024)
def _is_payee_origin(value: str) -> bool:
    # Cached (at most 1024 short strings): a merchant sends its few payee origins again and again,
    # and urlsplit is most of the check.
    if value != value.lower():
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


@dataclass(frozen=True)
class PaymentEntityLogo:
    url: str
    label: str

    def to_json(self) -> dict[str, str]:
        return {"url": self.url, "label": self.label}


@dataclass(frozen=True)
class TransactionData:
    """Validated ``transaction_data``; ``raw`` is the object as sent, which is what gets hashed.

    ``amount`` is the amount's spelling; ``currency`` and the payee are what the browser shows, the merchant's
    defaults where ``raw`` has none.
    """

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
        if not isinstance(item, dict) or set(item) != {"url", "label"} or not isinstance(item["url"], str) \
                or not isinstance(item["label"], str) or not item["label"] or len(item["label"]) > MAX_TEXT_LENGTH:
            raise _invalid('each payment entity logo must be {"url": https:// or data:image/ URL, "label": text}')
        problem = image_url_problem(item["url"])
        if problem is not None:
            raise _invalid(f"a payment entity logo's url {problem}")
        storable_text(item["label"], field="transaction_data.payment_entities_logos label", max_length=MAX_TEXT_LENGTH)
        logos.append(PaymentEntityLogo(url=item["url"], label=item["label"]))
    return tuple(logos)


def _currency(data: Mapping[str, Any], default: str | None) -> str:
    if "currency" not in data:
        if default is None:
            raise _invalid("transaction_data.currency is missing: send it (an upper-case ISO 4217 code such as "
                           "\"EUR\"), or configure this merchant's default_currency")
        return default
    currency = data["currency"]
    if not isinstance(currency, str) or not CURRENCY_PATTERN.fullmatch(currency):
        raise _invalid(f"transaction_data.currency {quoted(currency)} must be an upper-case ISO 4217 code such as \"EUR\"")
    return currency


def _payee(data: Mapping[str, Any], default: tuple[str | None, str | None]) -> tuple[str | None, str | None]:
    """The payee to show: the one sent, else the merchant's own (``default``); shown only, ``data`` stays as sent."""
    payee_name = _optional_text(data, "payee_name")
    payee_origin = _optional_text(data, "payee_origin")
    if payee_origin is not None and not is_payee_origin(payee_origin):
        raise _invalid(f"transaction_data.payee_origin {quoted(payee_origin)} must be an https origin such as "
                       "\"https://shop.example\" (lower case, no path, no default port)")
    if payee_name is None and payee_origin is None:
        payee_name, payee_origin = default
    if payee_name is None and payee_origin is None:
        raise _invalid("transaction_data needs payee_name, payee_origin or both: send them, or configure this "
                       "merchant's name (or a single https origin) so that the payee defaults to the merchant")
    return payee_name, payee_origin


def parse_transaction_data(data: object, *, default_currency: str | None = None,
                           default_payee: tuple[str | None, str | None] = (None, None)) -> TransactionData:
    """Validate ``transaction_data`` (see the module docstring); raise InvalidRequest on the first problem.

    ``default_currency`` and ``default_payee`` (name, origin) are the merchant's, shown where the data has none.
    """
    if not isinstance(data, dict):
        raise _invalid("transaction_data must be a JSON object")
    # Refuses non-finite numbers, deep nesting, oversize data and lone surrogates early; hashed once, here.
    digest = b64url_encode(hashlib.sha256(canonical_json(data)).digest())
    amount = amount_spelling(data.get("amount"))
    currency = _currency(data, default_currency)
    payee_name, payee_origin = _payee(data, default_payee)
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


# Canonical JSON (RFC 8785).


def _check_value(value: Any, depth: int) -> bool:
    """Refuse what canonical JSON cannot hold; True when orjson writes it as JCS does (no float, keys sort alike)."""
    if depth > MAX_DEPTH:
        raise _invalid(f"transaction_data nests deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise _invalid(f"integer {quoted(value)} in transaction_data is outside ±(2**53-1); send it as a string")
        return True
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _invalid(f"number {quoted(value)} in transaction_data is not finite, which JSON cannot hold")
        return False  # written as ECMAScript writes numbers (RFC 8785 §3.2.2.3), which orjson does not
    if isinstance(value, list):
        return all([_check_value(item, depth + 1) for item in value])
    if isinstance(value, dict):
        plain = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise _invalid("transaction_data object keys must be strings")
            # Code point and UTF-16 order differ only between U+E000-U+FFFF and astral characters.
            # A string member (most of them) needs no call of its own, short of the depth limit.
            plain = ((type(item) is str and depth < MAX_DEPTH) or _check_value(item, depth + 1)) and plain \
                and (not key or max(key) < "\ue000")
        return plain
    raise _invalid(f"transaction_data holds a {type(value).__name__}, which is not JSON")


def _lone_surrogate() -> InvalidRequest:  # from a "\ud800" escape (H2)
    return InvalidRequest("transaction_data contains a lone UTF-16 surrogate, which cannot be stored",
                          code="invalid_text")


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """RFC 8785 serialization of ``data``."""
    plain = _check_value(data, 0)
    try:
        # For data without floats whose keys sort alike, orjson with sorted keys writes JCS: the same
        # escapes (only '"', '\\' and control characters, as \b \t \n \f \r or lower-case \u00xx),
        # UTF-8, keys in code point order; tests/test_transactions.py checks it against rfc8785.
        if plain:
            encoded = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        else:
            encoded = rfc8785.dumps(data)
    except (UnicodeEncodeError, orjson.JSONEncodeError) as exc:
        # The one thing _check_value lets through that neither can write: a lone surrogate.
        raise _lone_surrogate() from exc
    except rfc8785.CanonicalizationError as exc:
        # _check_value has refused every other cause; rfc8785 wraps the encoding error.
        if isinstance(exc.__cause__, UnicodeEncodeError):
            raise _lone_surrogate() from exc
        raise _invalid(f"transaction_data cannot be canonicalized (RFC 8785): {exc}") from exc
    if len(encoded) > MAX_CANONICAL_BYTES:
        raise _invalid(f"transaction_data is larger than {MAX_CANONICAL_BYTES} bytes")
    return encoded


def transaction_hash(data: Mapping[str, Any]) -> str:
    """Unpadded base64url SHA-256 of the canonical JSON of ``data``."""
    return b64url_encode(hashlib.sha256(canonical_json(data)).digest())
