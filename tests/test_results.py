"""Result tokens (docs/security.md T4): ES256 JWTs a standard verifier accepts only when genuine."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from factories import SECRET, make_config, signing_key_pem

from spc_embed.errors import ConfigurationError, TokenError
from spc_embed.results import ResultSigner, jwk_thumbprint, load_signing_key, verify_result_token

ISSUER = "https://issuer.test/spc"


def make_signer(*keys: str, clock=time.time, ttl: int = 300) -> ResultSigner:
    return ResultSigner(keys or (signing_key_pem(0),), issuer=ISSUER, ttl=ttl, clock=clock)


def sign(signer: ResultSigner) -> str:
    return signer.sign(user_id="alice", tenant_id="merchant", credential_id=b"\x01\x02\x03",
                       transaction_id="order-1", transaction_hash="h4sh", method="spc")


def standard_decode(token: str, jwks: dict, *, audience: str = "merchant") -> dict:
    """What a merchant does with PyJWT alone: pick the key by kid from the JWKS, pin ES256."""
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(token, key=key, algorithms=["ES256"], audience=audience, issuer=ISSUER)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, claims: dict, signature: bytes = b"") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


def test_t4_genuine_token_verifies_with_a_standard_verifier() -> None:
    signer = make_signer()
    token = sign(signer)
    claims = standard_decode(token, signer.jwks())
    assert claims["iss"] == ISSUER and claims["sub"] == "alice" and claims["aud"] == "merchant"
    assert claims["cred"] == "AQID"
    assert claims["trans"] == {"id": "order-1", "hash": "h4sh", "method": "spc"}
    assert claims["exp"] - claims["iat"] == 300
    assert len(claims["jti"]) >= 16
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"] == signer.kid
    assert verify_result_token(token, jwks=signer.jwks(), issuer=ISSUER, audience="merchant")["sub"] == "alice"


def test_t4_jti_is_unique_per_token() -> None:
    signer = make_signer()
    assert jwt.decode(sign(signer), options={"verify_signature": False})["jti"] != \
        jwt.decode(sign(signer), options={"verify_signature": False})["jti"]


def test_t4_alg_none_is_rejected() -> None:
    signer = make_signer()
    claims = jwt.decode(sign(signer), options={"verify_signature": False})
    token = forge({"alg": "none", "typ": "JWT", "kid": signer.kid}, claims)
    with pytest.raises(jwt.PyJWTError):
        standard_decode(token, signer.jwks())
    with pytest.raises(TokenError):
        verify_result_token(token, jwks=signer.jwks(), issuer=ISSUER, audience="merchant")


def test_t4_hs256_keyed_with_the_public_key_is_rejected() -> None:
    signer = make_signer()
    claims = jwt.decode(sign(signer), options={"verify_signature": False})
    public_pem = load_signing_key(signing_key_pem(0)).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "JWT", "kid": signer.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(mac)}"
    with pytest.raises(jwt.PyJWTError):
        standard_decode(token, signer.jwks())
    with pytest.raises(TokenError):
        verify_result_token(token, jwks=signer.jwks(), issuer=ISSUER, audience="merchant")


@pytest.mark.parametrize("claim,value", [
    ("sub", "mallory"), ("aud", "shop"), ("trans", {"id": "order-2", "hash": "h4sh", "method": "spc"}),
    ("cred", "BBBB"), ("exp", 4_000_000_000),
])
def test_t4_tampered_claims_are_rejected(claim: str, value: object) -> None:
    signer = make_signer()
    header_b64, claims_b64, signature_b64 = sign(signer).split(".")
    claims = json.loads(base64.urlsafe_b64decode(claims_b64 + "=="))
    claims[claim] = value
    token = f"{header_b64}.{b64(json.dumps(claims).encode())}.{signature_b64}"
    with pytest.raises(jwt.InvalidSignatureError):
        standard_decode(token, signer.jwks(), audience=claims["aud"])


def test_t4_wrong_audience_is_rejected() -> None:
    signer = make_signer()
    with pytest.raises(jwt.InvalidAudienceError):
        standard_decode(sign(signer), signer.jwks(), audience="shop")
    with pytest.raises(TokenError):
        verify_result_token(sign(signer), jwks=signer.jwks(), issuer=ISSUER, audience="shop")


def test_t4_expired_token_is_rejected() -> None:
    past = time.time() - 3600
    signer = make_signer(clock=lambda: past)
    with pytest.raises(jwt.ExpiredSignatureError):
        standard_decode(sign(signer), signer.jwks())
    with pytest.raises(TokenError, match="expired"):
        verify_result_token(sign(signer), jwks=signer.jwks(), issuer=ISSUER, audience="merchant", now=time.time())


def test_t4_token_signed_by_an_unpublished_key_is_rejected() -> None:
    outsider = make_signer(signing_key_pem(7))
    published = make_signer(signing_key_pem(0))
    with pytest.raises(KeyError):  # the kid is not in the set
        standard_decode(sign(outsider), published.jwks())
    with pytest.raises(TokenError):
        verify_result_token(sign(outsider), jwks=published.jwks(), issuer=ISSUER, audience="merchant")


def test_key_rotation_newest_signs_all_are_published() -> None:
    old = make_signer(signing_key_pem(0))
    token_before = sign(old)
    rotated = make_signer(signing_key_pem(1), signing_key_pem(0))
    assert [k["kid"] for k in rotated.jwks()["keys"]] == [rotated.kid, old.kid]
    assert rotated.kid != old.kid
    assert jwt.get_unverified_header(sign(rotated))["kid"] == rotated.kid
    # A token from before the rotation still verifies against the new JWKS.
    assert standard_decode(token_before, rotated.jwks())["sub"] == "alice"


def test_kid_is_the_rfc_7638_thumbprint() -> None:
    jwk = make_signer().jwks()["keys"][0]
    canonical = '{{"crv":"{crv}","kty":"{kty}","x":"{x}","y":"{y}"}}'.format(**jwk)
    assert jwk["kid"] == b64(hashlib.sha256(canonical.encode()).digest())
    assert jwk_thumbprint(jwk) == jwk["kid"]
    assert jwk["alg"] == "ES256" and jwk["use"] == "sig" and "d" not in jwk


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize("keys,message", [
    ((), "at least one EC P-256"),
    (("not a key",), "PEM private key"),
    (("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",), "readable"),
    ((_pem(ec.generate_private_key(ec.SECP384R1())),), "EC P-256"),
    ((_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),), "EC P-256"),
])
def test_config_refuses_unusable_signing_keys(tmp_path, keys: tuple, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_config(tmp_path / "db.sqlite", signing_keys=keys)


def test_config_refuses_a_bare_string_of_keys(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="list"):
        make_config(tmp_path / "db.sqlite", signing_keys=signing_key_pem(0))


def test_signing_keys_from_env_file(tmp_path) -> None:
    from spc_embed import IssuerConfig

    path = tmp_path / "keys.pem"
    path.write_text(signing_key_pem(1) + signing_key_pem(0))
    config = IssuerConfig.from_env({
        "SPC_RP_ID": "issuer.test", "SPC_RP_NAME": "Bank", "SPC_ORIGIN": "https://issuer.test",
        "SPC_SECRET_KEYS": SECRET, "SPC_SIGNING_KEYS_FILE": str(path),
        "SPC_MERCHANTS": '[{"id": "m", "origins": ["https://m.test"]}]',
        "SPC_ADMIN_API_KEYS": "admin-key-0123456789abcdefghij",
    })
    assert len(config.signing_keys) == 2
    assert len(config.admin_api_key_hashes) == 1 and config.admin_api_keys == ()
