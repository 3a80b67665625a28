"""The Hanko Passkey API's "Example payment transaction", its backend calls unchanged, against a served issuer.

Hanko's example backend (Express) calls ``baseUrl + "/transaction/initialize"``
and ``baseUrl + "/transaction/finalize"`` with ``headers = { apiKey,
"Content-Type": "application/json" }`` and bodies made by ``JSON.stringify``:
``{user_id, transaction_id, transaction_data}`` with the frontend's
``{amount: 123.45, usedFor: "Buying a Hanko Cloud membership"}``, then the
credential the frontend's ``get(transactionOptions)`` returned, as-is. Here
the same requests go, byte for byte as JSON.stringify writes them, to the
issuer served by uvicorn; ``baseUrl`` is its mount. The page is the tenant's
own site (a first-party tenant, docs/security.md A3), so the credential is a
plain ``webauthn.get`` assertion, signed by the software authenticator, and
the result says ``method: "passkey"``. The real-browser run of Hanko's frontend
is in tests/browser/test_hanko.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import rfc8785
from browser.harness import ServedApp
from factories import make_issuer
from softauthn import SoftAuthenticator
from starlette.applications import Starlette
from starlette.routing import Mount

from spc_embed import Issuer, Merchant

MOUNT = "/spc"
API_KEY = "hanko-tenant-secret-api-key-0123456789"
# Registration is the issuer's back office: its admin key, where Hanko uses the tenant's one key for both.
ADMIN_KEY = "hanko-admin-secret-api-key-0123456789a"
SHOP_ORIGIN = "https://merchant.test"  # where the cardholder enrolled (the issuer iframe on a merchant page)
TRANSACTION_DATA = {"amount": 123.45, "usedFor": "Buying a Hanko Cloud membership"}


def stringify(value: Any) -> bytes:
    """JSON.stringify: no whitespace, non-ASCII as is; for these values the same bytes as JavaScript's."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


class HankoExampleBackend:
    """The two routes of Hanko's example backend, as Python: the same fetch calls, nothing added."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.headers = {"apiKey": api_key, "Content-Type": "application/json"}

    def start_transaction(self, user_id: str, transaction_body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.base_url + "/transaction/initialize", headers=self.headers, content=stringify({
            "user_id": user_id,
            "transaction_id": transaction_body["transactionId"],
            "transaction_data": transaction_body["transactionData"],
        }))

    def finalize_transaction(self, credential: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.base_url + "/transaction/finalize", headers=self.headers, content=stringify(credential))

    # Hanko's "Example Implementation": /passkey/start-registration and /passkey/finalize-registration.

    def start_registration(self, user: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.base_url + "/registration/initialize", headers=self.headers, content=stringify({
            "user_id": str(user["id"]),  # Must be a string!
            "username": user["username"],
        }))

    def finalize_registration(self, credential: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.base_url + "/registration/finalize", headers=self.headers,
                          content=stringify(credential))


@pytest.fixture
def served(tmp_path, database_url) -> Iterator[tuple[Issuer, str]]:
    with ServedApp.reserve("localhost") as site:
        issuer = make_issuer(
            tmp_path / "spc.db", database_url=database_url, rp_id="localhost", issuer_origin=site.origin,
            merchant_origin=SHOP_ORIGIN, mount_path=MOUNT,
            # The Hanko tenant is the bank's own site: it has no currency or payee in its transaction data.
            extra_merchants=(Merchant(id="hanko-tenant", name="Hanko Cloud", origins=(site.origin,),
                                      api_keys=(API_KEY,), default_currency="EUR"),),
            admin_api_keys=(ADMIN_KEY,),
        )
        site.start(Starlette(routes=[Mount(MOUNT, app=issuer.app)], lifespan=issuer.lifespan))
        yield issuer, site.origin


def enrol(issuer: Issuer, origin: str, auth: SoftAuthenticator, user_id: str) -> bytes:
    """The cardholder's payment credential, made in the issuer's enrolment iframe on a merchant page."""
    url = issuer.enrollment_url(user_id=user_id, user_name=f"{user_id}@example.com", user_display_name="Hanko User",
                                instrument_name="Test Visa ****1234", instrument_icon="https://localhost/card.png",
                                merchant_origin=SHOP_ORIGIN)
    token = url.split("token=", 1)[1]
    headers = {"Origin": origin}
    options = httpx.post(issuer.base_url + "/enroll/options", json={"token": token}, headers=headers)
    assert options.status_code == 200, options.text
    created = auth.create(rp_id="localhost", challenge=options.json()["challenge"], origin=origin,
                          user_handle=b64decode(options.json()["user"]["id"]), cross_origin=True,
                          top_origin=SHOP_ORIGIN)
    verified = httpx.post(issuer.base_url + "/enroll/verify", json={"token": token, "credential": created},
                          headers=headers)
    assert verified.status_code == 200, verified.text
    return b64decode(created["rawId"])


def test_hanko_example_backend_calls_unchanged(served) -> None:
    issuer, origin = served
    auth = SoftAuthenticator()
    credential_id = enrol(issuer, origin, auth, "42")
    backend = HankoExampleBackend(issuer.base_url, API_KEY)
    body = {"transactionId": "your-unique-transaction-identifier", "transactionData": TRANSACTION_DATA}

    started = backend.start_transaction("42", body)
    assert started.status_code == 200, started.text
    transaction_options = started.json()
    # "transactionOptions is an object that can directly be passed to get()"
    public_key = transaction_options["publicKey"]
    assert public_key["rpId"] == "localhost" and public_key["userVerification"] == "required"
    assert [c["id"] for c in public_key["allowCredentials"]] == [base64.urlsafe_b64encode(credential_id)
                                                                 .rstrip(b"=").decode()]
    # The amount is shown as it was written; the hash is RFC 8785 over the data as sent.
    assert transaction_options["total"] == {"currency": "EUR", "value": "123.45"}
    digest = hashlib.sha256(rfc8785.dumps(TRANSACTION_DATA)).digest()
    assert transaction_options["transaction_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert transaction_options["secure_payment_confirmation"]["payeeName"] == "Hanko Cloud"

    # "Using the same identifier with the same or another user on the same tenant will lead to a 409 Conflict"
    for user_id in ("42", "43"):
        repeated = backend.start_transaction(user_id, body)
        assert repeated.status_code == 409, repeated.text

    # The frontend: get(transactionOptions) on the tenant's own page, the credential sent back as-is.
    credential = auth.get(credential_id=credential_id, challenge=public_key["challenge"], origin=origin)
    finalized = backend.finalize_transaction(credential)
    assert finalized.status_code == 200, finalized.text
    token = finalized.json()["token"]

    # "Additional to the user claims the JWT contains a trans-claim which contains the transaction_id"
    jwks = httpx.get(issuer.base_url + "/.well-known/jwks.json").json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key=key, algorithms=["ES256"], audience="hanko-tenant", issuer=issuer.base_url)
    assert claims["sub"] == "42"
    assert claims["trans"]["id"] == "your-unique-transaction-identifier"
    assert claims["trans"]["hash"] == transaction_options["transaction_hash"]
    assert claims["trans"]["method"] == "passkey"

    # The credential is spent with its transaction.
    again = backend.finalize_transaction(credential)
    assert again.status_code == 409 and again.json()["code"] == "transaction_already_finalized"


def test_hanko_example_without_a_default_currency_says_how_to_fix_it(tmp_path) -> None:
    with ServedApp.reserve("localhost") as site:
        issuer = make_issuer(
            tmp_path / "spc.db", rp_id="localhost", issuer_origin=site.origin, merchant_origin=SHOP_ORIGIN,
            mount_path=MOUNT, extra_merchants=(Merchant(id="hanko-tenant", name="Hanko Cloud",
                                                        origins=(site.origin,), api_keys=(API_KEY,)),),
        )
        site.start(Starlette(routes=[Mount(MOUNT, app=issuer.app)], lifespan=issuer.lifespan))
        answer = HankoExampleBackend(issuer.base_url, API_KEY).start_transaction(
            "42", {"transactionId": "t-1", "transactionData": TRANSACTION_DATA})
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_transaction_data"
    assert "default_currency" in answer.json()["message"] and "currency" in answer.json()["message"]


def test_hanko_example_registration_then_transaction_unchanged(served) -> None:
    """Hanko's whole journey: register a passkey on the bank's page, then confirm a transaction with it."""
    issuer, origin = served
    auth = SoftAuthenticator()
    registrar = HankoExampleBackend(issuer.base_url, ADMIN_KEY)
    started = registrar.start_registration({"id": 7, "username": "jane@example.com"})
    assert started.status_code == 200, started.text
    creation_options = started.json()["publicKey"]
    assert creation_options["user"]["name"] == "jane@example.com"
    # create(creationOptions) top-level on the bank's page; the credential forwarded as-is.
    created = auth.create(rp_id="localhost", challenge=creation_options["challenge"], origin=origin,
                          user_handle=b64decode(creation_options["user"]["id"]))
    registered = registrar.finalize_registration(created)
    assert registered.status_code == 200, registered.text
    jwks = httpx.get(issuer.base_url + "/.well-known/jwks.json").json()
    token = registered.json()["token"]
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key=key, algorithms=["ES256"], audience="localhost", issuer=issuer.base_url)
    assert claims["sub"] == "7" and claims["cred"] == created["id"]

    backend = HankoExampleBackend(issuer.base_url, API_KEY)
    started = backend.start_transaction("7", {"transactionId": "membership-7", "transactionData": TRANSACTION_DATA})
    assert started.status_code == 200, started.text
    public_key = started.json()["publicKey"]
    assert [c["id"] for c in public_key["allowCredentials"]] == [created["id"]]
    credential = auth.get(credential_id=b64decode(created["rawId"]), challenge=public_key["challenge"], origin=origin)
    finalized = backend.finalize_transaction(credential)
    assert finalized.status_code == 200, finalized.text
    result = jwt.decode(finalized.json()["token"], key=key, algorithms=["ES256"], audience="hanko-tenant",
                        issuer=issuer.base_url)
    assert result["sub"] == "7" and result["cred"] == created["id"]
    assert result["trans"]["id"] == "membership-7" and result["trans"]["method"] == "passkey"
