"""Property-based fuzzing of every endpoint in /openapi.json, through the real app, on SQLite and PostgreSQL.

Bad input everywhere must be a 4xx with a stable JSON code, never a 500 (docs/security.md P6, H2-H4). For each
operation the OpenAPI document describes, hypothesis generates requests from the operation's own shape (its
example body, its parameters, its security) and from genuine values of a live issuer (API keys, origins, an
enrolment token, a fallback handle, a pending transaction and a signed assertion for it), then bends them:
lone surrogates, NUL and control characters, huge and non-integer numbers, deep nesting, duplicate keys,
invalid UTF-8, wrong JSON types, missing and extra members, wrong and missing content types, oversized
bodies, non-ASCII header bytes, hostile query strings and path parameters.

The app runs in-process (httpx.ASGITransport, no server): FUZZ_REQUESTS requests per operation and backend,
each checked for a status below 500 and, for a JSON error, a body of exactly ``code`` and ``message``. The
module prints the counts and the time it took.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from factories import API_KEY, ISSUER_ORIGIN, MERCHANT_ORIGIN, OTHER_API_KEY, make_issuer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from payment_helpers import CARD_ICON, CARD_NAME, RP_ID, TRANSACTION_DATA, signed_payment
from softauthn import SoftAuthenticator, b64url

from spc_embed.openapi import openapi_document

ADMIN_KEY = "admin-key-0123456789abcdefghijkl"
# Per operation and backend; both backends together: at least 2,000 requests per endpoint (SPC_FUZZ_REQUESTS: more).
FUZZ_REQUESTS = int(os.environ.get("SPC_FUZZ_REQUESTS", "1000"))
REQUESTS_PER_EXAMPLE = 2


def _operations() -> list[tuple[str, str]]:
    document = openapi_document(make_issuer("unused-never-opened.db").context)
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item]


OPERATIONS = _operations()
COUNTS: Counter[tuple[str, str]] = Counter()  # (backend, "METHOD path") -> requests sent
SERVER_ERRORS: list[str] = []
SECONDS: list[float] = []  # spent in each fuzz test


# Hostile values


def _b64decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


NASTY_STRINGS = [
    "\ud800", "\udfff", "a\ud800b", "\x00", "user\x00id", "\x1b[31m", "\r\n", "\u202e", "\ufeff", "\uffff",
    "\U0001f600", "", " ", "null", "true", "0", "-1", "1e309", "NaN", "%00", "%ED%A0%80", "../../etc/passwd",
    "'; DROP TABLE spc_transactions; --", "<script>alert(1)</script>", "{{7*7}}", "A" * 300, "é" * 130,
    "https://evil.test", "https://merchant.test/", "public-key", "payment.get", "webauthn.create",
]
NASTY_NUMBERS = [2**53, -(2**53) - 1, 2**64, 10**300, -10**4000, 1.5, -0.0, 1e308, 1e-300, float("nan"),
                 float("inf"), 0, -1, True, False]
# Code points to build text from: controls, surrogates, the edges of the planes, and ordinary letters.
CODE_POINT_RANGES = [(0, 0x1F), (0x7F, 0x9F), (0xD800, 0xDFFF), (0xFFF0, 0xFFFF), (0x20, 0x7E), (0xA0, 0x2FF),
                     (0x10000, 0x10FFFF)]

# Every code point, surrogates and controls included (hypothesis's own text, for its edge cases).
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
hostile_text = st.one_of(st.sampled_from(NASTY_STRINGS), any_text)


class Hostile:
    """Cheap hostile values from a seeded random (hypothesis draws the seed, so every case replays)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def text(self) -> str:
        if self.rng.random() < 0.5:
            return self.rng.choice(NASTY_STRINGS)
        low, high = self.rng.choice(CODE_POINT_RANGES)
        return "".join(chr(self.rng.randint(low, high)) for _ in range(self.rng.randint(0, 12)))

    def leaf(self) -> Any:
        kind = self.rng.randrange(5)
        if kind == 0:
            return self.rng.choice(NASTY_NUMBERS)
        if kind == 1:
            return self.rng.randint(-(2**70), 2**70)
        return None if kind == 2 and self.rng.random() < 0.3 else self.text()

    def value(self, depth: int = 0) -> Any:
        kind = self.rng.randrange(6)
        if kind == 0 and depth < 3:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        if kind == 1 and depth < 3:
            return {self.text(): self.value(depth + 1) for _ in range(self.rng.randint(0, 3))}
        if kind == 2:
            return "[" * 30 if self.rng.random() < 0.1 else [[[[[self.leaf()]]]]]
        return self.leaf()

    def mutated(self, value: Any, depth: int = 0) -> Any:
        """``value`` with some members bent: replaced, removed, retyped, near misses, or new ones added."""
        roll = self.rng.randrange(10)
        if roll == 0 or depth > 5:
            return self.value()
        if isinstance(value, dict):
            result: dict[Any, Any] = {}
            for key, item in value.items():
                action = self.rng.randrange(8)
                if action == 0:
                    continue  # dropped
                if key == "clientDataJSON" and isinstance(item, str) and action <= 3:
                    # Bent inside: the client data's own JSON, re-encoded (checks run before the signature's).
                    client_data = json.loads(_b64decode(item))
                    result[key] = b64url(json.dumps(self.mutated(client_data, depth + 1)).encode())
                    continue
                result[key] = self.mutated(item, depth + 1) if action <= 3 else item
            for _ in range(self.rng.choice((0, 0, 0, 1, 2))):
                result[self.rng.choice([*value, self.text()]) if value else self.text()] = self.value()
            return result
        if isinstance(value, list):
            return [self.mutated(item, depth + 1) for item in value] + [self.value() for _ in range(roll % 2)]
        if isinstance(value, str) and value and roll <= 4:
            position = self.rng.randrange(len(value))  # a near miss: one character changed
            return value[:position] + self.text()[:2] + value[position + 1:]
        return self.leaf() if roll <= 7 else value


RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([
        b"", b"{", b"[]", b"null", b"0", b'"x"', b'{"a":1,"a":2}', b'{"token":"a","token":"b"}', b"NaN",
        b'{"x": Infinity}', b'{"x": 1e99999}', b'{"x": ' + b"9" * 5000 + b"}", b"\xff\xfe{\x00}",
        b'{"user_id": "\xed\xa0\x80"}', b'{"transaction_id": "\\ud800"}', b"\xef\xbb\xbf{}",
        b"[" * 40_000 + b"]" * 40_000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b" " * 70_000,
    ]),
)
CONTENT_TYPES = [b"application/json", b"application/json; charset=utf-8", b"APPLICATION/JSON", b"text/plain",
                 b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x", b"application/json\xff",
                 b""]


# A live issuer to fuzz, and genuine values to start from


class Target:
    """The issuer app on one backend, its event loop and client, and genuine values of its state."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.issuer = make_issuer(tmp_path / "spc.db", database_url=database_url, admin_api_keys=(ADMIN_KEY,))
        self.loop = asyncio.new_event_loop()
        self.lifespan = self.issuer.lifespan()
        self.loop.run_until_complete(self.lifespan.__aenter__())
        transport = httpx.ASGITransport(app=self.issuer.app, raise_app_exceptions=False)
        self.client = httpx.AsyncClient(transport=transport, base_url=ISSUER_ORIGIN)
        self.seeds: dict[str, Any] = self.loop.run_until_complete(self._seed())

    async def _seed(self) -> dict[str, Any]:
        auth = SoftAuthenticator()
        url = self.issuer.enrollment_url(user_id="alice", user_name="alice@example.com", user_display_name="Alice",
                                         instrument_name=CARD_NAME, instrument_icon=CARD_ICON,
                                         merchant_origin=MERCHANT_ORIGIN)
        token = url.split("token=", 1)[1]
        issuer = {"Origin": ISSUER_ORIGIN}
        options = (await self.client.post("/enroll/options", json={"token": token}, headers=issuer)).json()
        created = auth.create(rp_id=RP_ID, challenge=options["challenge"], origin=ISSUER_ORIGIN,
                              user_handle=_b64decode(options["user"]["id"]), cross_origin=True,
                              top_origin=MERCHANT_ORIGIN)
        verified = await self.client.post("/enroll/verify", json={"token": token, "credential": created},
                                          headers=issuer)
        assert verified.status_code == 200, verified.text
        second = self.issuer.enrollment_url(user_id="bob", user_name="bob@example.com", user_display_name="Bob",
                                            instrument_name=CARD_NAME, instrument_icon=CARD_ICON,
                                            merchant_origin=MERCHANT_ORIGIN).split("token=", 1)[1]
        second_options = (await self.client.post("/enroll/options", json={"token": second}, headers=issuer)).json()
        registration = auth.create(rp_id=RP_ID, challenge=second_options["challenge"], origin=ISSUER_ORIGIN,
                                   user_handle=_b64decode(second_options["user"]["id"]), cross_origin=True,
                                   top_origin=MERCHANT_ORIGIN)
        # A registration on the issuer's own page, for /registration/finalize (admin key).
        api_options = (await self.client.post("/registration/initialize", headers={"apiKey": ADMIN_KEY}, json={
            "user_id": "carol", "username": "carol@example.com", "instrument_name": CARD_NAME,
            "instrument_icon": CARD_ICON})).json()["publicKey"]
        api_registration = auth.create(rp_id=RP_ID, challenge=api_options["challenge"], origin=ISSUER_ORIGIN,
                                       user_handle=_b64decode(api_options["user"]["id"]))
        init = (await self.client.post("/transaction/initialize", headers={"apiKey": API_KEY}, json={
            "user_id": "alice", "transaction_id": "order-1", "transaction_data": TRANSACTION_DATA,
            "show_opt_out": True})).json()
        spc = init["secure_payment_confirmation"]
        assertion = auth.get(credential_id=_b64decode(spc["credentialIds"][0]), challenge=spc["challenge"],
                             origin=MERCHANT_ORIGIN, type="payment.get", payment=signed_payment(init))
        fallback = auth.get(credential_id=_b64decode(spc["credentialIds"][0]), challenge=spc["challenge"],
                            origin=ISSUER_ORIGIN, cross_origin=True, top_origin=MERCHANT_ORIGIN)
        return {
            "credential_id": b64url(_b64decode(created["rawId"])), "enrolment_token": second,
            "registration": registration, "handle": init["fallback_url"].split("handle=", 1)[1],
            "transaction_id": "order-1", "opt_out_token": init.get("opt_out_token", ""), "assertion": assertion,
            "fallback_assertion": fallback, "api_registration": api_registration,
        }

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self.lifespan.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture
def target(tmp_path: Path, database_url: str) -> Iterator[Target]:
    fuzzed = Target(tmp_path, database_url)
    try:
        yield fuzzed
    finally:
        fuzzed.close()


def _bodies(path: str, operation: dict[str, Any], seeds: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """Bodies to start from: the operation's own (its OpenAPI example and what the live issuer accepts), and all."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    genuine = {
        "/transaction/initialize": [{"user_id": "alice", "transaction_id": "order-2",
                                     "transaction_data": TRANSACTION_DATA, "instrument_id": CARD_NAME,
                                     "show_opt_out": True, "locale": "de"}],
        "/transaction/finalize": [{"transaction_id": seeds["transaction_id"], "credential": seeds["assertion"]},
                                  seeds["assertion"]],
        "/transaction/opt-out": [{"transaction_id": seeds["transaction_id"], "opt_out_token": seeds["opt_out_token"]}],
        "/pay/finalize": [{"handle": seeds["handle"], "credential": seeds["fallback_assertion"]}],
        "/enroll/options": [{"token": seeds["enrolment_token"]}],
        "/enroll/verify": [{"token": seeds["enrolment_token"], "credential": seeds["registration"]}],
        "/credentials/{credential_id}": [{"name": "Work laptop"}],
        "/registration/finalize": [seeds["api_registration"]],
    }
    own = ([content["example"]] if "example" in content else []) + genuine.get(path, [])
    every = [body for bodies in genuine.values() for body in bodies]
    return own or [{}], every


@st.composite
def requests(draw: Any, method: str, path: str, operation: dict[str, Any], seeds: dict[str, Any]) -> dict[str, Any]:
    """One hostile request for an operation: method, URL, raw headers and raw body.

    Hypothesis draws the choices that shape the request (and text of its own for one field); a seeded random
    it draws bends the many small values, which keeps a case cheap to make and still replayable.
    """
    hostile = Hostile(draw(st.randoms(use_true_random=True)))
    rng = hostile.rng
    headers: list[tuple[bytes, bytes]] = []
    # Mostly the caller the operation expects, so the request gets past the door to what it bends.
    expected_auth, expected_origin = _expected_caller(method, path)
    auth = draw(st.sampled_from([expected_auth] * 4 + ["none", "api_key", "bearer", "admin", "other", "both",
                                                      "random", "random"]))
    if auth == "api_key":
        headers.append((b"apikey", API_KEY.encode()))
    elif auth == "bearer":
        headers.append((b"authorization", b"Bearer " + API_KEY.encode()))
    elif auth == "admin":
        headers.append((b"apikey", ADMIN_KEY.encode()))
    elif auth == "other":
        headers.append((b"apikey", OTHER_API_KEY.encode()))
    elif auth == "both":
        headers += [(b"apikey", API_KEY.encode()), (b"authorization", b"Bearer " + rng.randbytes(rng.randint(0, 40)))]
    elif auth == "random":
        value = rng.choice([rng.randbytes(rng.randint(0, 60)), API_KEY.encode() + rng.randbytes(1),
                            b"Bearer " + rng.randbytes(30), b"Basic " + API_KEY.encode()])
        headers.append((rng.choice([b"apikey", b"authorization"]), value.replace(b"\r", b"").replace(b"\n", b"")))
    origin = draw(st.sampled_from([expected_origin] * 4 + [None, MERCHANT_ORIGIN, ISSUER_ORIGIN, "null",
                                                          "https://evil.test", "\xff\xfe"]))
    if origin is not None:
        headers.append((b"origin", origin.encode("latin-1")))
    if method == "OPTIONS":
        headers.append((b"access-control-request-method", rng.choice([b"POST", b"GET", b"\xff"])))

    focus = draw(hostile_text)  # hypothesis's own text, for one field of this request
    url = path
    if "{credential_id}" in path:
        credential_id = rng.choice([seeds["credential_id"], focus, hostile.text(), rng.randbytes(20)])
        raw = credential_id if isinstance(credential_id, bytes) else credential_id.encode("utf-8", "surrogatepass")
        url = path.replace("{credential_id}", quote_from_bytes(raw, safe="") or "%20")
    names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
    genuine = {"user_id": b"alice", "handle": seeds["handle"].encode(), "token": seeds["enrolment_token"].encode()}
    pairs: list[tuple[bytes, bytes]] = []
    for name in names + rng.choice([[], [], ["x"], [names[0] if names else "user_id"], ["token", "handle"]]):
        value = rng.choice([genuine.get(name, b""), rng.randbytes(rng.randint(0, 40)),
                            focus.encode("utf-8", "surrogatepass"), hostile.text().encode("utf-8", "surrogatepass")])
        pairs.append((name.encode(), value))
    if pairs and rng.random() < 0.9:
        url += "?" + "&".join(quote_from_bytes(k, safe="") + "=" + quote_from_bytes(v, safe="") for k, v in pairs)

    body = b""
    if method in ("POST", "PATCH", "PUT") or rng.random() < 0.1:
        shape = draw(st.sampled_from(["mutated"] * 4 + ["focus"] * 3 + ["raw", "value"]))
        if shape in ("mutated", "focus"):
            own, every = _bodies(path, operation, seeds)
            value = hostile.mutated(rng.choice(own if rng.random() < 0.75 else every))
            if shape == "focus" and isinstance(value, dict) and value:
                value[rng.choice(list(value))] = focus
            ascii_only = rng.random() < 0.8
            body = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
        elif shape == "raw":
            body = draw(RAW_BODIES)
        else:
            body = json.dumps(hostile.value()).encode()
        content_type = rng.choice(CONTENT_TYPES[:1] * 16 + CONTENT_TYPES)
        if content_type:
            headers.append((b"content-type", content_type))
    return {"method": method, "url": url, "headers": headers, "content": body}


def _expected_caller(method: str, path: str) -> tuple[str, str | None]:
    """(auth, Origin) of the caller an operation serves."""
    if path.startswith(("/credentials", "/registration/", "/enrollment/links")):
        return "admin", None
    if path in ("/transaction/initialize", "/transactions"):
        return "api_key", None
    if path in ("/transaction/finalize", "/transaction/opt-out"):
        return ("none", MERCHANT_ORIGIN) if method == "OPTIONS" or path.endswith("opt-out") else ("api_key", None)
    if method == "POST":  # the issuer's own frames: /enroll/*, /pay/finalize
        return "none", ISSUER_ORIGIN
    return "none", None


async def _send(client: httpx.AsyncClient, request: dict[str, Any]) -> httpx.Response:
    built = client.build_request(request["method"], request["url"], headers=request["headers"],
                                 content=request["content"])
    return await client.send(built)


def _check(backend: str, name: str, request: dict[str, Any], response: httpx.Response) -> None:
    COUNTS[(backend, name)] += 1
    if response.status_code >= 500:
        SERVER_ERRORS.append(f"{backend} {name}: {response.status_code} for {request!r}"[:2000])
    assert response.status_code < 500, (request, response.status_code, response.text[:500])
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
        assert set(response.json()) == {"code", "message"}, (request, response.text[:500])


@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz_every_endpoint_never_answers_500(target: Target, request: pytest.FixtureRequest, method: str,
                                                path: str) -> None:
    backend = request.node.callspec.params["database_url"]
    document = openapi_document(target.issuer.context)
    operation = document["paths"][path][method.lower()]
    name = f"{method} {path}"

    @settings(max_examples=FUZZ_REQUESTS // REQUESTS_PER_EXAMPLE, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(requests(method, path, operation, target.seeds), min_size=REQUESTS_PER_EXAMPLE,
                    max_size=REQUESTS_PER_EXAMPLE))
    def fuzz(batch: list[dict[str, Any]]) -> None:
        for one in batch:
            _check(backend, name, one, target.loop.run_until_complete(_send(target.client, one)))

    started = time.monotonic()
    fuzz()
    SECONDS.append(time.monotonic() - started)
    assert COUNTS[(backend, name)] >= FUZZ_REQUESTS


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not COUNTS:
        return
    per_backend: dict[str, list[int]] = {}
    for (backend, _), count in COUNTS.items():
        per_backend.setdefault(backend, []).append(count)
    summary = ", ".join(f"{backend}: {len(counts)} operations, {min(counts)} to {max(counts)} requests each"
                        for backend, counts in sorted(per_backend.items()))
    line = (f"fuzz: {sum(COUNTS.values())} requests in {sum(SECONDS):.0f} s ({summary}), "
            f"{len(SERVER_ERRORS)} answered 5xx")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line)
