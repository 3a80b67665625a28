"""clientDataJSON: strict parsing (P1, P2) and the type/challenge/origin/topOrigin checks (R1-R4, A3, A4)."""

from __future__ import annotations

import base64
import os

import pytest
from softauthn import b64url, build_client_data_json

from spc_embed.clientdata import ClientData, check_client_data, parse_client_data
from spc_embed.encoding import b64url_decode
from spc_embed.errors import AssertionRejected, InvalidRequest, RegistrationError

ISSUER = "https://bank.example"
MERCHANT = "https://shop.example"
CHALLENGE = b64url(os.urandom(32))


def client_data(**overrides: object) -> bytes:
    fields: dict = dict(type="webauthn.create", challenge=CHALLENGE, origin=ISSUER, cross_origin=False, top_origin=None)
    fields.update(overrides)
    return build_client_data_json(**fields)


def check(cd: ClientData, **overrides: object) -> None:
    kwargs: dict = dict(
        expected_type="webauthn.create", expected_challenge=CHALLENGE, expected_origins=[ISSUER],
        allowed_top_origins=[MERCHANT], error=RegistrationError,
    )
    kwargs.update(overrides)
    check_client_data(cd, **kwargs)


def test_parse_keeps_fields_and_exact_bytes() -> None:
    raw = client_data(cross_origin=True, top_origin=MERCHANT, payment={"rpId": "bank.example", "x": 1})
    cd = parse_client_data(raw)
    assert cd == ClientData(
        type="webauthn.create", challenge=CHALLENGE, origin=ISSUER, cross_origin=True,
        top_origin=MERCHANT, payment={"rpId": "bank.example", "x": 1}, raw=raw,
    )
    check(cd)


def test_positive_unknown_extra_keys_accepted() -> None:
    raw = client_data(extra={"other_keys_can_be_added_here": "do not compare clientDataJSON against a template", "n": [1]})
    cd = parse_client_data(raw)
    check(cd)
    assert cd.cross_origin is False and cd.top_origin is None and cd.payment is None


def test_crossorigin_absent_is_none() -> None:
    cd = parse_client_data(client_data(cross_origin=None))
    assert cd.cross_origin is None
    check(cd)


@pytest.mark.parametrize("raw, message", [
    (b'{"type":"webauthn.create","type":"webauthn.get","challenge":"%s","origin":"%s"}', "duplicate JSON key 'type'"),
    (b'{"type":"webauthn.create","challenge":"%s","origin":"%s","x":NaN}', "NaN"),
    (b'{"type":"webauthn.create","challenge":"%s","origin":"%s","x":-Infinity}', "Infinity"),
    (b'{"type":"webauthn.create\xff","challenge":"%s","origin":"%s"}', "UTF-8"),
    (b'{"type":"webauthn.create","challenge":"%s","origin":"%s"', "not valid JSON"),
])
def test_p2_malformed_json_rejected(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as info:
        parse_client_data(raw % (CHALLENGE.encode(), ISSUER.encode()))
    assert info.value.code == "invalid_client_data"


@pytest.mark.parametrize("raw, field", [
    (b"[]", "JSON object"),
    (b'"webauthn.create"', "JSON object"),
    (b'{"type":1,"challenge":"C","origin":"O"}', "clientDataJSON.type"),
    (b'{"type":"webauthn.create","challenge":null,"origin":"O"}', "clientDataJSON.challenge"),
    (b'{"type":"webauthn.create","challenge":"C"}', "clientDataJSON.origin"),
    (b'{"type":"webauthn.create","challenge":"C","origin":"O","crossOrigin":"true"}', "crossOrigin"),
    (b'{"type":"webauthn.create","challenge":"C","origin":"O","crossOrigin":1}', "crossOrigin"),
    (b'{"type":"webauthn.create","challenge":"C","origin":"O","crossOrigin":null}', "crossOrigin"),
    (b'{"type":"webauthn.create","challenge":"C","origin":"O","crossOrigin":true,"topOrigin":5}', "topOrigin"),
    (b'{"type":"webauthn.create","challenge":"C","origin":"O","payment":[]}', "payment"),
    (b'{"type":"webauthn.create","challenge":"C","origin":"O","payment":"x"}', "payment"),
])
def test_p2_wrong_json_types_rejected(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest, match=field) as info:
        parse_client_data(raw.replace(b'"C"', b'"%s"' % CHALLENGE.encode()).replace(b'"O"', b'"%s"' % ISSUER.encode()))
    assert info.value.code == "invalid_client_data"


def _noncanonical_trailing_bits() -> str:
    # 16 bytes -> 22 characters whose last one carries 4 unused bits; set one of them.
    text = b64url(bytes(16))
    assert text[-1] == "A"
    return text[:-1] + "B"


@pytest.mark.parametrize("challenge", [
    base64.urlsafe_b64encode(bytes(range(32))).decode(),  # "=" padding
    base64.b64encode(bytes([0xfb, 0xff] * 16)).decode().rstrip("="),  # "+" and "/"
    CHALLENGE + "*",
    " " + CHALLENGE,
    CHALLENGE[:-1] + "\u0410",
    _noncanonical_trailing_bits(),
    CHALLENGE + "AA",  # 45 characters: a length no base64 text has
    b64url(bytes(15)),  # Policy: at least 16 bytes
])
def test_r2_p1_challenge_encoding_variants_rejected(challenge: str) -> None:
    with pytest.raises(InvalidRequest, match="challenge") as info:
        parse_client_data(client_data(challenge=challenge))
    assert info.value.code == "invalid_client_data"


@pytest.mark.parametrize("type_", ["webauthn.get", "payment.get", "WEBAUTHN.CREATE", "webauthn.create ", ""])
def test_r1_type_other_than_create_rejected(type_: str) -> None:
    with pytest.raises(RegistrationError) as info:
        check(parse_client_data(client_data(type=type_)))
    assert info.value.code == "unexpected_type"
    assert repr(type_)[1:-1] in info.value.message and "webauthn.create" in info.value.message


@pytest.mark.parametrize("sent, expected", [("payment.get", "webauthn.get"), ("webauthn.get", "payment.get")])
def test_a3_each_flow_accepts_exactly_its_type(sent: str, expected: str) -> None:
    cd = parse_client_data(client_data(type=sent))
    with pytest.raises(AssertionRejected) as info:
        check(cd, expected_type=expected, error=AssertionRejected)
    assert info.value.code == "unexpected_type"
    check(cd, expected_type=sent, error=AssertionRejected)


def test_r2_a4_other_challenge_rejected() -> None:
    other = b64url(os.urandom(32))
    with pytest.raises(RegistrationError) as info:
        check(parse_client_data(client_data(challenge=other)))
    assert info.value.code == "challenge_mismatch"
    assert other in info.value.message and CHALLENGE in info.value.message


@pytest.mark.parametrize("origin", [
    "http://bank.example",
    "https://bank.example:8443",
    "https://bank.example:443",
    "https://sub.bank.example",
    "https://bank.example/",
    "HTTPS://BANK.EXAMPLE",
    "https://bank.example.evil.example",
    "null",
    MERCHANT,
])
def test_r3_a4_origin_variants_rejected(origin: str) -> None:
    with pytest.raises(RegistrationError) as info:
        check(parse_client_data(client_data(origin=origin)))
    assert info.value.code == "origin_mismatch"
    assert origin in info.value.message and ISSUER in info.value.message


def test_positive_cross_origin_with_allowed_top_origin() -> None:
    check(parse_client_data(client_data(cross_origin=True, top_origin=MERCHANT)), allowed_top_origins=["https://a.example", MERCHANT])


@pytest.mark.parametrize("top_origin", ["https://evil.example", "http://shop.example", "https://shop.example/", "null", ISSUER])
def test_r4_a4_top_origin_outside_allowlist_rejected(top_origin: str) -> None:
    with pytest.raises(RegistrationError) as info:
        check(parse_client_data(client_data(cross_origin=True, top_origin=top_origin)))
    assert info.value.code == "top_origin_mismatch"
    assert top_origin in info.value.message and MERCHANT in info.value.message


@pytest.mark.parametrize("cross_origin", [False, None])
def test_r4_a4_top_origin_without_cross_origin_true_rejected(cross_origin: bool | None) -> None:
    with pytest.raises(RegistrationError) as info:
        check(parse_client_data(client_data(cross_origin=cross_origin, top_origin=MERCHANT)))
    assert info.value.code == "top_origin_without_cross_origin"


def test_r4_cross_origin_without_top_origin_rejected() -> None:
    with pytest.raises(RegistrationError) as info:
        check(parse_client_data(client_data(cross_origin=True)))
    assert info.value.code == "top_origin_missing"


def test_r4_cross_origin_refused_when_no_top_origins_allowed() -> None:
    cd = parse_client_data(client_data(cross_origin=True, top_origin=MERCHANT))
    with pytest.raises(RegistrationError) as info:
        check(cd, allowed_top_origins=None)
    assert info.value.code == "cross_origin_not_allowed"
    with pytest.raises(RegistrationError) as info:
        check(cd, allowed_top_origins=[])
    assert info.value.code == "top_origin_mismatch"
    check(parse_client_data(client_data()), allowed_top_origins=None)  # same-origin still fine


def test_origins_given_as_a_string_is_a_programming_error() -> None:
    # `"https://bank.example" in "https://bank.example.evil"` would be a substring match.
    cd = parse_client_data(client_data())
    with pytest.raises(TypeError):
        check(cd, expected_origins=ISSUER)
    with pytest.raises(TypeError):
        check(cd, allowed_top_origins=MERCHANT)


def test_p1_base64url_accepts_exactly_what_re_encodes_to_itself() -> None:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    candidates = [prefix + middle + last for prefix in ("", "AAAA", "Zm9v") for middle in ("", "A", "AB", "ABC")
                  for last in alphabet + "=+/ ."]
    accepted = 0
    for value in candidates:
        try:
            decoded = b64url_decode(value)
        except InvalidRequest:
            padded = value + "=" * (-len(value) % 4)
            assert any(c not in alphabet for c in value) or len(value) % 4 == 1 \
                or base64.urlsafe_b64encode(base64.urlsafe_b64decode(padded)).rstrip(b"=").decode() != value
        else:
            accepted += 1
            assert base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() == value
    assert accepted == 3 * (64 + 4 + 16)  # per prefix: any 4th character, 4 of 64 after one, 16 of 64 after two
