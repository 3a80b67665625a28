"""The issuer configuration as a TOML file, for ``spc-embed serve --config issuer.toml``.

Top-level keys are :class:`~spc_embed.config.IssuerConfig`'s keyword
arguments; each merchant is a ``[[merchants]]`` table with
:class:`~spc_embed.config.Merchant`'s; the signing keys come from a PEM file,
as with ``SPC_SIGNING_KEYS_FILE``::

    rp_id = "bank.example"
    rp_name = "Example Bank"
    origin = "https://bank.example"
    secret_keys = ["<from spc-embed keys>"]      # newest first
    signing_keys_file = "jwt-signing-key.pem"    # PEM keys, newest first; relative to this file
    database_url = "sqlite:////var/lib/bank/spc.db"
    admin_api_keys = []                          # optional, like every key below
    # enrollment_ttl, challenge_ttl, transaction_ttl, result_token_ttl (seconds),
    # allowed_attestation_formats, max_body_bytes

    [[merchants]]
    id = "shop"
    name = "Example Shop"
    origins = ["https://shop.example"]
    api_keys = ["<from spc-embed keys>"]
    default_currency = "EUR"                     # optional: for transactions that leave currency out

Every value is checked by ``IssuerConfig`` itself; this module only maps the
file onto it, and refuses keys it does not know (a typo would otherwise be a
silently ignored setting).
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from .config import IssuerConfig, Merchant
from .errors import ConfigurationError

SIGNING_KEYS_FILE = "signing_keys_file"
REQUIRED_KEYS = ("rp_id", "rp_name", "origin", "secret_keys", "merchants")
CONFIG_KEYS: tuple[str, ...] = tuple(f.name for f in fields(IssuerConfig) if f.init)
KNOWN_KEYS: tuple[str, ...] = (*CONFIG_KEYS, SIGNING_KEYS_FILE)
MERCHANT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Merchant) if f.init)
# The TOML type of each key. Values are checked further by IssuerConfig; a
# wrong type is refused here, so the message can say what TOML to write.
_STRINGS = ("rp_id", "rp_name", "origin", "database_url", "default_locale", SIGNING_KEYS_FILE, "id", "name",
            "default_currency")
_INTEGERS = ("enrollment_ttl", "challenge_ttl", "transaction_ttl", "result_token_ttl", "max_body_bytes",
             "database_pool_size")
_STRING_LISTS = ("secret_keys", "signing_keys", "admin_api_keys", "allowed_attestation_formats", "origins", "api_keys")

# What to put where a required key is missing.
MISSING_HINTS = {
    "rp_id": 'the issuer\'s domain, e.g. rp_id = "bank.example"',
    "rp_name": 'the name the authenticator shows, e.g. rp_name = "Example Bank"',
    "origin": 'the issuer\'s origin, e.g. origin = "https://bank.example"',
    "secret_keys": "a list of secrets, newest first; `spc-embed keys` prints one",
    "merchants": "a [[merchants]] table with id, origins and api_keys; `spc-embed keys` prints one",
    SIGNING_KEYS_FILE: "the PEM file of the result-token keys; `spc-embed keys --signing-key-out FILE` writes one",
}

_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.DOTALL)


def default_database_url() -> str:
    return str(next(f.default for f in fields(IssuerConfig) if f.name == "database_url"))


def read_toml(path: str | Path) -> dict[str, Any]:
    """The parsed file; ConfigurationError naming the file (and the line) when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the configuration file {str(path)!r}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc


def missing_message(key: str) -> str:
    return f"{key} is missing: add {MISSING_HINTS[key]}"


def unknown_key_message(key: str, known: tuple[str, ...], *, where: str = "") -> str:
    close = difflib.get_close_matches(key, known, n=1)
    suggestion = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(known)
    return f"unknown key {key!r}{where}: remove it ({suggestion})"


def read_signing_keys_file(path: str | Path) -> tuple[str, ...]:
    """The PEM blocks of a signing-keys file, newest first."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigurationError(
            f"cannot read signing_keys_file {str(path)!r}: {reason}; write a new key there with "
            f"`spc-embed keys --signing-key-out {path}`"
        ) from exc
    blocks = _PEM_BLOCK.findall(text)
    if not blocks:
        raise ConfigurationError(
            f"signing_keys_file {str(path)!r} holds no PEM private key; write one with "
            "`spc-embed keys --signing-key-out FILE`"
        )
    return tuple(block + "\n" for block in blocks)


def _typed(key: str, value: Any, *, where: str = "") -> Any:
    """``value`` as IssuerConfig takes it (arrays as tuples), or ConfigurationError naming the TOML to write."""
    if key in _STRINGS and not isinstance(value, str):
        raise ConfigurationError(f'{key}{where} must be a string in quotes ({key} = "..."), got {value!r}')
    if key in _INTEGERS and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigurationError(f"{key}{where} must be a whole number without quotes ({key} = 900), got {value!r}")
    if key in _STRING_LISTS:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigurationError(f'{key}{where} must be an array of strings ({key} = ["..."]), got {value!r}')
        return tuple(value)
    return value


def _merchant(index: int, table: object) -> Merchant:
    where = f" in merchants entry #{index + 1}"
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"merchants entry #{index + 1} must be a [[merchants]] table")
    for key in table:
        if key not in MERCHANT_KEYS:
            raise ConfigurationError(unknown_key_message(key, MERCHANT_KEYS, where=where))
    values = {key: _typed(key, value, where=where) for key, value in table.items()}
    return Merchant(id=values.get("id", ""), origins=values.get("origins", ()),
                    api_keys=values.get("api_keys", ()), name=values.get("name", ""),
                    payees=values.get("payees", ()), default_currency=values.get("default_currency"))


def config_from_mapping(data: Mapping[str, Any], *, base_dir: str | Path = ".") -> IssuerConfig:
    """Build an IssuerConfig from a parsed TOML document (the layout above).

    A relative ``signing_keys_file`` is read relative to ``base_dir``, the
    configuration file's directory.
    """
    for key in data:
        if key not in KNOWN_KEYS:
            raise ConfigurationError(unknown_key_message(key, KNOWN_KEYS))
    for key in REQUIRED_KEYS:
        if key not in data:
            raise ConfigurationError(missing_message(key))
    values: dict[str, Any] = {k: _typed(k, v) for k, v in data.items() if k not in (SIGNING_KEYS_FILE, "merchants")}
    if SIGNING_KEYS_FILE in data:
        if "signing_keys" in data:
            raise ConfigurationError(
                f"both signing_keys and {SIGNING_KEYS_FILE} are set: keep one ({SIGNING_KEYS_FILE} is preferred, "
                "so the keys stay out of the configuration file)"
            )
        path = _typed(SIGNING_KEYS_FILE, data[SIGNING_KEYS_FILE])
        values["signing_keys"] = read_signing_keys_file(Path(base_dir) / path)
    elif "signing_keys" not in data:
        raise ConfigurationError(missing_message(SIGNING_KEYS_FILE))
    merchants = data["merchants"]
    if not isinstance(merchants, list):
        raise ConfigurationError("merchants must be a list of [[merchants]] tables")
    values["merchants"] = tuple(_merchant(i, m) for i, m in enumerate(merchants))
    return IssuerConfig(**values)


def load_config_file(path: str | Path) -> IssuerConfig:
    """Read and validate ``issuer.toml``; every error names the file and says what to fix."""
    data = read_toml(path)
    try:
        return config_from_mapping(data, base_dir=Path(path).parent)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
