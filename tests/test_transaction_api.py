"""The transaction API over HTTP: keys (T1), ids (T2), states (T3), S8, S11, CORS, opt-out, listings,
credential management, the JWKS, the fallback page, the OpenAPI document and the demo script."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import jwt
import pytest
import rfc8785
from factories import (
    API_KEY,
    ISSUER_ORIGIN,
    MERCHANT_ORIGIN,
    OTHER_API_KEY,
    OTHER_MERCHANT_ORIGIN,
    make_issuer,
)
from payment_helpers import (
    TRANSACTION_DATA,
    enroll,
    fallback_assertion,
    finalize,
    initialize,
    jwt_claims,
    make_bank,
    spc_assertion,
)
from softauthn import SoftAuthenticator, b64url
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from spc_embed import Merchant
from spc_embed.api_keys import ApiKeys
from spc_embed.openapi import openapi_document

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "admin-key-0123456789abcdefghijkl"
# What the other tenant ("shop", named "Other Shop") initializes: the payee it shows is itself (H7).
OTHER_SHOP_DATA = {**TRANSACTION_DATA, "payee_name": "Other Shop", "payee_origin": OTHER_MERCHANT_ORIGIN}
SHAPE_CODES = {"invalid_request", "unsupported_media_type", "invalid_transaction_data", "payload_too_large"}


@pytest.fixture
def bank(tmp_path, database_url):
    with make_bank(tmp_path, admin_api_keys=(ADMIN_KEY,), database_url=database_url) as bank:
        yield bank


def error(response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


# T1: API keys


@pytest.mark.parametrize("headers", [
    {},
    {"apiKey": "wrong-key-0123456789abcdefghij"},
    {"apiKey": ""},
    {"Authorization": "Bearer wrong-key-0123456789abcdefghij"},
    {"Authorization": f"Basic {API_KEY}"},
    {"Authorization": "Bearer"},
    {"apiKey": API_KEY, "Authorization": f"Bearer {OTHER_API_KEY}"},
    {"apiKey": ADMIN_KEY},
], ids=["missing", "wrong", "empty", "wrong-bearer", "basic", "bearer-empty", "two-keys", "admin-is-no-merchant"])
def test_t1_initialize_refuses_bad_keys(bank, headers) -> None:
    response = bank.client.post("/transaction/initialize", headers=headers, json={
        "user_id": "alice", "transaction_id": "t", "transaction_data": TRANSACTION_DATA})
    assert error(response) == (401, "invalid_api_key")
    assert bank.run(bank.issuer.store.get_transaction, "merchant", "t") is None


def test_t1_both_header_forms_are_accepted(bank) -> None:
    for index, headers in enumerate(({"apiKey": API_KEY}, {"Authorization": f"Bearer {API_KEY}"},
                                     {"authorization": f"bearer {API_KEY}", "apikey": API_KEY})):
        response = bank.client.post("/transaction/initialize", headers=headers, json={
            "user_id": "alice", "transaction_id": f"t{index}", "transaction_data": TRANSACTION_DATA})
        assert response.status_code == 200, response.text


def test_t1_revoked_key_is_refused(tmp_path) -> None:
    kept = "kept-key-0123456789abcdefghijklmn"
    issuer = make_issuer(tmp_path / "spc.db", merchants=(
        Merchant(id="merchant", name="Test Merchant", origins=(MERCHANT_ORIGIN,), api_keys=(kept,)),))
    with TestClient(issuer.app, base_url=ISSUER_ORIGIN) as client:
        assert error(initialize(client)) == (401, "invalid_api_key")  # API_KEY was removed from the list
        assert initialize(client, api_key=kept).status_code == 200


def test_t1_other_tenants_key_finds_nothing(bank) -> None:
    transaction_id, options = bank.new_transaction()
    response = finalize(bank.client, spc_assertion(bank.auth, options), transaction_id=transaction_id,
                        api_key=OTHER_API_KEY)
    assert error(response) == (404, "transaction_not_found")
    assert bank.state(transaction_id) == "pending" and bank.sign_count() == 0


def test_t1_keys_are_stored_hashed_and_compared_against_every_digest(bank, monkeypatch) -> None:
    merchant = bank.issuer.config.merchant("merchant")
    assert merchant.api_keys == () and merchant.api_key_hashes == (hashlib.sha256(API_KEY.encode()).hexdigest(),)
    assert API_KEY not in repr(bank.issuer.config)
    keys = ApiKeys(bank.issuer.config.merchants, bank.issuer.config.admin_api_key_hashes)
    calls = []
    import spc_embed.api_keys as api_keys

    real = api_keys.hmac.compare_digest
    monkeypatch.setattr(api_keys.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    for presented in (API_KEY, OTHER_API_KEY, "nobody-0123456789abcdefghijkl"):
        calls.clear()
        keys.lookup(presented)
        assert len(calls) == 3  # two merchant keys and the admin key, whatever matched


@pytest.mark.parametrize("headers", [
    {"apiKey": API_KEY.encode() + b"\xff", "Authorization": b"Bearer " + API_KEY.encode() + b"\xff"},
    {"apiKey": b"\xc3\xa9" + API_KEY.encode(), "Authorization": b"Bearer " + API_KEY.encode()},
    {"apiKey": API_KEY.encode(), "Authorization": b"Bearer \xe9" + API_KEY.encode()[1:]},
    {"apiKey": b"\xff" * 40},
    {"Authorization": b"Bearer \x80" + API_KEY.encode()},
], ids=["both-same-non-ascii", "both-non-ascii-apikey", "both-non-ascii-bearer", "apikey-only", "bearer-only"])
@pytest.mark.parametrize("path", ["/transaction/initialize", "/transaction/finalize", "/transaction/opt-out"])
def test_h4_non_ascii_api_key_headers_are_401_not_500(bank, headers, path: str) -> None:
    # Header bytes reach the app as latin-1 text; compare_digest raises TypeError on non-ASCII str.
    response = bank.client.post(path, headers=headers, json={
        "user_id": "alice", "transaction_id": "t", "transaction_data": TRANSACTION_DATA})
    assert error(response) == (401, "invalid_api_key")
    assert bank.run(bank.issuer.store.get_transaction, "merchant", "t") is None


def test_h4_api_keys_must_be_printable_ascii_in_the_configuration() -> None:
    from spc_embed.errors import ConfigurationError

    for key in ("caf\u00e9-0123456789abcdefghijklmn", "tab\tkey-0123456789abcdefghijklmn",
                " spaced-0123456789abcdefghijk"):
        with pytest.raises(ConfigurationError, match="printable ASCII"):
            Merchant(id="m", origins=(MERCHANT_ORIGIN,), api_keys=(key,))


PSP_KEY = "psp-api-key-0123456789abcdefghijklm"


def test_h7_the_payee_shown_is_the_merchant_itself_or_one_of_its_configured_payees(tmp_path, database_url) -> None:
    merchants = (
        Merchant(id="merchant", name="Test Merchant", origins=(MERCHANT_ORIGIN,), api_keys=(API_KEY,)),
        Merchant(id="psp", name="Pay Facilitator", origins=("https://psp.test",), api_keys=(PSP_KEY,), payees=(
            {"name": "Corner Shop", "origin": "https://corner.test"}, {"name": "Book Store"})),
    )
    with make_bank(tmp_path, merchants=merchants, database_url=database_url) as bank:
        def initialize_with(key: str, transaction_id: str, **payee: str):
            return initialize(bank.client, transaction_id=transaction_id, api_key=key,
                              data={"amount": "10.00", "currency": "EUR", **payee})

        refused = [
            (API_KEY, {"payee_name": "Other Shop"}),                                  # another shop's name
            (API_KEY, {"payee_origin": "https://shop.test"}),                           # another shop's origin
            (API_KEY, {"payee_name": "Test Merchant", "payee_origin": "https://psp.test"}),
            (API_KEY, {"payee_name": "Corner Shop"}),                                   # someone else's payee
            (PSP_KEY, {"payee_name": "Book Store", "payee_origin": "https://corner.test"}),  # two payees mixed
            (PSP_KEY, {"payee_name": "Corner Shop", "payee_origin": "https://evil.test"}),
            (PSP_KEY, {"payee_name": "Test Merchant"}),
        ]
        for index, (key, payee) in enumerate(refused):
            response = initialize_with(key, f"refused-{index}", **payee)
            assert error(response) == (400, "payee_not_allowed"), (payee, response.text)
            for tenant in ("merchant", "psp"):
                assert bank.run(bank.issuer.store.get_transaction, tenant, f"refused-{index}") is None
        accepted = [
            (API_KEY, {"payee_name": "Test Merchant", "payee_origin": MERCHANT_ORIGIN}),
            (API_KEY, {"payee_name": "Test Merchant"}),
            (API_KEY, {"payee_origin": MERCHANT_ORIGIN}),
            (PSP_KEY, {"payee_name": "Corner Shop", "payee_origin": "https://corner.test"}),
            (PSP_KEY, {"payee_origin": "https://corner.test"}),
            (PSP_KEY, {"payee_name": "Book Store"}),
            (PSP_KEY, {"payee_name": "Pay Facilitator", "payee_origin": "https://psp.test"}),
        ]
        for index, (key, payee) in enumerate(accepted):
            response = initialize_with(key, f"accepted-{index}", **payee)
            assert response.status_code == 200, (payee, response.text)
            spc = response.json()["secure_payment_confirmation"]
            shown = (spc.get("payeeName"), spc.get("payeeOrigin"))
            assert shown == (payee.get("payee_name"), payee.get("payee_origin"))


def test_h7_payees_are_checked_in_the_configuration() -> None:
    from spc_embed.config import Payee
    from spc_embed.errors import ConfigurationError

    for payee, message in (({}, "name, an origin or both"), ({"origin": "http://corner.test"}, "https"),
                           ({"name": "Shop\x00"}, "control characters"), ({"name": "x", "url": "y"}, "tables such as")):
        with pytest.raises(ConfigurationError, match=message):
            Merchant(id="psp", origins=(MERCHANT_ORIGIN,), payees=(payee,))
    merchant = Merchant(id="psp", origins=(MERCHANT_ORIGIN,), payees=(Payee(name="Corner Shop"),))
    assert merchant.may_show_payee("Corner Shop", None) and not merchant.may_show_payee("Corner Shop", MERCHANT_ORIGIN)
    assert merchant.may_show_payee(None, MERCHANT_ORIGIN)  # its own origin; it has no name configured
    assert not merchant.may_show_payee("", None) and not merchant.may_show_payee("Anyone", None)


# T2: transaction ids


def test_t2_duplicate_id_in_a_tenant_is_409(bank) -> None:
    assert initialize(bank.client, transaction_id="dup").status_code == 200
    again = initialize(bank.client, transaction_id="dup", data={**TRANSACTION_DATA, "amount": "1.00"})
    assert error(again) == (409, "transaction_exists")
    assert bank.run(bank.issuer.store.get_transaction, "merchant", "dup").data["amount"] == "100.00"


def test_t2_same_id_in_another_tenant_is_accepted(bank) -> None:
    assert initialize(bank.client, transaction_id="shared").status_code == 200
    other = initialize(bank.client, transaction_id="shared", api_key=OTHER_API_KEY,
                       data=OTHER_SHOP_DATA)
    assert other.status_code == 200, other.text
    assert other.json()["merchant_origin"] == OTHER_MERCHANT_ORIGIN


async def test_t2_concurrent_identical_initializes_one_200_rest_409(tmp_path) -> None:
    issuer = make_issuer(tmp_path / "spc.db")
    transport = httpx.ASGITransport(app=issuer.app)  # runs no lifespan: the test enters it
    body = {"user_id": "alice", "transaction_id": "race", "transaction_data": TRANSACTION_DATA}
    async with issuer.lifespan(), httpx.AsyncClient(transport=transport, base_url=ISSUER_ORIGIN) as client:
        responses = await asyncio.gather(*(
            client.post("/transaction/initialize", json=body, headers={"apiKey": API_KEY}) for _ in range(16)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1 and statuses.count(409) == 15, statuses
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"transaction_exists"}


# T3 and S8: states only move forward


def test_t3_s8_finalize_twice_is_refused(bank) -> None:
    transaction_id, options = bank.new_transaction()
    assertion = spc_assertion(bank.auth, options)
    assert bank.finalize(transaction_id, assertion).status_code == 200
    assert error(bank.finalize(transaction_id, assertion)) == (409, "transaction_already_finalized")
    second = spc_assertion(bank.auth, options)  # even a fresh signature over the same challenge
    assert error(bank.finalize(transaction_id, second)) == (409, "transaction_already_finalized")
    assert bank.state(transaction_id) == "succeeded" and bank.sign_count() == 1


def test_t3_after_expiry_is_refused_and_listed_as_expired(bank) -> None:
    transaction_id, options = bank.new_transaction()
    assertion = spc_assertion(bank.auth, options)
    bank.clock.advance(bank.issuer.config.transaction_ttl + 1)
    assert error(bank.finalize(transaction_id, assertion)) == (409, "transaction_expired")
    assert bank.state(transaction_id) == "expired" and bank.sign_count() == 0
    listed = bank.client.get("/transactions", params={"user_id": "alice"}, headers={"apiKey": API_KEY}).json()
    assert listed["transactions"][0]["state"] == "expired"


def test_t3_unknown_transaction_id(bank) -> None:
    _, options = bank.new_transaction()
    response = bank.finalize("no-such-order", spc_assertion(bank.auth, options))
    assert error(response) == (404, "transaction_not_found")


def test_t3_changed_amount_or_currency_is_refused(bank) -> None:
    for total in ({"value": "99.99", "currency": "EUR"}, {"value": "100.00", "currency": "GBP"}):
        transaction_id, options = bank.new_transaction()
        options["total"] = total  # the page shows the user something else than was initialized
        response = bank.finalize(transaction_id, spc_assertion(bank.auth, options))
        bank.assert_rejected(response, "total_mismatch", transaction_id, sign_count=0)


def test_s8_assertion_of_transaction_a_on_transaction_b(bank) -> None:
    a, options_a = bank.new_transaction()
    b, _ = bank.new_transaction()
    response = bank.finalize(b, spc_assertion(bank.auth, options_a))
    bank.assert_rejected(response, "challenge_mismatch", b, sign_count=0)
    assert bank.state(a) == "pending"


def test_s8_tenant_a_transaction_with_tenant_b_key_or_origin(bank) -> None:
    transaction_id, options = bank.new_transaction()
    assertion = spc_assertion(bank.auth, options)
    assert error(finalize(bank.client, assertion, transaction_id=transaction_id, api_key=OTHER_API_KEY)) == \
        (404, "transaction_not_found")
    assert error(finalize(bank.client, assertion, transaction_id=transaction_id, api_key=None,
                          origin=OTHER_MERCHANT_ORIGIN)) == (404, "transaction_not_found")
    assert error(finalize(bank.client, assertion, transaction_id=None, api_key=OTHER_API_KEY)) == \
        (404, "transaction_not_found")
    assert bank.state(transaction_id) == "pending"


def test_t3_failed_transactions_stay_failed(bank) -> None:
    done, options = bank.new_transaction()
    assert bank.finalize(done, spc_assertion(bank.auth, options)).status_code == 200
    assert error(bank.client.post("/transaction/opt-out", json={"transaction_id": done},
                                  headers={"apiKey": API_KEY})) == (409, "transaction_already_finalized")
    transaction_id, options = bank.new_transaction()
    assert bank.client.post("/transaction/opt-out", json={"transaction_id": transaction_id},
                            headers={"apiKey": API_KEY}).status_code == 200
    assert error(bank.finalize(transaction_id, spc_assertion(bank.auth, options))) == (409, "transaction_failed")
    assert bank.state(transaction_id) == "failed" and bank.state(done) == "succeeded"


# The result token


def test_token_verifies_against_the_served_jwks(bank) -> None:
    transaction_id, options = bank.new_transaction()
    token = bank.finalize(transaction_id, spc_assertion(bank.auth, options)).json()["token"]
    jwks = bank.client.get("/.well-known/jwks.json")
    assert jwks.headers["cache-control"].startswith("public")
    key = jwt.PyJWKSet.from_dict(jwks.json())[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key=key, algorithms=["ES256"], audience="merchant", issuer=ISSUER_ORIGIN)
    assert claims["trans"] == {"id": transaction_id, "hash": options["transaction_hash"], "method": "spc",
                              "instrument_id": "Test Visa ****1234"}  # no id in the link: the card's name
    assert claims["exp"] - claims["iat"] == bank.issuer.config.result_token_ttl
    assert claims["cred"] == b64url(bank.credential_id) and claims["sub"] == "alice"


def test_hanko_shape_bare_credential_is_found_by_its_challenge(bank) -> None:
    transaction_id, options = bank.new_transaction()
    response = finalize(bank.client, spc_assertion(bank.auth, options), transaction_id=None)
    assert response.status_code == 200, response.text
    assert jwt_claims(response.json()["token"])["trans"]["id"] == transaction_id


def test_mounted_under_a_path_everything_carries_the_prefix(tmp_path) -> None:
    issuer = make_issuer(tmp_path / "spc.db", mount_path="/spc")
    host = Starlette(routes=[Mount("/spc", app=issuer.app)], lifespan=issuer.lifespan)
    auth = SoftAuthenticator()
    with TestClient(host, base_url=ISSUER_ORIGIN) as client:
        enroll(client, issuer, auth)
        initialized = initialize(client, prefix="/spc").json()
        assert initialized["fallback_url"].startswith(ISSUER_ORIGIN + "/spc/pay?handle=")
        token = finalize(client, spc_assertion(auth, initialized), transaction_id="order-1", prefix="/spc")
        assert jwt_claims(token.json()["token"])["iss"] == ISSUER_ORIGIN + "/spc"
        assert client.get("/spc/openapi.json").json()["servers"] == [{"url": ISSUER_ORIGIN + "/spc"}]


# Initialize input


# Hanko's transaction_data as it is (issue 10): number amounts spelled as sent, the merchant's defaults


HANKO_DATA = '{"amount": 123.45, "usedFor": "Buying a Hanko Cloud membership"}'
NAMELESS_KEY = "nameless-api-key-0123456789abcdef"


@pytest.fixture
def hanko_bank(tmp_path, database_url):
    merchants = (
        Merchant(id="merchant", name="Test Merchant", origins=(MERCHANT_ORIGIN,), api_keys=(API_KEY,),
                 default_currency="EUR"),
        # No name and two origins: no payee to default to, and no default currency.
        Merchant(id="nameless", origins=("https://a.nameless.test", "https://b.nameless.test"),
                 api_keys=(NAMELESS_KEY,)),
    )
    with make_bank(tmp_path, merchants=merchants, database_url=database_url) as bank:
        yield bank


def initialize_raw(bank, data: str, transaction_id: str, *, api_key: str = API_KEY):
    """initialize with transaction_data exactly as written here: the app's own JSON parser reads the number text."""
    body = f'{{"user_id": "alice", "transaction_id": "{transaction_id}", "transaction_data": {data}}}'
    return bank.client.post("/transaction/initialize", content=body.encode(),
                            headers={"apiKey": api_key, "Content-Type": "application/json"})


def assert_refused_and_not_stored(bank, response, transaction_id: str, code: str, says: str,
                                  tenant: str = "merchant") -> None:
    assert error(response) == (400, code), response.text
    assert says in response.json()["message"], response.text
    assert bank.run(bank.issuer.store.get_transaction, tenant, transaction_id) is None


def test_hankos_example_transaction_data_is_initialized_shown_signed_and_hashed_as_sent(hanko_bank) -> None:
    bank = hanko_bank
    response = initialize_raw(bank, HANKO_DATA, "hanko-1")
    assert response.status_code == 200, response.text
    options = response.json()
    assert options["total"] == {"currency": "EUR", "value": "123.45"}
    spc = options["secure_payment_confirmation"]
    assert (spc["payeeName"], spc["payeeOrigin"]) == ("Test Merchant", MERCHANT_ORIGIN)
    # What a merchant computes on its side with any RFC 8785 library over the data it sent.
    merchant_side = rfc8785.dumps({"amount": 123.45, "usedFor": "Buying a Hanko Cloud membership"})
    assert options["transaction_hash"] == b64url(hashlib.sha256(merchant_side).digest())
    record = bank.run(bank.issuer.store.get_transaction, "merchant", "hanko-1")
    assert record.data == {"amount": 123.45, "usedFor": "Buying a Hanko Cloud membership"}  # no default written in
    assert (record.expected["amount"], record.expected["currency"]) == ("123.45", "EUR")
    # The browser signs the amount it was shown; the issuer accepts exactly that, and the token names the hash.
    token = bank.finalize("hanko-1", spc_assertion(bank.auth, options))
    assert token.status_code == 200, token.text
    assert jwt_claims(token.json()["token"])["trans"]["hash"] == options["transaction_hash"]
    listed = bank.client.get("/transactions", params={"user_id": "alice"}, headers={"apiKey": API_KEY})
    assert listed.json()["transactions"][0]["transaction_data"]["amount"] == 123.45


@pytest.mark.parametrize(("written", "shown"), [("100.10", "100.10"), ("100", "100"), ("0.5", "0.5"),
                                                ('"100.10"', "100.10")])
def test_a_number_amount_is_shown_exactly_as_written_in_the_body(hanko_bank, written: str, shown: str) -> None:
    response = initialize_raw(hanko_bank, f'{{"amount": {written}}}', "spelled")
    assert response.status_code == 200, response.text
    assert response.json()["total"] == {"currency": "EUR", "value": shown}


@pytest.mark.parametrize(("written", "says"), [
    ("1e2", "has an exponent"), ("1E2", "has an exponent"), ("-1", "has a sign"), ("-0", "has a sign"),
    ("-0.0", "has a sign"), ("1.23456", "5 fraction digits"), ("12345678901234567.5", "more than 15 integer digits"),
    ("999999999999999.9999", "send it as a string"), ("true", "not true"), ("null", "not null"),
    ('"1e2"', "must be a decimal string"), ('"100.1 "', "must be a decimal string"),
])
def test_a_bad_amount_is_400_with_how_to_write_it_and_nothing_is_stored(hanko_bank, written: str, says: str) -> None:
    response = initialize_raw(hanko_bank, f'{{"amount": {written}, "usedFor": "x"}}', "bad-amount")
    assert_refused_and_not_stored(hanko_bank, response, "bad-amount", "invalid_transaction_data", says)


def test_a_number_beyond_a_double_is_400_and_nothing_is_stored(hanko_bank) -> None:
    response = initialize_raw(hanko_bank, '{"amount": "1.00", "big": 1e400}', "huge")
    assert_refused_and_not_stored(hanko_bank, response, "huge", "invalid_request", "too large for a double")


def test_without_currency_or_payee_a_merchant_without_defaults_is_told_both_ways_to_fix_it(hanko_bank) -> None:
    bank = hanko_bank
    response = initialize_raw(bank, '{"amount": 1.00, "payee_origin": "https://a.nameless.test"}', "no-currency",
                              api_key=NAMELESS_KEY)
    assert_refused_and_not_stored(bank, response, "no-currency", "invalid_transaction_data",
                                  "send it", tenant="nameless")
    assert "default_currency" in response.json()["message"]
    response = initialize_raw(bank, '{"amount": 1.00, "currency": "EUR", "merchant_origin": "https://a.nameless.test"}',
                              "no-payee", api_key=NAMELESS_KEY)
    assert_refused_and_not_stored(bank, response, "no-payee", "invalid_transaction_data",
                                  "configure this merchant's name", tenant="nameless")
    named = initialize_raw(bank, '{"amount": 1.00, "currency": "EUR", "payee_origin": "https://b.nameless.test", '
                                 '"merchant_origin": "https://b.nameless.test"}', "named", api_key=NAMELESS_KEY)
    assert named.status_code == 200, named.text


def test_a_sent_currency_or_payee_wins_over_the_defaults_and_h7_still_holds(hanko_bank) -> None:
    bank = hanko_bank
    response = initialize_raw(bank, '{"amount": 5, "currency": "CHF", "payee_name": "Test Merchant"}', "sent")
    assert response.status_code == 200, response.text
    assert response.json()["total"] == {"currency": "CHF", "value": "5"}
    spc = response.json()["secure_payment_confirmation"]
    assert spc["payeeName"] == "Test Merchant" and "payeeOrigin" not in spc
    response = initialize_raw(bank, '{"amount": 5, "payee_name": "Someone Else"}', "other-payee")
    assert_refused_and_not_stored(bank, response, "other-payee", "payee_not_allowed", "Someone Else")


def test_a_bad_default_currency_is_refused_at_start_up() -> None:
    from spc_embed.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="default_currency 'eur' must be an upper-case ISO 4217 code"):
        Merchant(id="merchant", origins=(MERCHANT_ORIGIN,), default_currency="eur")


@pytest.mark.parametrize("body,code", [
    ({"transaction_id": "t", "transaction_data": TRANSACTION_DATA}, "invalid_request"),
    ({"user_id": "alice", "transaction_data": TRANSACTION_DATA}, "invalid_request"),
    ({"user_id": "alice", "transaction_id": "x" * 129, "transaction_data": TRANSACTION_DATA}, "invalid_request"),
    ({"user_id": "alice", "transaction_id": "t"}, "invalid_transaction_data"),
    ({"user_id": "alice", "transaction_id": "t", "transaction_data": {**TRANSACTION_DATA, "amount": -100}},
     "invalid_transaction_data"),
    ({"user_id": "alice", "transaction_id": "t",
      "transaction_data": {**TRANSACTION_DATA, "merchant_origin": OTHER_MERCHANT_ORIGIN}}, "invalid_transaction_data"),
    ({"user_id": "alice", "transaction_id": "t", "transaction_data": TRANSACTION_DATA, "show_opt_out": "yes"},
     "invalid_request"),
])
def test_initialize_refuses_malformed_bodies(bank, body, code: str) -> None:
    response = bank.client.post("/transaction/initialize", json=body, headers={"apiKey": API_KEY})
    assert error(response) == (400, code)


def test_initialize_refuses_other_media_types_and_huge_bodies(bank) -> None:
    response = bank.client.post("/transaction/initialize", content="{}", headers={"apiKey": API_KEY,
                                                                                 "Content-Type": "text/plain"})
    assert error(response) == (415, "unsupported_media_type")
    huge = {"user_id": "alice", "transaction_id": "t", "transaction_data": {**TRANSACTION_DATA, "x": "y" * 70_000}}
    assert error(bank.client.post("/transaction/initialize", json=huge, headers={"apiKey": API_KEY})) == \
        (413, "payload_too_large")


def test_initialize_offers_show_opt_out_on_request(bank) -> None:
    _, options = bank.new_transaction(show_opt_out=True)
    assert options["secure_payment_confirmation"]["showOptOut"] is True
    _, options = bank.new_transaction()
    assert "showOptOut" not in options["secure_payment_confirmation"]


# S11: no probing for users or credentials


def _shape(options: dict) -> dict:
    """The response with its random and per-transaction values blanked."""
    blank = json.loads(json.dumps(options))
    for holder, key in ((blank["publicKey"], "challenge"), (blank["secure_payment_confirmation"], "challenge"),
                        (blank, "fallback_url"), (blank, "transaction_id"), (blank, "expires_at"),
                        (blank, "opt_out_token")):
        holder[key] = "*"
    return blank


def test_s11_unknown_user_and_user_without_credentials_are_indistinguishable(bank) -> None:
    # carol exists (she started an enrolment) but has no credential; dave's only credential is revoked.
    url = bank.issuer.enrollment_url(user_id="carol", user_name="c", user_display_name="C", instrument_name="Card",
                                     instrument_icon="https://issuer.test/c.png", merchant_origin=MERCHANT_ORIGIN)
    bank.client.post("/enroll/options", json={"token": url.split("token=")[1]}, headers={"Origin": ISSUER_ORIGIN})
    assert bank.run(bank.issuer.store.get_user, "carol") is not None
    dave_auth = SoftAuthenticator()
    daves = enroll(bank.client, bank.issuer, dave_auth, user_id="dave")
    bank.run(bank.issuer.store.revoke_credential, "dave", daves)
    answers = [initialize(bank.client, user_id=user, transaction_id=f"probe-{user}")
               for user in ("nobody-at-all", "carol", "dave")]
    assert {r.status_code for r in answers} == {200}
    shapes = [_shape(r.json()) for r in answers]
    assert shapes[0] == shapes[1] == shapes[2]
    assert shapes[0]["secure_payment_confirmation"]["credentialIds"] == []
    assert shapes[0]["secure_payment_confirmation"]["instrument"] is None
    assert set(answers[0].headers.keys()) == set(answers[1].headers.keys())
    # ...and a repeated id answers alike too.
    repeats = [initialize(bank.client, user_id=user, transaction_id=f"probe-{user}") for user in ("nobody-at-all", "carol")]
    assert [error(r) for r in repeats] == [(409, "transaction_exists")] * 2


# CORS and Origin checks (W4, W6)


def test_w4_finalize_from_the_merchant_page_gets_exact_cors(bank) -> None:
    transaction_id, options = bank.new_transaction()
    response = finalize(bank.client, spc_assertion(bank.auth, options), transaction_id=transaction_id,
                        api_key=None, origin=MERCHANT_ORIGIN)
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == MERCHANT_ORIGIN
    assert "origin" in response.headers["vary"].lower()
    assert "access-control-allow-credentials" not in response.headers


def test_w4_errors_for_the_merchant_page_are_readable(bank) -> None:
    response = finalize(bank.client, {"id": "x"}, transaction_id="nope", api_key=None, origin=MERCHANT_ORIGIN)
    assert error(response) == (404, "transaction_not_found")
    assert response.headers["access-control-allow-origin"] == MERCHANT_ORIGIN


@pytest.mark.parametrize("origin", ["https://evil.test", "null", "http://merchant.test", "https://merchant.test/"])
def test_w4_preflight_only_for_allowlisted_origins(bank, origin: str) -> None:
    for path in ("/transaction/finalize", "/transaction/opt-out"):
        response = bank.client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert response.status_code == 204
        assert "access-control-allow-origin" not in response.headers
        assert response.headers["vary"] == "Origin"
        allowed = bank.client.options(path, headers={"Origin": MERCHANT_ORIGIN,
                                                     "Access-Control-Request-Method": "POST"})
        assert allowed.headers["access-control-allow-origin"] == MERCHANT_ORIGIN
        assert allowed.headers["access-control-allow-headers"] == "Content-Type"  # no apiKey from a browser


def test_w4_server_to_server_endpoints_send_no_cors(bank) -> None:
    for response in (
        bank.client.post("/transaction/initialize", headers={"apiKey": API_KEY, "Origin": MERCHANT_ORIGIN}, json={
            "user_id": "alice", "transaction_id": "cors", "transaction_data": TRANSACTION_DATA}),
        bank.client.get("/transactions", params={"user_id": "alice"},
                        headers={"apiKey": API_KEY, "Origin": MERCHANT_ORIGIN}),
        bank.client.get("/credentials", params={"user_id": "alice"},
                        headers={"apiKey": ADMIN_KEY, "Origin": MERCHANT_ORIGIN}),
    ):
        assert response.status_code == 200
        assert not any(h.startswith("access-control-") for h in response.headers)


@pytest.mark.parametrize("origin", [None, "null", "https://evil.test", ISSUER_ORIGIN])
def test_w6_browser_finalize_needs_an_allowlisted_origin(bank, origin) -> None:
    transaction_id, options = bank.new_transaction()
    response = finalize(bank.client, spc_assertion(bank.auth, options), transaction_id=transaction_id,
                        api_key=None, origin=origin)
    bank.assert_rejected(response, "origin_not_allowed", transaction_id, status=403, sign_count=0)
    assert "access-control-allow-origin" not in response.headers


def test_storage_unavailable_is_503_with_retry_after_readable_by_the_page(tmp_path) -> None:
    issuer = make_issuer(tmp_path / "spc.db")
    # Not entered, so no lifespan: the store is closed and every use of it is StorageUnavailable.
    client = TestClient(issuer.app, base_url=ISSUER_ORIGIN)
    proof = issuer.context.opt_out_tokens.mint("merchant", "t")
    for path, body in (("/transaction/finalize", {"transaction_id": "t", "credential": {}}),
                       ("/transaction/opt-out", {"transaction_id": "t", "opt_out_token": proof})):
        response = client.post(path, json=body, headers={"Origin": MERCHANT_ORIGIN})
        assert error(response) == (503, "storage_unavailable")
        assert response.headers["retry-after"] == "1"
        assert response.headers["access-control-allow-origin"] == MERCHANT_ORIGIN
        assert response.headers["access-control-expose-headers"] == "Retry-After"
        assert "access-control-allow-credentials" not in response.headers
    # The fallback iframe shows the outage as its error page.
    page = client.get("/pay", params={"handle": issuer.payment_handles.mint("merchant", "t")})
    assert page.status_code == 503 and page.headers["retry-after"] == "1"
    assert _page_config(page)["error"]["code"] == "storage_unavailable"


# Opt-out


def test_opt_out_is_recorded_and_unlinks_the_credentials_for_that_merchant(bank) -> None:
    transaction_id, options = bank.new_transaction(show_opt_out=True)
    response = bank.client.post("/transaction/opt-out", headers={"Origin": MERCHANT_ORIGIN},
                                json={"transaction_id": transaction_id, "opt_out_token": options["opt_out_token"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "opted_out", "transaction_id": transaction_id}
    assert response.headers["access-control-allow-origin"] == MERCHANT_ORIGIN
    assert bank.state(transaction_id) == "failed"
    (opt_out,) = bank.run(bank.issuer.store.list_opt_outs, "alice")
    assert opt_out.reported_by == f"origin {MERCHANT_ORIGIN}" and opt_out.credential_ids == (b64url(bank.credential_id),)
    # This merchant is no longer offered alice's credentials: the same answer as for an unknown user.
    _, after = bank.new_transaction()
    _, unknown = bank.new_transaction(user_id="nobody")
    assert _shape(after) == _shape(unknown)
    # Other merchants still are, and the credential itself is not revoked.
    other = initialize(bank.client, user_id="alice", transaction_id="elsewhere", api_key=OTHER_API_KEY,
                       data=OTHER_SHOP_DATA)
    assert other.json()["secure_payment_confirmation"]["credentialIds"] == [b64url(bank.credential_id)]
    # A credential enrolled after the opt-out is offered again.
    bank.clock.advance(1)
    newer = enroll(bank.client, bank.issuer, bank.auth)
    _, again = bank.new_transaction()
    assert again["secure_payment_confirmation"]["credentialIds"] == [b64url(newer)]


def test_h1_an_opt_out_from_a_page_needs_the_opt_out_token_and_a_stranger_learns_nothing(bank) -> None:
    pending, options = bank.new_transaction(show_opt_out=True)
    settled, settled_options = bank.new_transaction(show_opt_out=True)
    assert bank.finalize(settled, spc_assertion(bank.auth, settled_options)).status_code == 200
    assert options["opt_out_token"] != settled_options["opt_out_token"]

    def opt_out(transaction_id: str, **proof: str):
        return bank.client.post("/transaction/opt-out", json={"transaction_id": transaction_id, **proof},
                                headers={"Origin": MERCHANT_ORIGIN})

    # A program sending a merchant's Origin: with no token, a wrong one, or another transaction's, every
    # transaction id gets the same answer, whether it is pending, settled or unknown.
    answers = set()
    for transaction_id in (pending, settled, "no-such-order"):
        assert error(opt_out(transaction_id)) == (400, "opt_out_token_required")
        for token in ("A" * 43, settled_options["opt_out_token"] if transaction_id != settled
                      else options["opt_out_token"], options["opt_out_token"] + "A"):
            response = opt_out(transaction_id, opt_out_token=token)
            answers.add((response.status_code, response.text))
    assert answers == {(404, '{"code":"transaction_not_found","message":"no such transaction for this merchant"}')}
    assert bank.state(pending) == "pending" and bank.run(bank.issuer.store.list_opt_outs, "alice") == []
    _, later = bank.new_transaction()
    assert later["secure_payment_confirmation"]["credentialIds"] == [b64url(bank.credential_id)]

    # The page that was handed initialize's answer can report, and then learns the state.
    assert opt_out(settled, opt_out_token=settled_options["opt_out_token"]).json()["code"] == \
        "transaction_already_finalized"
    assert opt_out(pending, opt_out_token=options["opt_out_token"]).status_code == 200
    assert bank.state(pending) == "failed"
    # The merchant's backend needs no token: its API key is the proof.
    other, _ = bank.new_transaction()
    assert bank.client.post("/transaction/opt-out", json={"transaction_id": other},
                            headers={"apiKey": API_KEY}).status_code == 200


def test_h5_finalize_raced_against_opt_out_through_the_app_settles_once(bank) -> None:
    # One lock order for every multi-row write (spc_embed/storage/store.py): finalize locks the transaction, then
    # the credential; opt-out only the transaction. Raced through the app, on each backend (on PostgreSQL the old
    # opposite order was "deadlock detected", a 500): exactly one of the two wins, the other is a clean refusal.
    rounds = []
    for _ in range(20):
        transaction_id, options = bank.new_transaction(show_opt_out=True)
        rounds.append((transaction_id, options, spc_assertion(bank.auth, options)))

    async def race() -> list[tuple[int, int]]:
        transport = httpx.ASGITransport(app=bank.issuer.app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER_ORIGIN) as client:
            outcomes = []
            for index, (transaction_id, options, assertion) in enumerate(rounds):
                finalize_call = client.post("/transaction/finalize", headers={"apiKey": API_KEY},
                                            json={"transaction_id": transaction_id, "credential": assertion})
                opt_out_call = client.post("/transaction/opt-out", headers={"Origin": MERCHANT_ORIGIN}, json={
                    "transaction_id": transaction_id, "opt_out_token": options["opt_out_token"]})
                calls = (finalize_call, opt_out_call) if index % 2 else (opt_out_call, finalize_call)
                answers = await asyncio.gather(*calls)
                finalized, opted_out = answers if index % 2 else answers[::-1]
                for answer in (finalized, opted_out):
                    assert answer.status_code in (200, 400, 409), answer.text
                    if answer.status_code != 200:  # too late: the other one has settled it
                        assert answer.json()["code"] in {"transaction_already_finalized", "transaction_failed",
                                                         "transaction_not_pending", "challenge_used"}, answer.text
                outcomes.append((finalized.status_code, opted_out.status_code))
            return outcomes

    outcomes = asyncio.run(race())
    for (transaction_id, _, _), (finalized, opted_out) in zip(rounds, outcomes, strict=True):
        assert (finalized == 200) != (opted_out == 200), (transaction_id, finalized, opted_out)
        assert bank.state(transaction_id) == ("succeeded" if finalized == 200 else "failed")
    opt_outs = bank.run(bank.issuer.store.list_opt_outs, "alice")
    assert len(opt_outs) == sum(opted_out == 200 for _, opted_out in outcomes)


def test_opt_out_of_another_merchants_transaction_is_not_found(bank) -> None:
    transaction_id, options = bank.new_transaction()
    body = {"transaction_id": transaction_id, "opt_out_token": options["opt_out_token"]}
    for headers in ({"apiKey": OTHER_API_KEY}, {"Origin": OTHER_MERCHANT_ORIGIN}):
        response = bank.client.post("/transaction/opt-out", json=body, headers=headers)
        assert error(response) == (404, "transaction_not_found")
    assert error(bank.client.post("/transaction/opt-out", json={"transaction_id": transaction_id},
                                  headers={"Origin": "https://evil.test"})) == (403, "origin_not_allowed")
    assert bank.state(transaction_id) == "pending"


# Listings and credential management


def test_transactions_listing_is_scoped_by_key(bank) -> None:
    mine, _ = bank.new_transaction()
    initialize(bank.client, user_id="alice", transaction_id="theirs", api_key=OTHER_API_KEY,
               data=OTHER_SHOP_DATA)
    as_merchant = bank.client.get("/transactions", params={"user_id": "alice"}, headers={"apiKey": API_KEY})
    assert [t["transaction_id"] for t in as_merchant.json()["transactions"]] == [mine]
    listed = as_merchant.json()["transactions"][0]
    assert listed["transaction_data"] == TRANSACTION_DATA and listed["state"] == "pending"
    as_admin = bank.client.get("/transactions", params={"user_id": "alice"}, headers={"apiKey": ADMIN_KEY})
    assert {t["transaction_id"] for t in as_admin.json()["transactions"]} == {mine, "theirs"}
    assert error(bank.client.get("/transactions", params={"user_id": "alice"})) == (401, "invalid_api_key")
    assert error(bank.client.get("/transactions", headers={"apiKey": API_KEY})) == (400, "invalid_request")


def test_credential_management_needs_the_admin_key(bank) -> None:
    cid = b64url(bank.credential_id)
    for headers in ({}, {"apiKey": API_KEY}):
        assert error(bank.client.get("/credentials", params={"user_id": "alice"}, headers=headers))[0] == 401
        assert error(bank.client.delete(f"/credentials/{cid}", headers=headers))[0] == 401
        assert error(bank.client.patch(f"/credentials/{cid}", json={"name": "x"}, headers=headers))[0] == 401
        assert error(bank.client.get(f"/credentials/{cid}", headers=headers))[0] == 401
    admin = {"apiKey": ADMIN_KEY}
    (listed,) = bank.client.get("/credentials", params={"user_id": "alice"}, headers=admin).json()["credentials"]
    assert listed["id"] == cid and listed["instrument_name"] == "Test Visa ****1234" and "public_key" not in listed
    assert bank.client.get(f"/credentials/{cid}", headers=admin).json() == listed  # one, as the Hanko Passkey API
    renamed = bank.client.patch(f"/credentials/{cid}", json={"name": "Work laptop"}, headers=admin)
    assert renamed.status_code == 200 and renamed.json()["name"] == "Work laptop"
    assert bank.client.get(f"/credentials/{cid}", headers=admin).json()["name"] == "Work laptop"
    assert bank.client.delete(f"/credentials/{cid}", headers=admin).status_code == 204
    assert error(bank.client.delete(f"/credentials/{cid}", headers=admin)) == (404, "credential_not_found")
    assert error(bank.client.get(f"/credentials/{cid}", headers=admin)) == (404, "credential_not_found")
    assert error(bank.client.get("/credentials/not!base64", headers=admin)) == (404, "credential_not_found")
    assert error(bank.client.patch("/credentials/not!base64", json={"name": "x"}, headers=admin)) == \
        (404, "credential_not_found")
    assert bank.client.get("/credentials", params={"user_id": "alice"}, headers=admin).json() == {"credentials": []}
    _, options = bank.new_transaction()
    assert options["secure_payment_confirmation"]["credentialIds"] == []


def test_revoked_between_initialize_and_finalize_is_refused(bank) -> None:
    transaction_id, options = bank.new_transaction()
    bank.client.delete(f"/credentials/{b64url(bank.credential_id)}", headers={"apiKey": ADMIN_KEY})
    response = bank.finalize(transaction_id, spc_assertion(bank.auth, options))
    bank.assert_rejected(response, "credential_not_allowed", transaction_id)


# The fallback page


def _page_config(response) -> dict:
    match = re.search(r'<script type="application/json" id="spc-pay-config">(.*?)</script>', response.text, re.S)
    assert match, response.text
    return json.loads(match.group(1))


def test_fallback_page_shows_the_transaction_and_carries_its_options(bank) -> None:
    transaction_id, options = bank.new_transaction()
    page = bank.client.get(options["fallback_url"].removeprefix(ISSUER_ORIGIN))
    assert page.status_code == 200
    assert page.headers["content-security-policy"].endswith(f"frame-ancestors {MERCHANT_ORIGIN}")
    assert "x-frame-options" not in page.headers
    config = _page_config(page)
    assert config["publicKey"] == options["publicKey"] and config["merchantOrigin"] == MERCHANT_ORIGIN
    assert config["finalizeUrl"] == ISSUER_ORIGIN + "/pay/finalize" and config["error"] is None
    assert config["display"]["amount"] == "100.00" and config["transactionId"] == transaction_id
    assert "€100.00" in page.text and "Test Visa ****1234" in page.text and "widget/pay.js" in page.text
    # The iframe completes the same transaction; afterwards the page only shows why it cannot.
    assertion = fallback_assertion(bank.auth, options)
    response = bank.client.post("/pay/finalize", json={"handle": config["handle"], "credential": assertion},
                                headers={"Origin": ISSUER_ORIGIN})
    assert response.status_code == 200
    done = bank.client.get(options["fallback_url"].removeprefix(ISSUER_ORIGIN))
    assert done.status_code == 409 and _page_config(done)["error"]["code"] == "transaction_already_finalized"
    assert _page_config(done)["handle"] is None


def test_fallback_page_with_a_bad_handle_is_an_error_page(bank) -> None:
    page = bank.client.get("/pay?handle=forged.handle.value")
    assert page.status_code == 401 and _page_config(page)["error"]["code"] == "invalid_token"
    assert _page_config(page)["publicKey"] is None


def test_fallback_page_for_a_user_without_credentials(bank) -> None:
    _, options = bank.new_transaction(user_id="nobody")
    page = bank.client.get(options["fallback_url"].removeprefix(ISSUER_ORIGIN))
    assert page.status_code == 409 and _page_config(page)["error"]["code"] == "no_credentials"


# The OpenAPI document stays true


def _app_routes(app) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:
        if isinstance(route, Route):
            found |= {(route.path, method.lower()) for method in route.methods if method != "HEAD"}
    return found


def test_openapi_documents_every_route_and_nothing_else(bank) -> None:
    served = bank.client.get("/openapi.json").json()
    assert served == json.loads(json.dumps(openapi_document(bank.issuer.context)))
    assert served["openapi"].startswith("3.1")
    documented = {(path, method) for path, item in served["paths"].items() for method in item}
    assert documented == _app_routes(bank.issuer.app)


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_openapi_request_examples_are_accepted_by_their_handlers(bank) -> None:
    document = bank.client.get("/openapi.json").json()
    checked = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if not content:
                continue
            example, schema = content["example"], _resolve(document, content["schema"])
            for required in schema.get("required", []):
                assert required in example, (path, required)
            key = ADMIN_KEY if path.startswith("/credentials") else API_KEY
            headers = {"apiKey": key} if operation.get("security") else {"Origin": ISSUER_ORIGIN}
            url = path.replace("{credential_id}", b64url(bank.credential_id))
            response = bank.client.request(method.upper(), url, json=example, headers=headers)
            assert response.status_code < 500, (path, response.text)
            if response.status_code >= 400:
                assert response.json()["code"] not in SHAPE_CODES, (path, response.text)
            assert str(response.status_code) in operation["responses"], (path, response.status_code)
            checked += 1
    assert checked >= 7


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/transaction/finalize", "OPTIONS, POST"),  # one route per method: the 405 names both
    ("PUT", "/credentials/AAAA", "DELETE, GET, HEAD, PATCH"),
    ("POST", "/healthz", "GET, HEAD"),  # Starlette answers HEAD wherever it answers GET
])
def test_405_names_every_method_of_the_path(bank, method: str, path: str, allowed: str) -> None:
    response = bank.client.request(method, path, headers={"apiKey": API_KEY})
    assert error(response) == (405, "method_not_allowed")
    assert response.headers["allow"] == allowed


def test_openapi_states_number_amounts_and_the_defaults_of_this_issuers_merchants(bank) -> None:
    import jsonschema_rs

    schema = bank.client.get("/openapi.json").json()["components"]["schemas"]["TransactionData"]
    amount = jsonschema_rs.validator_for(schema["properties"]["amount"])
    assert all(amount.is_valid(value) for value in (123.45, 100, 0, 0.1, "100.10", 999999999999999))
    assert not any(amount.is_valid(value) for value in (1.23456, -1, 10**15, True, None, "1e2", "-1"))
    # Every merchant here is a payee of its own (a name, one https origin), none has a default currency.
    assert "anyOf" not in schema and schema["required"] == ["amount", "currency"]


def test_openapi_makes_currency_optional_when_a_merchant_has_a_default(hanko_bank) -> None:
    schema = hanko_bank.client.get("/openapi.json").json()["components"]["schemas"]["TransactionData"]
    assert schema["required"] == ["amount"]


def test_openapi_states_this_issuers_payees(bank) -> None:
    schema = bank.client.get("/openapi.json").json()["components"]["schemas"]["TransactionData"]
    payees = [choice["properties"] for choice in schema["allOf"][0]["anyOf"]]
    assert {"payee_name": {"const": "Test Merchant"}, "payee_origin": {"enum": [MERCHANT_ORIGIN]}} in payees
    assert {"payee_name": {"const": "Other Shop"}, "payee_origin": {"enum": [OTHER_MERCHANT_ORIGIN]}} in payees
    assert schema["properties"]["merchant_origin"]["enum"] == sorted([MERCHANT_ORIGIN, OTHER_MERCHANT_ORIGIN])


# The README's server-to-server script


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("server_to_server", ROOT / "scripts" / "server_to_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_server_to_server_script_in_process(tmp_path) -> None:
    script = _load_script()
    issuer = make_issuer(tmp_path / "spc.db", mount_path="/spc")
    host = Starlette(routes=[Mount("/spc", app=issuer.app)], lifespan=issuer.lifespan)
    url = issuer.enrollment_url(user_id="customer-42", user_name="c", user_display_name="C",
                                instrument_name="Card ****1234", instrument_icon="https://issuer.test/card.png",
                                merchant_origin=MERCHANT_ORIGIN)
    with TestClient(host, base_url=ISSUER_ORIGIN) as client:
        assert script.main(["--base-url", ISSUER_ORIGIN + "/spc", "--api-key", API_KEY, "--tenant-id", "merchant",
                            "--merchant-origin", MERCHANT_ORIGIN, "--user-id", "customer-42",
                            "--enrollment-url", url], client=client) == 0


def test_server_to_server_script_against_a_running_server(tmp_path) -> None:
    uvicorn = pytest.importorskip("uvicorn")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    origin = f"http://localhost:{port}"
    issuer = make_issuer(tmp_path / "spc.db", issuer_origin=origin, rp_id="localhost")
    server = uvicorn.Server(uvicorn.Config(issuer.app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        url = issuer.enrollment_url(user_id="customer-42", user_name="c", user_display_name="C",
                                    instrument_name="Card ****1234", instrument_icon="https://issuer.test/c.png",
                                    merchant_origin=MERCHANT_ORIGIN)
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "server_to_server.py"), "--base-url", origin, "--api-key", API_KEY,
             "--tenant-id", "merchant", "--merchant-origin", MERCHANT_ORIGIN, "--user-id", "customer-42",
             "--enrollment-url", url],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5. verified against the JWKS" in result.stdout
    assert "6. replaying the same assertion: HTTP 409 transaction_already_finalized" in result.stdout


def test_healthz_answers_200_when_the_database_answers_and_503_when_not(tmp_path) -> None:
    issuer = make_issuer(tmp_path / "spc.db")
    closed = TestClient(issuer.app, base_url=ISSUER_ORIGIN).get("/healthz")  # no lifespan: no database
    assert error(closed) == (503, "storage_unavailable") and closed.headers["retry-after"] == "1"
    with TestClient(issuer.app, base_url=ISSUER_ORIGIN) as client:
        healthy = client.get("/healthz")
    assert (healthy.status_code, healthy.json()) == (200, {"status": "ok"})
    assert healthy.headers["cache-control"] == "no-store"
