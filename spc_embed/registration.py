"""Registration of a payment credential: creation options and response verification.

Follows WebAuthn Level 3 §7.1 "Registering a New Credential"
(https://www.w3.org/TR/webauthn-3/#sctn-registering-a-new-credential) and the
Secure Payment Confirmation spec §3 "Registration" with its `payment`
extension (https://www.w3.org/TR/secure-payment-confirmation/):
the credential is created inside the issuer's iframe on a merchant page, so
the client data is cross-origin and names the merchant as ``topOrigin``.

The caller owns what needs the database: that the challenge was minted for
this user and enrolment and is used once, and that the credential id is not
yet registered (§7.1 "not yet registered for any user"). Client extension
outputs (``clientExtensionResults``) and authenticator extension outputs are
never used for a decision (docs/security.md R13).

Attestation (§7.1 "assess the attestation trustworthiness"): ``none`` and
packed self attestation prove nothing about the authenticator model. For
formats with an ``x5c`` chain the check is delegated to py_webauthn, which
validates the chain only against the roots passed in
``attestation_root_certs``: with none configured for a format (the default)
it skips chain validation entirely and only checks the signature against the
leaf certificate the client sent, which is no more trustworthy than self
attestation. py_webauthn adds its bundled roots for ``apple`` and
``android-key``/``android-safetynet`` only, and does not check the packed
certificate requirements (§8.2.1) or its AAGUID extension, so a ``packed``
statement with ``x5c`` is checked here too, with or without roots
(:func:`check_packed_attestation_certificate`, docs/security.md H9).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier
from webauthn.helpers.parse_attestation_statement import parse_attestation_statement
from webauthn.registration.formats.android_key import verify_android_key
from webauthn.registration.formats.android_safetynet import verify_android_safetynet
from webauthn.registration.formats.apple import verify_apple
from webauthn.registration.formats.fido_u2f import verify_fido_u2f
from webauthn.registration.formats.packed import verify_packed
from webauthn.registration.formats.tpm import verify_tpm

from .authdata import (
    AuthenticatorData,
    PublicKey,
    check_flags,
    check_rp_id_hash,
    load_public_key,
    parse_authenticator_data,
    verify_signature,
)
from .clientdata import MIN_CHALLENGE_BYTES, check_client_data, parse_client_data
from .credential_json import b64_member, invalid_credential, read_envelope
from .encoding import b64url_decode, b64url_encode, loads_cbor
from .errors import InvalidRequest, RegistrationError

ES256, RS256 = -7, -257
SUPPORTED_ALGORITHMS = (ES256, RS256)
KNOWN_TRANSPORTS = frozenset({"ble", "hybrid", "internal", "nfc", "smart-card", "usb"})
MAX_TRANSPORTS = 8  # Policy: the enum has six values; longer lists are not from a browser
MIN_CREDENTIAL_ID_LENGTH = 16  # Policy: shorter ids cannot be probabilistically unique

# §8.2.1: id-fido-gen-ce-aaguid, the AAGUID of the authenticator model in an attestation certificate.
ID_FIDO_GEN_CE_AAGUID = ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
PACKED_ATTESTATION_OU = "Authenticator Attestation"

# Formats py_webauthn verifies with the same keyword arguments.
_PY_WEBAUTHN_VERIFIERS = {
    "packed": verify_packed, "tpm": verify_tpm, "apple": verify_apple, "android-key": verify_android_key,
}


def registration_options(
    *,
    rp_id: str,
    rp_name: str,
    user_handle: bytes,
    user_name: str,
    user_display_name: str,
    challenge: str,
    exclude_credential_ids: Sequence[bytes],
    timeout_ms: int = 120_000,
    algorithms: Sequence[int] = SUPPORTED_ALGORITHMS,
) -> dict[str, Any]:
    """PublicKeyCredentialCreationOptionsJSON for a platform, discoverable, UV-required payment credential."""
    if not isinstance(user_handle, bytes) or not 1 <= len(user_handle) <= 64:
        raise ValueError("user_handle must be 1 to 64 bytes (§5.4.3)")
    try:
        challenge_length = len(b64url_decode(challenge, field="challenge"))
    except InvalidRequest as exc:
        raise ValueError(exc.message) from exc
    if challenge_length < MIN_CHALLENGE_BYTES:
        raise ValueError(f"challenge has {challenge_length} bytes, expected at least {MIN_CHALLENGE_BYTES}")
    if not algorithms or any(alg not in SUPPORTED_ALGORITHMS for alg in algorithms):
        raise ValueError(f"algorithms {list(algorithms)} must be drawn from {list(SUPPORTED_ALGORITHMS)}")
    return {
        "rp": {"id": rp_id, "name": rp_name},
        "user": {"id": b64url_encode(user_handle), "name": user_name, "displayName": user_display_name},
        "challenge": challenge,
        "pubKeyCredParams": [{"type": "public-key", "alg": alg} for alg in algorithms],
        "timeout": timeout_ms,
        "excludeCredentials": [
            {"type": "public-key", "id": b64url_encode(cid), "transports": ["internal"]}
            for cid in exclude_credential_ids
        ],
        "authenticatorSelection": {
            "authenticatorAttachment": "platform",
            "residentKey": "required",
            "requireResidentKey": True,
            "userVerification": "required",
        },
        "attestation": "none",
        # SPC §5: marks the credential as usable for payment, and lets create() run in a cross-origin iframe.
        "extensions": {"payment": {"isPayment": True}},
    }


@dataclass(frozen=True)
class VerifiedRegistration:
    credential_id: bytes
    public_key: bytes  # the exact COSE bytes from authData
    alg: int
    sign_count: int
    aaguid: str
    attestation_format: str
    backup_eligible: bool
    backed_up: bool
    user_verified: bool
    transports: tuple[str, ...]
    top_origin: str | None



def _parse_credential(credential: object) -> tuple[bytes, bytes, bytes, tuple[str, ...]]:
    """Read RegistrationResponseJSON; return rawId, clientDataJSON, attestationObject, transports."""
    raw_id, response = read_envelope(credential)
    client_data_json = b64_member(response, "clientDataJSON", "response.clientDataJSON")
    attestation_object = b64_member(response, "attestationObject", "response.attestationObject")
    transports = response.get("transports", [])
    if not isinstance(transports, list) or len(transports) > MAX_TRANSPORTS \
            or not all(isinstance(t, str) for t in transports):
        raise invalid_credential(f"response.transports must be a list of at most {MAX_TRANSPORTS} strings")
    known = tuple(dict.fromkeys(t for t in transports if t in KNOWN_TRANSPORTS))
    return raw_id, client_data_json, attestation_object, known


def _parse_attestation_object(data: bytes) -> tuple[str, dict[str, Any], AuthenticatorData]:
    try:
        obj = loads_cbor(data, field="attestationObject")
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, code="invalid_attestation_object") from exc
    if not isinstance(obj, dict) or set(obj) != {"fmt", "attStmt", "authData"}:
        raise InvalidRequest("attestationObject must be a map of exactly fmt, attStmt, authData",
                             code="invalid_attestation_object")
    fmt, att_stmt, auth_data = obj["fmt"], obj["attStmt"], obj["authData"]
    if type(fmt) is not str or type(auth_data) is not bytes or not isinstance(att_stmt, dict) \
            or not all(type(key) is str for key in att_stmt):
        raise InvalidRequest("attestationObject fmt must be text, attStmt a text-keyed map, authData bytes",
                             code="invalid_attestation_object")
    ad = parse_authenticator_data(auth_data)
    if ad.credential_id is None or ad.credential_public_key is None:
        raise InvalidRequest("authData has no attested credential data (AT flag is 0)",
                             code="invalid_authenticator_data")
    return fmt, att_stmt, ad


def _check_packed_statement(att_stmt: dict[str, Any]) -> None:
    # §8.2: attStmt = {alg, sig} for self attestation, {alg, sig, x5c} otherwise.
    keys = set(att_stmt)
    x5c = att_stmt.get("x5c", [b""])
    if keys not in ({"alg", "sig"}, {"alg", "sig", "x5c"}) or type(att_stmt["alg"]) is not int \
            or type(att_stmt["sig"]) is not bytes or not isinstance(x5c, list) or not x5c \
            or not all(type(cert) is bytes for cert in x5c):
        raise RegistrationError(f"packed attStmt is malformed (keys {sorted(keys)})",
                                code="invalid_attestation_statement")


def _verify_with_py_webauthn(
    fmt: str, att_stmt: dict[str, Any], attestation_object: bytes, client_data_json: bytes,
    ad: AuthenticatorData, roots: Sequence[bytes],
) -> None:
    kwargs: dict[str, Any] = {
        "attestation_statement": parse_attestation_statement(att_stmt),
        "client_data_json": client_data_json,
        "pem_root_certs_bytes": list(roots),  # a fresh list: py_webauthn appends its bundled roots to it
    }
    verifier: Callable[..., bool]  # py_webauthn's verifiers differ in their keyword arguments
    if fmt == "fido-u2f":
        verifier = verify_fido_u2f
        kwargs.update(rp_id_hash=ad.rp_id_hash, credential_id=ad.credential_id,
                      credential_public_key=ad.credential_public_key, aaguid=ad.aaguid)
    elif fmt == "android-safetynet":
        verifier = verify_android_safetynet
        kwargs.update(attestation_object=attestation_object)
    elif fmt in _PY_WEBAUTHN_VERIFIERS:
        verifier = _PY_WEBAUTHN_VERIFIERS[fmt]
        kwargs.update(attestation_object=attestation_object, credential_public_key=ad.credential_public_key)
    else:
        raise RegistrationError(f'Attestation format "{fmt}" is not supported', code="unsupported_attestation_format")
    try:
        verified = verifier(**kwargs)
    except Exception as exc:  # py_webauthn lets its own, cryptography's, pyOpenSSL's and bare errors out
        raise RegistrationError(f'"{fmt}" attestation statement did not verify: {exc}',
                                code="invalid_attestation_statement") from exc
    if not verified:
        raise RegistrationError(f'"{fmt}" attestation statement did not verify', code="invalid_attestation_statement")


def verify_registration(
    *,
    credential: object,
    expected_challenge: str,
    expected_rp_id: str,
    expected_origin: str,
    allowed_top_origins: Collection[str],
    expected_algorithms: Collection[int] = SUPPORTED_ALGORITHMS,
    allowed_attestation_formats: Collection[str] = ("none", "packed"),
    require_user_verification: bool = True,
    require_cross_origin: bool = False,
    attestation_root_certs: Mapping[str, Sequence[bytes]] | None = None,
) -> VerifiedRegistration:
    """Verify a RegistrationResponseJSON (a parsed JSON object) against what the options asked for.

    Raises :class:`InvalidRequest` for malformed input and :class:`RegistrationError`
    for a failed check, each with a stable ``code``. ``require_cross_origin``
    refuses a ceremony that did not run in a frame (then ``topOrigin`` is always
    one of ``allowed_top_origins``). ``attestation_root_certs`` maps an
    attestation format to PEM roots its x5c chain must lead to.
    """
    raw_id, client_data_json, attestation_object, transports = _parse_credential(credential)
    # §7.1: let C be the client data parsed from clientDataJSON (UTF-8, strict JSON).
    client_data = parse_client_data(client_data_json)
    # §7.1: verify C.type, C.challenge, C.origin, C.crossOrigin and C.topOrigin.
    check_client_data(
        client_data, expected_type="webauthn.create", expected_challenge=expected_challenge,
        expected_origins=(expected_origin,), allowed_top_origins=allowed_top_origins, error=RegistrationError,
    )
    # Policy: a ceremony required to run in a frame (the enrolment iframe, docs/security.md H8) is cross-origin.
    if require_cross_origin and client_data.cross_origin is not True:
        raise RegistrationError("clientDataJSON.crossOrigin must be true: enrolment runs in the issuer's iframe on "
                                "the merchant page the link was minted for", code="cross_origin_required")
    # §7.1: CBOR-decode attestationObject into fmt, authData and attStmt.
    fmt, att_stmt, ad = _parse_attestation_object(attestation_object)
    # authData with the AT flag carries all three; _parse_attestation_object refused it without.
    if ad.aaguid is None or ad.credential_id is None or ad.credential_public_key is None:
        raise RegistrationError("authenticatorData carries no attested credential data", code="invalid_authenticator_data")
    # Policy: the credential the browser names is the one the authenticator attested.
    if raw_id != ad.credential_id:
        raise RegistrationError(
            f"rawId {b64url_encode(raw_id)} differs from the attested credentialId {b64url_encode(ad.credential_id)}",
            code="credential_id_mismatch",
        )
    if len(ad.credential_id) < MIN_CREDENTIAL_ID_LENGTH:
        raise RegistrationError(f"credentialId has {len(ad.credential_id)} bytes, expected at least "
                                f"{MIN_CREDENTIAL_ID_LENGTH}", code="credential_id_too_short")
    # §7.1: verify rpIdHash.
    check_rp_id_hash(ad, expected_rp_id, error=RegistrationError)
    # §7.1: verify UP, UV (required by our options) and that BS is not set without BE.
    check_flags(ad, require_user_verification=require_user_verification, error=RegistrationError)
    # §7.1: verify the credential public key's alg is one of pubKeyCredParams (and fits the key, P5).
    public_key, alg = load_public_key(ad.credential_public_key)
    if alg not in expected_algorithms:
        raise RegistrationError(f"Credential public key alg {alg}, expected one of {sorted(expected_algorithms)}",
                                code="unexpected_algorithm")
    # §7.1: extension outputs: only `payment` was requested and it has no output; nothing else is trusted (R13).
    # §7.1: match fmt (case-sensitive), verify attStmt, assess trustworthiness under our policy.
    _verify_attestation(fmt, att_stmt, attestation_object, client_data_json, ad, public_key, alg,
                        allowed_attestation_formats, (attestation_root_certs or {}).get(fmt, ()))
    # §7.1: credentialId ≤ 1023 bytes: enforced by parse_authenticator_data (§6.5.1).
    return VerifiedRegistration(
        credential_id=ad.credential_id, public_key=ad.credential_public_key, alg=alg,
        sign_count=ad.sign_count, aaguid=str(uuid.UUID(bytes=ad.aaguid)), attestation_format=fmt,
        backup_eligible=ad.be, backed_up=ad.bs, user_verified=ad.uv, transports=transports,
        top_origin=client_data.top_origin,
    )


def _verify_attestation(
    fmt: str, att_stmt: dict[str, Any], attestation_object: bytes, client_data_json: bytes,
    ad: AuthenticatorData, public_key: PublicKey, alg: int,
    allowed_formats: Collection[str], roots: Sequence[bytes],
) -> None:
    # Policy (R9): only the configured attestation formats are acceptable.
    if fmt not in allowed_formats:
        raise RegistrationError(f'Attestation format "{fmt}" is not allowed, expected one of {sorted(allowed_formats)}',
                                code="attestation_format_not_allowed")
    if fmt == "none":
        # §8.7: the none attestation statement is an empty map.
        if att_stmt != {}:
            raise RegistrationError(f"none attStmt must be empty, has keys {sorted(att_stmt)}",
                                    code="invalid_attestation_statement")
        return
    if fmt == "packed":
        _check_packed_statement(att_stmt)
        if "x5c" not in att_stmt:
            # §8.2 self attestation: alg matches the credential key, sig verifies with it.
            if att_stmt["alg"] != alg:
                raise RegistrationError(f"packed attStmt alg {att_stmt['alg']}, expected the credential key alg {alg}",
                                        code="attestation_alg_mismatch")
            signed = ad.raw + hashlib.sha256(client_data_json).digest()
            verify_signature(public_key, alg, att_stmt["sig"], signed, error=RegistrationError)
            return
        # §8.2: verify that attestnCert meets §8.2.1 and that its AAGUID extension, if any, is authData's
        # (before py_webauthn, which checks the signature and, given roots, the chain, but neither of these).
        if ad.aaguid is None:  # attested authData has one (_parse_attestation_object)
            raise RegistrationError("authenticatorData carries no AAGUID", code="invalid_authenticator_data")
        check_packed_attestation_certificate(att_stmt["x5c"][0], aaguid=ad.aaguid)
    _verify_with_py_webauthn(fmt, att_stmt, attestation_object, client_data_json, ad, roots)


def _invalid_certificate(message: str) -> RegistrationError:
    return RegistrationError(f"packed attestation certificate: {message}", code="invalid_attestation_statement")


def _one_attribute(subject: x509.Name, oid: ObjectIdentifier, label: str) -> str:
    values = subject.get_attributes_for_oid(oid)
    if len(values) != 1 or not isinstance(values[0].value, str) or not values[0].value.strip():
        raise _invalid_certificate(f"the subject must have exactly one non-empty {label}")
    return values[0].value


def check_packed_attestation_certificate(certificate: bytes, *, aaguid: bytes) -> None:
    """WebAuthn L3 §8.2.1 "Certificate Requirements for Packed Attestation Statements", and §8.2's AAGUID step.

    py_webauthn verifies the signature (and the chain, given roots) but none of
    this, whether roots are configured or not (docs/security.md H9).
    """
    try:
        cert = x509.load_der_x509_certificate(certificate)
        subject, extensions = cert.subject, cert.extensions
    except ValueError as exc:  # not DER, or an extension encoded against DER (an explicit default, ...)
        raise _invalid_certificate(f"it cannot be parsed as DER X.509 ({exc})") from exc
    # §8.2.1: Version MUST be set to 3.
    if cert.version != x509.Version.v3:
        raise _invalid_certificate(f"version {cert.version.name}, expected v3")
    # §8.2.1: Subject C (the vendor's country), O (the vendor), OU "Authenticator Attestation", CN.
    country = _one_attribute(subject, NameOID.COUNTRY_NAME, "C (country)")
    if len(country) != 2:
        raise _invalid_certificate(f"subject C {country!r} is not an ISO 3166 country code")
    _one_attribute(subject, NameOID.ORGANIZATION_NAME, "O (the authenticator vendor)")
    unit = _one_attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU")
    if unit != PACKED_ATTESTATION_OU:
        raise _invalid_certificate(f"subject OU {unit[:64]!r}, expected {PACKED_ATTESTATION_OU!r}")
    _one_attribute(subject, NameOID.COMMON_NAME, "CN")
    # §8.2.1: the Basic Constraints extension MUST have the CA component set to false (absent: false, X.509's default).
    try:
        constraints = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise _invalid_certificate("Basic Constraints CA is true: an attestation certificate is not a CA")
    # §8.2.1 / §8.2: id-fido-gen-ce-aaguid, when present, is not critical and is authData's AAGUID, as a
    # 16-byte OCTET STRING (DER 04 10 || AAGUID inside the extension value).
    try:
        extension = extensions.get_extension_for_oid(ID_FIDO_GEN_CE_AAGUID)
    except x509.ExtensionNotFound:
        return
    if extension.critical:
        raise _invalid_certificate("the id-fido-gen-ce-aaguid extension must not be critical")
    value = extension.value.value if isinstance(extension.value, x509.UnrecognizedExtension) else b""
    if len(value) != 18 or value[:2] != b"\x04\x10":
        raise _invalid_certificate("the id-fido-gen-ce-aaguid extension is not a 16-byte OCTET STRING")
    if value[2:] != aaguid:
        raise _invalid_certificate(f"id-fido-gen-ce-aaguid {value[2:].hex()} differs from the AAGUID in "
                                   f"authenticatorData {aaguid.hex()}")
