"""The enrolment routes over HTTP, with genuine signed responses from softauthn.

    GET  /enroll?token=…   W1 headers, W3 postMessage target, the page's states
    POST /enroll/options   W6 Origin check, R14 token checks
    POST /enroll/verify    R2 challenge binding in the database, R11, R14, bodies

Every refusal asserts its exact ``code``, that nothing was stored and that the
enrolment token was not consumed. No response of this app sets a cookie (W5):
an autouse fixture checks every response each test saw.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from factories import ISSUER_ORIGIN, MERCHANT_ORIGIN, OTHER_MERCHANT_ORIGIN, SECRET, FakeClock, make_issuer
from http_sfv import Dictionary
from itsdangerous import URLSafeTimedSerializer
from softauthn import ES256, RS256, SoftAuthenticator, b64url
from starlette.testclient import TestClient

from spc_embed import Issuer, Store
from spc_embed.storage import Challenge, Credential
from spc_embed.tokens import ENROLLMENT_SALT, EnrollmentToken, EnrollmentTokens, SignedTokens

WIDGET = Path(__file__).resolve().parent.parent / "widget"
RP_ID = "issuer.test"
ICON = ISSUER_ORIGIN + "/widget/card.png"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# Fixtures and helpers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(tmp_path: Path, clock: FakeClock, database_url: str) -> Issuer:
    return make_issuer(tmp_path / "issuer.db", clock=clock, database_url=database_url)


@pytest.fixture
def responses() -> list[httpx.Response]:
    return []


@pytest.fixture
def client(issuer: Issuer, responses: list[httpx.Response]) -> Iterator[TestClient]:
    with TestClient(issuer.app, base_url=ISSUER_ORIGIN, raise_server_exceptions=False) as client:
        client.event_hooks["response"].append(responses.append)
        yield client


@pytest.fixture(autouse=True)
def no_cookies_ever(responses: list[httpx.Response]) -> Iterator[None]:
    """W5: the iframe works on signed tokens alone; no response sets a cookie."""
    yield
    for response in responses:
        assert "set-cookie" not in response.headers, (response.request.url, response.headers)


def mint(issuer: Issuer, user_id: str = "cardholder-1", *, merchant_origin: str = MERCHANT_ORIGIN) -> str:
    url = issuer.enrollment_url(
        user_id=user_id, user_name=f"{user_id}@example.com", user_display_name="Alex Doe",
        instrument_name="Test Card ****4242", instrument_icon=ICON, merchant_origin=merchant_origin,
    )
    assert url.startswith(ISSUER_ORIGIN + "/enroll?token=")
    return parse_qs(urlsplit(url).query)["token"][0]


def token_id(issuer: Issuer, token: str) -> str:
    # Read without an age limit: tests look up the ids of expired tokens too.
    return EnrollmentTokens(issuer.config.secret_keys, max_age=10**9, clock=issuer.clock).load(token).token_id


def post(client: TestClient, path: str, body: Any, *, origin: str | None = ISSUER_ORIGIN) -> httpx.Response:
    headers = {"Origin": origin} if origin is not None else {}
    return client.post(path, json=body, headers=headers)


def get_options(client: TestClient, token: str) -> dict[str, Any]:
    response = post(client, "/enroll/options", {"token": token})
    assert response.status_code == 200, response.text
    return response.json()


def create(options: dict[str, Any], authenticator: SoftAuthenticator | None = None, **overrides: Any) -> dict[str, Any]:
    """What the browser returns for create() in the issuer iframe on the merchant's page."""
    authenticator = authenticator or SoftAuthenticator(ES256)
    args: dict[str, Any] = dict(
        rp_id=RP_ID, challenge=options["challenge"], origin=ISSUER_ORIGIN,
        user_handle=base64.urlsafe_b64decode(options["user"]["id"] + "=="),
        cross_origin=True, top_origin=MERCHANT_ORIGIN,
    )
    args.update(overrides)
    return authenticator.create(**args)


def verify(client: TestClient, token: str, credential: Any, **kwargs: Any) -> httpx.Response:
    return post(client, "/enroll/verify", {"token": token, "credential": credential}, **kwargs)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]


def run(coroutine_function: Any) -> Any:
    """Query the database through a Store of our own, as another instance would."""

    def wrapper(issuer: Issuer) -> Any:
        async def go() -> Any:
            async with Store(issuer.config.database_url) as store:
                return await coroutine_function(store)

        return asyncio.run(go())

    return wrapper


def stored_credentials(issuer: Issuer, user_id: str = "cardholder-1") -> list[Credential]:
    return run(lambda store: store.list_credentials(user_id))(issuer)


def token_consumed(issuer: Issuer, token: str) -> bool:
    return run(lambda store: store.is_token_used(token_id(issuer, token)))(issuer)


def stored_challenge(issuer: Issuer, challenge: str) -> Challenge | None:
    return run(lambda store: store.get_challenge(challenge))(issuer)


def assert_nothing_stored(issuer: Issuer, token: str, user_id: str = "cardholder-1") -> None:
    assert stored_credentials(issuer, user_id) == []
    assert not token_consumed(issuer, token)


def page_config(response: httpx.Response) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="spc-enroll-config">(.*?)</script>', response.text, re.S)
    assert match, response.text
    return json.loads(match.group(1))


def csp_directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    directives = {}
    for part in policy.split(";"):
        name, _, value = part.strip().partition(" ")
        assert name not in directives, f"directive {name} twice in {policy}"
        directives[name] = value
    return directives


# The happy path


@pytest.mark.parametrize("alg", [ES256, RS256])
@pytest.mark.parametrize("attestation", ["none", "packed"])
def test_enrolment_stores_credential_with_merchant_origin(client: TestClient, issuer: Issuer, alg: int,
                                                         attestation: str) -> None:
    token = mint(issuer)
    options = get_options(client, token)
    credential = create(options, SoftAuthenticator(alg), attestation=attestation)

    response = verify(client, token, credential)

    assert response.status_code == 200, response.text
    assert response.json() == {"outcome": "enrolled", "credentialId": credential["rawId"]}
    assert response.headers["cache-control"] == "no-store"
    [stored] = stored_credentials(issuer)
    assert b64url(stored.credential_id) == credential["rawId"]
    assert stored.user_id == "cardholder-1"
    assert stored.enrolled_origin == MERCHANT_ORIGIN
    assert stored.instrument_name == "Test Card ****4242"
    assert stored.instrument_icon == ICON
    assert stored.alg == alg
    assert stored.attestation_format == attestation
    assert stored.transports == ("internal",)
    assert stored.sign_count == 0
    assert token_consumed(issuer, token)
    assert stored_challenge(issuer, options["challenge"]).used_at is not None


def test_options_ask_for_a_payment_credential(client: TestClient, issuer: Issuer) -> None:
    options = get_options(client, mint(issuer))

    assert options["rp"] == {"id": RP_ID, "name": "Test Bank"}
    assert options["user"]["name"] == "cardholder-1@example.com"
    assert options["user"]["displayName"] == "Alex Doe"
    assert options["extensions"] == {"payment": {"isPayment": True}}
    assert options["authenticatorSelection"]["authenticatorAttachment"] == "platform"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert [p["alg"] for p in options["pubKeyCredParams"]] == [ES256, RS256]
    assert options["excludeCredentials"] == []
    challenge = stored_challenge(issuer, options["challenge"])
    assert challenge is not None and challenge.purpose == "registration" and challenge.used_at is None


def test_options_exclude_existing_credentials_and_keep_the_user_handle(client: TestClient, issuer: Issuer) -> None:
    first = mint(issuer)
    first_options = get_options(client, first)
    credential = create(first_options)
    assert verify(client, first, credential).status_code == 200

    second_options = get_options(client, mint(issuer))

    assert [c["id"] for c in second_options["excludeCredentials"]] == [credential["rawId"]]
    assert second_options["user"]["id"] == first_options["user"]["id"]
    assert second_options["challenge"] != first_options["challenge"]


@pytest.mark.parametrize("cross_origin", [False, None], ids=["cross-origin-false", "cross-origin-absent"])
def test_h8_a_top_level_enrolment_is_refused_and_the_link_stays_usable_in_its_frame(
        client: TestClient, issuer: Issuer, cross_origin: bool | None) -> None:
    # Decided: enrolment runs in the issuer iframe on the token's merchant page only (README, docs/security.md
    # H8). The link opened top-level on the issuer's origin (a leaked link, outside the merchant's page) enrols
    # nothing, and leaves the link for the page it was minted for.
    token = mint(issuer)
    response = verify(client, token, create(get_options(client, token), cross_origin=cross_origin, top_origin=None))

    assert response.status_code == 400 and response.json()["code"] == "cross_origin_required", response.text
    assert stored_credentials(issuer) == []
    framed = verify(client, token, create(get_options(client, token)))
    assert framed.status_code == 200, framed.text
    assert stored_credentials(issuer)[0].enrolled_origin == MERCHANT_ORIGIN


# W1: framing and permissions


def test_w1_enrol_page_framable_by_exactly_the_token_merchant(client: TestClient, issuer: Issuer) -> None:
    response = client.get("/enroll", params={"token": mint(issuer)})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert csp_directives(response)["frame-ancestors"] == MERCHANT_ORIGIN
    assert "x-frame-options" not in response.headers
    assert response.headers["cache-control"] == "no-store"


def test_w1_token_for_other_merchant_names_only_that_merchant(client: TestClient, issuer: Issuer) -> None:
    response = client.get("/enroll", params={"token": mint(issuer, merchant_origin=OTHER_MERCHANT_ORIGIN)})

    assert csp_directives(response)["frame-ancestors"] == OTHER_MERCHANT_ORIGIN


def test_w1_enrol_page_may_use_payment_and_webauthn(client: TestClient, issuer: Issuer) -> None:
    response = client.get("/enroll", params={"token": mint(issuer)})

    policy = Dictionary()
    policy.parse(response.headers["permissions-policy"].encode())
    for feature in ("payment", "publickey-credentials-create", "publickey-credentials-get"):
        allowlist = policy[feature]
        assert [str(item.value) for item in allowlist] == ["self"], feature


def test_w1_enrol_page_csp_allows_no_inline_code(client: TestClient, issuer: Issuer) -> None:
    response = client.get("/enroll", params={"token": mint(issuer)})

    directives = csp_directives(response)
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    # The page keeps to it: scripts are inert JSON data or external files, no
    # <style>, no style="" and no on…="" handler attributes.
    for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", response.text, re.S):
        assert 'type="application/json"' in attributes or (body.strip() == "" and "src=" in attributes)
    assert "<style" not in response.text
    assert not re.search(r"<[^>]*\s(style|on[a-z]+)\s*=", response.text, re.I)


def test_w1_error_page_framable_only_by_configured_merchants(client: TestClient) -> None:
    # A page without an authentic token carries no authority; it still names no stranger.
    response = client.get("/enroll", params={"token": "garbage"})

    assert response.status_code == 401
    assert csp_directives(response)["frame-ancestors"].split() == sorted([MERCHANT_ORIGIN, OTHER_MERCHANT_ORIGIN])
    assert "x-frame-options" not in response.headers


def test_w1_expired_token_page_framable_by_its_merchant(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    token = mint(issuer, merchant_origin=OTHER_MERCHANT_ORIGIN)
    clock.advance(issuer.config.enrollment_ttl + 1)

    response = client.get("/enroll", params={"token": token})

    assert response.status_code == 401
    assert csp_directives(response)["frame-ancestors"] == OTHER_MERCHANT_ORIGIN


@pytest.mark.parametrize("path", ["/enroll/options", "/enroll/verify"])
@pytest.mark.parametrize("origin", [ISSUER_ORIGIN, "https://evil.test"])
def test_w1_json_endpoints_refuse_framing(client: TestClient, issuer: Issuer, path: str, origin: str) -> None:
    # Success (options) and refusals alike.
    response = post(client, path, {"token": mint(issuer)}, origin=origin)

    assert response.status_code < 500
    assert csp_directives(response)["frame-ancestors"] == "'none'"
    assert "permissions-policy" not in response.headers


@pytest.mark.parametrize("path", ["/widget/enroll.js", "/widget/spc-embed.css", "/widget/card.png", "/nowhere",
                                  "/enroll/options"])
def test_w1_other_responses_refuse_framing(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert csp_directives(response)["frame-ancestors"] == "'none'"
    assert "x-frame-options" not in response.headers


# W3: postMessage goes to the exact merchant origin


@pytest.mark.parametrize("merchant", [MERCHANT_ORIGIN, OTHER_MERCHANT_ORIGIN])
def test_w3_page_config_names_exactly_the_token_merchant(client: TestClient, issuer: Issuer, merchant: str) -> None:
    token = mint(issuer, merchant_origin=merchant)

    config = page_config(client.get("/enroll", params={"token": token}))

    assert config["merchantOrigin"] == merchant
    assert config["token"] == token
    assert config["error"] is None
    assert config["optionsUrl"] == ISSUER_ORIGIN + "/enroll/options"
    assert config["verifyUrl"] == ISSUER_ORIGIN + "/enroll/verify"


def test_w3_page_config_is_escaped_inside_the_script_element(client: TestClient, issuer: Issuer) -> None:
    url = issuer.enrollment_url(
        user_id="u", user_name="</script><script>alert(1)</script>", user_display_name="<b>x</b>",
        instrument_name="</script><img src=x onerror=alert(1)>", instrument_icon=ICON,
        merchant_origin=MERCHANT_ORIGIN,
    )
    response = client.get(url.removeprefix(ISSUER_ORIGIN))

    assert response.status_code == 200
    assert "<img src=x" not in response.text
    assert response.text.count("</script>") == 3  # the config, the module and the text, nothing injected
    assert page_config(response)["merchantOrigin"] == MERCHANT_ORIGIN


def _post_message_calls(source: str) -> list[str]:
    """The argument text of each postMessage( … ) call, balancing parentheses."""
    calls = []
    for match in re.finditer(r"postMessage\s*\(", source):
        depth, index = 1, match.end()
        while depth and index < len(source):
            depth += {"(": 1, ")": -1}.get(source[index], 0)
            index += 1
        calls.append(source[match.end() : index - 1])
    return calls


def test_w3_widget_scripts_never_post_to_any_origin() -> None:
    scripts = sorted(WIDGET.glob("*.js"))
    assert any(path.name == "enroll.js" for path in scripts)
    for path in scripts:
        source = path.read_text()
        for arguments in _post_message_calls(source):
            assert not re.search(r"""["'`]\s*\*\s*["'`]""", arguments), f"{path.name}: postMessage({arguments})"
            assert "targetOrigin" not in arguments or "*" not in arguments, path.name
        # No wildcard smuggled through a variable either.
        assert not re.search(r"""=\s*["'`]\*["'`]""", source), path.name
    enroll_calls = _post_message_calls((WIDGET / "enroll.js").read_text())
    assert enroll_calls == ["data, target"]


# W5: no cookies (the autouse fixture checks every response of every test; this walks one enrolment)


def test_w5_no_cookie_anywhere_in_an_enrolment(client: TestClient, issuer: Issuer,
                                              responses: list[httpx.Response]) -> None:
    token = mint(issuer)
    client.get("/enroll", params={"token": token})
    for name in ("enroll.js", "webauthn-json.js", "spc-embed.css", "card.png"):
        client.get(f"/widget/{name}", headers={"Origin": MERCHANT_ORIGIN})
    credential = create(get_options(client, token))
    verify(client, token, credential)
    verify(client, token, credential)  # refused replay
    client.get("/enroll", params={"token": token})  # used-token page

    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 200, 200, 401, 401]
    assert not any("set-cookie" in r.headers for r in responses)


# W6: state-changing POSTs check Origin; the body's signed token is the state


@pytest.mark.parametrize("path", ["/enroll/options", "/enroll/verify"])
@pytest.mark.parametrize("origin", [
    None, "null", MERCHANT_ORIGIN, OTHER_MERCHANT_ORIGIN, "https://evil.test", "http://issuer.test",
    "https://issuer.test:443", "https://issuer.test/", "https://sub.issuer.test", "HTTPS://ISSUER.TEST",
])
def test_w6_posts_from_other_origins_refused(client: TestClient, issuer: Issuer, path: str,
                                             origin: str | None) -> None:
    token = mint(issuer)
    options = get_options(client, token)
    body = {"token": token, "credential": create(options)}

    response = post(client, path, body, origin=origin)

    assert_error(response, 403, "origin_not_allowed")
    assert_nothing_stored(issuer, token)
    assert stored_challenge(issuer, options["challenge"]).used_at is None


@pytest.mark.parametrize("path", ["/enroll/options", "/enroll/verify"])
def test_w6_post_without_token_refused(client: TestClient, path: str) -> None:
    assert_error(post(client, path, {}), 400, "invalid_request")
    assert_error(post(client, path, {"token": ""}), 400, "invalid_request")


@pytest.mark.parametrize("path", ["/enroll/options", "/enroll/verify"])
def test_w6_get_on_post_endpoints_refused(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"  # RFC 9110 §15.5.6: a 405 says what is allowed


# R2: the challenge is ours, live, unused and bound to this very enrolment token


def test_r2_unknown_challenge_rejected(client: TestClient, issuer: Issuer) -> None:
    token = mint(issuer)
    options = get_options(client, token)
    never_issued = {**options, "challenge": b64url(b"\x01" * 32)}

    response = verify(client, token, create(never_issued))

    assert_error(response, 400, "invalid_challenge")
    assert_nothing_stored(issuer, token)


def test_r2_expired_challenge_rejected(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    token = mint(issuer)
    options = get_options(client, token)
    clock.advance(issuer.config.challenge_ttl + 1)  # the token (15 min) outlives the challenge (5 min)

    response = verify(client, token, create(options))

    assert_error(response, 400, "invalid_challenge")
    assert_nothing_stored(issuer, token)


def test_r2_challenge_live_until_its_ttl(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    token = mint(issuer)
    options = get_options(client, token)
    clock.advance(issuer.config.challenge_ttl - 1)

    assert verify(client, token, create(options)).status_code == 200


def test_r2_used_challenge_rejected(client: TestClient, issuer: Issuer) -> None:
    token = mint(issuer)
    options = get_options(client, token)
    consumed = run(lambda store: store.consume_challenge(
        options["challenge"], purpose="registration", subject=token_id(issuer, token)))(issuer)
    assert consumed

    response = verify(client, token, create(options))

    assert_error(response, 400, "invalid_challenge")
    assert_nothing_stored(issuer, token)


def test_r2_challenge_of_another_users_token_rejected(client: TestClient, issuer: Issuer) -> None:
    mallory, alice = mint(issuer, "mallory"), mint(issuer, "alice")
    alice_options = get_options(client, alice)
    mallory_options = get_options(client, mallory)

    # Mallory answers Alice's challenge with her own token (and her own user handle).
    response = verify(client, mallory, create({**mallory_options, "challenge": alice_options["challenge"]}))

    assert_error(response, 400, "invalid_challenge")
    assert_nothing_stored(issuer, mallory, "mallory")
    assert_nothing_stored(issuer, alice, "alice")
    assert stored_challenge(issuer, alice_options["challenge"]).used_at is None


def test_r2_challenge_of_another_enrolment_token_of_the_same_user_rejected(client: TestClient,
                                                                        issuer: Issuer) -> None:
    first, second = mint(issuer), mint(issuer)
    first_options = get_options(client, first)

    response = verify(client, second, create(first_options))

    assert_error(response, 400, "invalid_challenge")
    assert_nothing_stored(issuer, first)
    assert not token_consumed(issuer, second)


def test_r2_challenge_of_another_ceremony_rejected(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    token = mint(issuer)
    challenge = b64url(b"\x02" * 32)
    run(lambda store: store.put_challenge(Challenge(
        challenge=challenge, purpose="payment", subject=token_id(issuer, token), user_id="cardholder-1",
        expires_at=clock() + 60,
    )))(issuer)
    options = get_options(client, token)

    response = verify(client, token, create({**options, "challenge": challenge}))

    assert_error(response, 400, "invalid_challenge")
    assert_nothing_stored(issuer, token)


@pytest.mark.parametrize("spelling", [
    lambda c: c + "=",
    lambda c: c.replace("-", "+").replace("_", "/") if ("-" in c or "_" in c) else "+" + c[1:],
    lambda c: c + "!",
    lambda c: " " + c,
    lambda c: c[:-1] + B64URL[B64URL.index(c[-1]) | 1],  # non-zero trailing bits
])
def test_r2_challenge_spellings_rejected(client: TestClient, issuer: Issuer, spelling: Any) -> None:
    token = mint(issuer)
    options = get_options(client, token)

    response = verify(client, token, create({**options, "challenge": spelling(options["challenge"])}))

    assert_error(response, 400, "invalid_client_data")
    assert_nothing_stored(issuer, token)


def test_r2_verify_checks_the_rest_of_the_response(client: TestClient, issuer: Issuer) -> None:
    # The route hands the live challenge to the verifier: a wrong topOrigin still fails there.
    token = mint(issuer)
    response = verify(client, token, create(get_options(client, token), top_origin=OTHER_MERCHANT_ORIGIN))

    assert_error(response, 400, "top_origin_mismatch")
    assert_nothing_stored(issuer, token)


# R11: a credential id is registered once, to anyone


def test_r11_credential_id_already_registered_rejected(client: TestClient, issuer: Issuer) -> None:
    alice, bob = mint(issuer, "alice"), mint(issuer, "bob")
    credential_id = b"\x42" * 32
    assert verify(client, alice, create(get_options(client, alice), credential_id=credential_id)).status_code == 200
    [alices] = stored_credentials(issuer, "alice")
    bob_options = get_options(client, bob)

    response = verify(client, bob, create(bob_options, credential_id=credential_id))

    assert_error(response, 409, "credential_exists")
    assert stored_credentials(issuer, "bob") == []
    assert stored_credentials(issuer, "alice") == [alices]  # not overwritten
    assert not token_consumed(issuer, bob)
    assert stored_challenge(issuer, bob_options["challenge"]).used_at is None
    # The token was not consumed, so Bob can still enrol a credential of his own.
    assert verify(client, bob, create(bob_options)).status_code == 200
    assert len(stored_credentials(issuer, "bob")) == 1


# R14: the enrolment token


def test_r14_expired_token_rejected(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    token = mint(issuer)
    options = get_options(client, token)
    credential = create(options)
    clock.advance(issuer.config.enrollment_ttl + 1)

    assert_error(post(client, "/enroll/options", {"token": token}), 401, "token_expired")
    assert_error(verify(client, token, credential), 401, "token_expired")
    assert_nothing_stored(issuer, token)


def test_r14_token_live_until_its_ttl(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    token = mint(issuer)
    clock.advance(issuer.config.enrollment_ttl)

    assert post(client, "/enroll/options", {"token": token}).status_code == 200


def _tamper(token: str, how: str) -> str:
    payload, timestamp, signature = token.rsplit(".", 2)
    if how == "payload":
        decoded = payload.lstrip(".")
        return ("." if payload.startswith(".") else "") + decoded[:-2] + ("AB" if decoded[-2:] != "AB" else "CD") \
            + "." + timestamp + "." + signature
    if how == "timestamp":
        return payload + "." + ("A" + timestamp[1:] if timestamp[0] != "A" else "B" + timestamp[1:]) + "." + signature
    if how == "signature":
        flipped = "A" if signature[0] != "A" else "B"
        return payload + "." + timestamp + "." + flipped + signature[1:]
    if how == "truncated":
        return token[: len(token) // 2]
    if how == "no-signature":
        return payload + "." + timestamp
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["payload", "timestamp", "signature", "truncated", "no-signature"])
def test_r14_tampered_token_rejected(client: TestClient, issuer: Issuer, how: str) -> None:
    token = mint(issuer)
    options = get_options(client, token)
    credential = create(options)
    bad = _tamper(token, how)

    assert_error(post(client, "/enroll/options", {"token": bad}), 401, "invalid_token")
    assert_error(verify(client, bad, credential), 401, "invalid_token")
    assert_nothing_stored(issuer, token)


def _payload(user_id: str = "cardholder-1", merchant_origin: str = MERCHANT_ORIGIN) -> dict[str, str]:
    return {
        "user_id": user_id, "user_name": "x@example.com", "user_display_name": "X",
        "instrument_name": "Card", "instrument_icon": ICON, "merchant_origin": merchant_origin,
        "token_id": "forged-token-id",
    }


@pytest.mark.parametrize("secret, salt", [
    (SECRET, "spc-embed.registration-state.v1"),  # same secret, another purpose
    (SECRET, "itsdangerous"),  # the library's default salt
    ("another-secret-key-0123456789abcdef0123", ENROLLMENT_SALT),  # right purpose, wrong key
])
def test_r14_token_signed_for_another_purpose_or_key_rejected(client: TestClient, issuer: Issuer,
                                                              clock: FakeClock, secret: str, salt: str) -> None:
    forged = URLSafeTimedSerializer(secret, salt=salt).dumps(_payload())

    assert_error(post(client, "/enroll/options", {"token": forged}), 401, "invalid_token")
    page = client.get("/enroll", params={"token": forged})
    assert page.status_code == 401 and page_config(page)["error"]["code"] == "invalid_token"
    assert stored_credentials(issuer) == []


@pytest.mark.parametrize("payload", [
    {**_payload(), "admin": True}, {"user_id": "x"}, {**_payload(), "merchant_origin": "https://merchant.test/"},
    ["not", "a", "dict"], "text", None,
], ids=["extra-field", "missing-fields", "bad-origin", "list", "string", "null"])
def test_r14_authentic_token_with_unexpected_payload_rejected(client: TestClient, clock: FakeClock,
                                                               payload: Any) -> None:
    # Signed with the right key and salt (as a bug in a minting service might), but not an enrolment.
    forged = SignedTokens([SECRET], salt=ENROLLMENT_SALT, max_age=900, clock=clock).dumps(payload)

    assert_error(post(client, "/enroll/options", {"token": forged}), 401, "invalid_token")


def test_r14_token_for_unconfigured_merchant_rejected(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    # Authentic, but the merchant was removed from the configuration since it was minted.
    tokens = EnrollmentTokens([SECRET], max_age=900, clock=clock)
    token = tokens.mint(EnrollmentToken(**{**_payload(merchant_origin="https://gone.test"), "token_id": "t1"}))

    assert_error(post(client, "/enroll/options", {"token": token}), 401, "invalid_token")
    page = client.get("/enroll", params={"token": token})
    assert page_config(page)["merchantOrigin"] is None
    assert "https://gone.test" not in page.headers["content-security-policy"]


def test_r14_token_reused_after_enrolment_rejected(client: TestClient, issuer: Issuer) -> None:
    token = mint(issuer)
    credential = create(get_options(client, token))
    assert verify(client, token, credential).status_code == 200

    assert_error(post(client, "/enroll/options", {"token": token}), 401, "token_used")
    # Replaying the very response that just succeeded.
    assert_error(verify(client, token, credential), 401, "token_used")
    page = client.get("/enroll", params={"token": token})
    assert page.status_code == 401
    config = page_config(page)
    assert config["error"]["code"] == "token_used" and config["token"] is None
    assert config["merchantOrigin"] == MERCHANT_ORIGIN
    assert len(stored_credentials(issuer)) == 1


def test_r14_second_ceremony_with_one_token_cannot_enrol_twice(client: TestClient, issuer: Issuer) -> None:
    # Two options calls for one token (two tabs): only the first completion counts.
    token = mint(issuer)
    first, second = get_options(client, token), get_options(client, token)
    assert verify(client, token, create(first)).status_code == 200

    assert_error(verify(client, token, create(second)), 401, "token_used")
    assert len(stored_credentials(issuer)) == 1
    assert stored_challenge(issuer, second["challenge"]).used_at is None


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "." * 10, "x" * 5000])
def test_r14_page_with_bad_token_shows_error(client: TestClient, token: str) -> None:
    response = client.get("/enroll", params={"token": token})

    assert response.status_code == 401
    config = page_config(response)
    assert config["error"]["code"] == "invalid_token"
    assert config["token"] is None and config["merchantOrigin"] is None
    assert 'id="spc-status"' in response.text


def test_r14_page_without_token_shows_error(client: TestClient) -> None:
    response = client.get("/enroll")

    assert response.status_code == 401
    assert page_config(response)["error"]["code"] == "invalid_token"


def test_r14_page_with_expired_token_shows_error(client: TestClient, issuer: Issuer, clock: FakeClock) -> None:
    token = mint(issuer)
    clock.advance(issuer.config.enrollment_ttl + 1)

    response = client.get("/enroll", params={"token": token})

    assert response.status_code == 401
    config = page_config(response)
    assert config["error"]["code"] == "token_expired"
    assert config["token"] is None
    assert config["merchantOrigin"] == MERCHANT_ORIGIN
    assert "expired" in response.text


# Bodies: size, type, syntax; and no input gives a 500


@pytest.mark.parametrize("path", ["/enroll/options", "/enroll/verify"])
def test_body_too_large_rejected(client: TestClient, issuer: Issuer, path: str) -> None:
    token = mint(issuer)
    big = json.dumps({"token": token, "padding": "x" * issuer.config.max_body_bytes}).encode()
    headers = {"Origin": ISSUER_ORIGIN, "Content-Type": "application/json"}

    assert_error(client.post(path, content=big, headers=headers), 413, "payload_too_large")

    # Without a Content-Length (chunked), the limit holds while reading.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    response = client.post(path, content=chunks(), headers=headers)
    assert_error(response, 413, "payload_too_large")
    assert_nothing_stored(issuer, token)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonp"])
@pytest.mark.parametrize("path", ["/enroll/options", "/enroll/verify"])
def test_wrong_content_type_rejected(client: TestClient, issuer: Issuer, path: str, content_type: str | None) -> None:
    headers = {"Origin": ISSUER_ORIGIN}
    if content_type:
        headers["Content-Type"] = content_type
    body = json.dumps({"token": mint(issuer)}).encode()

    assert_error(client.post(path, content=body, headers=headers), 415, "unsupported_media_type")


def test_content_type_with_charset_accepted(client: TestClient, issuer: Issuer) -> None:
    body = json.dumps({"token": mint(issuer)}).encode()
    headers = {"Origin": ISSUER_ORIGIN, "Content-Type": "Application/JSON; charset=utf-8"}

    assert client.post("/enroll/options", content=body, headers=headers).status_code == 200


@pytest.mark.parametrize("body", [
    b"{", b"", b"{'token': 'x'}", b'{"token": "a", "token": "b"}', b'{"token": NaN}', b'{"token": Infinity}',
    b'\xff\xfe{"token": "x"}', b'{"token": "\xc3\x28"}', b"[]", b'"token"', b"null", b'{"token": 1}',
    b'{"token": ["x"]}', b'{"token": {"a": 1}}',
], ids=lambda b: repr(b)[:30])
@pytest.mark.parametrize("path", ["/enroll/options", "/enroll/verify"])
def test_malformed_bodies_rejected(client: TestClient, path: str, body: bytes) -> None:
    response = client.post(path, content=body, headers={"Origin": ISSUER_ORIGIN, "Content-Type": "application/json"})

    assert_error(response, 400, "invalid_request")


def test_duplicate_keys_inside_the_credential_rejected(client: TestClient, issuer: Issuer) -> None:
    token = mint(issuer)
    credential = create(get_options(client, token))
    text = json.dumps({"token": token, "credential": credential})
    # A second "type" inside the credential object: the parser must not pick one.
    text = text.replace('"type": "public-key"', '"type": "public-key", "type": "public-key"', 1)

    response = client.post("/enroll/verify", content=text,
                           headers={"Origin": ISSUER_ORIGIN, "Content-Type": "application/json"})

    assert_error(response, 400, "invalid_request")
    assert_nothing_stored(issuer, token)


GARBAGE_CREDENTIALS: list[Any] = [
    None, 0, "x", [], {}, {"response": None}, {"response": []}, {"response": {}},
    {"response": {"clientDataJSON": 5}}, {"response": {"clientDataJSON": "!!!"}},
    {"response": {"clientDataJSON": b64url(b"not json")}},
    {"response": {"clientDataJSON": b64url(b"[]")}},
    {"response": {"clientDataJSON": b64url(b'{"type": "webauthn.create"}')}},
    {"response": {"clientDataJSON": b64url(b'{"challenge": 7, "type": 1, "origin": null}')}},
    {"response": {"clientDataJSON": b64url(b"[" * 5000 + b"]" * 5000)}},
    {"response": {"clientDataJSON": b64url(b"\xff\xfe\xfd")}},
]


@pytest.mark.parametrize("credential", GARBAGE_CREDENTIALS, ids=lambda c: repr(c)[:40])
def test_garbage_credentials_never_500(client: TestClient, issuer: Issuer, credential: Any) -> None:
    token = mint(issuer)
    get_options(client, token)

    response = verify(client, token, credential)

    assert 400 <= response.status_code < 500, response.text
    assert response.json()["code"]
    assert_nothing_stored(issuer, token)


def _mutations(seed: int) -> Iterator[Any]:
    """Random byte- and structure-level damage to otherwise valid request bodies."""
    rng = random.Random(seed)
    for _ in range(40):
        size = rng.choice([0, 1, 7, 64, 900])
        yield bytes(rng.getrandbits(8) for _ in range(size))
    alphabet = '{}[]",:0123456789.eE-+ truefalsnul\\' + "\u00e9\u2028"
    for _ in range(40):
        yield "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 80))).encode()


@pytest.mark.parametrize("path", ["/enroll/options", "/enroll/verify"])
def test_fuzz_random_bodies_never_500(client: TestClient, issuer: Issuer, path: str) -> None:
    token = mint(issuer)
    headers = {"Origin": ISSUER_ORIGIN, "Content-Type": "application/json"}
    for body in _mutations(seed=2):
        response = client.post(path, content=body, headers=headers)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert response.json()["code"]
    assert_nothing_stored(issuer, token)


def _mutated_credentials(credential: dict[str, Any], seed: int) -> Iterator[dict[str, Any]]:
    """Damage one security-relevant field of a genuine response; every result must be refused."""
    rng = random.Random(seed)
    fields = [("id",), ("rawId",), ("type",), ("response", "clientDataJSON"), ("response", "attestationObject")]
    replacements: list[Any] = [None, "", 0, -1, 2**70, 1.5, True, [], {}, "A", "!!", "A" * 3000]
    produced = 0
    while produced < 80:
        mutated = copy.deepcopy(credential)
        path = rng.choice(fields)
        target = mutated["response"] if len(path) == 2 else mutated
        original = target[path[-1]]
        roll = rng.random()
        if roll < 0.7:
            index = rng.randrange(len(original))
            target[path[-1]] = original[:index] + rng.choice(B64URL + "=+/.") + original[index + 1 :]
        elif roll < 0.8:
            del target[path[-1]]
        else:
            target[path[-1]] = rng.choice(replacements)
        if mutated != credential:
            produced += 1
            yield mutated


def test_fuzz_mutated_genuine_credentials_never_500(client: TestClient, issuer: Issuer) -> None:
    token = mint(issuer)
    # Packed self attestation signs authData and clientDataJSON, so no byte of them is free to change.
    valid = create(get_options(client, token), attestation="packed")
    for credential in _mutated_credentials(valid, seed=3):
        response = verify(client, token, credential)
        assert 400 <= response.status_code < 500, (credential, response.text)
        assert response.json()["code"]
    assert_nothing_stored(issuer, token)
    assert verify(client, token, valid).status_code == 200  # the control: unmutated, it enrols
