"""Transaction data: the amount rule (S5), payee and currency checks, canonical JSON, states."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from spc_embed.encoding import loads_json
from spc_embed.errors import InvalidRequest
from spc_embed.transactions import (
    EXPIRED, FAILED, PENDING, SUCCEEDED, amounts_equal, can_transition, canonical_json, is_canonical_amount,
    is_payee_origin, parse_transaction_data, resolve_merchant_origin, transaction_hash,
)

VALID = {"amount": "100.00", "currency": "EUR", "payee_name": "Shop"}


@pytest.mark.parametrize("amount", ["0", "0.5", "1", "100", "100.00", "12.3456", "999999999999999.99"])
def test_canonical_amounts_are_accepted(amount: str) -> None:
    assert is_canonical_amount(amount)
    assert parse_transaction_data({**VALID, "amount": amount}).amount == amount


@pytest.mark.parametrize("amount", [
    "1e2", "-1", "+1", "01", "00.10", "1.", ".5", "1.23456", " 1", "1 ", "1,00", "١٠٠", "NaN", "Infinity",
    "", "1000000000000000", 100, 100.0, None, True, ["1"],
])
def test_s5_non_canonical_amounts_are_refused_at_initialize(amount: object) -> None:
    assert not is_canonical_amount(amount)
    with pytest.raises(InvalidRequest) as caught:
        parse_transaction_data({**VALID, "amount": amount})
    assert caught.value.code == "invalid_transaction_data"


@pytest.mark.parametrize(("signed", "initialized", "equal"), [
    ("100.00", "100.00", True),
    ("1.00", "100.00", False),
    ("100", "100.00", False),   # same value, other scale: not what the issuer handed out
    ("100.0", "100.00", False),
    ("1e2", "100", False),      # not canonical at all
    ("-1", "1", False),
    ("0.10", "0.1", False),
])
def test_s5_amount_equality_is_value_and_scale(signed: str, initialized: str, equal: bool) -> None:
    assert amounts_equal(signed, initialized) is equal


@pytest.mark.parametrize("currency", ["usd", "Usd", "US", "USDT", "US1", "", 840, None])
def test_currency_must_be_upper_case_iso_4217(currency: object) -> None:
    with pytest.raises(InvalidRequest, match="currency"):
        parse_transaction_data({**VALID, "currency": currency})


def test_payee_name_or_origin_is_required() -> None:
    with pytest.raises(InvalidRequest, match="payee_name, payee_origin or both"):
        parse_transaction_data({"amount": "1.00", "currency": "EUR"})
    assert parse_transaction_data({"amount": "1.00", "currency": "EUR", "payee_origin": "https://shop.test"})


@pytest.mark.parametrize(("origin", "ok"), [
    ("https://shop.test", True),
    ("https://shop.test:8443", True),
    ("https://shop.test:443", False),  # browsers serialize without the default port
    ("http://shop.test", False),
    ("https://Shop.test", False),
    ("https://shop.test/", False),
    ("https://shop.test/pay", False),
    ("https://user@shop.test", False),
    ("https://shop.test:99999", False),
    ("shop.test", False),
])
def test_payee_origin_is_a_serialized_https_origin(origin: str, ok: bool) -> None:
    assert is_payee_origin(origin) is ok


def test_free_form_fields_are_kept_and_hashed() -> None:
    data = parse_transaction_data({**VALID, "order": {"id": "A-1", "lines": [1, 2]}, "note": None})
    assert data.raw["order"] == {"id": "A-1", "lines": [1, 2]}
    assert data.hash == transaction_hash(data.raw)


@pytest.mark.parametrize("extra", [
    {"price": 12.5},                      # floats have no canonical decimal spelling
    {"big": 2**53},                       # outside I-JSON's exact integer range
    {"deep": [[[[[[[[[["x"]]]]]]]]]]},    # nesting cap
    {"blob": "x" * 20_000},               # size cap
])
def test_free_form_fields_that_cannot_be_hashed_canonically_are_refused(extra: dict) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_transaction_data({**VALID, **extra})
    assert caught.value.code == "invalid_transaction_data"


def test_lone_surrogates_are_refused() -> None:
    data = loads_json('{"amount": "1.00", "currency": "EUR", "payee_name": "\\ud800"}')
    with pytest.raises(InvalidRequest, match="surrogate"):
        parse_transaction_data(data)


def test_logos_are_validated() -> None:
    logos = [{"url": "https://issuer.test/network.png", "label": "Network"}]
    assert parse_transaction_data({**VALID, "payment_entities_logos": logos}).logos[0].label == "Network"
    for bad in ([{"url": "http://x.test/a.png", "label": "x"}], [{"url": "https://x.test/a.png"}], "x",
                [{"url": "https://x.test/a.png", "label": "x", "extra": 1}]):
        with pytest.raises(InvalidRequest):
            parse_transaction_data({**VALID, "payment_entities_logos": bad})


def test_canonical_json_is_rfc_8785_for_this_subset() -> None:
    # Members sort by UTF-16 code units: U+1F600 (surrogates 0xD83D 0xDE00) comes before U+FB01,
    # the reverse of code point order, which is what Python's sort_keys would give.
    data = {"b": 1, "a": [True, None, "x"], "\u20ac": "e", "\U0001f600": "s", "\ufb01": "f", "ctl": "\u0001\n\"\\/"}
    expected = '{"a":[true,null,"x"],"b":1,"ctl":"\\u0001\\n\\"\\\\/","\u20ac":"e","\U0001f600":"s","\ufb01":"f"}'
    assert canonical_json(data) == expected.encode("utf-8")


def test_transaction_hash_is_base64url_sha256_of_canonical_json() -> None:
    data = {"currency": "EUR", "amount": "1.00", "payee_name": "Caf\u00e9"}
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                            .encode()).digest()
    assert transaction_hash(data) == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert transaction_hash({"payee_name": "Caf\u00e9", "amount": "1.00", "currency": "EUR"}) == transaction_hash(data)


def test_merchant_origin_resolution() -> None:
    data = parse_transaction_data(VALID)
    assert resolve_merchant_origin(data, ("https://shop.test",)) == "https://shop.test"
    with pytest.raises(InvalidRequest, match="several origins"):
        resolve_merchant_origin(data, ("https://a.test", "https://b.test"))
    named = parse_transaction_data({**VALID, "merchant_origin": "https://b.test"})
    assert resolve_merchant_origin(named, ("https://a.test", "https://b.test")) == "https://b.test"
    with pytest.raises(InvalidRequest, match="not an origin of this merchant"):
        resolve_merchant_origin(named, ("https://a.test",))


def test_t3_states_only_move_forward() -> None:
    for final in (SUCCEEDED, FAILED, EXPIRED):
        assert can_transition(PENDING, final)
        assert not can_transition(final, PENDING)
        for other in (SUCCEEDED, FAILED, EXPIRED):
            assert not can_transition(final, other)
    assert not can_transition(PENDING, PENDING)


def test_canonical_json_sorts_keys_by_utf16_code_units_where_code_points_differ() -> None:
    # U+1F600 is the surrogate pair D83D DE00, which sorts before U+E000 in UTF-16 (RFC 8785 §3.2.3).
    assert canonical_json({"\ue000": 1, "\U0001F600": 2, "a": {"\ufb01": 3, "\U00010000": 4}}) == \
        '{"a":{"\U00010000":4,"\ufb01":3},"\U0001F600":2,"\ue000":1}'.encode()


def test_canonical_json_fast_path_equals_the_reference_serializer() -> None:
    import random

    from spc_embed.transactions import _jcs

    rng = random.Random(7)
    alphabet = "aZ09_-é\u00ff\u4e2d\ud7ff\ue000\uffff\U0001F600 \"\\\n\t\x7f"
    for _ in range(300):
        data = {"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))):
                rng.choice([rng.randint(-10**6, 10**6), "".join(rng.choice(alphabet) for _ in range(5)), None, True,
                            [1, "x", {"k": False}], {"nested": "v", "\ue001": 1}])
                for _ in range(rng.randint(1, 6))}
        assert canonical_json(data) == _jcs(data).encode("utf-8"), data
