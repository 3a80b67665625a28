"""Payment confirmation: the request options, and the verification of what comes back.

Two ceremonies confirm a transaction, and both share one assertion core:

- **SPC** (``payment.get``): the merchant page calls ``PaymentRequest`` with the
  method data from :func:`payment_request_options`; the browser shows amount,
  payee and card and signs them in ``clientDataJSON.payment``. Verified by
  :func:`verify_payment_assertion`, following the SPC spec's "Verifying an
  Authentication Assertion"
  (https://w3c.github.io/secure-payment-confirmation/#sctn-verifying-assertion),
  which is WebAuthn Level 3 §7.2 "Verifying an Authentication Assertion"
  (https://www.w3.org/TR/webauthn-3/#sctn-verifying-assertion) with the changes
  SPC makes to its credential, type, challenge and origin steps, plus the
  ``payment`` checks after the origin step.
- **The fallback** (``webauthn.get``): where SPC is unavailable, the issuer's
  own iframe shows the transaction and calls ``navigator.credentials.get()``
  with the same challenge. Verified by :func:`verify_fallback_assertion`:
  origin is the issuer, ``crossOrigin`` is true and ``topOrigin`` the merchant.
- **A first-party passkey** (``webauthn.get``): the issuer's own site (a
  first-party tenant, :meth:`~spc_embed.IssuerConfig.is_first_party`) calls
  ``navigator.credentials.get()`` top-level on its page with initialize's
  ``publicKey``, as the Hanko Passkey API's transaction flow does. The browser
  shows no amount, so the result says ``method: "passkey"``. Verified by
  :func:`verify_passkey_response`: origin is the transaction's (first-party)
  page, not cross-origin. Whether a transaction may be confirmed so is the
  caller's decision (a third-party merchant's never is, docs/security.md A3).

Both verifiers take the browser's JSON; a caller that has already parsed it
(:func:`parse_authentication_response`, for instance to find the transaction
by its challenge) passes the parsed :class:`AuthenticationResponse` to
:func:`verify_payment_response` / :func:`verify_fallback_response` instead, so
a request parses its credential once.

The caller owns the database side (docs/security.md A10, A12): it passes the
stored credential and what initialize recorded (:class:`ExpectedPayment`), and
applies the result atomically (challenge consumed, sign count compared and
set, transaction moved forward). Nothing here writes anything.

Client and authenticator extension outputs are ignored (S9), with one
exception that is verified before it is used: the SPC browser-bound key (S10).
When ``clientDataJSON.payment.browserBoundPublicKey`` (a base64url COSE key)
is present, the browser also returns
``clientExtensionResults.payment.browserBoundSignature.signature``, a signature
by that key over the clientDataJSON bytes. Policy: both present and valid →
the key is returned for the caller to record; only one of the two, a
malformed key, or a signature that does not verify → the assertion is
rejected, since a genuine browser always sends a matching pair. The passkey
signature is required either way.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .authdata import (
    AuthenticatorData,
    check_flags,
    check_rp_id_hash,
    load_public_key,
    load_stored_public_key,
    parse_authenticator_data,
    verify_signature,
)
from .clientdata import ClientData, check_client_data, parse_client_data
from .credential_json import b64_member, invalid_credential, read_envelope
from .encoding import b64url_decode, b64url_encode
from .errors import AssertionRejected, InvalidRequest, SPCEmbedError
from .storage import Credential
from .text import quoted
from .transactions import (
    METHOD_FALLBACK,
    METHOD_PASSKEY,
    METHOD_SPC,
    PaymentEntityLogo,
    amounts_equal,
    is_canonical_amount,
)

PAYMENT_GET = "payment.get"
WEBAUTHN_GET = "webauthn.get"
MAX_SPC_TIMEOUT_MS = 60 * 60 * 1000  # SPC: "At most 1 hour"


@dataclass(frozen=True)
class ExpectedPayment:
    """What initialize handed out for one transaction, and so what the assertion must carry."""

    challenge: str
    rp_id: str
    issuer_origin: str
    merchant_origin: str
    user_id: str
    user_handle: bytes | None
    credential_ids: tuple[bytes, ...]
    amount: str
    currency: str
    payee_name: str | None
    payee_origin: str | None
    instrument_name: str | None
    instrument_icon: str | None
    logos: tuple[PaymentEntityLogo, ...] = ()
    timeout_ms: int = 5 * 60 * 1000
    show_opt_out: bool = False
    # The card this payment is for: only its credentials are offered and accepted (H6). None in
    # transactions initialized before cards had ids, and when the user's card could not be told.
    instrument_id: str | None = None
    # Not verified: the language the fallback frame speaks (initialize's ``locale``), kept with the rest.
    locale: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "challenge": self.challenge, "rp_id": self.rp_id, "issuer_origin": self.issuer_origin,
            "merchant_origin": self.merchant_origin, "user_id": self.user_id,
            "user_handle": None if self.user_handle is None else b64url_encode(self.user_handle),
            "credential_ids": [b64url_encode(c) for c in self.credential_ids],
            "amount": self.amount, "currency": self.currency, "payee_name": self.payee_name,
            "payee_origin": self.payee_origin, "instrument_name": self.instrument_name,
            "instrument_icon": self.instrument_icon, "logos": [logo.to_json() for logo in self.logos],
            "timeout_ms": self.timeout_ms, "show_opt_out": self.show_opt_out, "locale": self.locale,
            "instrument_id": self.instrument_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExpectedPayment:
        values = dict(data)
        handle = values["user_handle"]
        values["user_handle"] = None if handle is None else b64url_decode(handle)
        values["credential_ids"] = tuple(b64url_decode(c) for c in values["credential_ids"])
        values["logos"] = tuple(PaymentEntityLogo(**logo) for logo in values["logos"])
        return cls(**values)


@dataclass(frozen=True)
class VerifiedPayment:
    """A verified assertion; the caller records ``sign_count`` and ``backed_up`` atomically."""

    credential_id: bytes
    user_id: str
    method: str  # "spc", "fallback" or "passkey"
    sign_count: int
    user_verified: bool
    backup_eligible: bool
    backed_up: bool
    origin: str
    top_origin: str | None
    browser_bound_public_key: bytes | None = None  # COSE, verified (S10)


# Options


def payment_request_options(expected: ExpectedPayment) -> dict[str, Any]:
    """What initialize returns: ``publicKey`` for ``navigator.credentials.get()`` and the SPC method data.

    ``publicKey`` is PublicKeyCredentialRequestOptionsJSON (the Hanko Passkey API
    shape); ``secure_payment_confirmation`` is SecurePaymentConfirmationRequest
    with binary members as base64url; ``total`` is the PaymentCurrencyAmount for
    ``PaymentRequest``'s ``details.total.amount``. All three carry exactly the
    values the verifier will later demand.
    """
    ids = [b64url_encode(c) for c in expected.credential_ids]
    timeout = min(expected.timeout_ms, MAX_SPC_TIMEOUT_MS)
    public_key = {
        "challenge": expected.challenge,
        "timeout": timeout,
        "rpId": expected.rp_id,
        "allowCredentials": [{"type": "public-key", "id": cid, "transports": ["internal"]} for cid in ids],
        "userVerification": "required",
    }
    spc: dict[str, Any] = {
        "rpId": expected.rp_id,
        "challenge": expected.challenge,
        "credentialIds": ids,
        "instrument": None if expected.instrument_name is None else {
            "displayName": expected.instrument_name,
            "icon": expected.instrument_icon,
            # The verifier demands this exact icon, so the browser must not drop it (S6).
            "iconMustBeShown": True,
        },
        "timeout": timeout,
    }
    if expected.payee_name is not None:
        spc["payeeName"] = expected.payee_name
    if expected.payee_origin is not None:
        spc["payeeOrigin"] = expected.payee_origin
    if expected.logos:
        spc["paymentEntitiesLogos"] = [logo.to_json() for logo in expected.logos]
    if expected.show_opt_out:
        spc["showOptOut"] = True
    return {
        "publicKey": public_key,
        "mediation": "optional",
        "secure_payment_confirmation": spc,
        "total": {"currency": expected.currency, "value": expected.amount},
    }


# Parsing AuthenticationResponseJSON


@dataclass(frozen=True)
class AuthenticationResponse:
    credential_id: bytes
    client_data: ClientData
    authenticator_data: bytes
    signature: bytes
    user_handle: bytes | None
    client_extension_results: Mapping[str, Any]



def parse_authentication_response(credential: object) -> AuthenticationResponse:
    """Read AuthenticationResponseJSON (``PublicKeyCredential.toJSON()``) strictly (P1, P2)."""
    raw_id, response = read_envelope(credential)
    client_data = parse_client_data(b64_member(response, "clientDataJSON", "response.clientDataJSON"))
    authenticator_data = b64_member(response, "authenticatorData", "response.authenticatorData")
    signature = b64_member(response, "signature", "response.signature")
    handle = response.get("userHandle")
    user_handle = None if handle is None else b64_member(response, "userHandle", "response.userHandle")
    if not isinstance(credential, dict):  # read_envelope refused anything else
        raise invalid_credential("the credential must be a JSON object")
    extensions = credential.get("clientExtensionResults", {})
    if not isinstance(extensions, dict):
        raise invalid_credential("clientExtensionResults must be a JSON object")
    return AuthenticationResponse(
        credential_id=raw_id, client_data=client_data, authenticator_data=authenticator_data,
        signature=signature, user_handle=user_handle, client_extension_results=extensions,
    )


# Verification


def _reject(message: str, code: str) -> AssertionRejected:
    return AssertionRejected(message, code=code)


def _not_allowed() -> AssertionRejected:
    return _reject("this credential cannot confirm this transaction", "credential_not_allowed")


def _check_credential(response: AuthenticationResponse, expected: ExpectedPayment, stored: Credential, *,
                      shows_card: bool = True) -> None:
    # Every refusal here says the same thing (_not_allowed), so the body never tells whether a credential exists (P6).
    # §7.2 step "verify credential.id identifies one of allowCredentials"; SPC: one of those
    # "provided to the SPC caller by the Relying Party" for this transaction (A1).
    if not any(hmac.compare_digest(response.credential_id, c) for c in expected.credential_ids):
        raise _not_allowed()
    # §7.2 step "look up the credential record": the record must be the one named.
    if not hmac.compare_digest(stored.credential_id, response.credential_id):
        raise _not_allowed()
    # §7.2 step "identify the user": the credential belongs to this transaction's user (A2).
    if stored.user_id != expected.user_id:
        raise _not_allowed()
    # Policy: a revoked credential confirms nothing.
    if stored.revoked_at is not None:
        raise _not_allowed()
    # Policy (H6): the credential was enrolled for the card this payment is for, whose name and art were shown.
    # A first-party passkey shows no card: any credential offered for the transaction (A1) may confirm it.
    if shows_card and (not stored.instrument_id
                       or expected.instrument_id is not None and stored.instrument_id != expected.instrument_id):
        raise _not_allowed()
    # §7.2: if response.userHandle is present, it must be the handle of the credential's user.
    if response.user_handle is not None and (
        expected.user_handle is None or not hmac.compare_digest(response.user_handle, expected.user_handle)
    ):
        raise _reject("response.userHandle is not the handle of this transaction's user", "user_handle_mismatch")


def _check_authenticator(
    response: AuthenticationResponse, expected: ExpectedPayment, stored: Credential, *, require_user_verification: bool,
) -> AuthenticatorData:
    ad = parse_authenticator_data(response.authenticator_data)
    if ad.at:
        # §6.1: assertions carry no attested credential data.
        raise InvalidRequest("authenticator data of an assertion has the AT flag set", code="invalid_authenticator_data")
    # §7.2: verify rpIdHash is the SHA-256 of the RP ID (SPC: the issuer's, payment.rpId).
    check_rp_id_hash(ad, expected.rp_id, error=AssertionRejected)
    # §7.2: verify UP; verify UV (always required: a client's "discouraged" never relaxes it, A7); BS only with BE.
    check_flags(ad, require_user_verification=require_user_verification, error=AssertionRejected)
    # §7.2: BE must not change from what registration recorded.
    if ad.be != stored.backup_eligible:
        raise _reject(f"Backup eligibility BE is {int(ad.be)}, registered as {int(stored.backup_eligible)}",
                      "backup_eligibility_changed")
    # §7.2: client and authenticator extension outputs: none requested, all ignored (S9).
    # §7.2: hash = SHA-256(cData); verify sig over authData || hash with the stored public key.
    public_key, alg = load_stored_public_key(stored.public_key)
    if alg != stored.alg:
        raise _reject(f"stored key alg {alg} differs from registered alg {stored.alg}", "unexpected_algorithm")
    signed = response.authenticator_data + hashlib.sha256(response.client_data.raw).digest()
    verify_signature(public_key, alg, response.signature, signed, error=AssertionRejected)
    # §7.2: signCount: if either is non-zero, the new count must be greater (policy: reject, never just flag).
    if (ad.sign_count or stored.sign_count) and ad.sign_count <= stored.sign_count:
        raise _reject(f"signCount {ad.sign_count} is not greater than the stored {stored.sign_count}",
                      "sign_count_not_increased")
    return ad


def _require(payment: Mapping[str, Any], key: str, kind: type) -> Any:
    value = payment.get(key)
    if not isinstance(value, kind):
        raise _reject(f"clientDataJSON.payment.{key} is missing or not a {kind.__name__}", "payment_data_invalid")
    return value


def _check_equal(name: str, actual: object, expected: object, code: str) -> None:
    if actual != expected:
        raise _reject(f"Unexpected clientDataJSON.payment.{name} {quoted(actual)}, expected {expected!r}", code)


def _is_ordered_subset(received: object, sent: Sequence[PaymentEntityLogo]) -> bool:
    if not isinstance(received, list):
        return False
    remaining = iter([logo.to_json() for logo in sent])
    # Each received logo must be found, in order, among those not yet matched.
    return all(any(_same_logo(item, candidate) for candidate in remaining) for item in received)


def _same_logo(shown: object, sent: dict[str, str]) -> bool:
    # Chrome signs a logo it could not load with an empty url and the label sent (S7).
    return shown == sent or shown == {"url": "", "label": sent["label"]}


# Every member of the instrument describes the card row the browser shows: each must be one initialize sent.
_INSTRUMENT_MEMBERS = frozenset({"displayName", "icon", "iconMustBeShown"})


def _check_payment_data(cd: ClientData, expected: ExpectedPayment) -> None:
    """SPC "Verifying an Authentication Assertion", the steps inserted after WebAuthn's origin step."""
    # S1: a payment.get assertion carries CollectedClientAdditionalPaymentData.
    if cd.payment is None:
        raise _reject("clientDataJSON.payment is missing", "payment_data_missing")
    payment = cd.payment
    # SPC: verify payment.rpId is the Relying Party's (S2).
    _check_equal("rpId", _require(payment, "rpId", str), expected.rp_id, "payment_rp_id_mismatch")
    # SPC note: some implementations also send rpId as `rp`; both must be the same (S2).
    if "rp" in payment:
        _check_equal("rp", payment["rp"], expected.rp_id, "payment_rp_id_mismatch")
    # SPC: verify payment.topOrigin is the top-level origin the Relying Party expects (S3).
    _check_equal("topOrigin", _require(payment, "topOrigin", str), expected.merchant_origin, "payment_top_origin_mismatch")
    # SPC: verify payeeName and payeeOrigin are those that should have been displayed, if any (S4).
    _check_equal("payeeName", payment.get("payeeName"), expected.payee_name, "payee_mismatch")
    _check_equal("payeeOrigin", payment.get("payeeOrigin"), expected.payee_origin, "payee_mismatch")
    # SPC: verify total is the amount that should have been displayed (S5, see transactions.py).
    total = _require(payment, "total", dict)
    value, currency = total.get("value"), total.get("currency")
    if currency != expected.currency:
        raise _reject(f"Unexpected clientDataJSON.payment.total.currency {quoted(currency)}, "
                      f"expected {expected.currency!r}",
                      "total_mismatch")
    if not is_canonical_amount(value) or not amounts_equal(value, expected.amount):
        raise _reject(f"Unexpected clientDataJSON.payment.total.value {quoted(value)}, expected {expected.amount!r}",
                      "total_mismatch")
    # SPC: verify instrument is the one that should have been displayed (S6).
    instrument = _require(payment, "instrument", dict)
    _check_equal("instrument.displayName", instrument.get("displayName"), expected.instrument_name, "instrument_mismatch")
    _check_equal("instrument.icon", instrument.get("icon"), expected.instrument_icon, "instrument_mismatch")
    # Policy (S6): nothing else on the card row, such as a "details" line the merchant's page added.
    unexpected = sorted(set(instrument) - _INSTRUMENT_MEMBERS)
    if unexpected:
        raise _reject(f"Unexpected clientDataJSON.payment.instrument members {quoted(', '.join(unexpected))}: "
                      "initialize sent only displayName, icon and iconMustBeShown", "instrument_mismatch")
    if not isinstance(instrument.get("iconMustBeShown", True), bool):
        raise _reject("clientDataJSON.payment.instrument.iconMustBeShown must be a boolean", "instrument_mismatch")
    # Policy (S7): logos shown may only be those sent, in the order sent (the browser may drop some,
    # or sign one it could not load with an empty url).
    if not _is_ordered_subset(payment.get("paymentEntitiesLogos", []), expected.logos):
        raise _reject("clientDataJSON.payment.paymentEntitiesLogos is not an ordered subset of the logos sent",
                      "logos_mismatch")
    # Unknown members of payment (and of clientDataJSON) are accepted: browsers add new ones.


def _browser_bound_key(response: AuthenticationResponse) -> bytes | None:
    """SPC browser-bound key (S10): verified key bytes, None when absent, AssertionRejected otherwise."""
    payment = response.client_data.payment or {}
    encoded_key = payment.get("browserBoundPublicKey")
    output = response.client_extension_results.get("payment")
    signature_holder = output.get("browserBoundSignature") if isinstance(output, dict) else None
    encoded_signature = signature_holder.get("signature") if isinstance(signature_holder, dict) else None
    if encoded_key is None and encoded_signature is None:
        return None
    invalid = "the browser-bound key and its signature must both be present and verify"
    if encoded_key is None or encoded_signature is None:
        raise _reject(invalid, "browser_bound_key_invalid")
    try:
        key_bytes = b64url_decode(encoded_key, field="payment.browserBoundPublicKey")
        signature = b64url_decode(encoded_signature, field="payment.browserBoundSignature.signature")
        public_key, alg = load_public_key(key_bytes)
    except InvalidRequest as exc:
        raise _reject(f"{invalid}: {exc.message}", "browser_bound_key_invalid") from exc
    # SPC browser binding: the signature is over the clientDataJSON bytes themselves.
    try:
        verify_signature(public_key, alg, signature, response.client_data.raw, error=AssertionRejected)
    except AssertionRejected as exc:
        raise _reject(f"{invalid}: {exc.message}", "browser_bound_key_invalid") from exc
    return key_bytes


def _wrapped(verify: Callable[..., VerifiedPayment]) -> Callable[..., VerifiedPayment]:
    """Only this library's exceptions leave a verifier; anything else is a refused assertion."""

    @functools.wraps(verify)
    def wrapper(**kwargs: Any) -> VerifiedPayment:
        try:
            return verify(**kwargs)
        except SPCEmbedError:
            raise
        except Exception as exc:  # a third-party parser or crypto error on hostile input
            raise _reject(f"the assertion could not be processed: {type(exc).__name__}", "invalid_assertion") from exc

    return wrapper


@_wrapped
def verify_payment_assertion(
    *,
    credential: object,
    expected: ExpectedPayment,
    stored_credential: Credential,
    require_user_verification: bool = True,
) -> VerifiedPayment:
    """Verify a ``payment.get`` assertion (AuthenticationResponseJSON) against what initialize recorded."""
    # SPC step 1 / §7.2 steps "let credential, response, clientExtensionResults".
    response = parse_authentication_response(credential)
    return _verify_payment(response, expected, stored_credential, require_user_verification)


@_wrapped
def verify_payment_response(
    *,
    response: AuthenticationResponse,
    expected: ExpectedPayment,
    stored_credential: Credential,
    require_user_verification: bool = True,
) -> VerifiedPayment:
    """:func:`verify_payment_assertion` for a response the caller has already parsed (once per request)."""
    return _verify_payment(response, expected, stored_credential, require_user_verification)


def _verify_payment(response: AuthenticationResponse, expected: ExpectedPayment, stored_credential: Credential,
                    require_user_verification: bool) -> VerifiedPayment:
    # §7.2 credential and user steps (SPC: the credentials provided to the SPC caller).
    _check_credential(response, expected, stored_credential)
    # §7.2 C.type (SPC: "payment.get"), C.challenge, C.origin (SPC: where SPC was called from:
    # the merchant page), and C.topOrigin. Policy: SPC must run in the merchant's top-level
    # document (no crossOrigin), so the recorded origin is both origin and payment.topOrigin.
    check_client_data(
        response.client_data, expected_type=PAYMENT_GET, expected_challenge=expected.challenge,
        expected_origins=(expected.merchant_origin,), allowed_top_origins=None, error=AssertionRejected,
    )
    # SPC: the payment steps inserted after the origin step.
    _check_payment_data(response.client_data, expected)
    # §7.2 rpIdHash, flags, signature and signCount steps.
    ad = _check_authenticator(response, expected, stored_credential,
                              require_user_verification=require_user_verification)
    # SPC browser binding (S10), verified only after the passkey signature covering the key.
    bbk = _browser_bound_key(response)
    return _verified(response, ad, stored_credential, METHOD_SPC, bbk)


@_wrapped
def verify_fallback_assertion(
    *,
    credential: object,
    expected: ExpectedPayment,
    stored_credential: Credential,
    require_user_verification: bool = True,
) -> VerifiedPayment:
    """Verify the fallback's ``webauthn.get`` assertion, made in the issuer iframe on the merchant page."""
    response = parse_authentication_response(credential)
    return _verify_fallback(response, expected, stored_credential, require_user_verification)


@_wrapped
def verify_fallback_response(
    *,
    response: AuthenticationResponse,
    expected: ExpectedPayment,
    stored_credential: Credential,
    require_user_verification: bool = True,
) -> VerifiedPayment:
    """:func:`verify_fallback_assertion` for a response the caller has already parsed (once per request)."""
    return _verify_fallback(response, expected, stored_credential, require_user_verification)


def _verify_fallback(response: AuthenticationResponse, expected: ExpectedPayment, stored_credential: Credential,
                     require_user_verification: bool) -> VerifiedPayment:
    # §7.2 credential and user steps: the credentials offered for this transaction.
    _check_credential(response, expected, stored_credential)
    # §7.2 C.type "webauthn.get" (A3), C.challenge, C.origin = the issuer (the iframe's own
    # origin), and crossOrigin true with C.topOrigin = this transaction's merchant page.
    check_client_data(
        response.client_data, expected_type=WEBAUTHN_GET, expected_challenge=expected.challenge,
        expected_origins=(expected.issuer_origin,), allowed_top_origins=(expected.merchant_origin,),
        error=AssertionRejected,
    )
    # Policy: the fallback runs inside the merchant page; a top-level ceremony is not this flow.
    if response.client_data.cross_origin is not True:
        raise _reject("clientDataJSON.crossOrigin must be true for the fallback iframe", "cross_origin_required")
    ad = _check_authenticator(response, expected, stored_credential,
                              require_user_verification=require_user_verification)
    return _verified(response, ad, stored_credential, METHOD_FALLBACK, None)


@_wrapped
def verify_passkey_response(
    *,
    response: AuthenticationResponse,
    expected: ExpectedPayment,
    stored_credential: Credential,
    require_user_verification: bool = True,
) -> VerifiedPayment:
    """Verify a first-party page's top-level ``webauthn.get`` assertion for a transaction of that page."""
    # §7.2 credential and user steps: the credentials offered for this transaction (with or without a card).
    _check_credential(response, expected, stored_credential, shows_card=False)
    # §7.2 C.type "webauthn.get", C.challenge, C.origin = the page the transaction was initialized for,
    # and no crossOrigin or topOrigin: the ceremony ran in that page itself, not in a frame.
    check_client_data(
        response.client_data, expected_type=WEBAUTHN_GET, expected_challenge=expected.challenge,
        expected_origins=(expected.merchant_origin,), allowed_top_origins=None, error=AssertionRejected,
    )
    ad = _check_authenticator(response, expected, stored_credential,
                              require_user_verification=require_user_verification)
    return _verified(response, ad, stored_credential, METHOD_PASSKEY, None)


def _verified(response: AuthenticationResponse, ad: AuthenticatorData, stored: Credential, method: str,
              bbk: bytes | None) -> VerifiedPayment:
    return VerifiedPayment(
        credential_id=stored.credential_id, user_id=stored.user_id, method=method, sign_count=ad.sign_count,
        user_verified=ad.uv, backup_eligible=ad.be, backed_up=ad.bs, origin=response.client_data.origin,
        top_origin=response.client_data.top_origin, browser_bound_public_key=bbk,
    )
