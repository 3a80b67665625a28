"""Shared steps for the payment tests: enrol through the real endpoints, initialize, assert like a browser.

Every credential is created by the software authenticator and registered through
``/enroll/options`` and ``/enroll/verify``, so the whole path is exercised; every
assertion is a genuine signature over the bytes the verifier sees.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

from factories import API_KEY, ISSUER_ORIGIN, MERCHANT_ORIGIN, FakeClock, make_issuer
from softauthn import SoftAuthenticator, b64url
from starlette.testclient import TestClient

RP_ID = "issuer.test"
CARD_NAME = "Test Visa ****1234"
CARD_ICON = "https://issuer.test/card.png"
TRANSACTION_DATA: dict[str, Any] = {
    "amount": "100.00",
    "currency": "EUR",
    "payee_name": "Test Merchant",
    "payee_origin": MERCHANT_ORIGIN,
    "order": "A-1042",
}


def b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def enroll(client: Any, issuer: Any, auth: SoftAuthenticator, *, user_id: str = "alice",
           merchant_origin: str = MERCHANT_ORIGIN, instrument_name: str = CARD_NAME,
           instrument_icon: str = CARD_ICON, instrument_id: str | None = None, **create_overrides: Any) -> bytes:
    """Register a new credential for ``user_id`` through the enrolment iframe's endpoints; return its id."""
    url = issuer.enrollment_url(
        user_id=user_id, user_name=f"{user_id}@example.com", user_display_name=user_id.title(),
        instrument_name=instrument_name, instrument_icon=instrument_icon, merchant_origin=merchant_origin,
        instrument_id=instrument_id,
    )
    token = url.split("token=", 1)[1]
    headers = {"Origin": ISSUER_ORIGIN}
    options = client.post(issuer.mount_path + "/enroll/options", json={"token": token}, headers=headers)
    assert options.status_code == 200, options.text
    options = options.json()
    response = auth.create(
        rp_id=RP_ID, challenge=options["challenge"], origin=ISSUER_ORIGIN,
        user_handle=b64decode(options["user"]["id"]), cross_origin=True, top_origin=merchant_origin,
        **create_overrides,
    )
    verified = client.post(issuer.mount_path + "/enroll/verify", json={"token": token, "credential": response},
                           headers=headers)
    assert verified.status_code == 200, verified.text
    return b64decode(response["rawId"])


def initialize(client: Any, *, user_id: str = "alice", transaction_id: str = "order-1",
               data: dict[str, Any] | None = None, api_key: str = API_KEY, prefix: str = "",
               **body: Any) -> Any:
    return client.post(prefix + "/transaction/initialize", headers={"apiKey": api_key}, json={
        "user_id": user_id, "transaction_id": transaction_id,
        "transaction_data": TRANSACTION_DATA if data is None else data, **body,
    })


def signed_payment(options: dict[str, Any], *, top_origin: str = MERCHANT_ORIGIN) -> dict[str, Any]:
    """clientDataJSON.payment as Chromium writes it for the method data initialize returned."""
    spc = options["secure_payment_confirmation"]
    payment: dict[str, Any] = {"rpId": spc["rpId"], "topOrigin": top_origin}
    for key in ("payeeName", "payeeOrigin"):
        if key in spc:
            payment[key] = spc[key]
    payment["paymentEntitiesLogos"] = spc.get("paymentEntitiesLogos", [])
    payment["total"] = dict(options["total"])
    payment["instrument"] = {"icon": spc["instrument"]["icon"], "displayName": spc["instrument"]["displayName"]}
    return payment


def spc_assertion(auth: SoftAuthenticator, options: dict[str, Any], *, credential_id: bytes | None = None,
                  origin: str = MERCHANT_ORIGIN, payment: dict[str, Any] | None = None,
                  type: str = "payment.get", **overrides: Any) -> dict[str, Any]:
    """A genuine SPC assertion (AuthenticationResponseJSON) for the options initialize returned."""
    spc = options["secure_payment_confirmation"]
    cid = credential_id if credential_id is not None else b64decode(spc["credentialIds"][0])
    return auth.get(
        credential_id=cid, challenge=overrides.pop("challenge", spc["challenge"]), origin=origin, type=type,
        payment=signed_payment(options) if payment is None else payment, **overrides,
    )


def fallback_assertion(auth: SoftAuthenticator, options: dict[str, Any], *, credential_id: bytes | None = None,
                       top_origin: str | None = MERCHANT_ORIGIN, **overrides: Any) -> dict[str, Any]:
    """A genuine webauthn.get assertion made in the issuer iframe framed by the merchant page."""
    public_key = options["publicKey"]
    cid = credential_id if credential_id is not None else b64decode(public_key["allowCredentials"][0]["id"])
    overrides.setdefault("origin", ISSUER_ORIGIN)
    overrides.setdefault("cross_origin", top_origin is not None)
    return auth.get(credential_id=cid, challenge=public_key["challenge"], top_origin=top_origin, **overrides)


def finalize(client: Any, credential: dict[str, Any], *, transaction_id: str | None = "order-1",
             api_key: str | None = API_KEY, origin: str | None = None, prefix: str = "") -> Any:
    headers = {}
    if api_key is not None:
        headers["apiKey"] = api_key
    if origin is not None:
        headers["Origin"] = origin
    body = credential if transaction_id is None else {"transaction_id": transaction_id, "credential": credential}
    return client.post(prefix + "/transaction/finalize", json=body, headers=headers)


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims, unverified (verification is tested against the JWKS where it matters)."""
    return json.loads(b64decode(token.split(".")[1]))


def edit_client_data(assertion: dict[str, Any], edit: Any) -> dict[str, Any]:
    """Change clientDataJSON after signing (the signature no longer covers it)."""
    data = json.loads(b64decode(assertion["response"]["clientDataJSON"]))
    edit(data)
    changed = json.loads(json.dumps(assertion))
    changed["response"]["clientDataJSON"] = b64url(json.dumps(data, separators=(",", ":")).encode())
    return changed


class Bank:
    """An issuer app, a client, a cardholder ``alice`` with one enrolled credential, and state probes."""

    def __init__(self, issuer: Any, client: Any, auth: SoftAuthenticator, credential_id: bytes,
                 clock: FakeClock) -> None:
        self.issuer, self.client, self.auth, self.credential_id = issuer, client, auth, credential_id
        self.clock = clock
        self._count = 0

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Call an async Store method on the client's event loop."""
        return self.client.portal.call(lambda: fn(*args, **kwargs))

    def new_transaction(self, *, data: dict[str, Any] | None = None, user_id: str = "alice",
                        **body: Any) -> tuple[str, dict[str, Any]]:
        self._count += 1
        transaction_id = f"order-{self._count}"
        response = initialize(self.client, user_id=user_id, transaction_id=transaction_id, data=data, **body)
        assert response.status_code == 200, response.text
        return transaction_id, response.json()

    def state(self, transaction_id: str, tenant: str = "merchant") -> str:
        return self.run(self.issuer.store.get_transaction, tenant, transaction_id).state

    def sign_count(self, credential_id: bytes | None = None) -> int:
        return self.run(self.issuer.store.get_credential, credential_id or self.credential_id).sign_count

    def finalize(self, transaction_id: str | None, credential: dict[str, Any], **kwargs: Any) -> Any:
        return finalize(self.client, credential, transaction_id=transaction_id, **kwargs)

    def assert_rejected(self, response: Any, code: str, transaction_id: str, *, status: int = 400,
                        sign_count: int | None = None) -> None:
        """A clear 4xx with a stable code, nothing stored, no state advanced (docs/security.md, "What reject means")."""
        assert response.status_code == status, response.text
        assert response.json()["code"] == code, response.text
        assert set(response.json()) == {"code", "message"}
        assert self.state(transaction_id) == "pending"
        if sign_count is not None:
            assert self.sign_count() == sign_count


@contextlib.contextmanager
def make_bank(tmp_path: Any, **issuer_overrides: Any) -> Iterator[Bank]:
    """A :class:`Bank` on a fresh database; the clock is fake but starts now, so JWTs verify normally."""
    clock = FakeClock(time.time())
    issuer = make_issuer(tmp_path / "spc.db", clock=clock, **issuer_overrides)
    auth = SoftAuthenticator()
    with TestClient(issuer.app, base_url=ISSUER_ORIGIN) as client:
        credential_id = enroll(client, issuer, auth)
        yield Bank(issuer, client, auth, credential_id, clock)
