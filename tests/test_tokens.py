"""Enrolment tokens (docs/security.md R14, T5): signature, age, salt per purpose, key rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict, replace

import pytest
from factories import FakeClock
from itsdangerous import URLSafeTimedSerializer

from spc_embed.errors import ConfigurationError, TokenError, TokenExpired
from spc_embed.tokens import (
    ENROLLMENT_SALT,
    OPT_OUT_SALT,
    EnrollmentToken,
    EnrollmentTokens,
    OptOutTokens,
    SignedTokens,
)

OLD = "old-secret-key-0123456789abcdef0123456789"
NEW = "new-secret-key-0123456789abcdef0123456789"
TTL = 900


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def token(**changes: str) -> EnrollmentToken:
    values = dict(
        user_id="cardholder-1", user_name="alex@example.com", user_display_name="Alex Doe",
        instrument_name="Test Card ****4242", instrument_icon="https://issuer.test/card.png",
        merchant_origin="https://merchant.test",
    )
    values.update(changes)
    return EnrollmentToken(**values)


def tokens(*keys: str, clock: FakeClock, max_age: int = TTL) -> EnrollmentTokens:
    return EnrollmentTokens(list(keys), max_age=max_age, clock=clock)


def test_round_trip(clock: FakeClock) -> None:
    original = token()
    assert tokens(NEW, clock=clock).load(tokens(NEW, clock=clock).mint(original)) == original


def test_token_ids_are_random_and_unique() -> None:
    ids = {token().token_id for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) >= 24 for i in ids)


def test_minted_token_is_url_safe(clock: FakeClock) -> None:
    value = tokens(NEW, clock=clock).mint(token(user_display_name="Zoë & Ünal <x>"))
    assert all(c.isalnum() or c in "-_." for c in value)


# Rotation: the first key signs, every key verifies


def test_rotation_old_token_verifies_when_old_key_is_second(clock: FakeClock) -> None:
    minted = tokens(OLD, clock=clock).mint(token())

    assert tokens(NEW, OLD, clock=clock).load(minted).user_id == "cardholder-1"


def test_rotation_new_key_signs(clock: FakeClock) -> None:
    minted = tokens(NEW, OLD, clock=clock).mint(token())

    assert tokens(NEW, clock=clock).load(minted).user_id == "cardholder-1"
    with pytest.raises(TokenError) as info:
        tokens(OLD, clock=clock).load(minted)
    assert info.value.code == "invalid_token"


def test_rotation_dropped_key_no_longer_verifies(clock: FakeClock) -> None:
    minted = tokens(OLD, clock=clock).mint(token())

    with pytest.raises(TokenError) as info:
        tokens(NEW, clock=clock).load(minted)
    assert info.value.code == "invalid_token"


def test_rotation_three_keys(clock: FakeClock) -> None:
    third = "third-secret-key-0123456789abcdef012345"
    minted_by = {key: tokens(key, clock=clock).mint(token()) for key in (OLD, NEW, third)}
    rotated = tokens(third, NEW, OLD, clock=clock)

    for key, minted in minted_by.items():
        assert rotated.load(minted).user_id == "cardholder-1", key
    assert tokens(third, clock=clock).load(rotated.mint(token())).user_id == "cardholder-1"


# Age: max_age always applies


def test_max_age_boundary(clock: FakeClock) -> None:
    machinery = tokens(NEW, clock=clock)
    minted = machinery.mint(token())

    clock.advance(TTL)
    assert machinery.load(minted).user_id == "cardholder-1"
    clock.advance(1)
    with pytest.raises(TokenExpired) as info:
        machinery.load(minted)
    assert info.value.code == "token_expired"
    assert info.value.status == 401


def test_expired_token_keeps_its_authentic_payload(clock: FakeClock) -> None:
    machinery = tokens(NEW, clock=clock)
    original = token(merchant_origin="https://shop.test")
    minted = machinery.mint(original)
    clock.advance(TTL + 60)

    with pytest.raises(TokenExpired) as info:
        machinery.load(minted)
    # The page uses it to show the error to the right merchant only.
    assert machinery.load_expired(info.value) == original


def test_expiry_is_checked_after_the_signature(clock: FakeClock) -> None:
    # A forged old token must not pass as "expired" and leak its claimed merchant into headers.
    forged = URLSafeTimedSerializer("x" * 40, salt=ENROLLMENT_SALT).dumps(asdict(token()))
    clock.advance(10 * TTL)

    with pytest.raises(TokenError) as info:
        tokens(NEW, clock=clock).load(forged)
    assert not isinstance(info.value, TokenExpired)


def test_token_from_the_future_is_refused(clock: FakeClock) -> None:
    minted = tokens(NEW, clock=clock).mint(token())
    clock.advance(-3600)

    with pytest.raises(TokenError):
        tokens(NEW, clock=clock).load(minted)


def test_max_age_is_the_configured_one(clock: FakeClock) -> None:
    short = tokens(NEW, clock=clock, max_age=5)
    minted = short.mint(token())
    clock.advance(6)

    with pytest.raises(TokenExpired):
        short.load(minted)
    assert tokens(NEW, clock=clock, max_age=60).load(minted).user_id == "cardholder-1"


# Salts: one per purpose


def test_enrolment_salt_is_specific() -> None:
    assert ENROLLMENT_SALT.startswith("spc-embed.") and "enrol" in ENROLLMENT_SALT


def test_same_secret_other_salt_is_refused(clock: FakeClock) -> None:
    other_purpose = SignedTokens([NEW], salt="spc-embed.registration-state.v1", max_age=TTL, clock=clock)
    minted = other_purpose.dumps(asdict(token()))

    with pytest.raises(TokenError) as info:
        tokens(NEW, clock=clock).load(minted)
    assert info.value.code == "invalid_token"


def test_enrolment_token_is_refused_for_another_purpose(clock: FakeClock) -> None:
    minted = tokens(NEW, clock=clock).mint(token())
    other_purpose = SignedTokens([NEW], salt="spc-embed.transaction.v1", max_age=TTL, clock=clock)

    with pytest.raises(TokenError):
        other_purpose.loads(minted)


def test_default_itsdangerous_salt_is_refused(clock: FakeClock) -> None:
    minted = URLSafeTimedSerializer(NEW).dumps(asdict(token()))

    with pytest.raises(TokenError):
        tokens(NEW, clock=clock).load(minted)


def test_tokens_are_stock_itsdangerous_tokens_both_ways(clock: FakeClock) -> None:
    # Minted without itsdangerous's Serializer layers, but in its format: a stock serializer with the same key,
    # salt and digest reads ours, and ours reads its (zlib-compressed, as it writes long payloads).
    stock = URLSafeTimedSerializer(NEW, salt=ENROLLMENT_SALT, signer_kwargs={"digest_method": hashlib.sha1})
    original = token(user_display_name="Zoë \"Ünal\" \\ 中文 😀")
    payload = {key: value for key, value in asdict(original).items() if key != "locale"}  # no locale: left out
    assert stock.loads(tokens(NEW, clock=clock).mint(original)) == payload
    # The stock serializer stamps the wall clock's time.
    assert EnrollmentTokens([NEW], max_age=TTL).load(stock.dumps(asdict(original))) == original


def test_opt_out_token_is_the_hmac_of_its_json_message() -> None:
    # The message is json.dumps([salt, tenant, transaction]), byte for byte as tokens minted before were made.
    for tenant, transaction in [("merchant", "order-1"), ('m"1', "a\\b"), ("händler", "😀-1"), ("m", "\u2028\x7f")]:
        message = json.dumps([OPT_OUT_SALT, tenant, transaction]).encode("ascii")
        expected = base64.urlsafe_b64encode(hmac.digest(NEW.encode(), message, "sha256")).rstrip(b"=").decode()
        minted = OptOutTokens([NEW, OLD]).mint(tenant, transaction)
        assert minted == expected
        assert OptOutTokens([OLD, NEW]).matches(minted, tenant, transaction)
        assert not OptOutTokens([OLD]).matches(minted, tenant, transaction)
        assert not OptOutTokens([NEW]).matches(minted, tenant, transaction + "x")


# Malformed and tampered tokens


@pytest.mark.parametrize("value", [None, 0, b"bytes", "", "x" * 4097, ["a"], "no-dots", "a.b", "a.b.c"])
def test_malformed_tokens_refused(clock: FakeClock, value: object) -> None:
    with pytest.raises(TokenError) as info:
        tokens(NEW, clock=clock).load(value)
    assert type(info.value) is TokenError
    assert info.value.code == "invalid_token"


def test_every_single_character_change_is_refused(clock: FakeClock) -> None:
    machinery = tokens(NEW, clock=clock)
    minted = machinery.mint(token())
    for index in range(0, len(minted), 3):
        replacement = "A" if minted[index] != "A" else "B"
        tampered = minted[:index] + replacement + minted[index + 1 :]
        with pytest.raises(TokenError):
            machinery.load(tampered)


@pytest.mark.parametrize("payload", [
    ["a", "list"], "text", 42, None, {}, {"user_id": "x"},
    {**asdict(token()), "is_admin": True},
    {**asdict(token()), "merchant_origin": "https://merchant.test/path"},
    {**asdict(token()), "instrument_icon": "javascript:alert(1)"},
    {**asdict(token()), "user_id": ""},
], ids=["list", "str", "int", "null", "empty", "missing", "extra", "origin-path", "icon-scheme", "empty-user"])
def test_authentic_but_unexpected_payload_refused(clock: FakeClock, payload: object) -> None:
    minted = SignedTokens([NEW], salt=ENROLLMENT_SALT, max_age=TTL, clock=clock).dumps(payload)  # type: ignore[arg-type]

    with pytest.raises(TokenError) as info:
        tokens(NEW, clock=clock).load(minted)
    assert info.value.code == "invalid_token"


# What an enrolment token may name


@pytest.mark.parametrize("field", ["user_id", "user_name", "user_display_name", "instrument_name", "instrument_icon"])
def test_enrollment_token_requires_each_field(field: str) -> None:
    with pytest.raises(ConfigurationError, match=field):
        token(**{field: " "})


def test_enrollment_token_limits_lengths() -> None:
    with pytest.raises(ConfigurationError, match="user_name"):
        token(user_name="x" * 256)
    assert token(user_name="x" * 255).user_name == "x" * 255


@pytest.mark.parametrize("icon", ["http://cdn.example/card.png", "javascript:alert(1)", "/card.png",
                                  "data:text/html,<b>"])
def test_enrollment_token_icon_must_be_https_or_image_data(icon: str) -> None:
    with pytest.raises(ConfigurationError, match="instrument_icon"):
        token(instrument_icon=icon)


@pytest.mark.parametrize("icon", ["https://cdn.example/card.png", "http://localhost:8000/card.png",
                                  "data:image/png;base64,iVBORw0KGgo="])
def test_enrollment_token_icon_accepted(icon: str) -> None:
    assert token(instrument_icon=icon).instrument_icon == icon


@pytest.mark.parametrize("origin", ["https://merchant.test/", "merchant.test", "http://merchant.test",
                                    "https://Merchant.test", "https://merchant.test/checkout"])
def test_enrollment_token_merchant_origin_must_be_an_origin(origin: str) -> None:
    with pytest.raises(ConfigurationError):
        token(merchant_origin=origin)


def test_enrollment_token_is_immutable() -> None:
    original = token()
    with pytest.raises(AttributeError):
        original.user_id = "someone-else"  # type: ignore[misc]
    assert replace(original, user_id="b").token_id == original.token_id
