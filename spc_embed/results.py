"""The signed result of a confirmed transaction: an ES256 JWT, and the JWKS that verifies it.

A merchant (or the issuer's own authorization system) trusts a confirmation
only through this token: it verifies the signature against
``<mount>/.well-known/jwks.json`` with any JOSE library, and the claims bind
everything that was confirmed:

``iss``  the issuer's base URL (origin + mount path)
``sub``  the issuer's user id
``aud``  the tenant (merchant) id that initialized the transaction
``iat``, ``exp`` (``iat`` + ``result_token_ttl``), ``jti`` (random, unique)
``cred`` the credential id, base64url
``trans`` ``{"id": transaction id, "hash": transaction_hash(transaction_data),
         "method": "spc" | "fallback" | "passkey", "instrument_id": the card the credential
         was enrolled for}`` (see :mod:`spc_embed.transactions`; docs/security.md H6)

Keys rotate like the other secrets: the first configured key signs, every
configured key is published, and ``kid`` is the key's RFC 7638 JWK thumbprint,
so verifiers pick the key by ``kid`` and a new key can be published before it
signs.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwt.algorithms import ECAlgorithm

from .encoding import b64url_encode, compact_json
from .errors import ConfigurationError, TokenError

ALGORITHM = "ES256"


def load_signing_key(pem: str) -> ec.EllipticCurvePrivateKey:
    """Load one PEM private key, which must be EC P-256 (ES256); ConfigurationError otherwise."""
    if not isinstance(pem, str) or "PRIVATE KEY" not in pem:
        raise ConfigurationError("each signing key must be a PEM private key string (-----BEGIN PRIVATE KEY-----)")
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError) as exc:
        raise ConfigurationError(
            f"a signing key is not a readable unencrypted PEM private key ({exc}); generate one with "
            "`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        kind = getattr(getattr(key, "curve", None), "name", type(key).__name__)
        raise ConfigurationError(f"signing keys must be EC P-256 (for ES256), got {kind}")
    return key


def public_jwk(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> dict[str, str]:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    return {"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"], "y": jwk["y"]}


def jwk_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace."""
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode("ascii")
    return b64url_encode(hashlib.sha256(canonical).digest())


class ResultSigner:
    """Signs result tokens with the newest key and publishes all keys as a JWKS."""

    def __init__(self, signing_keys: Sequence[str], *, issuer: str, ttl: int,
                 clock: Callable[[], float] = time.time) -> None:
        keys = [load_signing_key(pem) for pem in signing_keys]
        if not keys:
            raise ConfigurationError("configure at least one signing key (EC P-256 PEM) for result tokens")
        self.issuer = issuer
        self.ttl = ttl
        self._clock = clock
        self._key = keys[0]
        published = []
        for key in keys:
            jwk = public_jwk(key)
            published.append({**jwk, "kid": jwk_thumbprint(jwk), "use": "sig", "alg": ALGORITHM})
        self._kid = published[0]["kid"]
        self._jwks = {"keys": published}
        # The JOSE header never changes: serialize it once (see sign()).
        header = {"alg": ALGORITHM, "kid": self._kid, "typ": "JWT"}
        self._header_segment = b64url_encode(json.dumps(header, separators=(",", ":")).encode("ascii"))
        self._ecdsa_sha256 = ec.ECDSA(hashes.SHA256())

    @property
    def kid(self) -> str:
        return self._kid

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(k) for k in self._jwks["keys"]]}

    def sign(self, *, user_id: str, tenant_id: str, credential_id: bytes, transaction_id: str,
             transaction_hash: str, method: str, instrument_id: str | None = None) -> str:
        trans = {"id": transaction_id, "hash": transaction_hash, "method": method}
        if instrument_id is not None:
            trans["instrument_id"] = instrument_id
        return self._signed(user_id=user_id, audience=tenant_id, credential_id=credential_id, trans=trans)

    def sign_registration(self, *, user_id: str, credential_id: bytes, rp_id: str) -> str:
        """The token ``POST /registration/finalize`` answers with, as the Hanko Passkey API's.

        Hanko's claims ``sub`` (the user id), ``cred`` (the new credential's id),
        ``aud`` (``[rp_id]``) and ``iat``, with this issuer's ``iss``, ``exp``
        and ``jti``; no ``trans``, so it can never pass for a payment result
        (:func:`verify_result_token` requires one), and its ``aud`` is never a tenant id.
        """
        return self._signed(user_id=user_id, audience=[rp_id], credential_id=credential_id)

    def _signed(self, *, user_id: str, audience: str | list[str], credential_id: bytes, **extra: Any) -> str:
        now = int(self._clock())
        claims = {
            "iss": self.issuer,
            "sub": user_id,
            "aud": audience,
            "iat": now,
            "exp": now + self.ttl,
            "jti": secrets.token_urlsafe(18),
            "cred": b64url_encode(credential_id),
            **extra,
        }
        # A compact JWS (RFC 7515 §7.1), with the constant header serialized once: jwt.encode()
        # redoes it per token, a third of its cost. Verified by PyJWT in the tests and by merchants.
        payload = b64url_encode(compact_json(claims).encode("utf-8"))  # JSON in UTF-8 (RFC 7519 §7.1)
        signing_input = f"{self._header_segment}.{payload}"
        return f"{signing_input}.{b64url_encode(self._es256_signature(signing_input.encode('ascii')))}"

    def _es256_signature(self, data: bytes) -> bytes:
        """ES256's JWS signature (RFC 7518 §3.4): ECDSA P-256 SHA-256 as R || S, 32 bytes each, not DER."""
        r, s = decode_dss_signature(self._key.sign(data, self._ecdsa_sha256))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def verify(self, token: str, *, audience: str, leeway: float = 0) -> dict[str, Any]:
        """Verify a result token as a merchant would (ES256 only, this issuer, this audience, not expired)."""
        return verify_result_token(token, jwks=self._jwks, issuer=self.issuer, audience=audience,
                                   now=self._clock(), leeway=leeway)


def verify_result_token(token: str, *, jwks: dict[str, Any], issuer: str, audience: str,
                        now: float | None = None, leeway: float = 0) -> dict[str, Any]:
    """Verify a result token against a JWKS with PyJWT; TokenError on any failure.

    The algorithm is pinned to ES256 and the key chosen by ``kid`` from the set,
    so neither ``alg: none`` nor an HS256 token keyed with the public key passes.
    """
    try:
        header = jwt.get_unverified_header(token)
        key = jwt.PyJWKSet.from_dict(jwks)[header.get("kid", "")]
        options: jwt.types.Options = {
            "require": ["iss", "sub", "aud", "iat", "exp", "jti", "cred", "trans"],
            # PyJWT reads the wall clock; with an injected clock the expiry is checked below instead.
            "verify_exp": now is None, "verify_iat": now is None,
        }
        claims = jwt.decode(token, key=key, algorithms=[ALGORITHM], audience=audience, issuer=issuer,
                            options=options, leeway=leeway)
    except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
        raise TokenError(f"the result token is not valid: {exc}", code="invalid_result_token") from exc
    if now is not None and not (isinstance(claims["exp"], int) and now - leeway < claims["exp"]):
        raise TokenError("the result token has expired", code="invalid_result_token")
    if not isinstance(claims.get("trans"), dict):
        raise TokenError("the result token has no trans claim object", code="invalid_result_token")
    return claims
