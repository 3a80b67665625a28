"""Strict decoders for the three encodings WebAuthn puts on the wire.

Lenient decoding is how two parties come to disagree about one message: a
challenge that decodes with stray characters, JSON whose second ``"type"``
wins, CBOR with bytes after the end. Everything here refuses such input
(docs/security.md P1-P3) and raises :class:`InvalidRequest`.

JSON numbers with a fraction or an exponent parse as :class:`JSONNumber`, a
float that keeps its text as written: ``100.10`` and ``100.1`` are one value
but not one spelling, and an amount shown to a cardholder is a spelling.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

import cbor2
import orjson

from .errors import InvalidRequest
from .text import quoted


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# The last character of a length 2 or 3 (mod 4) carries 4 or 2 bits past the data: they must be zero.
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
# base64url's two letters to standard base64's, and "+", "/" and "=" to "!", which strict decoding refuses.
_TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")


def b64url_decode(value: object, *, field: str = "value") -> bytes:
    """Decode unpadded base64url, accepting only its one canonical spelling.

    py_webauthn's decoder accepts padding, ``+``/``/`` and non-zero trailing
    bits. The alphabet without ``=`` refuses the first two, and a spare bit set
    in the last character the third: what is left re-encodes to itself.
    """
    if not isinstance(value, str) or len(value) % 4 == 1:
        raise InvalidRequest(f"{field} is not unpadded base64url")
    try:
        # Strict mode refuses every byte outside the standard alphabet, so also the "!" of "+", "/" and "=".
        decoded = binascii.a2b_base64(value.encode("ascii").translate(_TO_STANDARD) + b"=" * (-len(value) % 4),
                                      strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise InvalidRequest(f"{field} is not unpadded base64url") from exc
    last = _CANONICAL_LAST.get(len(value) % 4)
    if last is not None and value[-1] not in last:
        raise InvalidRequest(f"{field} is not canonical base64url")
    return decoded


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)  # built in C; only a duplicate makes it shorter
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidRequest(f"duplicate JSON key {quoted(key)}")
            seen.add(key)
    return result


def _reject_constant(name: str) -> NoReturn:
    raise InvalidRequest(f"JSON constant {name} is not allowed")


class JSONNumber(float):
    """A JSON number as parsed: its value as a float, and ``text``, the number exactly as written.

    Everything that takes a float takes it (``json.dumps`` writes the float's
    shortest spelling); only code that asks for ``text`` sees the original.
    """

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> JSONNumber:
        number = super().__new__(cls, text)
        if not math.isfinite(number):  # 1e400: JSON has no infinity, and a double cannot hold it
            raise InvalidRequest(f"JSON number {text[:32]} is too large for a double")
        number.text = text
        return number


def _parse_int(text: str) -> int | JSONNumber:
    # "-0" is the one integer whose text is not str(int(text)); as IEEE -0 it keeps its sign and spelling.
    return JSONNumber(text) if text == "-0" else int(text)


# Built once: json.loads and json.dumps with options build a new decoder or encoder on every call.
_STRICT_DECODER = json.JSONDecoder(
    object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant, parse_float=JSONNumber,
    parse_int=_parse_int,
)
_COMPACT_ENCODER = json.JSONEncoder(separators=(",", ":"))


def compact_json(value: Any) -> str:
    """Compact JSON text of ``value``, written by orjson (several times faster than the standard library).

    What orjson does not take (a :class:`JSONNumber`, an integer past 64 bits,
    a lone surrogate, a non-string key) the standard library writes, as
    ``json.dumps(value, separators=(",", ":"))`` would.
    """
    try:
        return orjson.dumps(value).decode("utf-8")
    except TypeError:
        return _COMPACT_ENCODER.encode(value)


def loads_json(data: bytes | str, *, field: str = "JSON") -> Any:
    """Parse JSON refusing invalid UTF-8, duplicate keys, NaN, Infinity and numbers beyond a double.

    Non-integer numbers (and ``-0``) come back as :class:`JSONNumber`.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"{field} is not valid UTF-8") from exc
    try:
        if data.startswith("\ufeff"):  # as json.loads: a byte order mark is not JSON
            raise InvalidRequest(f"{field} is not valid JSON")
        return _STRICT_DECODER.decode(data)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, InvalidRequest):
            raise
        raise InvalidRequest(f"{field} is not valid JSON") from exc


class _NoTags(Mapping[int, Any]):
    """A semantic-decoder table that claims every tag, so each one is refused.

    WebAuthn structures never use CBOR tags; cbor2 would otherwise turn a
    bignum tag into an int where an int is expected (docs/security.md P3).
    """

    def __getitem__(self, tag: int) -> Any:
        return _reject_tag

    def __contains__(self, tag: object) -> bool:
        return True

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _reject_tag(*args: Any) -> NoReturn:
    raise ValueError("CBOR tags are not allowed")


# WebAuthn nests at most a few levels (attestation object > attStmt > x5c).
_MAX_CBOR_DEPTH = 16


def decode_cbor_prefix(data: bytes, *, field: str = "CBOR") -> tuple[Any, int]:
    """Decode one strict CBOR item from the start of ``data``; return it and its length.

    Authenticator data concatenates CBOR items with no length prefix, so the
    caller needs the exact number of bytes consumed (never a re-encoded length).
    """
    stream = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(
        stream,
        semantic_decoders=_NoTags(),
        tag_hook=_reject_tag,
        max_depth=_MAX_CBOR_DEPTH,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        read_size=1,
    )
    try:
        value = decoder.decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise InvalidRequest(f"{field} is not valid CBOR") from exc
    return value, stream.tell()


def loads_cbor(data: bytes, *, field: str = "CBOR") -> Any:
    """Decode exactly one strict CBOR item; trailing bytes are an error."""
    value, used = decode_cbor_prefix(data, field=field)
    if used != len(data):
        raise InvalidRequest(f"{field} has {len(data) - used} trailing bytes")
    return value
