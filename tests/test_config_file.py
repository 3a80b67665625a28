"""The TOML layout of ``spc-embed serve --config``: IssuerConfig's keywords, [[merchants]], signing_keys_file."""

from __future__ import annotations

from pathlib import Path

import pytest
from factories import API_KEY, SECRET, signing_key_pem

from spc_embed import ConfigurationError
from spc_embed.config_file import config_from_mapping, load_config_file

LAYOUT = f'''
rp_id = "bank.example"
rp_name = "Example Bank"
origin = "https://bank.example"
secret_keys = ["{SECRET}"]
signing_keys_file = "keys/jwt.pem"
database_url = "sqlite:////var/lib/bank/spc.db"
admin_api_keys = ["{API_KEY[::-1]}"]
enrollment_ttl = 600
allowed_attestation_formats = ["none"]

[[merchants]]
id = "shop"
name = "Example Shop"
origins = ["https://shop.example", "https://www.shop.example"]
api_keys = ["{API_KEY}"]
'''


def test_every_key_maps_onto_issuer_config(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "jwt.pem").write_text(signing_key_pem(0) + signing_key_pem(1))  # newest first
    (tmp_path / "issuer.toml").write_text(LAYOUT)
    config = load_config_file(tmp_path / "issuer.toml")  # the key file is found next to the TOML file
    assert (config.rp_id, config.rp_name, config.origin) == ("bank.example", "Example Bank", "https://bank.example")
    assert config.secret_keys == (SECRET,)
    assert config.signing_keys == (signing_key_pem(0), signing_key_pem(1))
    assert config.database_url == "sqlite:////var/lib/bank/spc.db"
    assert len(config.admin_api_key_hashes) == 1
    assert config.enrollment_ttl == 600 and config.allowed_attestation_formats == ("none",)
    (shop,) = config.merchants
    assert (shop.id, shop.name, shop.origins) == ("shop", "Example Shop",
                                                  ("https://shop.example", "https://www.shop.example"))
    assert config.merchant_for_origin("https://www.shop.example") is shop


def base() -> dict[str, object]:
    return {"rp_id": "bank.example", "rp_name": "Bank", "origin": "https://bank.example", "secret_keys": [SECRET],
            "signing_keys": [signing_key_pem(0)], "merchants": [{"id": "shop", "origins": ["https://shop.example"]}]}


def test_h7_a_payment_facilitator_lists_its_payees() -> None:
    import tomllib

    merchants = tomllib.loads('''
[[merchants]]
id = "psp"
name = "Pay Facilitator"
origins = ["https://psp.example"]
payees = [{name = "Corner Shop", origin = "https://corner.example"}, {name = "Book Store"}]
''')["merchants"]
    (psp,) = config_from_mapping({**base(), "merchants": merchants}).merchants
    assert [(p.name, p.origin) for p in psp.payees] == [("Corner Shop", "https://corner.example"), ("Book Store", None)]
    with pytest.raises(ConfigurationError, match="must be tables such as"):
        config_from_mapping({**base(), "merchants": [{**merchants[0], "payees": ["Corner Shop"]}]})


def test_a_merchant_may_have_a_default_currency() -> None:
    shop = {"id": "shop", "origins": ["https://shop.example"]}
    (merchant,) = config_from_mapping({**base(), "merchants": [{**shop, "default_currency": "EUR"}]}).merchants
    assert merchant.default_currency == "EUR"
    assert config_from_mapping(base()).merchants[0].default_currency is None
    with pytest.raises(ConfigurationError, match=r"default_currency in merchants entry #1 must be a string in quotes"):
        config_from_mapping({**base(), "merchants": [{**shop, "default_currency": 978}]})
    with pytest.raises(ConfigurationError, match="default_currency 'eur' must be an upper-case ISO 4217 code"):
        config_from_mapping({**base(), "merchants": [{**shop, "default_currency": "eur"}]})


def test_signing_keys_may_be_inline() -> None:
    assert config_from_mapping(base()).signing_keys == (signing_key_pem(0),)


@pytest.mark.parametrize("change, message", [
    ({"signing_keys_file": "jwt.pem"}, "both signing_keys and signing_keys_file are set: keep one"),
    ({"signing_keys": None}, ("signing_keys_file is missing: add the PEM file of the result-token keys; "
                             "`spc-embed keys --signing-key-out FILE` writes one")),
    ({"rp_name": None}, 'rp_name is missing: add the name the authenticator shows, e.g. rp_name = "Example Bank"'),
    ({"secret_key": [SECRET]}, "unknown key 'secret_key': remove it (did you mean 'secret_keys'?)"),
    ({"merchants": [{"id": "shop", "origin": ["https://shop.example"]}]},
     "unknown key 'origin' in merchants entry #1: remove it (did you mean 'origins'?)"),
    ({"merchants": [{"id": "shop", "origins": "https://shop.example"}]},
     "origins in merchants entry #1 must be an array of strings (origins = [\"...\"]), got 'https://shop.example'"),
    ({"merchants": {"id": "shop"}}, "merchants must be a list of [[merchants]] tables"),
    ({"secret_keys": SECRET}, 'secret_keys must be an array of strings (secret_keys = ["..."])'),
    ({"challenge_ttl": True}, "challenge_ttl must be a whole number without quotes (challenge_ttl = 900), got True"),
    ({"rp_id": 7}, 'rp_id must be a string in quotes (rp_id = "..."), got 7'),
])
def test_refusals_say_what_to_write(change: dict[str, object], message: str) -> None:
    data = base()
    for key, value in change.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    with pytest.raises(ConfigurationError) as refused:
        config_from_mapping(data)
    assert str(refused.value).startswith(message)


def test_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "issuer.toml").write_text('rp_id = "bank.example"\n')
    with pytest.raises(ConfigurationError, match=r"issuer\.toml: rp_name is missing"):
        load_config_file(tmp_path / "issuer.toml")
    (tmp_path / "issuer.toml").write_text("rp_id = bank.example\n")
    with pytest.raises(ConfigurationError, match=r"issuer\.toml is not valid TOML: Invalid value \(at line 1"):
        load_config_file(tmp_path / "issuer.toml")
