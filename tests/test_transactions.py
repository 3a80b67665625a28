"""Transaction data: the amount rule (S5), amounts as JSON numbers, payee and currency checks and defaults,
canonical JSON (RFC 8785, with its own number samples), states."""

from __future__ import annotations

import base64
import hashlib
import json
import struct

import pytest
import rfc8785

from spc_embed.encoding import JSONNumber, compact_json, loads_json
from spc_embed.errors import InvalidRequest
from spc_embed.transactions import (
    EXPIRED,
    FAILED,
    PENDING,
    SUCCEEDED,
    amount_spelling,
    amounts_equal,
    can_transition,
    canonical_json,
    is_canonical_amount,
    is_payee_origin,
    parse_transaction_data,
    resolve_merchant_origin,
    transaction_hash,
)
from spc_embed.web import JSONResponse

VALID = {"amount": "100.00", "currency": "EUR", "payee_name": "Shop"}


@pytest.mark.parametrize("amount", ["0", "0.5", "1", "100", "100.00", "12.3456", "999999999999999.99"])
def test_canonical_amounts_are_accepted(amount: str) -> None:
    assert is_canonical_amount(amount)
    assert parse_transaction_data({**VALID, "amount": amount}).amount == amount


@pytest.mark.parametrize("amount", [
    "1e2", "-1", "+1", "01", "00.10", "1.", ".5", "1.23456", " 1", "1 ", "1,00", "١٠٠", "NaN", "Infinity",
    "", "1000000000000000", None, True, False, ["1"], {"value": "1"},
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
    with pytest.raises(InvalidRequest, match="payee_name, payee_origin or both") as caught:
        parse_transaction_data({"amount": "1.00", "currency": "EUR"})
    assert "configure this merchant's name" in str(caught.value)  # both ways to fix it
    assert caught.value.code == "invalid_transaction_data"
    assert parse_transaction_data({"amount": "1.00", "currency": "EUR", "payee_origin": "https://shop.test"})


# Amounts as JSON numbers: spelled as written in the request body


def _amount_of(body: str) -> str:
    return parse_transaction_data(loads_json(body), default_currency="EUR", default_payee=("Shop", None)).amount


@pytest.mark.parametrize(("written", "spelling"), [
    ("123.45", "123.45"), ("100.10", "100.10"), ("100", "100"), ("100.0", "100.0"), ("0", "0"), ("0.0", "0.0"),
    ("0.1", "0.1"), ("12.3456", "12.3456"), ("999999999999999", "999999999999999"), ("99999999999.9999", "99999999999.9999"),
])
def test_a_number_amount_is_spelled_exactly_as_written(written: str, spelling: str) -> None:
    assert _amount_of(f'{{"amount": {written}}}') == spelling
    assert _amount_of(f'{{"amount":{written} , "usedFor": "x"}}') == spelling


@pytest.mark.parametrize(("written", "says"), [
    ("1e2", "has an exponent"), ("1E2", "has an exponent"), ("1.5e1", "has an exponent"), ("1e-2", "has an exponent"),
    ("-1", "has a sign"), ("-0", "has a sign"), ("-0.0", "has a sign"), ("-123.45", "has a sign"),
    ("1.23456", "5 fraction digits"), ("0.00001", "5 fraction digits"),
    ("1234567890123456", "more than 15 integer digits"), ("12345678901234567.5", "more than 15 integer digits"),
    # 19 significant digits: the double holds 1000000000000000, so the hash would say another amount.
    ("999999999999999.9999", 'send it as a string: "999999999999999.9999"'),
    ("12345678901234.5678", 'send it as a string: "12345678901234.5678"'),  # the double reads 12345678901234.568
])
def test_a_number_amount_that_cannot_be_shown_as_written_is_refused_with_how_to_write_it(written: str,
                                                                                         says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _amount_of(f'{{"amount": {written}}}')
    assert caught.value.code == "invalid_transaction_data"
    assert says in str(caught.value)


def test_a_long_number_amount_is_refused_with_a_short_message() -> None:
    with pytest.raises(InvalidRequest, match="3000 fraction digits") as caught:
        _amount_of('{"amount": 0.' + "1" * 3000 + "}")
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(("written", "says"), [
    ("true", "not true"), ("false", "not false"), ("null", "not null"), ('["1.00"]', "not an array"),
    ('{"value": 1}', "not an object"),
])
def test_an_amount_that_is_neither_string_nor_number_is_refused(written: str, says: str) -> None:
    with pytest.raises(InvalidRequest, match=says):
        _amount_of(f'{{"amount": {written}}}')


def test_a_missing_amount_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="not null"):
        parse_transaction_data({"currency": "EUR", "payee_name": "Shop"})


@pytest.mark.parametrize(("value", "spelling"), [(123.45, "123.45"), (100, "100"), (100.0, "100.0"), (0.1, "0.1")])
def test_an_in_process_number_without_text_is_spelled_as_python_writes_it(value: object, spelling: str) -> None:
    assert amount_spelling(value) == spelling
    assert parse_transaction_data({**VALID, "amount": value}).amount == spelling


@pytest.mark.parametrize("value", [1e16, 1e-5, -1.0, -1, float("nan"), float("inf"), 0.123456])
def test_an_in_process_number_that_cannot_be_shown_as_written_is_refused(value: float) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_transaction_data({**VALID, "amount": value})
    assert caught.value.code == "invalid_transaction_data"


def test_the_raw_data_keeps_the_number_and_is_hashed_as_rfc_8785_writes_it() -> None:
    data = parse_transaction_data(loads_json('{"amount": 100.10, "currency": "EUR", "payee_name": "Shop"}'))
    assert data.amount == "100.10"
    assert data.raw["amount"] == 100.1 and data.raw["amount"].text == "100.10"
    assert canonical_json(data.raw) == b'{"amount":100.1,"currency":"EUR","payee_name":"Shop"}'


def test_hankos_example_hashes_as_a_merchant_recomputes_it() -> None:
    body = '{"amount": 123.45, "usedFor": "Buying a Hanko Cloud membership"}'
    data = parse_transaction_data(loads_json(body), default_currency="EUR", default_payee=("Hanko", None))
    merchant_side = rfc8785.dumps({"amount": 123.45, "usedFor": "Buying a Hanko Cloud membership"})
    assert merchant_side == b'{"amount":123.45,"usedFor":"Buying a Hanko Cloud membership"}'
    assert data.hash == base64.urlsafe_b64encode(hashlib.sha256(merchant_side).digest()).rstrip(b"=").decode()
    assert data.raw == {"amount": 123.45, "usedFor": "Buying a Hanko Cloud membership"}  # no default written in


# Defaults from the merchant: shown, never written into the data


def test_a_missing_currency_is_the_merchants_default_and_the_data_stays_as_sent() -> None:
    sent = {"amount": "1.00", "payee_name": "Shop"}
    data = parse_transaction_data(sent, default_currency="CHF")
    assert data.currency == "CHF" and "currency" not in data.raw
    assert data.hash == transaction_hash(sent)
    assert parse_transaction_data({**sent, "currency": "EUR"}, default_currency="CHF").currency == "EUR"


def test_a_missing_currency_without_a_default_names_both_ways_to_fix_it() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_transaction_data({"amount": "1.00", "payee_name": "Shop"})
    assert caught.value.code == "invalid_transaction_data"
    assert "send it" in str(caught.value) and "default_currency" in str(caught.value)


@pytest.mark.parametrize("currency", ["eur", None, 978, "", "EURO"])
def test_a_sent_currency_is_checked_even_with_a_default(currency: object) -> None:
    with pytest.raises(InvalidRequest, match="currency"):
        parse_transaction_data({"amount": "1.00", "payee_name": "Shop", "currency": currency}, default_currency="EUR")


def test_without_payee_members_the_merchant_is_the_payee_shown_and_the_data_stays_as_sent() -> None:
    sent = {"amount": "1.00", "currency": "EUR"}
    data = parse_transaction_data(sent, default_payee=("Hanko", "https://hanko.test"))
    assert (data.payee_name, data.payee_origin) == ("Hanko", "https://hanko.test")
    assert data.raw == sent and data.hash == transaction_hash(sent)
    named_only = parse_transaction_data({**sent, "payee_name": "Hanko"}, default_payee=("Hanko", "https://hanko.test"))
    assert (named_only.payee_name, named_only.payee_origin) == ("Hanko", None)  # a payee sent is taken as sent
    assert parse_transaction_data(sent, default_payee=(None, "https://hanko.test")).payee_origin == "https://hanko.test"


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


def test_free_form_numbers_are_kept_and_hashed_as_rfc_8785_writes_them() -> None:
    body = '{"amount": "1.00", "currency": "EUR", "payee_name": "Shop", "rate": 1.50, "n": [1E2, -0, 0.1]}'
    data = parse_transaction_data(loads_json(body))
    assert canonical_json(data.raw) == b'{"amount":"1.00","currency":"EUR","n":[100,0,0.1],"payee_name":"Shop","rate":1.5}'


@pytest.mark.parametrize("extra", [
    {"price": float("nan")},              # JSON has no NaN (loads_json never yields one)
    {"price": float("-inf")},
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
                [{"url": "https://x.test/a.png", "label": "x", "extra": 1}], [{"url": 7, "label": "x"}],
                [{"url": "https://X.test/a.png", "label": "x"}], [{"url": "https://x.test", "label": "x"}]):
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

    rng = random.Random(7)
    # Every control character (the escapes the fast path must write as RFC 8785 does), quotes, backslashes.
    alphabet = "aZ09_-é\u00ff\u4e2d\ud7ff\ue000\uffff\U0001F600 \"\\\x7f\u2028/" + "".join(map(chr, range(0x20)))
    for _ in range(600):
        data = {"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4))):
                rng.choice([rng.randint(-10**6, 10**6), "".join(rng.choice(alphabet) for _ in range(5)), None, True,
                            [1, "x", {"k": False}], {"nested": "v", "\ue001": 1}, rng.uniform(-1e6, 1e6)])
                for _ in range(rng.randint(1, 6))}
        assert canonical_json(data) == rfc8785.dumps(data), data


# RFC 8785's own samples


def _double(ieee_hex: str) -> float:
    return struct.unpack(">d", bytes.fromhex(ieee_hex))[0]


# RFC 8785 Appendix B: IEEE-754 doubles and their JSON (ECMAScript Number::toString) spelling.
RFC_8785_NUMBERS = [
    ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"), ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"), ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("ieee_hex", "expected"), RFC_8785_NUMBERS)
def test_canonical_json_writes_numbers_as_rfc_8785_appendix_b(ieee_hex: str, expected: str) -> None:
    assert canonical_json({"n": _double(ieee_hex)}) == b'{"n":' + expected.encode() + b"}"


@pytest.mark.parametrize("ieee_hex", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_canonical_json_refuses_what_rfc_8785_appendix_b_calls_invalid(ieee_hex: str) -> None:
    with pytest.raises(InvalidRequest, match="not finite"):
        canonical_json({"n": _double(ieee_hex)})


def test_canonical_json_of_rfc_8785_section_3_2_2_sample() -> None:
    sent = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
    expected = r"""{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],""" \
               r""""string":"€$\u000f\nA'B\"\\\\\"/"}"""
    assert canonical_json(loads_json(sent)) == expected.encode("utf-8")


# The JSON parser keeps each number's text


def test_loads_json_keeps_the_text_of_non_integer_numbers_and_of_minus_zero() -> None:
    parsed = loads_json('[100.10, 1E2, -0, -0.0, 7]')
    assert [getattr(n, "text", None) for n in parsed] == ["100.10", "1E2", "-0", "-0.0", None]
    assert all(isinstance(n, JSONNumber) for n in parsed[:4]) and type(parsed[4]) is int
    assert parsed == [100.1, 100.0, 0.0, 0.0, 7]
    assert json.dumps(parsed) == "[100.1, 100.0, -0.0, -0.0, 7]"  # stored as the float it is


@pytest.mark.parametrize("text", ["1e400", "-1e400", "[1.5e999]"])
def test_loads_json_refuses_numbers_beyond_a_double(text: str) -> None:
    with pytest.raises(InvalidRequest, match="too large for a double"):
        loads_json(text)


@pytest.mark.parametrize("value", [
    {"amount": "100.00", "payee_name": "Café ☕", "n": [1, 2.5, None, True], "nested": {"k": "v"}},
    {"amount": JSONNumber("100.10"), "currency": "EUR"},  # a kept spelling: the standard library writes it
    {"big": 2 ** 70, "negative": -(2 ** 64)},  # past 64 bits: the standard library writes it
    {"surrogate": "\ud800"},  # a lone surrogate: written as \ud800, as json.dumps does
    {1: "a non-string key"},
])
def test_compact_json_reads_back_as_json_dumps_writes_it(value: object) -> None:
    written = compact_json(value)
    assert json.loads(written) == json.loads(json.dumps(value, separators=(",", ":")))
    assert " " not in written.replace("Café ☕", "").replace("a non-string key", "")


def test_json_answers_are_compact_utf8_and_fall_back_for_kept_spellings() -> None:
    answer = JSONResponse({"payee": "Café", "amount": JSONNumber("100.10"), "ids": ("a", "b")})
    assert answer.body == '{"payee":"Café","amount":100.1,"ids":["a","b"]}'.encode()
    assert JSONResponse({"payee": "Café", "ok": True}).body == '{"payee":"Café","ok":true}'.encode()
