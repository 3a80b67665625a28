"""The software authenticator's output is genuine: py_webauthn itself accepts it.

If these pass, a rejection elsewhere in the suite comes from the field a test
bent, not from a flaw in how the response was built.
"""

from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from softauthn import ES256, RS256, BrowserBoundKey, SoftAuthenticator, der_to_raw, raw_to_der
from webauthn import (
    base64url_to_bytes,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    parse_authenticator_data,
)
from webauthn.helpers.exceptions import InvalidAuthenticationResponse

RP_ID = "issuer.example"
ORIGIN = "https://issuer.example"
CHALLENGE = "dGVzdC1jaGFsbGVuZ2UtMzItYnl0ZXMtbG9uZy0hISE"
USER = b"user-handle-1"


def register(auth: SoftAuthenticator, **overrides):
    response = auth.create(rp_id=RP_ID, challenge=CHALLENGE, origin=ORIGIN, user_handle=USER, **overrides)
    verified = verify_registration_response(
        credential=response,
        expected_challenge=base64url_to_bytes(CHALLENGE),
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        require_user_verification=True,
    )
    return response, verified


def authenticate(verified, response, current_sign_count: int):
    return verify_authentication_response(
        credential=response,
        expected_challenge=base64url_to_bytes(CHALLENGE),
        expected_rp_id=RP_ID,
        expected_origin=ORIGIN,
        credential_public_key=verified.credential_public_key,
        credential_current_sign_count=current_sign_count,
        require_user_verification=True,
    )


@pytest.mark.parametrize("alg", [ES256, RS256])
@pytest.mark.parametrize("attestation", ["none", "packed"])
def test_registration_verifies(alg: int, attestation: str) -> None:
    auth = SoftAuthenticator(alg)
    response, verified = register(auth, attestation=attestation)
    assert verified.fmt == attestation
    assert verified.credential_id == base64url_to_bytes(response["id"])
    assert verified.user_verified
    assert decode_credential_public_key(verified.credential_public_key).alg == alg
    assert response["response"]["publicKeyAlgorithm"] == alg


def test_client_data_follows_chromium_key_order() -> None:
    response = SoftAuthenticator().create(
        rp_id=RP_ID, challenge=CHALLENGE, origin=ORIGIN, user_handle=USER,
        cross_origin=True, top_origin="https://merchant.example",
        extra_client_data={"other_keys_can_be_added_here": "x"},
    )
    client_data = json.loads(base64url_to_bytes(response["response"]["clientDataJSON"]))
    assert list(client_data) == [
        "type", "challenge", "origin", "crossOrigin", "topOrigin", "other_keys_can_be_added_here",
    ]


@pytest.mark.parametrize("alg", [ES256, RS256])
def test_authentication_verifies_and_sign_count_increases(alg: int) -> None:
    auth = SoftAuthenticator(alg, counter_increment=5)
    registration, verified = register(auth)
    credential_id = base64url_to_bytes(registration["id"])
    stored_count = verified.sign_count
    for expected in (5, 10):
        assertion = auth.get(credential_id=credential_id, rp_id=RP_ID, challenge=CHALLENGE, origin=ORIGIN)
        result = authenticate(verified, assertion, stored_count)
        assert result.new_sign_count == expected
        assert base64url_to_bytes(assertion["response"]["userHandle"]) == USER
        stored_count = result.new_sign_count


def test_zero_counter_stays_zero_and_verifies() -> None:
    auth = SoftAuthenticator(counter_increment=0)
    registration, verified = register(auth)
    assertion = auth.get(
        credential_id=base64url_to_bytes(registration["id"]), challenge=CHALLENGE, origin=ORIGIN
    )
    assert authenticate(verified, assertion, 0).new_sign_count == 0


@pytest.mark.parametrize("alg", [ES256, RS256])
def test_flipped_signature_bit_is_rejected(alg: int) -> None:
    auth = SoftAuthenticator(alg)
    registration, verified = register(auth)
    assertion = auth.get(
        credential_id=base64url_to_bytes(registration["id"]), challenge=CHALLENGE, origin=ORIGIN,
        signature_transform=lambda sig: sig[:-1] + bytes([sig[-1] ^ 0x01]),
    )
    with pytest.raises(InvalidAuthenticationResponse):
        authenticate(verified, assertion, 0)


def test_signature_by_another_key_is_rejected() -> None:
    auth = SoftAuthenticator()
    registration, verified = register(auth)
    assertion = auth.get(
        credential_id=base64url_to_bytes(registration["id"]), challenge=CHALLENGE, origin=ORIGIN,
        sign_with=ec.generate_private_key(ec.SECP256R1()),
    )
    with pytest.raises(InvalidAuthenticationResponse):
        authenticate(verified, assertion, 0)


@pytest.mark.parametrize("alg", [ES256, RS256])
def test_payment_get_is_signed_over_authdata_and_client_data_hash(alg: int) -> None:
    # py_webauthn only accepts webauthn.get, so check the SPC signature directly.
    auth = SoftAuthenticator(alg)
    registration, verified = register(auth)
    payment = {
        "rpId": RP_ID, "topOrigin": "https://merchant.example", "payeeOrigin": "https://merchant.example",
        "total": {"value": "100.00", "currency": "USD"},
        "instrument": {"displayName": "Card 1234", "icon": "https://issuer.example/card.png"},
    }
    assertion = auth.get(
        credential_id=base64url_to_bytes(registration["id"]), challenge=CHALLENGE,
        origin="https://merchant.example", type="payment.get", payment=payment,
    )
    client_data_json = base64url_to_bytes(assertion["response"]["clientDataJSON"])
    auth_data = base64url_to_bytes(assertion["response"]["authenticatorData"])
    signature = base64url_to_bytes(assertion["response"]["signature"])
    assert json.loads(client_data_json)["payment"] == payment
    public_key = decoded_public_key_to_cryptography(decode_credential_public_key(verified.credential_public_key))
    message = auth_data + hashlib.sha256(client_data_json).digest()
    if alg == ES256:
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    else:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("length", [1023, 1024])
def test_long_credential_ids_are_encoded_in_auth_data(length: int) -> None:
    response = SoftAuthenticator().create(
        rp_id=RP_ID, challenge=CHALLENGE, origin=ORIGIN, user_handle=USER, credential_id=b"\x07" * length
    )
    auth_data = parse_authenticator_data(base64url_to_bytes(response["response"]["authenticatorData"]))
    assert auth_data.attested_credential_data.credential_id == b"\x07" * length


def test_der_raw_round_trip() -> None:
    der = ec.generate_private_key(ec.SECP256R1()).sign(b"data", ec.ECDSA(hashes.SHA256()))
    raw = der_to_raw(der)
    assert len(raw) == 64
    assert raw_to_der(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")) == der
    assert decode_dss_signature(raw_to_der(0, 0)) == (0, 0)


def test_browser_bound_key_signature_verifies() -> None:
    bbk = BrowserBoundKey()
    public_key = decoded_public_key_to_cryptography(decode_credential_public_key(bbk.cose_public_key()))
    public_key.verify(bbk.sign(b"client data"), b"client data", ec.ECDSA(hashes.SHA256()))
