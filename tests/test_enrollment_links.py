"""POST /enrollment/links: the iframe enrolment link, minted over HTTP with an admin key.

The link is the one :meth:`Issuer.enrollment_url` mints (one function,
``enrollment_service.enrollment_link``); it is checked by using it, through the
real iframe routes with a softauthn credential. Every bad field is a 400 with a
stable code, and no link comes back.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from factories import (
    ADMIN_API_KEY,
    API_KEY,
    ISSUER_ORIGIN,
    MERCHANT_ORIGIN,
    OTHER_MERCHANT_ORIGIN,
    FakeClock,
    make_issuer,
)
from softauthn import SoftAuthenticator
from starlette.testclient import TestClient

from spc_embed import ConfigurationError, Issuer, Store
from spc_embed.tokens import EnrollmentTokens

ICON = ISSUER_ORIGIN + "/widget/card.png"
LINK = {
    "user_id": "cardholder-1", "user_name": "alex@example.com", "user_display_name": "Alex Doe",
    "instrument_name": "Test Card ****4242", "instrument_icon": ICON, "merchant_origin": MERCHANT_ORIGIN,
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(tmp_path: Path, clock: FakeClock, database_url: str) -> Issuer:
    return make_issuer(tmp_path / "issuer.db", clock=clock, database_url=database_url,
                       admin_api_keys=(ADMIN_API_KEY,))


@pytest.fixture
def client(issuer: Issuer) -> Iterator[TestClient]:
    with TestClient(issuer.app, base_url=ISSUER_ORIGIN, raise_server_exceptions=False) as client:
        yield client


def post_link(client: TestClient, body: Any, *, api_key: str | None = ADMIN_API_KEY) -> httpx.Response:
    headers = {"Content-Type": "application/json", **({"apiKey": api_key} if api_key else {})}
    return client.post("/enrollment/links", content=json.dumps(body), headers=headers)


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def read_token(issuer: Issuer, url: str) -> dict[str, Any]:
    token = EnrollmentTokens(issuer.config.secret_keys, max_age=10**9, clock=issuer.clock).load(token_of(url))
    fields = vars(token).copy()
    del fields["token_id"]
    return fields


def nothing_stored(issuer: Issuer) -> bool:
    async def go() -> bool:
        async with Store(issuer.config.database_url) as store:
            return await store.get_user(LINK["user_id"]) is None and not await store.list_credentials(LINK["user_id"])

    return asyncio.run(go())


@pytest.mark.parametrize("api_key", [None, API_KEY, "wrong-key-0123456789abcdefghijklmno"])
def test_only_an_admin_key_mints_links(client: TestClient, api_key: str | None) -> None:
    response = post_link(client, LINK, api_key=api_key)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"


def test_the_link_is_the_one_enrollment_url_mints(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    response = post_link(client, {**LINK, "instrument_id": "card-7", "locale": "de"})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"url", "expires_at"}
    assert body["url"].startswith(ISSUER_ORIGIN + "/enroll?token=")
    assert body["expires_at"] == int(clock.now) + issuer.config.enrollment_ttl
    in_process = issuer.enrollment_url(**{**LINK, "instrument_id": "card-7", "locale": "de"})
    assert read_token(issuer, body["url"]) == read_token(issuer, in_process)
    assert read_token(issuer, body["url"])["instrument_id"] == "card-7"
    assert token_of(body["url"]) != token_of(in_process)  # each link is its own single-use token
    assert nothing_stored(issuer)


def test_the_link_enrols_in_the_iframe_and_only_once(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    url = post_link(client, LINK).json()["url"]
    page = client.get(urlsplit(url).path + "?" + urlsplit(url).query)
    assert page.status_code == 200
    assert f"frame-ancestors {MERCHANT_ORIGIN}" in page.headers["content-security-policy"]
    token = token_of(url)
    options = client.post("/enroll/options", json={"token": token}, headers={"Origin": ISSUER_ORIGIN}).json()
    credential = SoftAuthenticator().create(
        rp_id="issuer.test", challenge=options["challenge"], origin=ISSUER_ORIGIN,
        user_handle=base64.urlsafe_b64decode(options["user"]["id"] + "=="), cross_origin=True,
        top_origin=MERCHANT_ORIGIN)
    verify = client.post("/enroll/verify", json={"token": token, "credential": credential},
                         headers={"Origin": ISSUER_ORIGIN})
    assert verify.status_code == 200, verify.text
    again = client.post("/enroll/options", json={"token": token}, headers={"Origin": ISSUER_ORIGIN})
    assert again.status_code == 401 and again.json()["code"] == "token_used"


def test_an_expired_link_is_refused(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    body = post_link(client, LINK).json()
    clock.advance(body["expires_at"] - clock.now + 1)
    response = client.post("/enroll/options", json={"token": token_of(body["url"])},
                           headers={"Origin": ISSUER_ORIGIN})
    assert response.status_code == 401 and response.json()["code"] == "token_expired"


TOO_LONG = "x" * 256
BAD_FIELDS = [
    *[({key: None}, "invalid_request") for key in ("user_id", "user_name", "user_display_name", "instrument_name")],
    *[({key: value}, "invalid_request") for key in ("user_id", "user_name", "user_display_name", "instrument_name")
      for value in ("", "   ", TOO_LONG, 42, ["a"])],
    *[({key: "a\x00b"}, "invalid_text") for key in ("user_id", "user_name", "user_display_name", "instrument_name",
                                                      "instrument_id")],
    ({"user_name": "a\ud800"}, "invalid_text"),
    ({"instrument_id": ""}, "invalid_request"),
    ({"instrument_id": TOO_LONG}, "invalid_request"),
    ({"instrument_id": 7}, "invalid_request"),
    ({"instrument_icon": None}, "invalid_request"),
    ({"instrument_icon": ""}, "invalid_request"),
    ({"instrument_icon": "http://issuer.test/card.png"}, "invalid_icon"),
    ({"instrument_icon": "javascript:alert(1)"}, "invalid_icon"),
    ({"instrument_icon": "https://issuer.test/a card.png"}, "invalid_icon"),
    ({"instrument_icon": "https://issuer.test/carte-é.png"}, "invalid_icon"),
    # Spellings the browser rewrites before it signs them: no payment with them could verify.
    ({"instrument_icon": "https://issuer.test:443/card.png"}, "invalid_icon"),
    ({"instrument_icon": "https://issuer.test/cards/../card.png"}, "invalid_icon"),
    ({"instrument_icon": "data:image/png;base64," + "A" * 5000}, "enrollment_link_too_long"),
    ({"merchant_origin": None}, "unknown_merchant_origin"),
    ({"merchant_origin": 1}, "unknown_merchant_origin"),
    ({"merchant_origin": "https://evil.test"}, "unknown_merchant_origin"),
    ({"merchant_origin": MERCHANT_ORIGIN + "/"}, "unknown_merchant_origin"),
    ({"merchant_origin": MERCHANT_ORIGIN.upper()}, "unknown_merchant_origin"),
    ({"merchant_origin": ISSUER_ORIGIN}, "unknown_merchant_origin"),  # not a merchant of this issuer
    ({"locale": "not a language"}, "invalid_locale"),
    ({"locale": 5}, "invalid_locale"),
    ({"locale": "de\n"}, "invalid_locale"),
]


@pytest.mark.parametrize(("change", "code"), BAD_FIELDS)
def test_each_bad_field_is_a_400_with_a_stable_code_and_no_link(client: TestClient, issuer: Issuer,
                                                                change: dict[str, Any], code: str) -> None:
    response = post_link(client, {key: value for key, value in {**LINK, **change}.items() if value is not None})
    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == {"code", "message"} and body["code"] == code, body
    assert nothing_stored(issuer)


@pytest.mark.parametrize(("content", "content_type", "status", "code"), [
    (b"[]", "application/json", 400, "invalid_request"),
    (b'"link"', "application/json", 400, "invalid_request"),
    (b"{", "application/json", 400, "invalid_request"),
    (json.dumps(LINK).encode(), "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
])
def test_a_body_that_is_not_a_json_object_is_refused(client: TestClient, content: bytes, content_type: str,
                                                     status: int, code: str) -> None:
    response = client.post("/enrollment/links", content=content,
                           headers={"apiKey": ADMIN_API_KEY, "Content-Type": content_type})
    assert response.status_code == status
    assert response.json()["code"] == code


def test_enrollment_url_in_process_refuses_the_same_fields_as_configuration_errors(issuer: Issuer) -> None:
    with pytest.raises(ConfigurationError, match="merchant_origin"):
        issuer.enrollment_url(**{**LINK, "merchant_origin": OTHER_MERCHANT_ORIGIN + "/"})
    with pytest.raises(ConfigurationError, match="instrument_icon"):
        issuer.enrollment_url(**{**LINK, "instrument_icon": "ftp://issuer.test/card.png"})
    with pytest.raises(ConfigurationError, match="locale"):
        issuer.enrollment_url(**LINK, locale="not a language")
