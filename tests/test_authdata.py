"""Authenticator data, COSE keys and signatures: R5-R8, R10, R12, A5-A9, A11, P3-P5."""

from __future__ import annotations

import hashlib
import struct

import cbor2
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from softauthn import (
    ES256,
    RS256,
    attested_credential_data,
    build_auth_data,
    cose_key,
    cose_key_from_map,
    der_to_raw,
    generate_private_key,
    make_flags,
    raw_to_der,
    sign,
)

from spc_embed.authdata import (
    AuthenticatorData,
    check_flags,
    check_rp_id_hash,
    load_public_key,
    parse_authenticator_data,
    verify_signature,
)
from spc_embed.errors import AssertionRejected, InvalidRequest, RegistrationError

RP_ID = "bank.example"
RP_HASH = hashlib.sha256(RP_ID.encode()).digest()
AAGUID = bytes(range(16))
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def es256_cose() -> bytes:
    return cose_key(generate_private_key(ES256).public_key())


def auth_data(*, flags: int | None = None, attested: bytes = b"", extensions: bytes = b"", trailing: bytes = b"") -> bytes:
    if flags is None:
        flags = make_flags(at=bool(attested), ed=bool(extensions))
    return build_auth_data(rp_id_hash=RP_HASH, flags=flags, sign_count=7, attested=attested,
                           extensions=extensions, trailing=trailing)


def malformed(raw: bytes, match: str, code: str = "invalid_authenticator_data") -> None:
    with pytest.raises(InvalidRequest, match=match) as info:
        parse_authenticator_data(raw)
    assert info.value.code == code


# --- parse_authenticator_data -------------------------------------------------------------------

def test_parse_attested_credential_data_and_extensions() -> None:
    key = es256_cose()
    ext = cbor2.dumps({"credProtect": 2})
    raw = auth_data(attested=attested_credential_data(AAGUID, b"c" * 32, key), extensions=ext)
    ad = parse_authenticator_data(raw)
    assert ad == AuthenticatorData(
        rp_id_hash=RP_HASH, up=True, uv=True, be=False, bs=False, at=True, ed=True, sign_count=7,
        aaguid=AAGUID, credential_id=b"c" * 32, credential_public_key=key, extensions={"credProtect": 2}, raw=raw,
    )


def test_parse_assertion_auth_data_without_attested_data() -> None:
    ad = parse_authenticator_data(auth_data(flags=make_flags(be=True, bs=True)))
    assert (ad.at, ad.be, ad.bs, ad.credential_id, ad.credential_public_key, ad.extensions) == (
        False, True, True, None, None, None)


def test_reserved_flag_bits_are_ignored() -> None:
    ad = parse_authenticator_data(auth_data(flags=make_flags() | 0x02 | 0x20))
    assert ad.up and ad.uv and not (ad.be or ad.bs or ad.at or ad.ed)


def test_r12_shorter_than_37_bytes_rejected() -> None:
    malformed(auth_data()[:36], "at least 37 bytes")


def test_r12_at_flag_without_data_rejected() -> None:
    malformed(auth_data(flags=make_flags(at=True)), "attested credential data is truncated")
    malformed(auth_data(flags=make_flags(at=True), trailing=AAGUID + b"\x00"), "truncated")


def test_r12_at_flag_without_public_key_rejected() -> None:
    malformed(auth_data(flags=make_flags(at=True), trailing=AAGUID + b"\x00\x01c"), "credentialPublicKey is not valid CBOR")


def test_r12_credential_id_length_past_the_end_rejected() -> None:
    attested = AAGUID + struct.pack(">H", 40) + b"c" * 32
    malformed(auth_data(flags=make_flags(at=True), trailing=attested), "credentialIdLength 40 runs past the end")


def test_r12_a11_trailing_bytes_rejected() -> None:
    malformed(auth_data(trailing=b"\x00"), "1 trailing bytes")
    attested = attested_credential_data(AAGUID, b"c" * 32, es256_cose())
    malformed(auth_data(attested=attested, trailing=b"\xa0"), "1 trailing bytes")


def test_a11_extension_bytes_without_ed_flag_rejected() -> None:
    malformed(auth_data(flags=make_flags(), trailing=cbor2.dumps({"credProtect": 2})), "trailing bytes")


def test_a11_ed_flag_without_extension_bytes_rejected() -> None:
    malformed(auth_data(flags=make_flags(ed=True)), "ED flag set but there are no extension bytes")


@pytest.mark.parametrize("ext", [cbor2.dumps([1]), cbor2.dumps("credProtect"), b"\xff"])
def test_a11_extensions_must_be_a_cbor_map(ext: bytes) -> None:
    malformed(auth_data(flags=make_flags(ed=True), trailing=ext), "extensions")


def test_r12_public_key_must_be_a_map() -> None:
    attested = attested_credential_data(AAGUID, b"c" * 32, cbor2.dumps([1, 2]))
    malformed(auth_data(attested=attested), "credentialPublicKey must be a CBOR map")


def test_r10_credential_id_of_1024_bytes_rejected_1023_accepted() -> None:
    key = es256_cose()
    malformed(auth_data(attested=attested_credential_data(AAGUID, b"c" * 1024, key)),
              "credentialIdLength 1024 exceeds 1023", code="credential_id_too_long")
    assert parse_authenticator_data(auth_data(attested=attested_credential_data(AAGUID, b"c" * 1023, key))).credential_id == b"c" * 1023


def test_p4_non_canonical_cose_key_kept_byte_exact_and_nothing_shifts() -> None:
    numbers = generate_private_key(ES256).public_key().public_numbers()
    x, y = numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")
    # Non-minimal integer heads (0x18 0x01 for 1) and a non-canonical key order:
    # re-encoding this map would give different, shorter bytes.
    key = (bytes([0xA5, 0x03, 0x26, 0x18, 0x01, 0x18, 0x02, 0x20, 0x01, 0x21, 0x58, 0x20]) + x
           + bytes([0x22, 0x59, 0x00, 0x20]) + y)
    assert cbor2.dumps(cbor2.loads(key), canonical=True) != key
    ext = cbor2.dumps({"credProtect": 2})
    ad = parse_authenticator_data(auth_data(attested=attested_credential_data(AAGUID, b"c" * 32, key), extensions=ext))
    assert ad.credential_public_key == key
    assert ad.extensions == {"credProtect": 2}
    public_key, alg = load_public_key(ad.credential_public_key)
    assert alg == ES256 and public_key.public_numbers() == numbers


def test_p3_deep_nesting_and_huge_length_in_auth_data_are_fast() -> None:
    import time
    for tail in (b"\x81" * 10**6 + b"\x00", b"\x5b" + b"\xff" * 8, b"\xbb" + b"\xff" * 8):
        start = time.perf_counter()
        malformed(auth_data(flags=make_flags(at=True), trailing=AAGUID + b"\x00\x10" + b"c" * 16 + tail),
                  "credentialPublicKey is not valid CBOR")
        assert time.perf_counter() - start < 0.5


# --- check_flags / check_rp_id_hash ---------------------------------------------------------------

def flags_ad(**flags: bool) -> AuthenticatorData:
    return parse_authenticator_data(auth_data(flags=make_flags(**flags)))


def test_r6_a6_user_presence_required() -> None:
    with pytest.raises(RegistrationError) as info:
        check_flags(flags_ad(up=False), error=RegistrationError)
    assert info.value.code == "user_not_present"
    with pytest.raises(AssertionRejected) as info:
        check_flags(flags_ad(up=False), require_user_verification=False, error=AssertionRejected)
    assert info.value.code == "user_not_present"


def test_r6_a7_user_verification_required() -> None:
    with pytest.raises(AssertionRejected) as info:
        check_flags(flags_ad(uv=False), error=AssertionRejected)
    assert info.value.code == "user_not_verified"
    check_flags(flags_ad(uv=False), require_user_verification=False, error=AssertionRejected)


def test_r7_a8_backup_state_without_eligibility_rejected() -> None:
    with pytest.raises(RegistrationError) as info:
        check_flags(flags_ad(be=False, bs=True), error=RegistrationError)
    assert info.value.code == "invalid_backup_flags"
    check_flags(flags_ad(be=True, bs=True), error=RegistrationError)
    check_flags(flags_ad(be=True, bs=False), error=RegistrationError)


@pytest.mark.parametrize("rp_id", ["shop.example", "sub.bank.example", "bank.example.", "BANK.EXAMPLE", "example"])
def test_r5_a5_rp_id_hash_of_another_rp_rejected(rp_id: str) -> None:
    ad = flags_ad()
    with pytest.raises(AssertionRejected) as info:
        check_rp_id_hash(ad, rp_id, error=AssertionRejected)
    assert info.value.code == "rp_id_mismatch"
    assert RP_HASH.hex() in info.value.message and rp_id in info.value.message
    check_rp_id_hash(ad, RP_ID, error=AssertionRejected)


# --- load_public_key --------------------------------------------------------------------------------

def ec_fields(curve: ec.EllipticCurve | None = None, size: int = 32) -> dict[int, bytes]:
    numbers = ec.generate_private_key(curve or ec.SECP256R1()).public_key().public_numbers()
    return {-2: numbers.x.to_bytes(size, "big"), -3: numbers.y.to_bytes(size, "big")}


def rsa_fields(bits: int = 2048, e: int = 65537) -> dict[int, bytes]:
    n = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key().public_numbers().n
    return {-1: n.to_bytes((n.bit_length() + 7) // 8, "big"), -2: e.to_bytes((e.bit_length() + 7) // 8 or 1, "big")}


@pytest.mark.parametrize("make, alg, key_type", [
    (lambda: cose_key_from_map({1: 2, 3: -7, -1: 1, **ec_fields()}), -7, ec.EllipticCurvePublicKey),
    (lambda: cose_key_from_map({1: 2, 3: -35, -1: 2, **ec_fields(ec.SECP384R1(), 48)}), -35, ec.EllipticCurvePublicKey),
    (lambda: cose_key_from_map({1: 2, 3: -36, -1: 3, **ec_fields(ec.SECP521R1(), 66)}), -36, ec.EllipticCurvePublicKey),
    (lambda: cose_key_from_map({1: 3, 3: -257, **rsa_fields()}), -257, rsa.RSAPublicKey),
    (lambda: cose_key_from_map({1: 1, 3: -8, -1: 6, -2: ed25519.Ed25519PrivateKey.generate().public_key().public_bytes_raw()}),
     -8, ed25519.Ed25519PublicKey),
])
def test_positive_supported_keys_load(make, alg: int, key_type: type) -> None:
    public_key, loaded_alg = load_public_key(make())
    assert loaded_alg == alg and isinstance(public_key, key_type)


def bad_key(cose: bytes, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match) as info:
        load_public_key(cose)
    assert info.value.code == "invalid_public_key"


@pytest.mark.parametrize("fields, match", [
    ({1: 2, 3: -257, -1: 1}, "alg -257 does not fit kty 2"),
    ({1: 2, 3: -8, -1: 1}, "alg -8 does not fit kty 2"),
    ({1: 2, 3: -35, -1: 1}, "crv 1 does not fit alg -35"),
    ({1: 2, 3: -7, -1: 2}, "crv 2 does not fit alg -7"),
    ({1: 3, 3: -7}, "alg -7 does not fit kty 3"),
    ({1: 3, 3: -37}, "alg -37 does not fit kty 3 .RSA. or is not supported"),
    ({1: 1, 3: -7, -1: 6}, "alg -7 does not fit kty 1"),
    ({1: 1, 3: -8, -1: 1}, "crv 1 does not fit alg -8"),
])
def test_r8_alg_not_fitting_key_type_or_curve_rejected(fields: dict, match: str) -> None:
    extra = rsa_fields() if fields[1] == 3 else ec_fields()
    bad_key(cose_key_from_map({**extra, **fields}), match)


@pytest.mark.parametrize("fields, match", [
    ({3: -7, -1: 1}, r"kty \(1\) is missing"),
    ({1: 2, -1: 1}, r"alg \(3\) is missing"),
    ({1: 2, 3: -7}, r"crv \(-1\) is missing"),
    ({1: 2, 3: -7, -1: 1, -2: None}, r"x \(-2\) is missing"),
    ({1: 2, 3: -7, -1: 1, -3: None}, r"y \(-3\) is missing"),
    ({1: 2, 3: -7, -1: 1, -2: b"\x01" * 31}, r"x \(-2\) has 31 bytes, expected 32"),
    ({1: 2, 3: -7, -1: 1, -3: b"\x01" * 33}, r"y \(-3\) has 33 bytes, expected 32"),
    ({1: 2, 3: -7, -1: 1, -3: True}, r"y \(-3\) is not a byte string"),  # compressed-point sign bit
    ({1: 2, 3: -7, -1: 1, -2: "x"}, r"x \(-2\) is not a byte string"),
    ({1: 2, 3: "ES256", -1: 1}, r"alg \(3\) is not an integer"),
    ({1: True, 3: -7, -1: 1}, r"kty \(1\) is not an integer"),
    ({1: 2.0, 3: -7, -1: 1}, r"kty \(1\) is not an integer"),
    ({1: 2, 3: -7, -1: 1, -2: (1).to_bytes(32, "big"), -3: (2).to_bytes(32, "big")}, "not on curve secp256r1"),
    ({1: 2, 3: -7, -1: 1, -2: bytes(32), -3: bytes(32)}, "not on curve"),
    ({1: 4, 3: -7}, "kty 4 is not supported"),
])
def test_p5_malformed_ec2_keys_rejected(fields: dict, match: str) -> None:
    key = {**ec_fields(), **fields}
    bad_key(cose_key_from_map({k: v for k, v in key.items() if v is not None}), match)


@pytest.mark.parametrize("fields, match", [
    ({-1: None}, r"n \(-1\) is missing"),
    ({-2: None}, r"e \(-2\) is missing"),
    ({-2: b"\x01"}, "exponent 1 must be odd, >= 3"),
    ({-2: b"\x01\x00\x02"}, "exponent 65538 must be odd"),
    ({-2: b"\x02"}, "exponent 2 must be odd"),
    ({-2: b"\x00"}, "exponent 0 must be odd"),
    ({-2: b"\x01" * 9}, "must be odd, >= 3 and < 2\\*\\*64"),
    ({-2: 65537}, r"e \(-2\) is not a byte string"),
])
def test_p5_malformed_rsa_keys_rejected(fields: dict, match: str) -> None:
    key = {1: 3, 3: -257, **rsa_fields(), **fields}
    bad_key(cose_key_from_map({k: v for k, v in key.items() if v is not None}), match)


def test_p5_rsa_modulus_under_2048_bits_or_even_rejected() -> None:
    bad_key(cose_key_from_map({1: 3, 3: -257, **rsa_fields(1024)}), "1024 bits, expected an odd 2048")
    fields = rsa_fields()
    even = (int.from_bytes(fields[-1], "big") - 1).to_bytes(256, "big")
    bad_key(cose_key_from_map({1: 3, 3: -257, -1: even, -2: fields[-2]}), "2048 bits, expected an odd")


def test_p3_p5_key_encoding_problems_rejected() -> None:
    good = es256_cose()
    bad_key(good + b"\x00", "1 trailing bytes")
    bad_key(cbor2.dumps([2, -7]), "must be a CBOR map")
    bad_key(b"", "not valid CBOR")
    # Duplicate label 3 (alg), written by hand since encoders refuse to.
    bad_key(bytes([0xA6]) + good[1:] + bytes([0x03, 0x38, 0x24]), "not valid CBOR")
    # A bignum tag (2) where the x coordinate bytes belong.
    fields = ec_fields()
    bad_key(cose_key_from_map({1: 2, 3: -7, -1: 1, -2: cbor2.CBORTag(2, fields[-2]), -3: fields[-3]}), "not valid CBOR")
    # CBOR true (0xf5) or half-float 1.0 as the kty label: Python would read either as label 1.
    assert good[:2] == bytes([0xA5, 0x01])
    bad_key(bytes([0xA5, 0xF5]) + good[2:], "labels must be integers or text")
    bad_key(bytes([0xA5, 0xF9, 0x3C, 0x00]) + good[2:], "labels must be integers or text")


# --- verify_signature -------------------------------------------------------------------------------

DATA = b"authenticator data" + hashlib.sha256(b"client data").digest()


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1:]


@pytest.fixture(scope="module")
def es256() -> tuple[ec.EllipticCurvePrivateKey, object]:
    private_key = generate_private_key(ES256)
    public_key, alg = load_public_key(cose_key(private_key.public_key()))
    return private_key, public_key


@pytest.fixture(scope="module")
def rs256() -> tuple[rsa.RSAPrivateKey, object]:
    private_key = generate_private_key(RS256)
    public_key, alg = load_public_key(cose_key(private_key.public_key()))
    return private_key, public_key


def rejected(public_key, alg: int, signature: bytes, data: bytes = DATA, match: str = "did not verify") -> None:
    with pytest.raises(AssertionRejected, match=match) as info:
        verify_signature(public_key, alg, signature, data, error=AssertionRejected)
    assert info.value.code == "invalid_signature"


def test_positive_es256_and_rs256_signatures_verify(es256, rs256) -> None:
    verify_signature(es256[1], ES256, sign(es256[0], DATA), DATA, error=AssertionRejected)
    verify_signature(rs256[1], RS256, sign(rs256[0], DATA), DATA, error=AssertionRejected)


@pytest.mark.parametrize("index", [0, 10, -1])
def test_a9_flipped_bit_in_signature_rejected(es256, rs256, index: int) -> None:
    signature = sign(es256[0], DATA)
    # Flipping a DER header byte breaks the encoding, flipping r or s breaks the maths: both fail.
    rejected(es256[1], ES256, flip(signature, index % len(signature)), match="not strict DER|did not verify")
    rejected(rs256[1], RS256, flip(sign(rs256[0], DATA), index % 256))


@pytest.mark.parametrize("index", [0, 32, len(DATA) - 1])
def test_a9_flipped_bit_in_signed_data_rejected(es256, rs256, index: int) -> None:
    rejected(es256[1], ES256, sign(es256[0], DATA), flip(DATA, index))
    rejected(rs256[1], RS256, sign(rs256[0], DATA), flip(DATA, index))


def test_a9_signature_by_another_key_rejected(es256, rs256) -> None:
    rejected(es256[1], ES256, sign(generate_private_key(ES256), DATA))
    rejected(rs256[1], RS256, sign(generate_private_key(RS256), DATA))


def test_a9_raw_r_s_instead_of_der_rejected(es256) -> None:
    rejected(es256[1], ES256, der_to_raw(sign(es256[0], DATA)), match="not strict DER")


def test_a9_der_with_trailing_byte_rejected(es256) -> None:
    signature = sign(es256[0], DATA)
    rejected(es256[1], ES256, signature + b"\x00", match="not strict DER")
    # cryptography refuses it on its own too; our check only makes the reason explicit.
    with pytest.raises(InvalidSignature):
        es256[1].verify(signature + b"\x00", DATA, ec.ECDSA(hashes.SHA256()))


def test_a9_ber_long_form_length_rejected(es256) -> None:
    signature = sign(es256[0], DATA)
    body = signature[2:]
    rejected(es256[1], ES256, b"\x30\x81" + bytes([len(body)]) + body, match="not strict DER")


@pytest.mark.parametrize("which", ["r", "s"])
def test_a9_r_or_s_zero_rejected(es256, which: str) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    r, s = decode_dss_signature(sign(es256[0], DATA))
    signature = raw_to_der(0, s) if which == "r" else raw_to_der(r, 0)
    rejected(es256[1], ES256, signature, match="not strict DER")
    with pytest.raises(InvalidSignature):
        es256[1].verify(signature, DATA, ec.ECDSA(hashes.SHA256()))


def test_a9_r_plus_order_rejected(es256) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    r, s = decode_dss_signature(sign(es256[0], DATA))
    rejected(es256[1], ES256, raw_to_der(r + P256_ORDER, s))


def test_a9_empty_signature_rejected(es256, rs256) -> None:
    rejected(es256[1], ES256, b"", match="signature is empty")
    rejected(rs256[1], RS256, b"", match="signature is empty")


def test_alg_not_fitting_the_key_is_refused(es256, rs256) -> None:
    for public_key, alg, signature in ((es256[1], RS256, sign(es256[0], DATA)), (rs256[1], ES256, sign(rs256[0], DATA)),
                                       (es256[1], -35, sign(es256[0], DATA))):
        with pytest.raises(RegistrationError) as info:
            verify_signature(public_key, alg, signature, DATA, error=RegistrationError)
        assert info.value.code == "unsupported_algorithm"


def test_positive_other_curves_and_eddsa_verify() -> None:
    key384 = ec.generate_private_key(ec.SECP384R1())
    numbers = key384.public_key().public_numbers()
    public_key, alg = load_public_key(cose_key_from_map(
        {1: 2, 3: -35, -1: 2, -2: numbers.x.to_bytes(48, "big"), -3: numbers.y.to_bytes(48, "big")}))
    verify_signature(public_key, alg, key384.sign(DATA, ec.ECDSA(hashes.SHA384())), DATA, error=AssertionRejected)
    rejected(public_key, alg, key384.sign(DATA, ec.ECDSA(hashes.SHA256())))  # wrong hash for ES384
    ed = ed25519.Ed25519PrivateKey.generate()
    public_key, alg = load_public_key(cose_key_from_map({1: 1, 3: -8, -1: 6, -2: ed.public_key().public_bytes_raw()}))
    verify_signature(public_key, alg, ed.sign(DATA), DATA, error=AssertionRejected)
    rejected(public_key, alg, flip(ed.sign(DATA), 5))
