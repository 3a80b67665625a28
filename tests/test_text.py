"""Text from requests: refused before the database, signers and messages when no backend can store it (H2, H3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from factories import API_KEY, ISSUER_ORIGIN, MERCHANT_ORIGIN
from payment_helpers import TRANSACTION_DATA, make_bank
from softauthn import b64url

from spc_embed.errors import InvalidRequest, SPCEmbedError
from spc_embed.text import quoted, storable_text

ADMIN_KEY = "admin-key-0123456789abcdefghijkl"
LONE_SURROGATE, NUL = "\ud800", "\x00"


# The check and the quoting, on their own


@pytest.mark.parametrize("value, described", [
    ("abc\ud800", "U+D800 (a lone UTF-16 surrogate) at index 3"),
    ("\udfffx", "U+DFFF (a lone UTF-16 surrogate) at index 0"),
    ("user\x00id", "U+0000 (NUL) at index 4"),
    ("tab\there", "U+0009 (a control character)"),
    ("del\x7f", "U+007F (a control character)"),
    ("c1\x85", "U+0085 (a control character)"),
])
def test_h2_unstorable_characters_are_invalid_text_named_by_code_point(value: str, described: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        storable_text(value, field="user_id", max_length=255)
    assert caught.value.status == 400 and caught.value.code == "invalid_text"
    assert described in caught.value.message and caught.value.message.startswith("user_id contains")
    json.dumps(caught.value.to_json(), ensure_ascii=False).encode("utf-8")  # the answer encodes


@pytest.mark.parametrize("value", [None, 7, ["a"], "", "   ", "x" * 256])
def test_wrong_type_empty_or_too_long_is_invalid_request(value: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        storable_text(value, field="user_id", max_length=255)
    assert caught.value.code == "invalid_request"


def test_storable_text_keeps_every_other_character() -> None:
    for value in ("alice", "Zoë Ünal", "客户-42", "emoji \U0001F600", "a" * 255, "\u00a0nbsp\u00a0"):
        assert storable_text(value, field="user_id", max_length=255) == value
    assert storable_text("", field="name", max_length=10, allow_empty=True) == ""


def test_h3_quoted_values_always_encode_and_are_bounded() -> None:
    assert quoted("\ud800") == "'\\ud800'" and quoted("a\x00b") == "'a\\x00b'"
    assert quoted("x" * 1000) == repr("x" * 64) + "…"
    assert quoted(10**4000).startswith("<an integer of")  # repr of a huge int is refused by Python
    assert quoted({"k": "\udfff" * 100}).endswith("…")
    for value in ("\ud800" * 100, {"a": ["\udfff"]}, 10**4000, None, b"\xff"):
        quoted(value).encode("utf-8")


def test_h3_a_message_that_carries_a_lone_surrogate_still_encodes() -> None:
    error = SPCEmbedError("Unexpected value \ud800 here")
    assert error.message == "Unexpected value \\ud800 here"
    json.dumps(error.to_json(), ensure_ascii=False).encode("utf-8")


# Through the app: every identifier, token, handle and name (H2)


class BackendCalls:
    """Counts every read and write that reaches the database backend."""

    def __init__(self, backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        for name in ("read", "write"):
            real = getattr(backend, name)

            async def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                self.calls.append(_name)
                return await _real(*args, **kwargs)

            monkeypatch.setattr(backend, name, counted)


def _json(body: dict[str, Any]) -> dict[str, Any]:
    # json.dumps escapes the lone surrogate as \ud800, as a hostile client would send it.
    return {"content": json.dumps(body), "headers": {"Content-Type": "application/json"}}


def _cases(bad: str, bank: Any) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(case id, method, path, request keyword arguments) with ``bad`` in one identifier, token, handle or name."""
    merchant, browser, issuer = {"apiKey": API_KEY}, {"Origin": MERCHANT_ORIGIN}, {"Origin": ISSUER_ORIGIN}
    admin = {"apiKey": ADMIN_KEY}
    initialize = {"user_id": "alice", "transaction_id": "t-1", "transaction_data": TRANSACTION_DATA}
    credential = {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}}

    def post(headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        kwargs = _json(body)
        kwargs["headers"].update(headers)
        return kwargs

    yield "initialize user_id", "POST", "/transaction/initialize", post(merchant, {**initialize, "user_id": f"a{bad}"})
    yield "initialize transaction_id", "POST", "/transaction/initialize", \
        post(merchant, {**initialize, "transaction_id": f"t{bad}"})
    yield "initialize payee_name", "POST", "/transaction/initialize", \
        post(merchant, {**initialize, "transaction_data": {**TRANSACTION_DATA, "payee_name": f"Shop{bad}"}})
    yield "initialize free-form data", "POST", "/transaction/initialize", \
        post(merchant, {**initialize, "transaction_data": {**TRANSACTION_DATA, "order": f"A{bad}"}}) \
        if bad == LONE_SURROGATE else \
        post(merchant, {**initialize, "transaction_data": {**TRANSACTION_DATA, "payee_origin": f"https://a{bad}.test"}})
    yield "finalize transaction_id (key)", "POST", "/transaction/finalize", \
        post(merchant, {"transaction_id": f"t{bad}", "credential": credential})
    yield "finalize transaction_id (page)", "POST", "/transaction/finalize", \
        post(browser, {"transaction_id": f"t{bad}", "credential": credential})
    yield "opt-out transaction_id (key)", "POST", "/transaction/opt-out", post(merchant, {"transaction_id": f"t{bad}"})
    yield "enroll options token", "POST", "/enroll/options", post(issuer, {"token": f"tok{bad}en"})
    yield "enroll verify token", "POST", "/enroll/verify", post(issuer, {"token": f"tok{bad}en", "credential": {}})
    yield "pay finalize handle", "POST", "/pay/finalize", post(issuer, {"handle": f"h{bad}", "credential": credential})
    yield "rename name", "PATCH", f"/credentials/{b64url(bank.credential_id)}", post(admin, {"name": f"Laptop{bad}"})
    if bad == NUL:  # a query string can carry NUL (%00); percent-decoding never makes a lone surrogate
        yield "transactions user_id", "GET", "/transactions", {"params": {"user_id": f"a{bad}"}, "headers": merchant}
        yield "credentials user_id", "GET", "/credentials", {"params": {"user_id": f"a{bad}"}, "headers": admin}
        yield "enroll page token", "GET", "/enroll", {"params": {"token": f"tok{bad}en"}}
        yield "pay page handle", "GET", "/pay", {"params": {"handle": f"h{bad}"}}


@pytest.mark.parametrize("bad", [LONE_SURROGATE, NUL], ids=["lone-surrogate", "nul"])
def test_h2_unstorable_text_is_refused_with_400_before_the_database(tmp_path, database_url, monkeypatch,
                                                                     bad: str) -> None:
    with make_bank(tmp_path, admin_api_keys=(ADMIN_KEY,), database_url=database_url) as bank:
        before = bank.client.get("/transactions", params={"user_id": "alice"}, headers={"apiKey": API_KEY}).json()
        cases = list(_cases(bad, bank))
        calls = BackendCalls(bank.issuer.store.backend, monkeypatch)
        for case, method, path, kwargs in cases:
            response = bank.client.request(method, path, **kwargs)
            assert response.status_code == 400, (case, response.status_code, response.text)
            if response.headers["content-type"].startswith("application/json"):
                assert response.json()["code"] == "invalid_text", (case, response.text)
                assert set(response.json()) == {"code", "message"}
            else:  # the iframe pages show the error in their page configuration
                assert "invalid_text" in response.text, case
            assert calls.calls == [], (case, calls.calls)
        monkeypatch.undo()
        after = bank.client.get("/transactions", params={"user_id": "alice"}, headers={"apiKey": API_KEY}).json()
        assert after == before  # nothing stored
        assert bank.run(bank.issuer.store.get_credential, bank.credential_id).nickname == ""
