"""How an issuer describes itself: RP identity, secrets, merchants, TTLs, storage.

Everything is validated at construction, so a misconfigured issuer fails at
start-up with a message that says what to fix, never at the first payment.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .origins import is_localhost, serialized_origin
from .text import is_storable

# itsdangerous signs with HMAC-SHA1 by default; 32 characters keeps brute force
# off the table whatever the digest.
MIN_SECRET_LENGTH = 32
MIN_API_KEY_LENGTH = 24

GENERATE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
GENERATE_API_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
GENERATE_SIGNING_KEY = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256"

# What documentation and sample configurations put where a secret belongs.
# Each pattern is chosen so that random keys (token_urlsafe, token_hex, UUIDs,
# base64) practically never match: they have no spaces, angle brackets or
# ellipses, and the chance of a run of eight x's, a separated English phrase or
# a short period in one is far below one in a billion.
# "<…>" around words, or what is left of it after a list was split at its commas.
_ANGLE_BRACKETS = re.compile(r"^<[\w\s,.'-]+>$|<[^<>]*\s[^<>]*>|^<[^<>]*\s|\s[^<>]*>$")
_PLACEHOLDER_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(?:change|replace)[ _.-]*(?:me|this|it)\b", re.IGNORECASE), '"change me"'),
    (re.compile(r"\b(?:your|insert|put|paste|enter)\b.*\bhere\b", re.IGNORECASE), '"your ... here"'),
    (re.compile(r"placeholder", re.IGNORECASE), '"placeholder"'),
    (re.compile(r"x{8,}", re.IGNORECASE), "a run of x's"),
    (re.compile(r"\u2026"), "an ellipsis"),
)
# A real key of 24 or more characters uses far more distinct characters than this.
_MIN_DISTINCT_CHARACTERS = 6


def _smallest_period(value: str) -> int:
    """The length of the shortest unit that, repeated, spells ``value`` (a prefix may end it)."""
    # Knuth-Morris-Pratt failure function: the longest proper border gives the period.
    border = [0] * len(value)
    k = 0
    for i in range(1, len(value)):
        while k and value[i] != value[k]:
            k = border[k - 1]
        if value[i] == value[k]:
            k += 1
        border[i] = k
    return len(value) - (border[-1] if value else 0)


def placeholder_reason(value: str) -> str | None:
    """Why ``value`` looks like a documentation placeholder rather than a secret, or None.

    Separators (``-``, ``_``, ``.``, spaces) are read as word breaks, so
    ``your_api_key_here`` and ``CHANGE-ME`` are caught like their spelled-out forms.
    """
    if _ANGLE_BRACKETS.search(value):
        return "text in angle brackets"
    words = re.sub(r"[_.-]+", " ", value)
    for pattern, reason in _PLACEHOLDER_PATTERNS:
        if pattern.search(value) or pattern.search(words):
            return reason
    compact = re.sub(r"[\s_.-]+", "", value)
    if len(compact) >= 12 and len(set(compact)) < _MIN_DISTINCT_CHARACTERS:
        return "one character or a few, repeated"
    if len(value) >= 12 and _smallest_period(value) <= len(value) // 3:
        return "a short repeated pattern"
    return None


def check_key(value: object, *, what: str, min_length: int, generate: str) -> str:
    """The one check for secret keys and API keys: a string, long enough, not a placeholder."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} must be a string, got {type(value).__name__}")
    reason = placeholder_reason(value)
    if reason is not None:
        raise ConfigurationError(
            f"{what} looks like a documentation placeholder ({reason}), not a secret; "
            f"generate a real one with `{generate}`"
        )
    if len(value) < min_length:
        raise ConfigurationError(
            f"{what} must be at least {min_length} characters long; generate a real one with `{generate}`"
        )
    return value


def check_api_key(value: object, *, what: str) -> str:
    """An API key: as :func:`check_key`, and printable ASCII, since it travels in an HTTP header (H4)."""
    key = check_key(value, what=what, min_length=MIN_API_KEY_LENGTH, generate=GENERATE_API_KEY)
    if not (key.isascii() and key.isprintable()) or key != key.strip():
        raise ConfigurationError(f"{what} must be printable ASCII without surrounding spaces (it is sent in an "
                                 f"HTTP header); generate one with `{GENERATE_API_KEY}`")
    return key


_PEM_ARMOR = re.compile(r"-----(?:BEGIN|END) [A-Z ]+-----")


def check_signing_key_text(pem: object, *, what: str) -> None:
    """Refuse a signing key whose PEM body is a placeholder (``<your key here>``, ``...``, ``xxxx``)."""
    if not isinstance(pem, str):
        return  # load_signing_key names the problem
    body = _PEM_ARMOR.sub("", pem).strip()
    reason: str | None
    if not body:
        reason = "no key between the BEGIN and END lines"
    elif "..." in body:
        reason = "an ellipsis"
    else:
        reason = placeholder_reason(body)
    if reason is not None:
        raise ConfigurationError(
            f"{what} looks like a documentation placeholder ({reason}), not a key; "
            f"generate a real one with `{GENERATE_SIGNING_KEY}`"
        )


def normalize_origin(value: str, *, what: str = "origin") -> str:
    """Validate a serialized origin (scheme://host[:port]) and return it unchanged.

    Origins are compared as exact strings everywhere, so a path, a trailing
    slash or an upper-case host would silently never match: refuse them here.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} must be a string, got {type(value).__name__}")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"{what} {value!r} must look like https://host[:port]")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(f"{what} {value!r} must not have a path, query or user part")
    if value != value.lower():
        raise ConfigurationError(f"{what} {value!r} must be lower case")
    if parts.scheme == "http" and not is_localhost(parts.hostname):
        raise ConfigurationError(f"{what} {value!r} must use https (http only for localhost)")
    # Anything else a browser would spell differently (stray characters that
    # would also inject into CSP, empty, default or out-of-range ports).
    try:
        serialized_origin(value)
    except ValueError as exc:
        raise ConfigurationError(f"{what}: {exc}") from exc
    return value


def hash_api_key(api_key: str) -> str:
    """API keys are stored and compared as SHA-256 digests (high-entropy secrets need no KDF)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


MAX_PAYEE_NAME_LENGTH = 255
_CURRENCY = re.compile(r"[A-Z]{3}")  # ISO 4217, as transactions.CURRENCY_PATTERN


@dataclass(frozen=True)
class Payee:
    """Someone a payment facilitator takes payments for: the name and origin the browser may show as payee.

    At least one of the two. ``origin`` is an https origin as browsers
    serialize it (SPC's ``payeeOrigin``); without it a transaction naming this
    payee may show no payee origin.
    """

    name: str | None = None
    origin: str | None = None

    def __post_init__(self) -> None:
        if self.name is None and self.origin is None:
            raise ConfigurationError("a payee needs a name, an origin or both")
        if self.name is not None:
            _check_payee_name(self.name, what=f"payee name {self.name!r}")
        if self.origin is not None:
            normalize_origin(self.origin, what="payee origin")
            if not self.origin.startswith("https://"):
                raise ConfigurationError(f"payee origin {self.origin!r} must use https (SPC shows https origins only)")


def _check_payee_name(value: object, *, what: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_PAYEE_NAME_LENGTH or not is_storable(value):
        raise ConfigurationError(f"{what} must be a non-empty string of at most {MAX_PAYEE_NAME_LENGTH} characters "
                                 "without control characters")


def _payee(value: object, *, merchant_id: str) -> Payee:
    if isinstance(value, Payee):
        return value
    if not isinstance(value, Mapping) or not set(value) <= {"name", "origin"}:
        raise ConfigurationError(f'merchant {merchant_id!r} payees must be tables such as '
                                 f'{{name = "Corner Shop", origin = "https://corner.example"}}, got {value!r}')
    return Payee(name=value.get("name"), origin=value.get("origin"))


@dataclass(frozen=True)
class Merchant:
    """A tenant: one merchant (or PSP) with its page origins and API keys.

    ``api_keys`` are given in plain text and only their digests are kept;
    removing a key from the list revokes it.

    The payee a transaction shows (``payee_name``, ``payee_origin``) is this
    merchant, ``name`` and one of ``origins`` (docs/security.md H7), unless it
    is one of ``payees``: a tenant that takes payments for others (a payment
    facilitator) lists them, as :class:`Payee` objects or ``{"name", "origin"}``
    mappings.

    A transaction that leaves out ``currency`` is in ``default_currency``
    (an upper-case ISO 4217 code), and one that names no payee shows this
    merchant (:attr:`default_payee`), as the Hanko Passkey API's examples
    expect; without a default, those members are required.
    """

    id: str
    origins: tuple[str, ...]
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    name: str = ""
    payees: tuple[Payee, ...] = ()
    default_currency: str | None = None
    api_key_hashes: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ConfigurationError("merchant id must be a non-empty string")
        if isinstance(self.origins, str) or not self.origins:
            raise ConfigurationError(f"merchant {self.id!r} needs a list of allowed origins")
        origins = tuple(normalize_origin(o, what=f"merchant {self.id!r} origin") for o in self.origins)
        object.__setattr__(self, "origins", origins)
        if isinstance(self.api_keys, str):
            raise ConfigurationError(f"merchant {self.id!r} api_keys must be a list, not a string")
        for index, key in enumerate(self.api_keys):
            check_api_key(key, what=f"merchant {self.id!r} API key #{index + 1}")
        object.__setattr__(self, "api_key_hashes", tuple(hash_api_key(k) for k in self.api_keys))
        object.__setattr__(self, "api_keys", ())
        if self.name:
            _check_payee_name(self.name, what=f"merchant {self.id!r} name")
        if isinstance(self.payees, (str, Mapping)):
            raise ConfigurationError(f"merchant {self.id!r} payees must be a list of payees")
        object.__setattr__(self, "payees", tuple(_payee(p, merchant_id=self.id) for p in self.payees))
        if self.default_currency is not None and (
                not isinstance(self.default_currency, str) or not _CURRENCY.fullmatch(self.default_currency)):
            raise ConfigurationError(f"merchant {self.id!r} default_currency {self.default_currency!r} must be an "
                                     'upper-case ISO 4217 code such as "EUR"')

    @property
    def default_payee(self) -> tuple[str | None, str | None]:
        """The payee (name, origin) a transaction naming none shows: this merchant, by its name and its https origin.

        The origin only when the merchant has exactly one https origin (with
        several, which one the cardholder should see is not ours to guess;
        an http://localhost origin is no payee origin, SPC shows https only).
        """
        https = [origin for origin in self.origins if origin.startswith("https://")]
        return self.name or None, https[0] if len(https) == 1 else None

    def may_show_payee(self, name: str | None, origin: str | None) -> bool:
        """Whether a transaction may show this payee: this merchant itself, or one of its payees (H7).

        What is shown must belong to one payee: a name (if any) and an origin
        (if any) of the same one.
        """
        own = (self.name or None, self.origins)
        listed = ((p.name, (p.origin,) if p.origin else ()) for p in self.payees)
        return any((name is None or name == payee_name) and (origin is None or origin in payee_origins)
                   for payee_name, payee_origins in (own, *listed))


@dataclass(frozen=True)
class IssuerConfig:
    """Everything the issuer sub-application needs.

    ``secret_keys`` rotate: the first key signs, every key verifies, so a new
    key goes first and an old one is dropped once its tokens have expired.
    ``signing_keys`` are PEM private keys (EC P-256) for result JWTs, with the
    same rotation rule; at least one is required. ``admin_api_keys`` guard the
    issuer-backend endpoints (credential management, listings across merchants);
    like merchant keys only their SHA-256 digests are kept.
    """

    rp_id: str
    rp_name: str
    origin: str
    secret_keys: tuple[str, ...] = field(repr=False)
    merchants: tuple[Merchant, ...]
    signing_keys: tuple[str, ...] = field(default=(), repr=False)
    database_url: str = "sqlite:///spc_embed.db"
    enrollment_ttl: int = 15 * 60
    challenge_ttl: int = 5 * 60
    transaction_ttl: int = 10 * 60
    result_token_ttl: int = 5 * 60
    allowed_attestation_formats: tuple[str, ...] = ("none", "packed")
    max_body_bytes: int = 64 * 1024
    database_pool_size: int = 10  # PostgreSQL connections per event loop of each process
    default_locale: str = "en"
    admin_api_keys: tuple[str, ...] = field(default=(), repr=False)
    admin_api_key_hashes: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.rp_id, str) or not self.rp_id or self.rp_id != self.rp_id.lower():
            raise ConfigurationError("rp_id must be a lower-case domain such as 'bank.example'")
        if not self.rp_name:
            raise ConfigurationError("rp_name must be a non-empty display name")
        normalize_origin(self.origin, what="issuer origin")
        host = urlsplit(self.origin).hostname or ""
        if host != self.rp_id and not host.endswith("." + self.rp_id):
            raise ConfigurationError(
                f"rp_id {self.rp_id!r} must equal or be a parent domain of the issuer origin host {host!r}"
            )
        self._check_secrets()
        merchants = tuple(self.merchants)
        if not merchants:
            raise ConfigurationError("configure at least one merchant (tenant)")
        ids = [m.id for m in merchants]
        if len(set(ids)) != len(ids):
            raise ConfigurationError(f"merchant ids must be unique, got {ids}")
        object.__setattr__(self, "merchants", merchants)
        self._check_signing_keys()
        self._check_admin_keys()
        object.__setattr__(self, "allowed_attestation_formats", tuple(self.allowed_attestation_formats))
        for name in ("enrollment_ttl", "challenge_ttl", "transaction_ttl", "result_token_ttl", "max_body_bytes",
                     "database_pool_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        from .i18n import check_locale_tag

        check_locale_tag(self.default_locale, what="default_locale")
        if not self.database_url.startswith(("sqlite", "postgresql", "postgres")):
            raise ConfigurationError(
                f"database_url {self.database_url!r} must be a sqlite:/// or postgresql:// URL"
            )

    def _check_secrets(self) -> None:
        if isinstance(self.secret_keys, str):
            raise ConfigurationError("secret_keys must be a list of keys, newest first")
        keys = tuple(self.secret_keys)
        if not keys:
            raise ConfigurationError(f"secret_keys is empty: generate one with `{GENERATE_SECRET}`")
        for index, key in enumerate(keys):
            check_key(key, what=f"secret key #{index + 1}", min_length=MIN_SECRET_LENGTH, generate=GENERATE_SECRET)
        object.__setattr__(self, "secret_keys", keys)

    def _check_signing_keys(self) -> None:
        from .results import load_signing_key

        if isinstance(self.signing_keys, str):
            raise ConfigurationError("signing_keys must be a list of PEM keys, newest first")
        keys = tuple(self.signing_keys)
        if not keys:
            raise ConfigurationError(
                "signing_keys is empty: result tokens need at least one EC P-256 private key in PEM; generate one "
                f"with `{GENERATE_SIGNING_KEY}`"
            )
        for index, key in enumerate(keys):
            check_signing_key_text(key, what=f"signing key #{index + 1}")
            load_signing_key(key)  # raises ConfigurationError naming the problem
        object.__setattr__(self, "signing_keys", keys)

    def _check_admin_keys(self) -> None:
        if isinstance(self.admin_api_keys, str):
            raise ConfigurationError("admin_api_keys must be a list, not a string")
        for index, key in enumerate(self.admin_api_keys):
            check_api_key(key, what=f"admin API key #{index + 1}")
        object.__setattr__(self, "admin_api_key_hashes", tuple(hash_api_key(k) for k in self.admin_api_keys))
        object.__setattr__(self, "admin_api_keys", ())

    def merchant(self, merchant_id: str) -> Merchant | None:
        return next((m for m in self.merchants if m.id == merchant_id), None)

    def merchant_for_origin(self, origin: str) -> Merchant | None:
        return next((m for m in self.merchants if origin in m.origins), None)

    def merchants_for_origin(self, origin: str) -> tuple[Merchant, ...]:
        return tuple(m for m in self.merchants if origin in m.origins)

    @property
    def merchant_origins(self) -> frozenset[str]:
        return frozenset(o for m in self.merchants for o in m.origins)

    def is_first_party(self, origin: str) -> bool:
        """Whether ``origin`` is the issuer's own site: its origin, or an https origin on the rp_id or under it.

        A tenant at such an origin is the bank itself (its online banking, its
        own checkout). Its pages may confirm with a plain passkey assertion
        (``webauthn.get``), which shows the cardholder no amount; a third-party
        merchant's transaction never accepts one (docs/security.md A3).
        """
        if origin == self.origin:
            return True
        parts = urlsplit(origin)
        host = parts.hostname or ""
        return parts.scheme == "https" and (host == self.rp_id or host.endswith("." + self.rp_id))

    @functools.cached_property
    def first_party_origins(self) -> frozenset[str]:
        """The issuer's origin and every configured tenant origin that is first party (:meth:`is_first_party`).

        Computed once: payments and registrations ask on every request.
        """
        return frozenset({self.origin, *(o for o in self.merchant_origins if self.is_first_party(o))})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, prefix: str = "SPC_") -> IssuerConfig:
        """Build from environment variables (see the README's configuration reference).

        Lists are comma-separated; merchants are a JSON array of objects with
        ``id``, ``origins``, ``api_keys`` and optional ``name``, ``payees`` and
        ``default_currency``.
        """
        env = os.environ if environ is None else environ

        def get(name: str, default: str | None = None) -> str:
            value = env.get(prefix + name, default)
            if value is None:
                raise ConfigurationError(f"environment variable {prefix}{name} is not set")
            return value

        def split(value: str) -> tuple[str, ...]:
            return tuple(part.strip() for part in value.split(",") if part.strip())

        try:
            merchants_raw = json.loads(get("MERCHANTS"))
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{prefix}MERCHANTS is not valid JSON: {exc}") from exc
        if not isinstance(merchants_raw, list) or not all(isinstance(m, dict) for m in merchants_raw):
            raise ConfigurationError(f"{prefix}MERCHANTS must be a JSON array of objects")
        merchants = tuple(
            Merchant(
                id=m.get("id", ""),
                origins=tuple(m.get("origins", ())),
                api_keys=tuple(m.get("api_keys", ())),
                name=m.get("name", ""),
                payees=tuple(m.get("payees", ())),
                default_currency=m.get("default_currency"),
            )
            for m in merchants_raw
        )
        optional: dict[str, object] = {}
        for name in ("enrollment_ttl", "challenge_ttl", "transaction_ttl", "result_token_ttl", "max_body_bytes",
                     "database_pool_size"):
            raw = env.get(prefix + name.upper())
            if raw is not None:
                try:
                    optional[name] = int(raw)
                except ValueError as exc:
                    raise ConfigurationError(f"{prefix}{name.upper()} must be an integer") from exc
        if prefix + "DATABASE_URL" in env:
            optional["database_url"] = env[prefix + "DATABASE_URL"]
        if prefix + "DEFAULT_LOCALE" in env:
            optional["default_locale"] = env[prefix + "DEFAULT_LOCALE"]
        if prefix + "ADMIN_API_KEYS" in env:
            optional["admin_api_keys"] = split(env[prefix + "ADMIN_API_KEYS"])
        if prefix + "ATTESTATION_FORMATS" in env:
            optional["allowed_attestation_formats"] = split(env[prefix + "ATTESTATION_FORMATS"])
        signing = env.get(prefix + "SIGNING_KEYS_FILE")
        if signing:
            optional["signing_keys"] = _read_pem_keys(signing)
        return cls(
            rp_id=get("RP_ID"),
            rp_name=get("RP_NAME"),
            origin=get("ORIGIN"),
            secret_keys=split(get("SECRET_KEYS")),
            merchants=merchants,
            **optional,  # type: ignore[arg-type]
        )


_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.DOTALL)


def _read_pem_keys(path: str) -> tuple[str, ...]:
    """Read one or more PEM private keys from a file, newest first."""
    try:
        with open(path, encoding="ascii") as fh:
            blocks = _PEM_BLOCK.findall(fh.read())
    except OSError as exc:
        raise ConfigurationError(f"cannot read signing keys file {path!r}: {exc}") from exc
    if not blocks:
        raise ConfigurationError(f"{path!r} holds no PEM private key")
    return tuple(block + "\n" for block in blocks)
