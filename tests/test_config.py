"""Configuration: every rule fails at construction with a message that says what to fix."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from factories import API_KEY as FACTORY_API_KEY
from factories import OTHER_API_KEY, SECRET, signing_key_pem

from spc_embed import ConfigurationError, IssuerConfig, Merchant
from spc_embed.config import normalize_origin, placeholder_reason

API_KEY = "merchant-api-key-0123456789abcdef"
NEWER_SECRET = "rotated-secret-key-9f8e7d6c5b4a39281706"


def merchant(**changes: Any) -> Merchant:
    values: dict[str, Any] = dict(id="shop", origins=("https://shop.test",), api_keys=(API_KEY,), name="Shop")
    values.update(changes)
    return Merchant(**values)


def config(**changes: Any) -> IssuerConfig:
    values: dict[str, Any] = dict(
        rp_id="bank.test", rp_name="Bank", origin="https://bank.test", secret_keys=(SECRET,),
        signing_keys=(signing_key_pem(0),), merchants=(merchant(),), database_url="sqlite:///x.db",
    )
    values.update(changes)
    return IssuerConfig(**values)


def pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def test_valid_configuration() -> None:
    built = config(merchants=(merchant(), merchant(id="other", origins=("https://a.test", "https://b.test:8443"))))

    assert built.merchant("other").origins == ("https://a.test", "https://b.test:8443")
    assert built.merchant_for_origin("https://b.test:8443").id == "other"
    assert built.merchant_for_origin("https://c.test") is None
    assert built.merchant_origins == {"https://shop.test", "https://a.test", "https://b.test:8443"}
    assert built.secret_keys == (SECRET,)


def test_configuration_error_is_a_value_error() -> None:
    assert issubclass(ConfigurationError, ValueError)


def test_lists_may_be_given_as_any_sequence() -> None:
    built = config(secret_keys=[SECRET], merchants=[merchant()], signing_keys=[signing_key_pem(0)])

    assert isinstance(built.secret_keys, tuple) and isinstance(built.merchants, tuple)


def test_secrets_never_in_repr() -> None:
    built = config()
    text = repr(built) + repr(built.merchants)

    assert SECRET not in text and API_KEY not in text and "PRIVATE KEY" not in text


def test_api_keys_kept_only_as_digests() -> None:
    built = merchant()

    assert built.api_keys == ()
    assert built.api_key_hashes == (hashlib.sha256(API_KEY.encode()).hexdigest(),)


# Origins


@pytest.mark.parametrize("origin", ["https://bank.test", "https://bank.test:8443", "http://localhost:8000",
                                    "http://merchant.localhost:8001", "https://xn--bcher-kva.test"])
def test_origins_accepted(origin: str) -> None:
    assert normalize_origin(origin) == origin


@pytest.mark.parametrize("origin, message", [
    ("bank.test", "https://host"),
    ("ftp://bank.test", "https://host"),
    ("https://", "https://host"),
    ("https://bank.test/", "path"),
    ("https://bank.test/checkout", "path"),
    ("https://bank.test?x=1", "query"),
    ("https://bank.test#top", "path, query"),
    ("https://user@bank.test", "user"),
    ("https://Bank.test", "lower case"),
    ("http://bank.test", "must use https"),
    ("http://localhost.bank.test", "must use https"),
])
def test_origins_refused_with_reason(origin: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        normalize_origin(origin, what="merchant origin")
    assert "merchant origin" in str(info.value)


def test_origin_must_be_a_string() -> None:
    with pytest.raises(ConfigurationError, match="must be a string"):
        normalize_origin(["https://bank.test"])  # type: ignore[arg-type]


@pytest.mark.parametrize("origin", [
    "https://a.test;script-src *", "https://a b.test", "https://a.test\n", "https://a.test:", "https://a.test:443",
    "https://a.test:99999", "https://a.test:0443",
])
def test_origins_that_cannot_be_a_serialized_origin_refused(origin: str) -> None:
    with pytest.raises(ConfigurationError):
        normalize_origin(origin)


# Merchants


@pytest.mark.parametrize("changes, message", [
    ({"id": ""}, "merchant id must be a non-empty string"),
    ({"id": "   "}, "merchant id must be a non-empty string"),
    ({"id": 7}, "merchant id must be a non-empty string"),
    ({"origins": "https://shop.test"}, "needs a list of allowed origins"),
    ({"origins": ()}, "needs a list of allowed origins"),
    ({"origins": ("https://shop.test/",)}, "merchant 'shop' origin"),
    ({"api_keys": API_KEY}, "api_keys must be a list"),
    ({"api_keys": ("short",)}, "merchant 'shop' API key #1 must be at least 24 characters long"),
    ({"api_keys": (API_KEY, None)}, "merchant 'shop' API key #2 must be a string"),
    ({"default_currency": "eur"}, "merchant 'shop' default_currency 'eur' must be an upper-case ISO 4217 code"),
    ({"default_currency": "EURO"}, "default_currency 'EURO' must be an upper-case ISO 4217 code"),
    ({"default_currency": ""}, "default_currency '' must be an upper-case ISO 4217 code"),
    ({"default_currency": "E1R"}, "default_currency 'E1R' must be an upper-case ISO 4217 code"),
    ({"default_currency": 978}, "default_currency 978 must be an upper-case ISO 4217 code"),
])
def test_merchant_rules(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        merchant(**changes)


def test_merchant_without_api_keys_is_allowed() -> None:
    # An enrolment-only merchant never calls the transaction API.
    assert merchant(api_keys=()).api_key_hashes == ()


def test_default_currency_is_optional() -> None:
    assert merchant().default_currency is None
    assert merchant(default_currency="EUR").default_currency == "EUR"


@pytest.mark.parametrize("name, origins, payee", [
    ("Shop", ("https://shop.test",), ("Shop", "https://shop.test")),
    ("", ("https://shop.test",), (None, "https://shop.test")),
    ("Shop", ("https://shop.test", "https://www.shop.test"), ("Shop", None)),  # which one to show is not ours to guess
    ("Shop", ("https://shop.test", "http://localhost:8000"), ("Shop", "https://shop.test")),  # http is no payee origin
    ("Shop", ("http://localhost:8000",), ("Shop", None)),
    ("", ("http://localhost:8000",), (None, None)),
])
def test_default_payee_is_the_merchant_by_name_and_single_https_origin(
        name: str, origins: tuple[str, ...], payee: tuple[str | None, str | None]) -> None:
    shop = merchant(name=name, origins=origins)
    assert shop.default_payee == payee
    assert payee == (None, None) or shop.may_show_payee(*payee)  # H7: the default is always the merchant itself


# The issuer


@pytest.mark.parametrize("changes, message", [
    ({"rp_id": ""}, "rp_id must be a lower-case domain"),
    ({"rp_id": "Bank.test"}, "rp_id must be a lower-case domain"),
    ({"rp_name": ""}, "rp_name must be a non-empty"),
    ({"origin": "https://bank.test/"}, "issuer origin"),
    ({"origin": "http://bank.test"}, "issuer origin .* must use https"),
    ({"origin": "https://other.test"}, "rp_id 'bank.test' must equal or be a parent domain"),
    ({"origin": "https://notbank.test"}, "must equal or be a parent domain"),
    ({"rp_id": "pay.bank.test"}, "must equal or be a parent domain"),
    ({"secret_keys": SECRET}, "secret_keys must be a list"),
    ({"secret_keys": ()}, "secret_keys is empty: generate one with"),
    ({"secret_keys": ("too-short",)}, "secret key #1 must be at least 32 characters long; generate a real one with"),
    ({"secret_keys": (SECRET, None)}, "secret key #2 must be a string"),
    ({"merchants": ()}, "at least one merchant"),
    ({"merchants": (merchant(), merchant())}, "merchant ids must be unique"),
    ({"enrollment_ttl": 0}, "enrollment_ttl must be a positive integer"),
    ({"challenge_ttl": -5}, "challenge_ttl must be a positive integer"),
    ({"transaction_ttl": 1.5}, "transaction_ttl must be a positive integer"),
    ({"result_token_ttl": "60"}, "result_token_ttl must be a positive integer"),
    ({"max_body_bytes": 0}, "max_body_bytes must be a positive integer"),
    ({"database_url": "mysql://db/spc"}, "must be a sqlite:/// or postgresql:// URL"),
])
def test_issuer_rules(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        config(**changes)


def test_rp_id_may_be_a_parent_domain_of_the_origin() -> None:
    assert config(rp_id="bank.test", origin="https://pay.bank.test").rp_id == "bank.test"


def test_localhost_issuer_for_development() -> None:
    built = config(rp_id="localhost", origin="http://localhost:8000",
                   merchants=(merchant(origins=("http://merchant.localhost:8001",)),))
    assert built.origin == "http://localhost:8000"


@pytest.mark.parametrize("keys, message", [
    ((), "signing_keys is empty"),
    ("-----BEGIN PRIVATE KEY-----", "signing_keys must be a list"),
    (("not a key",), "PEM private key"),
    (("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",), "not a readable"),
])
def test_signing_key_rules(keys: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        config(signing_keys=keys)


@pytest.mark.parametrize("key", [
    pytest.param(lambda: ec.generate_private_key(ec.SECP384R1()), id="P-384"),
    pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), id="RSA"),
])
def test_signing_keys_must_be_p256(key: Any) -> None:
    with pytest.raises(ConfigurationError, match="P-256"):
        config(signing_keys=(pem(key()),))


def test_signing_keys_rotate_newest_first() -> None:
    built = config(signing_keys=[signing_key_pem(1), signing_key_pem(0)])
    assert built.signing_keys == (signing_key_pem(1), signing_key_pem(0))


# From the environment


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "signing-keys.pem"
    path.write_text(signing_key_pem(1) + "\n" + signing_key_pem(0))
    return path


@pytest.fixture
def env(keys_file: Path) -> dict[str, str]:
    return {
        "SPC_RP_ID": "bank.test",
        "SPC_RP_NAME": "Bank",
        "SPC_ORIGIN": "https://bank.test",
        "SPC_SECRET_KEYS": f"{NEWER_SECRET}, {SECRET}",
        "SPC_SIGNING_KEYS_FILE": str(keys_file),
        "SPC_MERCHANTS": json.dumps([
            {"id": "shop", "name": "Shop", "origins": ["https://shop.test"], "api_keys": [API_KEY],
             "default_currency": "EUR"},
            {"id": "cafe", "origins": ["https://cafe.test", "https://www.cafe.test"]},
        ]),
    }


def test_from_env(env: dict[str, str]) -> None:
    built = IssuerConfig.from_env(env)

    assert built.rp_id == "bank.test" and built.rp_name == "Bank" and built.origin == "https://bank.test"
    assert built.secret_keys == (NEWER_SECRET, SECRET)  # order kept: the first signs
    assert built.signing_keys == (signing_key_pem(1).strip() + "\n", signing_key_pem(0).strip() + "\n")
    assert [m.id for m in built.merchants] == ["shop", "cafe"]
    assert built.merchant("cafe").origins == ("https://cafe.test", "https://www.cafe.test")
    assert built.merchant("shop").api_key_hashes == (hashlib.sha256(API_KEY.encode()).hexdigest(),)
    assert (built.merchant("shop").default_currency, built.merchant("cafe").default_currency) == ("EUR", None)
    assert built.enrollment_ttl == IssuerConfig.enrollment_ttl  # defaults kept


def test_from_env_optional_values(env: dict[str, str]) -> None:
    env.update({
        "SPC_ENROLLMENT_TTL": "60", "SPC_CHALLENGE_TTL": "30", "SPC_MAX_BODY_BYTES": "1024",
        "SPC_DATABASE_URL": "postgresql://db/spc", "SPC_ATTESTATION_FORMATS": "none",
    })
    built = IssuerConfig.from_env(env)

    assert (built.enrollment_ttl, built.challenge_ttl, built.max_body_bytes) == (60, 30, 1024)
    assert built.database_url == "postgresql://db/spc"
    assert built.allowed_attestation_formats == ("none",)


def test_from_env_reads_os_environ_with_any_prefix(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv("BANK_" + name.removeprefix("SPC_"), value)

    assert IssuerConfig.from_env(prefix="BANK_").rp_id == "bank.test"


@pytest.mark.parametrize("name", ["SPC_RP_ID", "SPC_RP_NAME", "SPC_ORIGIN", "SPC_SECRET_KEYS", "SPC_MERCHANTS"])
def test_from_env_missing_variable_named(env: dict[str, str], name: str) -> None:
    del env[name]

    with pytest.raises(ConfigurationError, match=f"environment variable {name} is not set"):
        IssuerConfig.from_env(env)


def test_from_env_without_signing_keys_fails(env: dict[str, str]) -> None:
    del env["SPC_SIGNING_KEYS_FILE"]

    with pytest.raises(ConfigurationError, match="signing_keys|SIGNING_KEYS"):
        IssuerConfig.from_env(env)


@pytest.mark.parametrize("value, message", [
    ("not json", "SPC_MERCHANTS is not valid JSON"),
    ('{"id": "shop"}', "SPC_MERCHANTS must be a JSON array of objects"),
    ('["shop"]', "SPC_MERCHANTS must be a JSON array of objects"),
    ("[]", "at least one merchant"),
    ('[{"id": "shop"}]', "needs a list of allowed origins"),
    ('[{"id": "shop", "origins": ["https://shop.test/"]}]', "merchant 'shop' origin"),
    ('[{"id": "shop", "origins": ["https://shop.test"], "default_currency": "euro"}]',
     "merchant 'shop' default_currency 'euro' must be an upper-case ISO 4217 code"),
    ('[{"id": "shop", "origins": ["https://shop.test"], "default_currency": 978}]',
     "merchant 'shop' default_currency 978 must be an upper-case ISO 4217 code"),
])
def test_from_env_bad_merchants(env: dict[str, str], value: str, message: str) -> None:
    env["SPC_MERCHANTS"] = value

    with pytest.raises(ConfigurationError, match=message):
        IssuerConfig.from_env(env)


@pytest.mark.parametrize("name", ["SPC_ENROLLMENT_TTL", "SPC_CHALLENGE_TTL", "SPC_TRANSACTION_TTL",
                                  "SPC_RESULT_TOKEN_TTL", "SPC_MAX_BODY_BYTES"])
def test_from_env_integer_variables(env: dict[str, str], name: str) -> None:
    env[name] = "ten"
    with pytest.raises(ConfigurationError, match=f"{name} must be an integer"):
        IssuerConfig.from_env(env)
    env[name] = "0"
    with pytest.raises(ConfigurationError, match="must be a positive integer"):
        IssuerConfig.from_env(env)


def test_from_env_secret_keys_blank(env: dict[str, str]) -> None:
    env["SPC_SECRET_KEYS"] = " , "

    with pytest.raises(ConfigurationError, match="secret_keys is empty"):
        IssuerConfig.from_env(env)


def test_from_env_unreadable_signing_keys_file(env: dict[str, str], tmp_path: Path) -> None:
    env["SPC_SIGNING_KEYS_FILE"] = str(tmp_path / "missing.pem")

    with pytest.raises(ConfigurationError, match="cannot read signing keys file"):
        IssuerConfig.from_env(env)


def test_from_env_signing_keys_file_without_pem(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "empty.pem"
    path.write_text("nothing here\n")
    env["SPC_SIGNING_KEYS_FILE"] = str(path)

    with pytest.raises(ConfigurationError, match="holds no PEM private key"):
        IssuerConfig.from_env(env)


def test_from_env_invalid_values_fail_like_keyword_arguments(env: dict[str, str]) -> None:
    env["SPC_ORIGIN"] = "http://bank.test"

    with pytest.raises(ConfigurationError, match="must use https"):
        IssuerConfig.from_env(env)


# Placeholders: what documentation and sample configurations put where a secret belongs

SECRET_PLACEHOLDERS = [
    "<48 random characters, newest first>",          # the README's own Quick start
    "<SECRET_KEY_AT_LEAST_32_CHARACTERS_LONG>",
    "<48 random characters, long enough for the rule",  # the README's, split at its comma
    "and then the second half of it, newest first>",
    "prefix-<put the real secret in here>-suffix",
    "change-me-change-me-change-me-change-me",
    "changeme-0123456789abcdefghijklmnopqrstuv",
    "CHANGE_ME_BEFORE_GOING_TO_PRODUCTION_PLEASE",
    "please-replace-me-with-a-real-secret-key",
    "replace_this_with_48_random_characters_ok",
    "your-secret-key-here-0123456789abcdefghij",
    "YOUR_SECRET_HERE_0123456789abcdefghijklmn",
    "insert your secret here, 32 characters or more",
    "placeholder-secret-0123456789abcdefghijklm",
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "sk_live_XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "0123456789abcdefghijklmnopqrstuvwxyz\u2026",
    "a" * 48,
    "0" * 32,
    "-" * 40,
    "abc" * 16,
    "secret" * 8,
    "0123456789" * 4,
    "ab12" * 10 + "a",                                # a repeated unit cut short
    "a1a1a1a1-b2b2b2b2-a1a1a1a1-b2b2b2b2-a1a1",     # few distinct characters
]

API_KEY_PLACEHOLDERS = [
    "<the shop's API key>",                            # the README's own Quick start
    "<API_KEY>",
    "your-api-key-here",
    "your_merchant_api_key_here_0123456789",
    "changeme",
    "xxxxxxxxxxxxxxxxxxxxxxxx",
    "1" * 24,
    "apikey" * 4,
    "abcd" * 8,
]


def realistic_keys() -> list[str]:
    """What real keys look like: the generators the messages recommend, and the other usual ones."""
    keys = [secrets.token_urlsafe(n) for n in (18, 24, 32, 48, 64) for _ in range(400)]
    keys += [secrets.token_hex(n) for n in (12, 16, 32) for _ in range(300)]
    keys += [str(uuid.uuid4()) for _ in range(300)]
    keys += [base64.b64encode(secrets.token_bytes(33)).decode() for _ in range(300)]
    printable = string.ascii_letters + string.digits + string.punctuation  # a password manager's "all symbols"
    keys += ["".join(secrets.choice(printable) for _ in range(32)) for _ in range(300)]
    return keys


def test_realistic_random_keys_are_not_placeholders() -> None:
    flagged = [(key, placeholder_reason(key)) for key in realistic_keys() if placeholder_reason(key)]

    assert flagged == []


@pytest.mark.parametrize("key", [SECRET, API_KEY, FACTORY_API_KEY, OTHER_API_KEY,
                                 "admin-key-0123456789abcdefghijkl", "kept-key-0123456789abcdefghijklmn",
                                 "rotated-secret-key-9f8e7d6c5b4a39281706", "Tr0ub4dor&3-correct-horse-battery"])
def test_fixture_keys_of_the_suite_are_not_placeholders(key: str) -> None:
    assert placeholder_reason(key) is None


@pytest.mark.parametrize("value", SECRET_PLACEHOLDERS)
def test_placeholder_secret_keys_refused_with_how_to_generate_one(value: str) -> None:
    with pytest.raises(ConfigurationError, match="secret key #2 looks like a documentation placeholder") as info:
        config(secret_keys=(SECRET, value))

    assert 'python -c "import secrets; print(secrets.token_urlsafe(48))"' in str(info.value)
    assert value not in str(info.value)  # a false positive must not print a real secret into a log


@pytest.mark.parametrize("value", API_KEY_PLACEHOLDERS)
def test_placeholder_merchant_api_keys_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="merchant 'shop' API key #1 looks like a documentation placeholder") \
            as info:
        merchant(api_keys=(value,))

    assert "secrets.token_urlsafe(32)" in str(info.value)


@pytest.mark.parametrize("value", API_KEY_PLACEHOLDERS)
def test_placeholder_admin_api_keys_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="admin API key #1 looks like a documentation placeholder") as info:
        config(admin_api_keys=(value,))

    assert "secrets.token_urlsafe(32)" in str(info.value)


def test_short_keys_still_refused_for_length_not_as_placeholders() -> None:
    with pytest.raises(ConfigurationError, match="admin API key #1 must be at least 24 characters long"):
        config(admin_api_keys=("short-admin-key",))
    with pytest.raises(ConfigurationError, match="admin API key #1 must be a string"):
        config(admin_api_keys=(b"bytes-are-not-a-key-0123456789",))


def test_realistic_keys_accepted_everywhere() -> None:
    built = config(secret_keys=(secrets.token_urlsafe(48), secrets.token_hex(16)),
                   admin_api_keys=(secrets.token_urlsafe(32), str(uuid.uuid4())),
                   merchants=(merchant(api_keys=(secrets.token_urlsafe(32), secrets.token_hex(12))),))

    assert len(built.secret_keys) == 2 and len(built.admin_api_key_hashes) == 2


def test_placeholders_refused_from_the_environment(env: dict[str, str]) -> None:
    env["SPC_ADMIN_API_KEYS"] = "<admin API key>"

    with pytest.raises(ConfigurationError, match="admin API key #1 looks like a documentation placeholder"):
        IssuerConfig.from_env(env)


def _pem_with_body(body: str) -> str:
    return f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize("key", [
    _pem_with_body("<your P-256 private key here>"),
    _pem_with_body("..."),
    _pem_with_body("MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg..."),
    _pem_with_body("MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEH\u2026"),
    _pem_with_body("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    _pem_with_body("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nAAAAAAAAAAAAAAAA"),
    _pem_with_body("REPLACE_ME"),
    _pem_with_body(""),
    "-----BEGIN EC PRIVATE KEY-----\nchange me\n-----END EC PRIVATE KEY-----",
])
def test_placeholder_signing_keys_refused_with_how_to_generate_one(key: str) -> None:
    with pytest.raises(ConfigurationError, match="signing key #2 looks like a documentation placeholder") as info:
        config(signing_keys=(signing_key_pem(0), key))

    assert "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256" in str(info.value)


def test_real_signing_keys_are_not_placeholders() -> None:
    # Fresh keys every run, in both encodings load_signing_key accepts.
    for _ in range(50):
        key = ec.generate_private_key(ec.SECP256R1())
        for form in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
            text = key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()).decode()
            assert config(signing_keys=(text,)).signing_keys == (text,)
