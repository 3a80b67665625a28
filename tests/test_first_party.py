"""The issuer's own site as a tenant: a plain passkey (webauthn.get) confirms its transactions, never a merchant's.

docs/security.md A3. The bank's tenant ``bank`` is the issuer's own origin, and
``online`` another https origin under the rp_id; ``lookalike`` has an origin
that only looks like the bank's. Every credential is enrolled through the real
endpoints and every assertion is genuinely signed by the software authenticator.
"""

from __future__ import annotations

from typing import Any

import pytest
from factories import ADMIN_API_KEY, BANK_API_KEY, ISSUER_ORIGIN, MERCHANT_ORIGIN, make_config
from payment_helpers import (
    CARD_NAME,
    TRANSACTION_DATA,
    b64decode,
    jwt_claims,
    make_bank,
    signed_payment,
    spc_assertion,
)
from softauthn import b64url

from spc_embed import Merchant
from spc_embed.storage import TransactionRecord

ONLINE_ORIGIN = "https://online.issuer.test"
ONLINE_API_KEY = "online-banking-key-0123456789abcdef"
LOOKALIKE_ORIGIN = "https://issuer.test.lookalike.example"
LOOKALIKE_API_KEY = "lookalike-shop-key-0123456789abcdef"

TENANTS = (
    Merchant(id="bank", name="Test Bank", origins=(ISSUER_ORIGIN,), api_keys=(BANK_API_KEY,)),
    Merchant(id="online", name="Test Bank Online", origins=(ONLINE_ORIGIN,), api_keys=(ONLINE_API_KEY,)),
    Merchant(id="lookalike", name="Lookalike", origins=(LOOKALIKE_ORIGIN,), api_keys=(LOOKALIKE_API_KEY,)),
)
KEYS = {"bank": BANK_API_KEY, "online": ONLINE_API_KEY, "lookalike": LOOKALIKE_API_KEY}
ORIGINS = {"bank": ISSUER_ORIGIN, "online": ONLINE_ORIGIN, "lookalike": LOOKALIKE_ORIGIN}
NAMES = {"bank": "Test Bank", "online": "Test Bank Online", "lookalike": "Lookalike"}


@pytest.fixture
def bank(tmp_path, database_url):
    with make_bank(tmp_path, database_url=database_url, extra_merchants=TENANTS,
                   admin_api_keys=(ADMIN_API_KEY,)) as bank:
        yield bank


class Tenant:
    """One tenant's backend: initialize and finalize with its own key, as the Hanko Passkey API's example does."""

    def __init__(self, bank: Any, tenant: str) -> None:
        self.bank, self.tenant, self.count = bank, tenant, 0

    def initialize(self) -> tuple[str, dict[str, Any]]:
        self.count += 1
        transaction_id = f"{self.tenant}-transfer-{self.count}"
        data = {**TRANSACTION_DATA, "payee_name": NAMES[self.tenant], "payee_origin": ORIGINS[self.tenant]}
        response = self.bank.client.post("/transaction/initialize", headers={"apiKey": KEYS[self.tenant]}, json={
            "user_id": "alice", "transaction_id": transaction_id, "transaction_data": data,
        })
        assert response.status_code == 200, response.text
        return transaction_id, response.json()

    def passkey_assertion(self, options: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        """What navigator.credentials.get({publicKey}) on the tenant's own page signs."""
        public_key = options["publicKey"]
        overrides.setdefault("origin", ORIGINS[self.tenant])
        return self.bank.auth.get(credential_id=self.bank.credential_id,
                                  challenge=overrides.pop("challenge", public_key["challenge"]), **overrides)

    def finalize(self, credential: dict[str, Any]) -> Any:
        # The Hanko shape: the credential as-is; the transaction is the one whose challenge it signed.
        return self.bank.client.post("/transaction/finalize", headers={"apiKey": KEYS[self.tenant]}, json=credential)

    def state(self, transaction_id: str) -> str:
        record: TransactionRecord = self.bank.run(self.bank.issuer.store.get_transaction, self.tenant, transaction_id)
        return record.state

    def assert_rejected(self, response: Any, code: str, transaction_id: str, *, sign_count: int = 0) -> None:
        assert response.status_code == 400, response.text
        assert response.json()["code"] == code, response.text
        assert self.state(transaction_id) == "pending"
        assert self.bank.sign_count() == sign_count


def test_is_first_party_is_the_issuer_origin_or_https_under_the_rp_id(tmp_path) -> None:
    config = make_config(tmp_path / "spc.db", extra_merchants=TENANTS)
    assert config.is_first_party(ISSUER_ORIGIN) and config.is_first_party(ONLINE_ORIGIN)
    assert config.is_first_party("https://issuer.test:8443")
    for origin in (MERCHANT_ORIGIN, LOOKALIKE_ORIGIN, "https://notissuer.test", "http://online.issuer.test",
                   "https://issuer.test.example", "https://test"):
        assert not config.is_first_party(origin), origin
    assert config.first_party_origins == {ISSUER_ORIGIN, ONLINE_ORIGIN}


@pytest.mark.parametrize("tenant", ["bank", "online"])
def test_a3_first_party_passkey_confirms_its_own_transaction(bank, tenant) -> None:
    site = Tenant(bank, tenant)
    transaction_id, options = site.initialize()
    assertion = site.passkey_assertion(options)
    response = site.finalize(assertion)
    assert response.status_code == 200, response.text
    token = response.json()["token"]
    claims = bank.issuer.result_signer.verify(token, audience=tenant)
    assert claims["sub"] == "alice" and claims["trans"]["id"] == transaction_id
    # The browser showed no amount: the result says so.
    assert claims["trans"]["method"] == "passkey"
    assert claims["trans"]["hash"] == options["transaction_hash"]
    record = bank.run(bank.issuer.store.get_transaction, tenant, transaction_id)
    assert record.state == "succeeded" and record.method == "passkey"
    assert bank.sign_count() == 1
    # Single use, as every confirmation.
    again = site.finalize(assertion)
    assert again.status_code == 409 and again.json()["code"] == "transaction_already_finalized"


def test_a3_first_party_page_may_still_use_spc(bank) -> None:
    site = Tenant(bank, "bank")
    transaction_id, options = site.initialize()
    assertion = spc_assertion(bank.auth, options, origin=ISSUER_ORIGIN,
                              payment=signed_payment(options, top_origin=ISSUER_ORIGIN))
    response = site.finalize(assertion)
    assert response.status_code == 200, response.text
    assert jwt_claims(response.json()["token"])["trans"]["method"] == "spc"


@pytest.mark.parametrize("origin", [MERCHANT_ORIGIN, ISSUER_ORIGIN])
def test_a3_a_merchants_transaction_never_accepts_a_passkey_assertion(bank, origin) -> None:
    transaction_id, options = bank.new_transaction()
    public_key = options["publicKey"]
    assertion = bank.auth.get(credential_id=bank.credential_id, challenge=public_key["challenge"], origin=origin)
    response = bank.finalize(transaction_id, assertion)
    bank.assert_rejected(response, "unexpected_type", transaction_id, sign_count=0)
    bare = bank.finalize(None, assertion)
    bank.assert_rejected(bare, "unexpected_type", transaction_id, sign_count=0)


def test_a3_an_origin_that_only_looks_like_the_banks_is_a_merchant(bank) -> None:
    site = Tenant(bank, "lookalike")
    transaction_id, options = site.initialize()
    site.assert_rejected(site.finalize(site.passkey_assertion(options)), "unexpected_type", transaction_id)


@pytest.mark.parametrize(("overrides", "code"), [
    # The ceremony ran in a frame on someone else's page.
    ({"cross_origin": True, "top_origin": MERCHANT_ORIGIN}, "cross_origin_not_allowed"),
    ({"cross_origin": False, "top_origin": ISSUER_ORIGIN}, "top_origin_without_cross_origin"),
    # Another first-party page than the one the transaction was initialized for.
    ({"origin": ONLINE_ORIGIN}, "origin_mismatch"),
    ({"origin": "https://issuer.test:8443"}, "origin_mismatch"),
    ({"uv": False}, "user_not_verified"),
    ({"rp_id": "online.issuer.test"}, "rp_id_mismatch"),
])
def test_a4_first_party_passkey_checks(bank, overrides, code) -> None:
    site = Tenant(bank, "bank")
    transaction_id, options = site.initialize()
    response = bank.client.post("/transaction/finalize", headers={"apiKey": BANK_API_KEY}, json={
        "transaction_id": transaction_id, "credential": site.passkey_assertion(options, **overrides),
    })
    site.assert_rejected(response, code, transaction_id)


def test_a4_first_party_passkey_for_another_transaction_of_the_bank(bank) -> None:
    site = Tenant(bank, "bank")
    first_id, first = site.initialize()
    second_id, _ = site.initialize()
    response = bank.client.post("/transaction/finalize", headers={"apiKey": BANK_API_KEY}, json={
        "transaction_id": second_id, "credential": site.passkey_assertion(first),
    })
    site.assert_rejected(response, "challenge_mismatch", second_id)
    assert site.state(first_id) == "pending"


def test_a10_first_party_passkey_sign_count_must_increase(bank) -> None:
    site = Tenant(bank, "bank")
    _, options = site.initialize()
    assert site.finalize(site.passkey_assertion(options, sign_count=5)).status_code == 200
    transaction_id, options = site.initialize()
    site.assert_rejected(site.finalize(site.passkey_assertion(options, sign_count=5)), "sign_count_not_increased",
                         transaction_id, sign_count=5)


def test_a3_another_tenants_key_does_not_finalize_the_banks_transaction(bank) -> None:
    site = Tenant(bank, "bank")
    transaction_id, options = site.initialize()
    response = Tenant(bank, "online").finalize(site.passkey_assertion(options))
    assert response.status_code == 404 and response.json()["code"] == "transaction_not_found"
    assert site.state(transaction_id) == "pending"


def register_without_a_card(bank: Any, user_id: str = "alice") -> dict[str, Any]:
    """Hanko's registration calls on the bank's page, with no card: a passkey of the rp_id only."""
    headers = {"apiKey": ADMIN_API_KEY}
    started = bank.client.post("/registration/initialize", headers=headers,
                               json={"user_id": user_id, "username": f"{user_id}@example.com"})
    assert started.status_code == 200, started.text
    options = started.json()["publicKey"]
    credential = bank.auth.create(rp_id=options["rp"]["id"], challenge=options["challenge"], origin=ISSUER_ORIGIN,
                                  user_handle=b64decode(options["user"]["id"]))
    finished = bank.client.post("/registration/finalize", headers=headers, json=credential)
    assert finished.status_code == 200, finished.text
    return credential


def test_h6_a_passkey_without_a_card_confirms_only_on_the_banks_own_site(bank) -> None:
    cardless = register_without_a_card(bank)
    cardless_id = b64decode(cardless["rawId"])
    # A merchant is offered the card's credential only.
    _, merchant_options = bank.new_transaction()
    assert [c["id"] for c in merchant_options["publicKey"]["allowCredentials"]] == [b64url(bank.credential_id)]
    # The bank's own site is offered both; the card shown is the card's.
    site = Tenant(bank, "bank")
    transaction_id, options = site.initialize()
    assert [c["id"] for c in options["publicKey"]["allowCredentials"]] == [b64url(bank.credential_id),
                                                                          b64url(cardless_id)]
    assert options["secure_payment_confirmation"]["instrument"]["displayName"] == CARD_NAME
    # SPC shows a card, so the passkey without one cannot confirm through it...
    spc = spc_assertion(bank.auth, options, credential_id=cardless_id, origin=ISSUER_ORIGIN,
                        payment=signed_payment(options, top_origin=ISSUER_ORIGIN))
    refused = site.finalize(spc)
    assert refused.status_code == 400 and refused.json()["code"] == "credential_not_allowed"
    assert site.state(transaction_id) == "pending"
    # ...but a plain passkey assertion on the bank's page does, and its token names no card.
    passkey = bank.auth.get(credential_id=cardless_id, challenge=options["publicKey"]["challenge"],
                            origin=ISSUER_ORIGIN)
    confirmed = site.finalize(passkey)
    assert confirmed.status_code == 200, confirmed.text
    trans = bank.issuer.result_signer.verify(confirmed.json()["token"], audience="bank")["trans"]
    assert trans["method"] == "passkey" and "instrument_id" not in trans
    # A merchant's transaction refuses it whatever its shape.
    merchant_id, merchant_options = bank.new_transaction()
    spc_at_merchant = spc_assertion(bank.auth, merchant_options, credential_id=cardless_id)
    bank.assert_rejected(bank.finalize(merchant_id, spc_at_merchant), "credential_not_allowed", merchant_id)
