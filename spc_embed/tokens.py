"""Signed, time-limited tokens that carry authority where cookies cannot.

The issuer iframe lives in a merchant's page, where third-party cookies are
blocked or partitioned. Who may enrol is therefore carried by a token the
issuer's own backend mints for one user and one merchant origin. Each purpose
has its own salt, every load has a ``max_age``, and single use is recorded in
the database by the caller (see ``Store.add_credential``).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode
from itsdangerous.signer import HMACAlgorithm

from .config import normalize_origin
from .encoding import compact_json
from .errors import ConfigurationError, TokenError, TokenExpired
from .i18n import check_locale_tag
from .image_urls import image_url_problem
from .text import is_storable, storable_text

ENROLLMENT_SALT = "spc-embed.enrollment.v1"
PAYMENT_HANDLE_SALT = "spc-embed.payment-handle.v1"
OPT_OUT_SALT = "spc-embed.opt-out.v1"
_OPT_OUT_SALT_JSON = encode_basestring_ascii(OPT_OUT_SALT)
MAX_OPT_OUT_TOKEN_LENGTH = 128
MAX_INSTRUMENT_ID_LENGTH = 255
MAX_TOKEN_LENGTH = 4096  # what SignedTokens.loads reads; enrolment links longer than this are refused when minted


@dataclass(frozen=True)
class EnrollmentToken:
    """What the issuer vouches for when it hands out an enrolment iframe URL."""

    user_id: str
    user_name: str
    user_display_name: str
    instrument_name: str
    instrument_icon: str
    merchant_origin: str
    locale: str | None = None  # the cardholder's language, if the issuer knows it (absent from older tokens)
    # The card's stable id at the issuer (docs/security.md H6); without one (and in older tokens), its name.
    instrument_id: str | None = None
    token_id: str = field(default_factory=lambda: secrets.token_urlsafe(18))

    def __post_init__(self) -> None:
        for name in ("user_id", "user_name", "user_display_name", "instrument_name", "instrument_icon"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or len(value) > 255 and name != "instrument_icon" \
                    or not is_storable(value):
                raise ConfigurationError(f"enrolment {name} must be a non-empty string (at most 255 characters, "
                                         "no control characters)")
        icon_problem = image_url_problem(self.instrument_icon, local_http=True)
        if icon_problem is not None:
            raise ConfigurationError(f"enrolment instrument_icon {icon_problem}")
        normalize_origin(self.merchant_origin, what="merchant origin")
        if self.locale is not None:
            check_locale_tag(self.locale, what="enrolment locale")
        if self.instrument_id is None:
            object.__setattr__(self, "instrument_id", self.instrument_name)
        elif not isinstance(self.instrument_id, str) or not self.instrument_id.strip() \
                or len(self.instrument_id) > MAX_INSTRUMENT_ID_LENGTH or not is_storable(self.instrument_id):
            raise ConfigurationError(f"enrolment instrument_id must be a non-empty string (at most "
                                     f"{MAX_INSTRUMENT_ID_LENGTH} characters, no control characters)")


class SignedTokens:
    """itsdangerous serializers for one purpose, with key rotation.

    ``secret_keys`` are newest first (as in the configuration); itsdangerous
    wants them oldest first and signs with the last one.
    """

    def __init__(self, secret_keys: Sequence[str], *, salt: str, max_age: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._serializer = _ClockedSerializer(list(reversed(secret_keys)), salt=salt, clock=clock)
        self.max_age = max_age

    def dumps(self, payload: dict[str, Any]) -> str:
        return self._serializer.dumps(payload)

    def loads(self, token: object) -> dict[str, Any]:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise TokenError("the link is missing its token or the token is malformed")
        # Before the signer: itsdangerous encodes the token as UTF-8, which a lone surrogate breaks (H2).
        storable_text(token, field="the token", max_length=MAX_TOKEN_LENGTH)
        try:
            payload = self._serializer.loads(token, max_age=self.max_age)
        except SignatureExpired as exc:
            # The signature was checked before the age: the payload is authentic.
            payload = self._serializer.load_payload(exc.payload) if exc.payload is not None else None
            raise TokenExpired("this link has expired; ask for a new one",
                               payload=payload if isinstance(payload, dict) else None) from exc
        except BadSignature as exc:
            raise TokenError("this link is not valid (bad signature)") from exc
        if not isinstance(payload, dict):
            raise TokenError("this link is not valid (unexpected payload)")
        return payload


class _ClockedSerializer(URLSafeTimedSerializer):
    """Takes its time from an injectable clock, so expiry is testable without sleeping."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        clock_fn = clock
        derived: dict[bytes | None, bytes] = {}

        class Signer(self.signer):  # type: ignore[name-defined,misc]
            def get_timestamp(self) -> int:
                return int(clock_fn())

            def derive_key(self, secret_key: bytes | None = None) -> bytes:
                # itsdangerous derives the key again for every token (a hash per key); one salt per serializer.
                key = derived.get(secret_key)
                if key is None:
                    key = derived[secret_key] = super().derive_key(secret_key)
                return key

        self.signer = Signer
        self.signer_kwargs = {**self.signer_kwargs, "algorithm": _HMACSHA1()}
        self._signers: dict[str | bytes | None, Any] = {}

    def make_signer(self, salt: str | bytes | None = None) -> Any:
        # One signer per salt, kept: itsdangerous builds a new one for every token otherwise.
        signer = self._signers.get(salt)
        if signer is None:
            signer = self._signers[salt] = super().make_signer(salt)
        return signer

    def dump_payload(self, obj: Any) -> bytes:
        # Plain base64url JSON, never zlib: for payloads this short, compressing
        # costs more time (about 80 µs a token) than the bytes it saves are worth.
        # Loading still accepts compressed payloads, so earlier tokens stay valid.
        # Compact JSON as itsdangerous's own (_CompactJSON) writes it, by orjson: several times faster.
        return base64_encode(compact_json(obj).encode("utf-8"))

    def dumps(self, obj: Any, salt: str | bytes | None = None) -> str:
        # Serializer.dumps without its layers: this serializer writes text, its signer is kept.
        signed: bytes = self.make_signer(salt).sign(self.dump_payload(obj))
        return signed.decode("utf-8")


class _HMACSHA1(HMACAlgorithm):
    """itsdangerous's default HMAC-SHA1, from a copy of an HMAC already keyed (see :class:`_KeyedHMAC`)."""

    def __init__(self) -> None:
        super().__init__()
        self._keyed = _KeyedHMAC("sha1")

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return self._keyed.digest(key, value)


class _KeyedHMAC:
    """HMACs of one hash under a few fixed keys, each keyed once.

    ``hmac.digest(key, msg, name)`` looks the hash up in OpenSSL and keys a new
    HMAC on every call; a copy of a keyed HMAC does neither, about a fifth less
    time per HMAC here. Keys come from the configuration, so the cache stays as
    small as the list of secret keys.
    """

    def __init__(self, digest: str) -> None:
        self._digest = digest
        self._by_key: dict[bytes, hmac.HMAC] = {}

    def digest(self, key: bytes, message: bytes) -> bytes:
        keyed = self._by_key.get(key)
        if keyed is None:
            keyed = self._by_key[key] = hmac.new(key, digestmod=self._digest)
        mac = keyed.copy()
        mac.update(message)
        return mac.digest()


class EnrollmentTokens:
    """Mints and reads enrolment tokens (signature and age only; single use is the store's)."""

    def __init__(self, secret_keys: Sequence[str], *, max_age: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._tokens = SignedTokens(secret_keys, salt=ENROLLMENT_SALT, max_age=max_age, clock=clock)

    def mint(self, token: EnrollmentToken) -> str:
        payload = asdict(token)
        if payload["locale"] is None:
            del payload["locale"]  # the same payload as before there was a locale
        return self._tokens.dumps(payload)

    def load(self, value: object) -> EnrollmentToken:
        return _enrollment_token(self._tokens.loads(value))

    def load_expired(self, error: TokenExpired) -> EnrollmentToken | None:
        """The authentic token behind an expiry error, to show the error to the right merchant."""
        try:
            return _enrollment_token(error.payload) if error.payload else None
        except TokenError:
            return None


def _enrollment_token(payload: dict[str, Any]) -> EnrollmentToken:
    try:
        return EnrollmentToken(**payload)
    except (TypeError, ConfigurationError) as exc:
        raise TokenError("this link is not valid (unexpected fields)") from exc


class PaymentHandles:
    """Signed handles naming one tenant's transaction, for the fallback iframe URL."""

    def __init__(self, secret_keys: Sequence[str], *, max_age: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._tokens = SignedTokens(list(secret_keys), salt=PAYMENT_HANDLE_SALT, max_age=max_age, clock=clock)

    def mint(self, tenant_id: str, transaction_id: str) -> str:
        return self._tokens.dumps({"tenant": tenant_id, "transaction": transaction_id})

    def load(self, value: object) -> tuple[str, str]:
        """(tenant id, transaction id) of an authentic, unexpired handle."""
        payload = self._tokens.loads(value)
        tenant, transaction = payload.get("tenant"), payload.get("transaction")
        if not isinstance(tenant, str) or not isinstance(transaction, str):
            raise TokenError("this link is not valid (unexpected payload)")
        return tenant, transaction


class OptOutTokens:
    """Per-transaction secrets that prove an opt-out comes from the page initialize answered (H1).

    ``opt_out_token`` is returned by initialize to the merchant's backend, which
    hands it to its page with the rest of initialize's answer; the page sends it
    with ``POST /transaction/opt-out``. It is an HMAC of the tenant and the
    transaction id under the configured secret keys (the first mints, every key
    verifies, so keys rotate) with its own salt, so nothing is stored and a
    caller without it learns nothing: it is checked before any transaction is
    looked up. It is worth no more than the transaction: one id, one tenant,
    and only while the transaction is pending.
    """

    def __init__(self, secret_keys: Sequence[str]) -> None:
        self._keys = [key.encode("utf-8") for key in secret_keys]
        self._hmac = _KeyedHMAC("sha256")

    def _token(self, key: bytes, tenant_id: str, transaction_id: str) -> bytes:
        # json.dumps([OPT_OUT_SALT, tenant_id, transaction_id]), written as it writes a list of strings,
        # without building an encoder per call.
        message = f"[{_OPT_OUT_SALT_JSON}, {encode_basestring_ascii(tenant_id)}, {encode_basestring_ascii(transaction_id)}]"
        return base64_encode(self._hmac.digest(key, message.encode("ascii")))

    def mint(self, tenant_id: str, transaction_id: str) -> str:
        return self._token(self._keys[0], tenant_id, transaction_id).decode("ascii")

    def matches(self, token: str, tenant_id: str, transaction_id: str) -> bool:
        """Whether ``token`` was minted for this transaction, by any configured key (each compared, match or not)."""
        presented = token.encode("utf-8", "backslashreplace")
        found = False
        for key in self._keys:
            found |= hmac.compare_digest(self._token(key, tenant_id, transaction_id), presented)
        return found
