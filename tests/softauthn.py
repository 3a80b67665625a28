"""A software WebAuthn authenticator and client that really signs.

The security checklist asks for tests on genuine responses, not mocks: this
module holds real ES256/RS256 keys and emits the JSON a browser's
``PublicKeyCredential.toJSON()`` gives, so the verifier under test sees the
same bytes it would in production. Every field can be overridden so negative
tests can bend exactly one thing and keep the rest valid.

Layouts follow WebAuthn L3 §6.1 (authenticator data), §6.5 (attestation
object), §8.2 (packed self attestation) and §5.8.1 (client data), with
Chromium's clientDataJSON key order.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

ES256 = -7
RS256 = -257

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40
FLAG_ED = 0x80

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def b64url(data: bytes) -> str:
    """Encode as browsers do in toJSON(): base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def generate_private_key(alg: int) -> PrivateKey:
    """Make a fresh key for a COSE algorithm (ES256 on P-256, RS256 with 2048 bits)."""
    if alg == ES256:
        return ec.generate_private_key(ec.SECP256R1())
    if alg == RS256:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"Unsupported COSE alg {alg}, expected {ES256} or {RS256}")


def cose_key_from_map(fields: Mapping[int, Any], *, canonical: bool = True) -> bytes:
    """Encode any COSE map, so malformed-key tests can write missing or odd fields."""
    return cbor2.dumps(dict(fields), canonical=canonical)


def cose_key(public_key: PublicKey, alg: int | None = None) -> bytes:
    """Encode a public key as canonical CTAP2 COSE; `alg` may lie about the key type."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        numbers = public_key.public_numbers()
        return cose_key_from_map({
            1: 2,  # kty: EC2
            3: ES256 if alg is None else alg,
            -1: 1,  # crv: P-256
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        })
    numbers = public_key.public_numbers()
    return cose_key_from_map({
        1: 3,  # kty: RSA
        3: RS256 if alg is None else alg,
        -1: numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"),
        -2: numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"),
    })


def make_flags(
    *, up: bool = True, uv: bool = True, be: bool = False, bs: bool = False,
    at: bool = False, ed: bool = False,
) -> int:
    """Pack the authenticator data flag bits (WebAuthn L3 §6.1)."""
    return (
        (FLAG_UP if up else 0) | (FLAG_UV if uv else 0) | (FLAG_BE if be else 0)
        | (FLAG_BS if bs else 0) | (FLAG_AT if at else 0) | (FLAG_ED if ed else 0)
    )


def attested_credential_data(aaguid: bytes, credential_id: bytes, cose_public_key: bytes) -> bytes:
    """aaguid(16) | credentialIdLength(2 BE) | credentialId | COSE key (§6.5.1)."""
    return aaguid + len(credential_id).to_bytes(2, "big") + credential_id + cose_public_key


def build_auth_data(
    *,
    rp_id_hash: bytes,
    flags: int,
    sign_count: int,
    attested: bytes = b"",
    extensions: bytes = b"",
    trailing: bytes = b"",
) -> bytes:
    """Assemble authenticator data byte for byte; flags are taken as given, unchecked."""
    return rp_id_hash + bytes([flags]) + sign_count.to_bytes(4, "big") + attested + extensions + trailing


def attestation_object(fmt: str, att_stmt: Mapping[str, Any], auth_data: bytes) -> bytes:
    """Encode {fmt, attStmt, authData} in CTAP2 canonical order."""
    return cbor2.dumps({"fmt": fmt, "attStmt": dict(att_stmt), "authData": auth_data}, canonical=True)


def sign(private_key: PrivateKey, data: bytes) -> bytes:
    """Sign as an authenticator does: DER ECDSA-SHA256 or PKCS#1 v1.5 SHA-256."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(data, ec.ECDSA(hashes.SHA256()))
    return private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def der_to_raw(signature: bytes, size: int = 32) -> bytes:
    """Turn a DER ECDSA signature into raw r||s, the form WebAuthn forbids."""
    r, s = decode_dss_signature(signature)
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def raw_to_der(r: int, s: int) -> bytes:
    """Encode (r, s) as DER, including degenerate values such as r=0."""
    return encode_dss_signature(r, s)


def build_client_data_json(
    *,
    type: str,
    challenge: str,
    origin: str,
    cross_origin: bool | None,
    top_origin: str | None,
    payment: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """Serialise clientDataJSON in Chromium's key order; None drops crossOrigin."""
    data: dict[str, Any] = {"type": type, "challenge": challenge, "origin": origin}
    if cross_origin is not None:
        data["crossOrigin"] = cross_origin
    if top_origin is not None:
        data["topOrigin"] = top_origin
    if payment is not None:
        data["payment"] = payment
    data.update(extra or {})
    return json.dumps(data, separators=(",", ":")).encode()


@dataclass
class Credential:
    """One stored credential, as an authenticator keeps it."""

    credential_id: bytes
    private_key: PrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int


@dataclass
class BrowserBoundKey:
    """SPC's browser-bound key (synthetic here: no browser ships one to test against)."""

    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def cose_public_key(self) -> bytes:
        return cose_key(self.private_key.public_key())

    def sign(self, data: bytes) -> bytes:
        """DER ES256 signature; the SPC draft signs the clientDataJSON bytes."""
        return sign(self.private_key, data)


class SoftAuthenticator:
    """A platform authenticator plus the browser around it, one algorithm per instance."""

    def __init__(
        self,
        alg: int = ES256,
        *,
        aaguid: bytes = bytes(16),
        sign_count_start: int = 0,
        counter_increment: int = 1,
    ) -> None:
        if alg not in (ES256, RS256):
            raise ValueError(f"Unsupported COSE alg {alg}, expected {ES256} or {RS256}")
        if len(aaguid) != 16:
            raise ValueError(f"aaguid must be 16 bytes, got {len(aaguid)}")
        self.alg = alg
        self.aaguid = aaguid
        self.sign_count_start = sign_count_start
        self.counter_increment = counter_increment
        self.credentials: dict[bytes, Credential] = {}

    def create(
        self,
        *,
        rp_id: str,
        challenge: str,
        origin: str,
        user_handle: bytes,
        cross_origin: bool | None = False,
        top_origin: str | None = None,
        type: str = "webauthn.create",
        attestation: str = "none",
        up: bool = True,
        uv: bool = True,
        be: bool = False,
        bs: bool = False,
        credential_id: bytes | None = None,
        cose_alg: int | None = None,
        cose_public_key: bytes | None = None,
        rp_id_hash: bytes | None = None,
        extra_client_data: Mapping[str, Any] | None = None,
        client_data_json: bytes | None = None,
        authenticator_extensions: bytes | None = None,
        trailing_auth_data: bytes = b"",
        trailing_attestation_object: bytes = b"",
        transports: Sequence[str] = ("internal",),
        client_extension_results: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Register a new credential and return RegistrationResponseJSON.

        `cose_alg` only relabels the COSE key; `cose_public_key` replaces it
        with exact bytes. Packed self attestation states `cose_alg` when given.
        """
        if attestation not in ("none", "packed"):
            raise ValueError(f"Unsupported attestation {attestation!r}, expected 'none' or 'packed'")
        credential_id = os.urandom(32) if credential_id is None else credential_id
        private_key = generate_private_key(self.alg)
        public_key = private_key.public_key()
        self.credentials[credential_id] = Credential(
            credential_id, private_key, rp_id, user_handle, self.sign_count_start
        )
        if client_data_json is None:
            client_data_json = build_client_data_json(
                type=type, challenge=challenge, origin=origin, cross_origin=cross_origin,
                top_origin=top_origin, extra=extra_client_data,
            )
        key_bytes = cose_key(public_key, cose_alg) if cose_public_key is None else cose_public_key
        auth_data = build_auth_data(
            rp_id_hash=_sha256(rp_id.encode()) if rp_id_hash is None else rp_id_hash,
            flags=make_flags(up=up, uv=uv, be=be, bs=bs, at=True, ed=authenticator_extensions is not None),
            sign_count=self.sign_count_start,
            attested=attested_credential_data(self.aaguid, credential_id, key_bytes),
            extensions=authenticator_extensions or b"",
            trailing=trailing_auth_data,
        )
        att_stmt: dict[str, Any] = {}
        if attestation == "packed":
            declared_alg = self.alg if cose_alg is None else cose_alg
            att_stmt = {"alg": declared_alg, "sig": sign(private_key, auth_data + _sha256(client_data_json))}
        att_obj = attestation_object(attestation, att_stmt, auth_data) + trailing_attestation_object
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "id": b64url(credential_id),
            "rawId": b64url(credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": dict(client_extension_results or {}),
            "response": {
                "clientDataJSON": b64url(client_data_json),
                "attestationObject": b64url(att_obj),
                "transports": list(transports),
                "authenticatorData": b64url(auth_data),
                "publicKey": b64url(spki),
                "publicKeyAlgorithm": self.alg,
            },
        }

    def get(
        self,
        *,
        credential_id: bytes,
        challenge: str,
        origin: str,
        rp_id: str | None = None,
        type: str = "webauthn.get",
        cross_origin: bool | None = False,
        top_origin: str | None = None,
        payment: Mapping[str, Any] | None = None,
        up: bool = True,
        uv: bool = True,
        be: bool = False,
        bs: bool = False,
        ed: bool | None = None,
        sign_count: int | None = None,
        extra_client_data: Mapping[str, Any] | None = None,
        client_data_json: bytes | None = None,
        authenticator_extensions: bytes | None = None,
        trailing_auth_data: bytes = b"",
        user_handle: bytes | None = None,
        signature_transform: Callable[[bytes], bytes] | None = None,
        sign_with: PrivateKey | None = None,
        client_extension_results: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Assert with a stored credential and return AuthenticationResponseJSON.

        `rp_id` defaults to the credential's; another value hashes into
        authData as given. `ed` defaults to whether extensions are present.
        """
        credential = self.credentials[credential_id]
        if sign_count is None:
            credential.sign_count += self.counter_increment
            sign_count = credential.sign_count
        if client_data_json is None:
            client_data_json = build_client_data_json(
                type=type, challenge=challenge, origin=origin, cross_origin=cross_origin,
                top_origin=top_origin, payment=payment, extra=extra_client_data,
            )
        auth_data = build_auth_data(
            rp_id_hash=_sha256((rp_id or credential.rp_id).encode()),
            flags=make_flags(
                up=up, uv=uv, be=be, bs=bs,
                ed=authenticator_extensions is not None if ed is None else ed,
            ),
            sign_count=sign_count,
            extensions=authenticator_extensions or b"",
            trailing=trailing_auth_data,
        )
        signature = sign(sign_with or credential.private_key, auth_data + _sha256(client_data_json))
        if signature_transform is not None:
            signature = signature_transform(signature)
        return {
            "id": b64url(credential_id),
            "rawId": b64url(credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": dict(client_extension_results or {}),
            "response": {
                "clientDataJSON": b64url(client_data_json),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(credential.user_handle if user_handle is None else user_handle),
            },
        }
