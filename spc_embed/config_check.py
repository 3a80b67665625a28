"""Every problem of an issuer configuration, not only the first: what ``spc-embed check`` reports.

``IssuerConfig`` stops at the first thing it refuses, which is right at
start-up but slow to fix one restart at a time. Here each setting is tried on
its own: it is put into a known-good configuration (the *baseline*) and that
is loaded through the very loader the service uses (``IssuerConfig.from_env``
or the TOML layout of :mod:`spc_embed.config_file`), so every rule and every
message stays the library's own. Lists are tried item by item (each at its
own position, so "secret key #2" means the second), then the good items
together (duplicate merchant ids). The database is opened as the service
would open it.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .config import IssuerConfig, normalize_origin
from .config_file import (
    KNOWN_KEYS,
    REQUIRED_KEYS,
    SIGNING_KEYS_FILE,
    config_from_mapping,
    default_database_url,
    missing_message,
    read_toml,
)
from .errors import ConfigurationError, StorageUnavailable
from .issuer import Issuer
from .storage import Store
from .storage.store import redacted

ENV_PREFIX = "SPC_"
# The variables IssuerConfig.from_env reads. A variable it reads that is not
# listed here is still checked, by the final load of the whole configuration.
ENV_REQUIRED = ("RP_ID", "RP_NAME", "ORIGIN", "SECRET_KEYS", "MERCHANTS", "SIGNING_KEYS_FILE")
ENV_OPTIONAL = ("DATABASE_URL", "ADMIN_API_KEYS", "ATTESTATION_FORMATS", "ENROLLMENT_TTL", "CHALLENGE_TTL",
                "TRANSACTION_TTL", "RESULT_TOKEN_TTL", "MAX_BODY_BYTES")
ENV_HINTS = {
    "RP_ID": "the issuer's domain, e.g. SPC_RP_ID=bank.example",
    "RP_NAME": "the name the authenticator shows, e.g. SPC_RP_NAME='Example Bank'",
    "ORIGIN": "the issuer's origin, e.g. SPC_ORIGIN=https://bank.example",
    "SECRET_KEYS": "comma-separated secrets, newest first; `spc-embed keys` prints one",
    "MERCHANTS": 'a JSON array of {"id", "origins", "api_keys"}; `spc-embed keys` prints one',
    "SIGNING_KEYS_FILE": "the PEM file of the result-token keys; `spc-embed keys --signing-key-out FILE` writes one",
}
SIGNING_KEY_FIX = "`spc-embed keys --signing-key-out FILE` writes a new P-256 key"
POSTGRES_FIX = "is the server running and reachable at that host and port, and are the user, password and database right?"

_ABSENT: Any = object()


@dataclass
class Setting:
    """One setting of a configuration source, and how to try it on its own."""

    name: str
    required: bool = False
    missing: str = ""                                      # the message when a required setting is absent
    items: Callable[[Any], list[Any] | None] | None = None  # a list setting, split into items
    join: Callable[[list[Any]], Any] = list
    filler: Callable[[], Any] | None = None                # a valid item, to put an item at its own position
    repair: Callable[[Any], Any] | None = None             # a refused item made valid, keeping its identity
    replaces: tuple[str, ...] = ()                         # baseline settings it stands for (inline keys vs a file)
    fix: str = ""                                          # appended when the library's message gives no fix


@dataclass
class Source:
    """Where a configuration comes from: the environment, or a TOML file."""

    values: dict[str, Any]
    baseline: dict[str, Any]
    load: Callable[[Mapping[str, Any]], IssuerConfig]
    settings: list[Setting]
    rp_id: str
    origin: str
    database_url: str
    exclusive: tuple[str, str] | None = None


@dataclass
class Report:
    """The problems, one line each (prefixed with the file's name for a file), or the loaded configuration."""

    prefix: str = ""
    problems: list[str] = field(default_factory=list)
    config: IssuerConfig | None = None
    database: str = ""

    def add(self, message: str, *, prefixed: bool = True) -> None:
        line = (self.prefix if prefixed else "") + " ".join(message.split())
        if line not in self.problems:
            self.problems.append(line)


def new_signing_key_pem() -> str:
    """A new EC P-256 private key, PKCS8 PEM: what `spc-embed keys` writes."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def _split_commas(value: Any) -> list[Any] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else None


def _json_array(value: Any) -> list[Any] | None:
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return None
    return parsed if isinstance(parsed, list) else None


def _as_list(value: Any) -> list[Any] | None:
    return value if isinstance(value, list) else None


def _merchant_by_id(item: Any) -> Any:
    """A refused merchant with only its id kept, so the ids of all merchants are compared."""
    if isinstance(item, Mapping) and "id" in item:
        return {"id": item["id"], "origins": ["https://merchant.example"]}
    return item


def _new_secret() -> str:
    return secrets.token_urlsafe(48)


def _new_api_key() -> str:
    return secrets.token_urlsafe(32)


def environment_source(environ: Mapping[str, str], key_file: Path) -> Source:
    def env(name: str) -> str:
        return ENV_PREFIX + name

    settings = [
        Setting(env(n), required=True, missing=f"{env(n)} is not set: set it to {ENV_HINTS[n]}")
        for n in ENV_REQUIRED
    ] + [Setting(env(n)) for n in ENV_OPTIONAL]
    by_name = {s.name: s for s in settings}
    by_name[env("SECRET_KEYS")].items = by_name[env("ADMIN_API_KEYS")].items = _split_commas
    by_name[env("SECRET_KEYS")].join = by_name[env("ADMIN_API_KEYS")].join = ",".join
    by_name[env("SECRET_KEYS")].filler = _new_secret
    by_name[env("ADMIN_API_KEYS")].filler = _new_api_key
    by_name[env("MERCHANTS")].items = _json_array
    by_name[env("MERCHANTS")].join = json.dumps
    by_name[env("MERCHANTS")].repair = _merchant_by_id
    by_name[env("SIGNING_KEYS_FILE")].fix = SIGNING_KEY_FIX
    baseline = {
        env("RP_ID"): "issuer.example", env("RP_NAME"): "Issuer", env("ORIGIN"): "https://issuer.example",
        env("SECRET_KEYS"): _new_secret(), env("SIGNING_KEYS_FILE"): str(key_file),
        env("MERCHANTS"): json.dumps([{"id": "merchant", "origins": ["https://merchant.example"]}]),
    }
    values = {s.name: environ[s.name] for s in settings if s.name in environ}
    return Source(values=values, baseline=baseline, load=lambda v: IssuerConfig.from_env(v),
                  settings=settings, rp_id=env("RP_ID"), origin=env("ORIGIN"), database_url=env("DATABASE_URL"))


def file_source(path: str | Path, data: dict[str, Any], key_file: Path) -> Source:
    base_dir = Path(path).parent
    required = set(REQUIRED_KEYS)
    settings = [
        Setting(k, required=k in required, missing=missing_message(k) if k in required else "")
        for k in KNOWN_KEYS
    ] + [Setting(k) for k in data if k not in KNOWN_KEYS]  # refused by the loader, each on its own line
    by_name = {s.name: s for s in settings}
    for name in ("secret_keys", "admin_api_keys", "merchants", "signing_keys"):
        by_name[name].items = _as_list
    by_name["merchants"].repair = _merchant_by_id
    by_name["secret_keys"].filler = _new_secret
    by_name["admin_api_keys"].filler = _new_api_key
    by_name["signing_keys"].filler = new_signing_key_pem
    by_name["signing_keys"].replaces = (SIGNING_KEYS_FILE,)
    by_name["signing_keys"].fix = by_name[SIGNING_KEYS_FILE].fix = SIGNING_KEY_FIX
    if "signing_keys" not in data:  # one of the two is needed; the file is what we recommend
        by_name[SIGNING_KEYS_FILE].required = True
        by_name[SIGNING_KEYS_FILE].missing = missing_message(SIGNING_KEYS_FILE)
    baseline = {
        "rp_id": "issuer.example", "rp_name": "Issuer", "origin": "https://issuer.example",
        "secret_keys": [_new_secret()], SIGNING_KEYS_FILE: str(key_file.absolute()),
        "merchants": [{"id": "merchant", "origins": ["https://merchant.example"]}],
    }
    return Source(values=dict(data), baseline=baseline,
                  load=lambda v: config_from_mapping(v, base_dir=base_dir), settings=settings,
                  rp_id="rp_id", origin="origin", database_url="database_url",
                  exclusive=("signing_keys", SIGNING_KEYS_FILE))


class _Prober:
    def __init__(self, source: Source, report: Report) -> None:
        self.source = source
        self.report = report

    def attempt(self, changes: Mapping[str, Any], replaces: tuple[str, ...] = ()) -> str | None:
        """Load the baseline with ``changes``; the library's message if it refuses, else None."""
        values = {k: v for k, v in self.source.baseline.items() if k not in replaces}
        for name, value in changes.items():
            if value is _ABSENT:
                values.pop(name, None)
            else:
                values[name] = value
        try:
            self.source.load(values)
        except ConfigurationError as exc:
            return str(exc)
        return None

    def problem(self, setting: Setting | str, message: str) -> None:
        name = setting if isinstance(setting, str) else setting.name
        if isinstance(setting, Setting) and setting.fix and "generate" not in message and "spc-embed" not in message:
            message = f"{message}; {setting.fix}"
        self.report.add(message if name in message else f"{name}: {message}")

    def value(self, name: str) -> Any:
        return self.source.values.get(name, _ABSENT)

    def try_setting(self, setting: Setting) -> bool:
        value = self.value(setting.name)
        if value is _ABSENT:
            if setting.required:
                self.problem(setting.name, setting.missing)
                return False
            return True
        items = setting.items(value) if setting.items else None
        if not items:
            message = self.attempt({setting.name: value}, setting.replaces)
            if message:
                self.problem(setting, message)
            return message is None
        whole, ok = [], True
        for index, item in enumerate(items):
            padding = [setting.filler() for _ in range(index)] if setting.filler else []
            message = self.attempt({setting.name: setting.join([*padding, item])}, setting.replaces)
            if message:
                ok = False
                self.problem(setting, message)
                if setting.repair:
                    whole.append(setting.repair(item))
            else:
                whole.append(item)
        if whole:  # the list as a whole: duplicate merchant ids and the like
            message = self.attempt({setting.name: setting.join(whole)}, setting.replaces)
            if message:
                ok = False
                self.problem(setting, message)
        return ok

    def try_identity(self) -> None:
        """rp_id and origin depend on each other: try the origin with a matching rp_id first."""
        rp_id, origin = self.source.rp_id, self.source.origin
        origin_value, rp_id_value = self.value(origin), self.value(rp_id)
        origin_ok = False
        if origin_value is _ABSENT:
            self.problem(origin, self._missing(origin))
        else:
            host = _hostname(origin_value)
            message = self.attempt({origin: origin_value, **({rp_id: host} if host else {})})
            if message:
                self.problem(origin, message)
            origin_ok = message is None
        if rp_id_value is _ABSENT:
            self.problem(rp_id, self._missing(rp_id))
        elif origin_ok:  # rp_id's own rules, and that it matches the origin
            message = self.attempt({rp_id: rp_id_value, origin: origin_value})
            if message:
                self.problem(rp_id, message)
        elif isinstance(rp_id_value, str):  # no usable origin: rp_id's own rules only
            candidate = "https://" + rp_id_value.lower()
            try:
                normalize_origin(candidate)
            except ConfigurationError:
                self.problem(rp_id, f"rp_id {rp_id_value!r} must be a domain name such as 'bank.example'")
                return
            message = self.attempt({rp_id: rp_id_value, origin: candidate})
            if message:
                self.problem(rp_id, message)
        else:
            message = self.attempt({rp_id: rp_id_value})
            if message:
                self.problem(rp_id, message)

    def _missing(self, name: str) -> str:
        return next(s.missing for s in self.source.settings if s.name == name)


def _hostname(origin: Any) -> str | None:
    if not isinstance(origin, str):
        return None
    try:
        return urlsplit(origin).hostname
    except ValueError:
        return None


T = TypeVar("T")


def _with_database(url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open the store (the schema step), do ``work``, close. ConfigurationError says what to fix."""
    try:
        store = Store(url)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"database_url is a PostgreSQL URL but {exc.name} is not installed: pip install 'spc-embed[postgres]'"
        ) from exc

    async def run() -> T:
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except ConfigurationError as exc:
        if url.startswith("postgres") and "?" not in str(exc):
            raise ConfigurationError(f"{exc}; {POSTGRES_FIX}") from exc
        raise
    except StorageUnavailable as exc:  # the database went away between opening and the work
        raise ConfigurationError(f"the database {redacted(url)} did not answer: {exc.message}") from exc


async def _nothing(store: Store) -> None:
    return None


def open_database(url: str) -> None:
    """The schema step: connect, create or check the schema, close. ConfigurationError says what to fix."""
    _with_database(url, _nothing)


def sweep_database(url: str) -> tuple[int, int]:
    """The periodic housekeeping (:meth:`Store.sweep`): (transactions marked expired, challenges deleted)."""
    return _with_database(url, Store.sweep)


@contextmanager
def _baseline_key_file() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="spc-embed-check-") as directory:
        path = Path(directory) / "baseline-signing-key.pem"
        path.write_text(new_signing_key_pem())
        yield path


def check_configuration(config_file: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
                        mount_path: str = "") -> Report:
    """Every problem of the configuration in ``config_file`` (TOML), else in the environment."""
    report = Report()
    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = read_toml(config_file)
        except ConfigurationError as exc:
            report.add(str(exc))  # names the file
            return report
        report.prefix = f"{config_file}: "
    with _baseline_key_file() as key_file:
        source = (file_source(config_file, data, key_file) if config_file is not None
                  else environment_source(os.environ if environ is None else environ, key_file))
        prober = _Prober(source, report)
        prober.try_identity()
        database_ok = True
        for setting in source.settings:
            if setting.name not in (source.rp_id, source.origin):
                ok = prober.try_setting(setting)
                database_ok = database_ok and (ok or setting.name != source.database_url)
        if source.exclusive and all(n in source.values for n in source.exclusive):
            message = prober.attempt({n: source.values[n] for n in source.exclusive})
            if message:
                prober.problem(source.exclusive[0], message)
        try:
            Issuer(source.load(source.baseline), mount_path=mount_path)
        except ConfigurationError as exc:
            report.add(f"--mount-path: {exc}", prefixed=False)
        if not report.problems:  # what the setting-by-setting tries cannot see
            try:
                report.config = source.load(source.values)
            except ConfigurationError as exc:
                report.add(str(exc))
    if database_ok:
        report.database = source.values.get(source.database_url, default_database_url())
        try:
            open_database(report.database)
        except ConfigurationError as exc:
            prober.problem(source.database_url, str(exc))
    if report.problems:
        report.config = None
    return report
