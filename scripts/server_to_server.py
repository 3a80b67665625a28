#!/usr/bin/env python3
"""The server-to-server transaction flow against a running issuer, with httpx.

    initialize -> (the cardholder confirms) -> finalize -> verify the JWT against the JWKS

A real merchant gets the assertion from the cardholder's browser: its page runs
``PaymentRequest`` with the ``secure_payment_confirmation`` method data and the
``total`` that initialize returned, and posts ``response.details`` (the
credential, ``toJSON()``) back. There is no browser here, so the software
authenticator from ``tests/softauthn.py`` stands in: it enrols through the
enrolment link the issuer minted for the user, then signs exactly what a
browser would sign for this transaction.

    python scripts/server_to_server.py \\
        --base-url https://bank.example/spc --api-key "$SHOP_API_KEY" --tenant-id shop \\
        --merchant-origin https://shop.example --user-id customer-42 \\
        --enrollment-url "https://bank.example/spc/enroll?token=..."

It prints each step and exits non-zero if anything is refused.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from softauthn import SoftAuthenticator  # noqa: E402  (a test helper, on purpose: it plays the browser)


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _check(response: httpx.Response, step: str) -> dict[str, Any]:
    if response.status_code >= 400:
        raise SystemExit(f"{step} refused: HTTP {response.status_code} {response.text}")
    return response.json() if response.content else {}


def transaction_hash(data: dict[str, Any]) -> str:
    """What the token's trans.hash must be: SHA-256 of RFC 8785 JSON, base64url.

    For ASCII member names and no floats, sorted-key compact JSON is RFC 8785.
    """
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return _b64encode(hashlib.sha256(canonical).digest())


def enroll(client: httpx.Client, authenticator: SoftAuthenticator, enrollment_url: str, merchant_origin: str) -> str:
    """Register a credential through the enrolment iframe's two endpoints, as the iframe would."""
    parts = urlsplit(enrollment_url)
    issuer_origin = f"{parts.scheme}://{parts.netloc}"
    token = enrollment_url.split("token=", 1)[1]
    base = enrollment_url.split("/enroll?", 1)[0]
    headers = {"Origin": issuer_origin}  # the iframe's own document makes these calls
    options = _check(client.post(f"{base}/enroll/options", json={"token": token}, headers=headers), "enrol options")
    credential = authenticator.create(
        rp_id=options["rp"]["id"], challenge=options["challenge"], origin=issuer_origin,
        user_handle=_b64decode(options["user"]["id"]), cross_origin=True, top_origin=merchant_origin,
    )
    enrolled = _check(client.post(f"{base}/enroll/verify", json={"token": token, "credential": credential},
                                  headers=headers), "enrol verify")
    return enrolled["credentialId"]


def browser_confirms(authenticator: SoftAuthenticator, initialized: dict[str, Any], merchant_origin: str) -> dict:
    """What PaymentRequest.show() resolves to in the merchant page, as AuthenticationResponseJSON."""
    spc = initialized["secure_payment_confirmation"]
    payment = {"rpId": spc["rpId"], "topOrigin": merchant_origin}
    payment.update({k: spc[k] for k in ("payeeName", "payeeOrigin") if k in spc})
    payment["paymentEntitiesLogos"] = spc.get("paymentEntitiesLogos", [])
    payment["total"] = initialized["total"]
    payment["instrument"] = {"icon": spc["instrument"]["icon"], "displayName": spc["instrument"]["displayName"]}
    return authenticator.get(
        credential_id=_b64decode(spc["credentialIds"][0]), challenge=spc["challenge"], origin=merchant_origin,
        type="payment.get", payment=payment,
    )


def run(client: httpx.Client, *, base_url: str, api_key: str, tenant_id: str, merchant_origin: str, user_id: str,
        enrollment_url: str, amount: str = "42.00", currency: str = "EUR", payee_name: str | None = None,
        out: Any = sys.stdout) -> dict[str, Any]:
    """The whole flow; returns the verified claims of the result token."""
    authenticator = SoftAuthenticator()
    credential_id = enroll(client, authenticator, enrollment_url, merchant_origin)
    print(f"1. enrolled credential {credential_id} for {user_id}", file=out)

    api = {"apiKey": api_key}
    transaction_id = "demo-" + secrets.token_hex(6)
    # The payee shown is the merchant itself: its page origin (https only), and its configured name if given.
    data: dict[str, Any] = {"amount": amount, "currency": currency, "order": transaction_id}
    if merchant_origin.startswith("https://"):
        data["payee_origin"] = merchant_origin
    if payee_name is not None:
        data["payee_name"] = payee_name
    initialized = _check(client.post(f"{base_url}/transaction/initialize", headers=api, json={
        "user_id": user_id, "transaction_id": transaction_id, "transaction_data": data,
    }), "initialize")
    print(f"2. initialized {transaction_id}: SPC with {len(initialized['secure_payment_confirmation']['credentialIds'])}"
          f" credential(s), total {initialized['total']}, fallback {initialized['fallback_url'][:60]}...", file=out)

    credential = browser_confirms(authenticator, initialized, merchant_origin)
    print("3. the cardholder confirmed (payment.get assertion signed)", file=out)

    token = _check(client.post(f"{base_url}/transaction/finalize", headers=api, json={
        "transaction_id": transaction_id, "credential": credential,
    }), "finalize")["token"]
    print(f"4. finalized: token {token[:40]}...", file=out)

    jwks = _check(client.get(f"{base_url}/.well-known/jwks.json"), "jwks")
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key=key, algorithms=["ES256"], audience=tenant_id, issuer=base_url)
    if claims["trans"]["id"] != transaction_id or claims["trans"]["hash"] != transaction_hash(data):
        raise SystemExit(f"the token confirms another transaction: {claims['trans']}")
    print(f"5. verified against the JWKS: sub={claims['sub']} aud={claims['aud']} trans={claims['trans']}", file=out)

    replay = client.post(f"{base_url}/transaction/finalize", headers=api,
                         json={"transaction_id": transaction_id, "credential": credential})
    print(f"6. replaying the same assertion: HTTP {replay.status_code} {replay.json().get('code')}", file=out)
    return claims


def main(argv: list[str] | None = None, *, client: httpx.Client | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the issuer app's URL, origin + mount path")
    parser.add_argument("--api-key", required=True, help="the merchant's API key")
    parser.add_argument("--tenant-id", required=True, help="the merchant's id (the token's aud)")
    parser.add_argument("--merchant-origin", required=True, help="the merchant page origin the link was minted for")
    parser.add_argument("--user-id", required=True, help="the user the enrolment link was minted for")
    parser.add_argument("--enrollment-url", required=True, help="an unused enrolment link for that user")
    parser.add_argument("--amount", default="42.00")
    parser.add_argument("--currency", default="EUR")
    parser.add_argument("--payee-name", help="the merchant's name as configured at the issuer (needed on http origins)")
    args = parser.parse_args(argv)
    own_client = client is None
    client = client or httpx.Client(timeout=30)
    try:
        run(client, base_url=args.base_url.rstrip("/"), api_key=args.api_key, tenant_id=args.tenant_id,
            merchant_origin=args.merchant_origin, user_id=args.user_id, enrollment_url=args.enrollment_url,
            amount=args.amount, currency=args.currency, payee_name=args.payee_name)
    finally:
        if own_client:
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
