"""Strict authenticator data (WebAuthn L3 §6.1), COSE public keys (§5.8.5) and signatures.

py_webauthn measures the credential public key by re-encoding it, so a key
sent in a non-canonical encoding shifts everything after it (docs/security.md P4);
it also accepts keys whose ``alg`` does not fit their type (R8) and raises bare
``KeyError`` for incomplete ones (P5). This module parses the bytes itself:
the key is measured by :func:`decode_cbor_prefix` and kept byte for byte.
Malformed input raises :class:`InvalidRequest`; failed checks raise the
caller's :class:`VerificationError` subclass.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .encoding import decode_cbor_prefix, loads_cbor
from .errors import InvalidRequest, VerificationError

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | Ed25519PublicKey

FLAG_UP, FLAG_UV, FLAG_BE, FLAG_BS, FLAG_AT, FLAG_ED = 0x01, 0x04, 0x08, 0x10, 0x40, 0x80
MAX_CREDENTIAL_ID_LENGTH = 1023  # §6.5.1: credentialIdLength "MUST be ≤ 1023"


@dataclass(frozen=True)
class AuthenticatorData:
    rp_id_hash: bytes
    up: bool
    uv: bool
    be: bool
    bs: bool
    at: bool
    ed: bool
    sign_count: int
    aaguid: bytes | None
    credential_id: bytes | None
    credential_public_key: bytes | None  # the exact bytes in authData, never re-encoded
    extensions: dict[Any, Any] | None
    raw: bytes


def _malformed(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_authenticator_data")


def _cbor_map_prefix(data: bytes, field: str) -> tuple[dict[Any, Any], int]:
    try:
        value, used = decode_cbor_prefix(data, field=field)
    except InvalidRequest as exc:
        raise _malformed(exc.message) from exc
    if not isinstance(value, dict):
        raise _malformed(f"{field} must be a CBOR map")
    return value, used


def parse_authenticator_data(raw: bytes) -> AuthenticatorData:
    """Parse authenticator data; every byte must belong to a field the flags announce."""
    if not isinstance(raw, bytes) or len(raw) < 37:
        raise _malformed("authenticator data must be at least 37 bytes")
    flags = raw[32]  # RFU bits 1 and 5 are ignored, as §6.1 leaves them to future use
    at, ed = bool(flags & FLAG_AT), bool(flags & FLAG_ED)
    aaguid = credential_id = public_key = extensions = None
    pos = 37
    if at:
        if len(raw) < pos + 18:
            raise _malformed("AT flag set but attested credential data is truncated")
        aaguid = raw[37:53]
        length = int.from_bytes(raw[53:55], "big")
        if length > MAX_CREDENTIAL_ID_LENGTH:
            raise InvalidRequest(
                f"credentialIdLength {length} exceeds {MAX_CREDENTIAL_ID_LENGTH}", code="credential_id_too_long"
            )
        pos = 55 + length
        if pos > len(raw):
            raise _malformed(f"credentialIdLength {length} runs past the end of authenticator data")
        credential_id = raw[55:pos]
        _, used = _cbor_map_prefix(raw[pos:], "credentialPublicKey")
        public_key = raw[pos:pos + used]
        pos += used
    if ed:
        if pos == len(raw):
            raise _malformed("ED flag set but there are no extension bytes")
        extensions, used = _cbor_map_prefix(raw[pos:], "extensions")
        pos += used
    if pos != len(raw):
        # Also catches extension bytes sent without the ED flag (docs/security.md A11).
        raise _malformed(f"authenticator data has {len(raw) - pos} trailing bytes")
    return AuthenticatorData(
        rp_id_hash=raw[:32], up=bool(flags & FLAG_UP), uv=bool(flags & FLAG_UV),
        be=bool(flags & FLAG_BE), bs=bool(flags & FLAG_BS), at=at, ed=ed,
        sign_count=int.from_bytes(raw[33:37], "big"), aaguid=aaguid, credential_id=credential_id,
        credential_public_key=public_key, extensions=extensions, raw=raw,
    )


def check_flags(
    ad: AuthenticatorData, *, require_user_verification: bool = True, error: type[VerificationError]
) -> None:
    # §7.1/§7.2: verify that the UP bit is set.
    if not ad.up:
        raise error("User presence flag UP is 0, expected 1", code="user_not_present")
    # §7.1/§7.2: if the RP requires user verification, verify that the UV bit is set.
    if require_user_verification and not ad.uv:
        raise error("User verification flag UV is 0, expected 1", code="user_not_verified")
    # §6.1.3: a credential that is not backup eligible cannot be backed up.
    if ad.bs and not ad.be:
        raise error("Backup state BS is 1 while backup eligibility BE is 0", code="invalid_backup_flags")


@functools.lru_cache(maxsize=64)
def _rp_id_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode()).digest()


def check_rp_id_hash(ad: AuthenticatorData, rp_id: str, *, error: type[VerificationError]) -> None:
    # §7.1/§7.2: verify that rpIdHash is the SHA-256 hash of the expected RP ID.
    expected = _rp_id_hash(rp_id)
    if not hmac.compare_digest(ad.rp_id_hash, expected):
        raise error(
            f"Unexpected rpIdHash {ad.rp_id_hash.hex()}, expected SHA-256 of {rp_id!r} ({expected.hex()})",
            code="rp_id_mismatch",
        )


class _EC2(NamedTuple):
    crv: int
    curve: type[ec.EllipticCurve]
    size: int
    hash: type[hashes.HashAlgorithm]


# COSE algorithms (RFC 9053) supported, each bound to the one key type/curve it fits.
_EC2_ALGS = {
    -7: _EC2(1, ec.SECP256R1, 32, hashes.SHA256),  # ES256 on P-256
    -35: _EC2(2, ec.SECP384R1, 48, hashes.SHA384),  # ES384 on P-384
    -36: _EC2(3, ec.SECP521R1, 66, hashes.SHA512),  # ES512 on P-521
}
# Per EC2 alg, its curve's name and its signature algorithm, built once (both are immutable).
_EC2_VERIFY = {alg: (params.curve().name, ec.ECDSA(params.hash())) for alg, params in _EC2_ALGS.items()}
RS256, EDDSA, ED25519_CRV = -257, -8, 6
KTY_OKP, KTY_EC2, KTY_RSA = 1, 2, 3
# Policy: RSA moduli between 2048 and 8192 bits, exponents odd and at most 2**64-1 (OpenSSL's own bound).
RSA_MIN_BITS, RSA_MAX_BITS, RSA_MAX_E_BITS = 2048, 8192, 64


def _key_error(message: str) -> InvalidRequest:
    return InvalidRequest(message, code="invalid_public_key")


def _int(key: dict[Any, Any], label: int, name: str) -> int:
    value = key.get(label)
    if type(value) is not int:  # CBOR true decodes to a Python bool, which `isinstance(_, int)` accepts
        raise _key_error(f"COSE key {name} ({label}) is {'missing' if value is None else 'not an integer'}")
    return value


def _bytes(key: dict[Any, Any], label: int, name: str, size: int | None = None) -> bytes:
    value = key.get(label)
    if type(value) is not bytes:
        raise _key_error(f"COSE key {name} ({label}) is {'missing' if value is None else 'not a byte string'}")
    if size is not None and len(value) != size:
        raise _key_error(f"COSE key {name} ({label}) has {len(value)} bytes, expected {size}")
    return value


def load_public_key(cose: bytes) -> tuple[PublicKey, int]:
    """Load a COSE_Key whose ``alg`` fits its ``kty`` and curve; return the key and the alg."""
    try:
        key = loads_cbor(cose, field="credentialPublicKey")
    except InvalidRequest as exc:
        raise _key_error(exc.message) from exc
    if not isinstance(key, dict):
        raise _key_error("COSE key must be a CBOR map")
    # COSE labels are ints or text; CBOR true or 1.0 would otherwise stand in for label 1.
    if any(type(label) not in (int, str) for label in key):
        raise _key_error("COSE key labels must be integers or text strings")
    kty, alg = _int(key, 1, "kty"), _int(key, 3, "alg")
    if kty == KTY_EC2:
        if alg not in _EC2_ALGS:
            raise _key_error(f"COSE alg {alg} does not fit kty 2 (EC2), expected one of {sorted(_EC2_ALGS)}")
        params = _EC2_ALGS[alg]
        crv = _int(key, -1, "crv")
        if crv != params.crv:
            raise _key_error(f"COSE crv {crv} does not fit alg {alg}, expected {params.crv}")
        x, y = _bytes(key, -2, "x", params.size), _bytes(key, -3, "y", params.size)
        numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), params.curve())
        try:
            return numbers.public_key(), alg
        except ValueError as exc:
            raise _key_error(f"COSE EC2 point is not on curve {params.curve.name}") from exc
    if kty == KTY_RSA:
        if alg != RS256:
            raise _key_error(f"COSE alg {alg} does not fit kty 3 (RSA) or is not supported, expected {RS256}")
        n = int.from_bytes(_bytes(key, -1, "n"), "big")
        e = int.from_bytes(_bytes(key, -2, "e"), "big")
        if not RSA_MIN_BITS <= n.bit_length() <= RSA_MAX_BITS or n % 2 == 0:
            raise _key_error(
                f"RSA modulus has {n.bit_length()} bits, expected an odd {RSA_MIN_BITS}..{RSA_MAX_BITS}-bit n"
            )
        if e < 3 or e % 2 == 0 or e.bit_length() > RSA_MAX_E_BITS:
            raise _key_error(f"RSA exponent {e if e < 2**32 else hex(e)} must be odd, >= 3 and < 2**{RSA_MAX_E_BITS}")
        try:
            return rsa.RSAPublicNumbers(e, n).public_key(), alg
        except ValueError as exc:
            raise _key_error(f"RSA public key rejected: {exc}") from exc
    if kty == KTY_OKP:
        if alg != EDDSA:
            raise _key_error(f"COSE alg {alg} does not fit kty 1 (OKP), expected {EDDSA}")
        crv = _int(key, -1, "crv")
        if crv != ED25519_CRV:
            raise _key_error(f"COSE crv {crv} does not fit alg {alg}, expected {ED25519_CRV} (Ed25519)")
        try:
            return Ed25519PublicKey.from_public_bytes(_bytes(key, -2, "x", 32)), alg
        except ValueError as exc:
            raise _key_error("COSE OKP x is not an Ed25519 public key") from exc
    raise _key_error(f"COSE kty {kty} is not supported, expected 1 (OKP), 2 (EC2) or 3 (RSA)")


def _check_strict_der(signature: bytes, error: type[VerificationError]) -> None:
    # WebAuthn §6.5.6 requires ASN.1 DER. cryptography 50 already refuses BER, trailing bytes and
    # r or s of 0; re-encoding keeps that true whatever backend a deployment links against.
    try:
        r, s = decode_dss_signature(signature)
    except ValueError as exc:
        raise error("ECDSA signature is not strict DER", code="invalid_signature") from exc
    if r <= 0 or s <= 0 or encode_dss_signature(r, s) != signature:
        raise error("ECDSA signature is not strict DER", code="invalid_signature")


@functools.lru_cache(maxsize=4096)
def load_stored_public_key(cose: bytes) -> tuple[PublicKey, int]:
    """:func:`load_public_key` for keys from the store, kept: a credential signs many payments,
    and building the key object costs about as much as verifying a signature with it."""
    return load_public_key(cose)


def verify_signature(
    public_key: PublicKey, alg: int, signature: bytes, data: bytes, *, error: type[VerificationError]
) -> None:
    """Verify ``signature`` over ``data`` with a key from :func:`load_public_key` and its alg."""
    if not isinstance(signature, bytes) or not signature:
        raise error("signature is empty", code="invalid_signature")
    try:
        if alg in _EC2_VERIFY and isinstance(public_key, ec.EllipticCurvePublicKey) \
                and public_key.curve.name == _EC2_VERIFY[alg][0]:
            _check_strict_der(signature, error)
            public_key.verify(signature, data, _EC2_VERIFY[alg][1])
        elif alg == RS256 and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif alg == EDDSA and isinstance(public_key, Ed25519PublicKey):
            public_key.verify(signature, data)
        else:
            raise error(f"alg {alg} does not fit a {type(public_key).__name__}", code="unsupported_algorithm")
    except InvalidSignature as exc:
        raise error(f"signature (alg {alg}) did not verify", code="invalid_signature") from exc
