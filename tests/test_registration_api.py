"""POST /registration/initialize and /registration/finalize: Hanko's registration calls, for the issuer's own pages.

Genuine signed responses from softauthn, a real database (both backends), and
the JWT checked against the published JWKS with PyJWT. Every refusal asserts
its exact code and that nothing was stored: no user, no challenge, no
credential, no challenge consumed (docs/security.md R15).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from factories import ADMIN_API_KEY, API_KEY, BANK_API_KEY, ISSUER_ORIGIN, MERCHANT_ORIGIN, FakeClock, make_issuer
from softauthn import SoftAuthenticator
from starlette.testclient import TestClient

from spc_embed import Issuer, Merchant, Store
from spc_embed.storage.plans import Plan, fetch_row

RP_ID = "issuer.test"
SUBDOMAIN_ORIGIN = "https://www.issuer.test"  # a first-party tenant's origin under the rp_id
ICON = ISSUER_ORIGIN + "/widget/card.png"
CARD = {"instrument_id": "card-7", "instrument_name": "Test Card ****4242", "instrument_icon": ICON}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(tmp_path: Path, clock: FakeClock, database_url: str) -> Issuer:
    bank = Merchant(id="bank", name="Test Bank", origins=(ISSUER_ORIGIN, SUBDOMAIN_ORIGIN), api_keys=(BANK_API_KEY,))
    return make_issuer(tmp_path / "issuer.db", clock=clock, database_url=database_url, extra_merchants=(bank,),
                       admin_api_keys=(ADMIN_API_KEY,))


@pytest.fixture
def client(issuer: Issuer) -> Iterator[TestClient]:
    with TestClient(issuer.app, base_url=ISSUER_ORIGIN, raise_server_exceptions=False) as client:
        yield client


def post(client: TestClient, path: str, body: Any, *, api_key: str | None = ADMIN_API_KEY) -> httpx.Response:
    # As Hanko's example backend: the apiKey header and a JSON body (escaped: lone surrogates are tested).
    headers = {"Content-Type": "application/json", **({"apiKey": api_key} if api_key else {})}
    return client.post(path, content=json.dumps(body), headers=headers)


def initialize(client: TestClient, user_id: str = "cardholder-1", **extra: Any) -> dict[str, Any]:
    response = post(client, "/registration/initialize", {"user_id": user_id, "username": f"{user_id}@example.com",
                                                         **extra})
    assert response.status_code == 200, response.text
    options: dict[str, Any] = response.json()["publicKey"]
    return options


def create(options: dict[str, Any], authenticator: SoftAuthenticator | None = None, **overrides: Any) -> dict[str, Any]:
    """What create() of @github/webauthn-json returns top-level on the issuer's own page."""
    args: dict[str, Any] = dict(rp_id=RP_ID, challenge=options["challenge"], origin=ISSUER_ORIGIN,
                                user_handle=base64.urlsafe_b64decode(options["user"]["id"] + "=="),
                                cross_origin=False)
    args.update(overrides)
    return (authenticator or SoftAuthenticator()).create(**args)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"} and body["code"] == code, body


def query(issuer: Issuer, sql: str, *args: Any) -> Any:
    """One value from the database, read by a Store of our own (as another instance would)."""
    async def go() -> Any:
        async with Store(issuer.config.database_url) as store:
            def plan() -> Plan[Any]:
                row = yield fetch_row(sql, *args)
                return row[0] if row else None

            return await store.backend.read(plan)

    return asyncio.run(go())


def counts(issuer: Issuer) -> tuple[int, int, int, int]:
    """Users, challenges, used challenges and credentials stored."""
    return (query(issuer, "SELECT COUNT(*) FROM spc_users"), query(issuer, "SELECT COUNT(*) FROM spc_challenges"),
            query(issuer, "SELECT COUNT(*) FROM spc_challenges WHERE used_at IS NOT NULL"),
            query(issuer, "SELECT COUNT(*) FROM spc_credentials"))


def verify_token(client: TestClient, issuer: Issuer, token: str) -> dict[str, Any]:
    """What the bank's backend does: verify with PyJWT against the JWKS the issuer publishes."""
    jwks = client.get("/.well-known/jwks.json").json()
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token, key=key, algorithms=["ES256"], audience=RP_ID, issuer=issuer.base_url,
        options={"require": ["iss", "sub", "aud", "iat", "exp", "jti", "cred"], "verify_iat": False,
                 "verify_exp": False})  # the FakeClock is in 2027: time is checked against it below
    return claims


# Who may call


@pytest.mark.parametrize("api_key", [None, API_KEY, BANK_API_KEY, "wrong-key-0123456789abcdefghijklmno"])
def test_r15_only_an_admin_key_registers(client: TestClient, issuer: Issuer, api_key: str | None) -> None:
    """A merchant's key, even the first-party tenant's, never starts enrolling an authenticator for a cardholder."""
    before = counts(issuer)
    body = {"user_id": "cardholder-2", "username": "x"}
    assert_error(post(client, "/registration/initialize", body, api_key=api_key), 401, "invalid_api_key")
    assert counts(issuer) == before


@pytest.mark.parametrize("api_key", [API_KEY, BANK_API_KEY, "wrong-key-0123456789abcdefghijklmno"])
def test_r15_finalize_needs_no_key_but_refuses_a_merchants(client: TestClient, issuer: Issuer,
                                                          api_key: str) -> None:
    """As Hanko's: the challenge an admin's initialize issued is the authority; a key sent must be the admin's."""
    credential = create(initialize(client))
    before = counts(issuer)
    assert_error(post(client, "/registration/finalize", credential, api_key=api_key), 401, "invalid_api_key")
    assert counts(issuer) == before
    finished = post(client, "/registration/finalize", credential, api_key=None)
    assert finished.status_code == 200, finished.text
    assert verify_token(client, issuer, finished.json()["token"])["cred"] == credential["id"]
    # Without a key, a credential for no challenge initialize issued still registers nothing.
    stranger = create({"challenge": "A" * 43, "user": {"id": "dXNlcg"}})
    before = counts(issuer)
    assert_error(post(client, "/registration/finalize", stranger, api_key=None), 400, "invalid_challenge")
    assert counts(issuer) == before


# initialize


def test_initialize_answers_hanko_creation_options_with_the_payment_extension(client: TestClient,
                                                                               issuer: Issuer) -> None:
    response = post(client, "/registration/initialize", {"user_id": "cardholder-1", "username": "alex@example.com",
                                                         "display_name": "Alex Doe", "icon": ICON, **CARD})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert set(response.json()) == {"publicKey"}
    options = response.json()["publicKey"]
    assert options["rp"] == {"id": RP_ID, "name": "Test Bank"}
    assert options["user"]["name"] == "alex@example.com" and options["user"]["displayName"] == "Alex Doe"
    assert "icon" not in options["user"]  # WebAuthn L2 removed user.icon: Hanko's icon is checked, not sent
    assert options["extensions"] == {"payment": {"isPayment": True}}
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["excludeCredentials"] == []
    challenge = query(issuer, "SELECT purpose FROM spc_challenges WHERE challenge = $1", options["challenge"])
    assert challenge == "api-registration"


def test_initialize_defaults_display_name_and_excludes_existing_credentials(client: TestClient) -> None:
    options = initialize(client)
    assert options["user"]["displayName"] == options["user"]["name"] == "cardholder-1@example.com"
    registered = create(options)
    assert post(client, "/registration/finalize", registered).status_code == 200
    again = initialize(client)
    assert again["user"]["id"] == options["user"]["id"]
    assert [c["id"] for c in again["excludeCredentials"]] == [registered["id"]]


TOO_LONG = "x" * 256
BAD_INITIALIZE = [
    ({}, "invalid_request"),
    ({"username": "a"}, "invalid_request"),
    ({"user_id": "u"}, "invalid_request"),
    ({"user_id": 7, "username": "a"}, "invalid_request"),
    ({"user_id": " ", "username": "a"}, "invalid_request"),
    ({"user_id": TOO_LONG, "username": "a"}, "invalid_request"),
    ({"user_id": "u\x00", "username": "a"}, "invalid_text"),
    ({"user_id": "u", "username": ["a"]}, "invalid_request"),
    ({"user_id": "u", "username": TOO_LONG}, "invalid_request"),
    ({"user_id": "u", "username": "a\ud800"}, "invalid_text"),
    ({"user_id": "u", "username": "a", "display_name": ""}, "invalid_request"),
    ({"user_id": "u", "username": "a", "display_name": 3}, "invalid_request"),
    ({"user_id": "u", "username": "a", "icon": "javascript:alert(1)"}, "invalid_icon"),
    ({"user_id": "u", "username": "a", "icon": "http://issuer.test/me.png"}, "invalid_icon"),
    ({"user_id": "u", "username": "a", "icon": "https://issuer.test/my face.png"}, "invalid_icon"),
    ({"user_id": "u", "username": "a", **CARD, "instrument_icon": "https://Issuer.test/c.png"}, "invalid_icon"),
    ({"user_id": "u", "username": "a", "icon": 1}, "invalid_request"),
    ({"user_id": "u", "username": "a", "instrument_name": "Card"}, "invalid_request"),  # a card needs its icon
    ({"user_id": "u", "username": "a", "instrument_icon": ICON}, "invalid_request"),  # ... and its name
    ({"user_id": "u", "username": "a", "instrument_id": "card-1"}, "invalid_request"),
    ({"user_id": "u", "username": "a", **CARD, "instrument_icon": "ftp://issuer.test/c.png"}, "invalid_icon"),
    ({"user_id": "u", "username": "a", **CARD, "instrument_icon": "data:text/html,<b>"}, "invalid_icon"),
    ({"user_id": "u", "username": "a", **CARD, "instrument_name": TOO_LONG}, "invalid_request"),
    ({"user_id": "u", "username": "a", **CARD, "instrument_name": "Card\x07"}, "invalid_text"),
    ({"user_id": "u", "username": "a", **CARD, "instrument_id": ""}, "invalid_request"),
    ({"user_id": "u", "username": "a", **CARD, "instrument_id": {"id": 1}}, "invalid_request"),
]


@pytest.mark.parametrize(("body", "code"), BAD_INITIALIZE)
def test_initialize_refuses_each_bad_field_and_stores_nothing(client: TestClient, issuer: Issuer,
                                                              body: dict[str, Any], code: str) -> None:
    assert_error(post(client, "/registration/initialize", body), 400, code)
    assert counts(issuer) == (0, 0, 0, 0)


@pytest.mark.parametrize(("content", "headers", "status", "code"), [
    (b"[]", {"Content-Type": "application/json"}, 400, "invalid_request"),
    (b"{", {"Content-Type": "application/json"}, 400, "invalid_request"),
    (b'{"user_id": "u", "username": "a"}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
])
@pytest.mark.parametrize("path", ["/registration/initialize", "/registration/finalize"])
def test_bodies_that_are_not_a_json_object_are_refused(client: TestClient, issuer: Issuer, path: str, content: bytes,
                                                       headers: dict[str, str], status: int, code: str) -> None:
    response = client.post(path, content=content, headers={"apiKey": ADMIN_API_KEY, **headers})
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert counts(issuer) == (0, 0, 0, 0)


# finalize: success


def test_a_registration_gives_a_hanko_token_that_verifies_against_the_jwks(client: TestClient, issuer: Issuer,
                                                                          clock: FakeClock) -> None:
    options = initialize(client, **CARD)
    credential = create(options)
    response = post(client, "/registration/finalize", credential)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"token"}
    claims = verify_token(client, issuer, response.json()["token"])
    assert claims["sub"] == "cardholder-1"
    assert claims["cred"] == credential["id"]
    assert claims["aud"] == [RP_ID]
    assert claims["iss"] == issuer.base_url
    assert claims["iat"] == int(clock.now) and claims["exp"] == int(clock.now) + issuer.config.result_token_ttl
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    assert "trans" not in claims  # never a payment result
    listed = client.get("/credentials", params={"user_id": "cardholder-1"}, headers={"apiKey": ADMIN_API_KEY})
    assert listed.status_code == 200
    [stored] = listed.json()["credentials"]
    assert stored["id"] == credential["id"]
    assert (stored["instrument_id"], stored["instrument_name"], stored["instrument_icon"]) == (
        "card-7", "Test Card ****4242", ICON)
    assert stored["enrolled_origin"] == ISSUER_ORIGIN
    assert counts(issuer) == (1, 1, 1, 1)


def test_a_first_party_tenant_origin_under_the_rp_id_may_register(client: TestClient, issuer: Issuer) -> None:
    options = initialize(client, **CARD)
    response = post(client, "/registration/finalize", create(options, origin=SUBDOMAIN_ORIGIN))
    assert response.status_code == 200, response.text
    listed = client.get("/credentials", params={"user_id": "cardholder-1"}, headers={"apiKey": ADMIN_API_KEY})
    assert listed.json()["credentials"][0]["enrolled_origin"] == SUBDOMAIN_ORIGIN


def test_instrument_id_defaults_to_the_card_name(client: TestClient) -> None:
    options = initialize(client, instrument_name="Visa ****1111", instrument_icon=ICON)
    assert post(client, "/registration/finalize", create(options)).status_code == 200
    listed = client.get("/credentials", params={"user_id": "cardholder-1"}, headers={"apiKey": ADMIN_API_KEY})
    assert listed.json()["credentials"][0]["instrument_id"] == "Visa ****1111"


def test_a_credential_without_a_card_is_listed_but_never_offered_to_a_merchant(client: TestClient) -> None:
    options = initialize(client)
    credential = create(options)
    assert post(client, "/registration/finalize", credential).status_code == 200
    listed = client.get("/credentials", params={"user_id": "cardholder-1"}, headers={"apiKey": ADMIN_API_KEY})
    [stored] = listed.json()["credentials"]
    assert (stored["id"], stored["instrument_id"], stored["instrument_name"]) == (credential["id"], "", "")
    # H6: a merchant's payment is for one card; a passkey enrolled for none is not offered, so the user has nothing
    # to pay with there (the bank's own site offers it: tests/test_first_party.py).
    paying = client.post("/transaction/initialize", headers={"apiKey": API_KEY}, json={
        "user_id": "cardholder-1", "transaction_id": "order-1",
        "transaction_data": {"amount": "1.00", "currency": "EUR", "payee_name": "Test Merchant",
                             "payee_origin": MERCHANT_ORIGIN}})
    assert paying.status_code == 200, paying.text
    assert paying.json()["publicKey"]["allowCredentials"] == []
    # The same user's card credential is offered, alone, as if the card-less passkey were not there.
    with_card = create(initialize(client, **CARD))
    assert post(client, "/registration/finalize", with_card).status_code == 200
    paying = client.post("/transaction/initialize", headers={"apiKey": API_KEY}, json={
        "user_id": "cardholder-1", "transaction_id": "order-2",
        "transaction_data": {"amount": "1.00", "currency": "EUR", "payee_name": "Test Merchant",
                             "payee_origin": MERCHANT_ORIGIN}})
    assert [c["id"] for c in paying.json()["publicKey"]["allowCredentials"]] == [with_card["id"]]


# finalize: refusals


def assert_refused(client: TestClient, issuer: Issuer, credential: Any, status: int, code: str) -> None:
    before = counts(issuer)
    assert_error(post(client, "/registration/finalize", credential), status, code)
    assert counts(issuer) == before


def test_r15_a_challenge_is_used_once(client: TestClient, issuer: Issuer) -> None:
    options = initialize(client, **CARD)
    assert post(client, "/registration/finalize", create(options)).status_code == 200
    assert_refused(client, issuer, create(options), 400, "invalid_challenge")


def test_r15_an_expired_challenge_is_refused(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    options = initialize(client, **CARD)
    clock.advance(issuer.config.challenge_ttl)
    assert_refused(client, issuer, create(options), 400, "invalid_challenge")


def test_r15_a_challenge_initialize_did_not_issue_is_refused(client: TestClient, issuer: Issuer) -> None:
    options = initialize(client, **CARD)
    assert_refused(client, issuer, create(options, challenge="A" * 43), 400, "invalid_challenge")
    # The iframe enrolment's challenges (another purpose) are not registration/initialize's.
    url = issuer.enrollment_url(user_id="cardholder-1", user_name="a", user_display_name="A",
                                instrument_name="Card", instrument_icon=ICON, merchant_origin=MERCHANT_ORIGIN)
    token = url.split("token=", 1)[1]
    iframe = client.post("/enroll/options", json={"token": token}, headers={"Origin": ISSUER_ORIGIN}).json()
    assert_refused(client, issuer, create(iframe), 400, "invalid_challenge")


def test_r15_a_credential_goes_to_the_user_its_challenge_was_issued_for(client: TestClient, issuer: Issuer) -> None:
    """Hanko's finalize names no user: the challenge does. Another user's options never register to this one."""
    alex = initialize(client, "alex", **CARD)
    initialize(client, "sam", **CARD)
    sams_handle = query(issuer, "SELECT user_handle FROM spc_users WHERE user_id = $1", "sam")
    credential = create(alex, user_handle=bytes(sams_handle))
    claims = verify_token(client, issuer, post(client, "/registration/finalize", credential).json()["token"])
    assert claims["sub"] == "alex"
    assert query(issuer, "SELECT COUNT(*) FROM spc_credentials WHERE user_id = $1", "sam") == 0


def test_r15_a_ceremony_in_a_frame_is_refused(client: TestClient, issuer: Issuer) -> None:
    """The iframe's kind of credential (crossOrigin, topOrigin the merchant) is enrolment's, not this call's."""
    options = initialize(client, **CARD)
    framed = create(options, cross_origin=True, top_origin=MERCHANT_ORIGIN)
    assert_refused(client, issuer, framed, 400, "cross_origin_not_allowed")
    assert_refused(client, issuer, create(options, cross_origin=True, top_origin=ISSUER_ORIGIN), 400,
                   "cross_origin_not_allowed")
    assert_refused(client, issuer, create(options, top_origin=ISSUER_ORIGIN), 400, "cross_origin_not_allowed")
    # Nothing was consumed: the page's own top-level ceremony still registers.
    assert post(client, "/registration/finalize", create(options)).status_code == 200


@pytest.mark.parametrize("origin", [
    MERCHANT_ORIGIN,  # a third-party merchant's page
    "https://shop.test",  # another configured merchant
    "https://evil.test",  # nobody's
    "http://issuer.test",  # the issuer's host without TLS
    "https://issuer.test:8443",  # another port: another origin
    "https://issuer.test.evil.test",
])
def test_r15_only_first_party_origins_register(client: TestClient, issuer: Issuer, origin: str) -> None:
    options = initialize(client, **CARD)
    assert_refused(client, issuer, create(options, origin=origin), 400, "origin_mismatch")


def test_r15_user_verification_is_required(client: TestClient, issuer: Issuer) -> None:
    options = initialize(client, **CARD)
    assert_refused(client, issuer, create(options, uv=False), 400, "user_not_verified")


def test_r15_the_wrong_ceremony_type_and_rp_are_refused(client: TestClient, issuer: Issuer) -> None:
    options = initialize(client, **CARD)
    assert_refused(client, issuer, create(options, type="webauthn.get"), 400, "unexpected_type")
    assert_refused(client, issuer, create(options, rp_id="evil.test"), 400, "rp_id_mismatch")


def test_r11_a_credential_registered_before_is_409(client: TestClient, issuer: Issuer) -> None:
    first = initialize(client, **CARD)
    credential_id = bytes(range(32))
    assert post(client, "/registration/finalize", create(first, credential_id=credential_id)).status_code == 200
    second = initialize(client, "someone-else", **CARD)
    assert_refused(client, issuer, create(second, credential_id=credential_id), 409, "credential_exists")
    assert query(issuer, "SELECT used_at FROM spc_challenges WHERE challenge = $1", second["challenge"]) is None


@pytest.mark.parametrize(("mutate", "code"), [
    (lambda c: "not a credential", "invalid_request"),
    (lambda c: {**c, "response": None}, "invalid_credential"),
    (lambda c: {**c, "rawId": "!!"}, "invalid_credential"),
    (lambda c: {**c, "type": "password"}, "invalid_credential"),
    (lambda c: {**c, "response": {**c["response"], "clientDataJSON": "e30"}}, "invalid_client_data"),
    (lambda c: {**c, "response": {**c["response"], "clientDataJSON": None}}, "invalid_credential"),
    (lambda c: {**c, "response": {**c["response"], "attestationObject": "oA"}}, "invalid_attestation_object"),
])
def test_malformed_credentials_are_refused(client: TestClient, issuer: Issuer, mutate: Any, code: str) -> None:
    options = initialize(client, **CARD)
    assert_refused(client, issuer, mutate(create(options)), 400, code)
