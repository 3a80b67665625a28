"""The payment workflow, apart from HTTP: initialize, finalize, opt-out and the fallback iframe.

Plain async functions over an :class:`~spc_embed.context.IssuerContext`, callable
(and tested) without a request. They validate their input, read and write
through the store, verify with :mod:`spc_embed.payment`, and raise only this
library's errors (:class:`~spc_embed.errors.SPCEmbedError`), each with the
code and status the web layer answers with.

Decisions (also in the OpenAPI descriptions):

- An unknown user and a user without usable credentials get the same answer:
  no credential ids, no instrument, and a stored pending transaction in both
  cases, so even a repeated id answers 409 alike (docs/security.md S11).
- The payee (docs/security.md H7): what the browser shows as the payee is the
  merchant itself (its configured ``name``, one of its ``origins``) or one of
  the payees it is configured to take payments for, never what the request
  alone says.
- The card (docs/security.md H6): initialize's ``instrument_id`` names the card
  the payment is for, and only the credentials enrolled for that card are
  offered, with that card's name and art. Without it, the user's one card; a
  user with credentials for several cards then gets the answer of a user
  without credentials (S11: saying "name the card" would tell the caller the
  user has several), so an integration for such users must name the card.
- Expiry is applied where a transaction is read: the store reads a pending
  transaction past its TTL as expired, and this answers it as such, without a
  write on the way.
- Opt-out (SPC ``showOptOut``): the spec leaves acting on it to the party the
  user told; the issuer records it, fails the transaction, burns its challenge,
  and stops offering this user's credentials to *this merchant* (those enrolled
  before the opt-out). Revoking credentials for every merchant stays the issuer
  backend's decision, informed by the records. A report comes from the
  merchant's backend (its API key) or from its page, which must prove it was
  handed initialize's answer with the transaction's ``opt_out_token``; that
  proof is checked before the transaction is looked up, so a caller without it
  gets the answer for an unknown transaction whatever the id (docs/security.md H1).
- The issuer's own site (a first-party tenant, ``IssuerConfig.first_party_origins``)
  may confirm its transactions with a plain passkey assertion (``webauthn.get``,
  top-level on its page, as the Hanko Passkey API's flow does); the result's
  ``trans.method`` is then ``"passkey"``. A merchant's transaction never accepts
  one (docs/security.md A3).
- A passkey registered without a card (``/registration/*`` without
  ``instrument_*``) is offered only on the issuer's own site, beside the card's
  credentials, and confirms there with a plain passkey: SPC and the fallback
  frame show a card, so they refuse it (docs/security.md H6).
- Each request parses the browser's credential once
  (:func:`~spc_embed.payment.parse_authentication_response`) and verifies the
  parsed response.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .config import Merchant
from .context import IssuerContext
from .encoding import b64url_decode, b64url_encode
from .errors import AssertionRejected, Conflict, InvalidRequest, NotFound, SPCEmbedError, TokenError
from .i18n import is_locale_tag
from .payment import (
    WEBAUTHN_GET,
    AuthenticationResponse,
    ExpectedPayment,
    VerifiedPayment,
    parse_authentication_response,
    payment_request_options,
    verify_fallback_response,
    verify_passkey_response,
    verify_payment_response,
)
from .storage import Credential, OptOut, TransactionRecord, User
from .text import quoted, storable_text
from .tokens import MAX_INSTRUMENT_ID_LENGTH, MAX_OPT_OUT_TOKEN_LENGTH
from .transactions import (
    EXPIRED,
    FAILED,
    MAX_TRANSACTION_ID_LENGTH,
    MAX_USER_ID_LENGTH,
    PENDING,
    SUCCEEDED,
    parse_transaction_data,
    resolve_merchant_origin,
    validate_identifier,
)

STATE_ERRORS = {
    SUCCEEDED: ("this transaction has already been confirmed", "transaction_already_finalized"),
    FAILED: ("this transaction has failed (the user opted out)", "transaction_failed"),
    EXPIRED: ("this transaction has expired; initialize a new one", "transaction_expired"),
}


@dataclass(frozen=True)
class Initialized:
    """A started transaction: what the merchant page needs to run SPC (or the fallback)."""

    options: dict[str, Any]  # payment_request_options(): publicKey, mediation, secure_payment_confirmation, total
    transaction_id: str
    transaction_hash: str
    merchant_origin: str
    expires_at: int
    handle: str  # signed, names this transaction for the fallback iframe URL
    opt_out_token: str  # for the merchant page to prove an opt-out report (H1)


@dataclass(frozen=True)
class FallbackPage:
    """What the fallback iframe shows: the transaction to confirm, or why there is nothing to confirm."""

    handle: str | None  # to post back with the assertion; None when there is nothing to confirm
    record: TransactionRecord | None
    expected: ExpectedPayment | None
    error: SPCEmbedError | None


def transaction_id_of(value: object) -> str:
    return validate_identifier(value, field="transaction_id", max_length=MAX_TRANSACTION_ID_LENGTH)


async def initialize(ctx: IssuerContext, merchant: Merchant, body: Mapping[str, Any]) -> Initialized:
    """Start a payment confirmation for ``body`` (the initialize request); a repeated id is Conflict (409)."""
    config, store = ctx.config, ctx.store
    user_id = validate_identifier(body.get("user_id"), field="user_id", max_length=MAX_USER_ID_LENGTH)
    transaction_id = transaction_id_of(body.get("transaction_id"))
    data = parse_transaction_data(body.get("transaction_data"), default_currency=merchant.default_currency,
                                  default_payee=merchant.default_payee)
    if not merchant.may_show_payee(data.payee_name, data.payee_origin):
        raise InvalidRequest(
            f"transaction_data names the payee {quoted(data.payee_name)} at {quoted(data.payee_origin)}, which is "
            f"neither this merchant (name {merchant.name or None!r}, origins {list(merchant.origins)}) nor one of "
            "its configured payees", code="payee_not_allowed")
    show_opt_out = body.get("show_opt_out", False)
    if not isinstance(show_opt_out, bool):
        raise InvalidRequest("show_opt_out must be true or false")
    locale = body.get("locale")
    if locale is not None and not is_locale_tag(locale):
        raise InvalidRequest("locale must be a language tag such as \"de\" or \"fr-CH\"")
    instrument_id = body.get("instrument_id")
    if instrument_id is not None:
        instrument_id = validate_identifier(instrument_id, field="instrument_id", max_length=MAX_INSTRUMENT_ID_LENGTH)
    merchant_origin = resolve_merchant_origin(data, merchant.origins)
    now = store.now()

    def transaction(user: User | None, payable: list[Credential]) -> tuple[TransactionRecord, ExpectedPayment]:
        """The transaction for what the user can pay with, read in the same write that stores it."""
        card, usable = card_to_offer([c for c in payable if c.instrument_id], instrument_id)
        newest = usable[-1] if usable else None  # the card shown: never a card-less passkey
        if merchant_origin in config.first_party_origins:
            # The bank's own site also offers the user's passkeys registered without a card
            # (/registration/*); they confirm with a plain passkey only, never SPC (H6).
            usable += [c for c in payable if not c.instrument_id]
        expected = ExpectedPayment(
            challenge=transaction_challenge(), rp_id=config.rp_id, issuer_origin=config.origin,
            merchant_origin=merchant_origin, user_id=user_id,
            user_handle=user.user_handle if user and usable else None,
            credential_ids=tuple(c.credential_id for c in usable), amount=data.amount, currency=data.currency,
            payee_name=data.payee_name, payee_origin=data.payee_origin,
            instrument_name=newest.instrument_name if newest else None,
            instrument_icon=newest.instrument_icon if newest else None, instrument_id=card,
            logos=data.logos, timeout_ms=config.transaction_ttl * 1000, show_opt_out=show_opt_out, locale=locale,
        )
        return TransactionRecord(
            tenant_id=merchant.id, transaction_id=transaction_id, user_id=user_id, data=dict(data.raw),
            data_hash=data.hash, challenge=expected.challenge, expected=expected.to_json(),
            merchant_origin=merchant_origin, credential_ids=tuple(b64url_encode(c) for c in expected.credential_ids),
            state=PENDING, created_at=now, expires_at=now + config.transaction_ttl,
        ), expected

    # S11: the same queries and the same answer whether the user is unknown or has no credentials.
    expected = await store.start_transaction(merchant.id, user_id, transaction)
    return Initialized(
        options=payment_request_options(expected), transaction_id=transaction_id, transaction_hash=data.hash,
        merchant_origin=merchant_origin, expires_at=int(now + config.transaction_ttl),
        handle=ctx.payment_handles.mint(merchant.id, transaction_id),
        opt_out_token=ctx.opt_out_tokens.mint(merchant.id, transaction_id),
    )


def transaction_challenge() -> str:
    """32 bytes: the time in milliseconds (6 bytes), then 26 random bytes (208 bits; WebAuthn asks for 16 bytes).

    The time first keeps each new challenge near the last in the database's
    unique index of challenges, so a commit writes one or two of its pages
    instead of one random page per transaction (docs/security.md S8).
    """
    return b64url_encode((time.time_ns() // 1_000_000).to_bytes(6, "big") + secrets.token_bytes(26))


def card_to_offer(payable: list[Credential], instrument_id: str | None) -> tuple[str | None, list[Credential]]:
    """The card this payment is for and its credentials, oldest first (H6).

    The card named; else the user's only card; else (no card, or several) none.
    """
    if instrument_id is not None:
        return instrument_id, [c for c in payable if c.instrument_id == instrument_id]
    cards = {c.instrument_id for c in payable}
    if len(cards) == 1:
        return cards.pop(), payable
    return None, []


async def finalize(ctx: IssuerContext, tenants: Collection[str], credential: object, *,
                   transaction_id: object = None) -> str:
    """Verify a ``payment.get`` assertion for one of ``tenants``' transactions; return the result token.

    With ``transaction_id`` None (the Hanko Passkey API's bare credential) the
    transaction is the one whose challenge the assertion signed.
    """
    if transaction_id is None:
        response = parse_authentication_response(credential)
        record, stored = await _transaction_and_credential(
            ctx, tenants, response.credential_id, challenge=response.client_data.challenge)
        _require_pending(record)
        return await _complete(ctx, record, response, fallback=False, stored=(response.credential_id, stored))
    # An unknown or settled transaction is answered as such, whatever the credential looks like:
    # the credential is parsed after; its id is only guessed for the query that finds both.
    valid_id = transaction_id_of(transaction_id)
    guessed_id = _credential_id_hint(credential)
    if guessed_id is None:
        record, prefetched = await _one_transaction(ctx, tenants, transaction_id=valid_id), None
    else:
        record, stored = await _transaction_and_credential(ctx, tenants, guessed_id, transaction_id=valid_id)
        prefetched = (guessed_id, stored)
    _require_pending(record)
    response = parse_authentication_response(credential)
    return await _complete(ctx, record, response, fallback=False, stored=prefetched)


def _credential_id_hint(credential: object) -> bytes | None:
    """The credential id a credential names, if it is readable at all (the full parse decides later)."""
    if not isinstance(credential, dict):
        return None
    try:
        return b64url_decode(credential.get("rawId"), field="rawId")
    except InvalidRequest:
        return None


async def opt_out(ctx: IssuerContext, tenants: Collection[str], transaction_id: object, *,
                  reported_by: str, from_page: bool = False, proof: object = None) -> OptOut:
    """The user chose "opt out" in the SPC dialog of one of ``tenants``' transactions: record it.

    ``from_page``: the caller has no API key, only an allowlisted Origin, which
    any program can send; it must present ``proof``, the transaction's
    ``opt_out_token`` (H1).
    """
    valid_id = transaction_id_of(transaction_id)
    if from_page:
        tenants = _tenants_proven_by(ctx, tenants, valid_id, proof)
    record = await _one_transaction(ctx, tenants, transaction_id=valid_id)
    _require_pending(record)
    return await ctx.store.record_opt_out(record.tenant_id, record.transaction_id, reported_by=reported_by)


def _tenants_proven_by(ctx: IssuerContext, tenants: Collection[str], transaction_id: str, proof: object) -> list[str]:
    """The tenants for whose transaction ``transaction_id`` ``proof`` is the opt-out token; NotFound if none.

    Decided without the database, with the same answer as for an unknown
    transaction, so a caller without the token cannot tell which ids exist.
    """
    if proof is None:
        raise InvalidRequest("an opt-out from the merchant's page must carry the opt_out_token initialize returned",
                             code="opt_out_token_required")
    token = storable_text(proof, field="opt_out_token", max_length=MAX_OPT_OUT_TOKEN_LENGTH)
    proven = [tenant for tenant in tenants if ctx.opt_out_tokens.matches(token, tenant, transaction_id)]
    if not proven:
        raise _transaction_not_found()
    return proven


async def fallback_page(ctx: IssuerContext, handle: object) -> FallbackPage:
    """The transaction a fallback iframe link names, or the error to show instead."""
    record: TransactionRecord | None = None
    error: SPCEmbedError | None = None
    try:
        tenant_id, transaction_id = ctx.payment_handles.load(handle)
        record = await ctx.store.get_transaction(tenant_id, transaction_id)
        if record is None:
            raise TokenError("this link names no transaction")
        _require_pending(record)
        if not record.credential_ids:
            raise Conflict("no payment credential is set up for this card on this account", code="no_credentials")
    except SPCEmbedError as exc:
        error = exc
    return FallbackPage(
        handle=handle if error is None and isinstance(handle, str) else None, record=record,
        expected=ExpectedPayment.from_json(record.expected) if record else None, error=error,
    )


async def fallback_finalize(ctx: IssuerContext, handle: object, credential: object) -> str:
    """Verify the fallback iframe's ``webauthn.get`` assertion for the transaction ``handle`` names."""
    tenant_id, transaction_id = ctx.payment_handles.load(handle)
    record = await ctx.store.get_transaction(tenant_id, transaction_id)
    if record is None:
        raise NotFound("no such transaction", code="transaction_not_found")
    _require_pending(record)
    return await _complete(ctx, record, parse_authentication_response(credential), fallback=True)


async def transactions_of(ctx: IssuerContext, user_id: object, *, tenant_id: str | None) -> list[TransactionRecord]:
    """A user's transactions, newest first (of one tenant, or of all)."""
    valid_user_id = validate_identifier(user_id, field="user_id", max_length=MAX_USER_ID_LENGTH)
    return await ctx.store.list_transactions(valid_user_id, tenant_id=tenant_id)


def _transaction_not_found() -> NotFound:
    return NotFound("no such transaction for this merchant", code="transaction_not_found")


def _require_pending(record: TransactionRecord) -> None:
    if record.state != PENDING:
        message, code = STATE_ERRORS[record.state]
        raise Conflict(message, code=code)


async def _one_transaction(ctx: IssuerContext, tenants: Collection[str], *, transaction_id: str | None = None,
                           challenge: str | None = None) -> TransactionRecord:
    return _only(await ctx.store.find_transactions(tenants, transaction_id=transaction_id, challenge=challenge))


def _only(found: list[TransactionRecord]) -> TransactionRecord:
    if not found:
        raise _transaction_not_found()
    if len(found) > 1:
        raise InvalidRequest("several merchants share this origin and transaction id; call with an API key",
                             code="ambiguous_transaction")
    return found[0]


async def _transaction_and_credential(
    ctx: IssuerContext, tenants: Collection[str], credential_id: bytes, *, transaction_id: str | None = None,
    challenge: str | None = None,
) -> tuple[TransactionRecord, Credential | None]:
    found, stored = await ctx.store.find_transactions_and_credential(
        tenants, credential_id=credential_id, transaction_id=transaction_id, challenge=challenge)
    return _only(found), stored


def _verifier(ctx: IssuerContext, record: TransactionRecord, response: AuthenticationResponse, *,
              fallback: bool) -> Callable[..., VerifiedPayment]:
    """The verifier for this assertion: the fallback frame's, SPC's, or a first-party page's passkey."""
    if fallback:
        return verify_fallback_response
    if response.client_data.type != WEBAUTHN_GET:
        return verify_payment_response  # which accepts payment.get only
    # A plain passkey assertion shows the cardholder no amount: only the issuer's own site,
    # where the bank itself showed the transaction, may confirm with one (docs/security.md A3).
    if record.merchant_origin in ctx.config.first_party_origins:
        return verify_passkey_response
    raise AssertionRejected(
        "Unexpected clientDataJSON.type 'webauthn.get', expected 'payment.get': a merchant's transaction is "
        "confirmed with Secure Payment Confirmation (or the issuer's fallback frame); a plain passkey assertion "
        "confirms only a transaction of the issuer's own site", code="unexpected_type")


async def _complete(ctx: IssuerContext, record: TransactionRecord, response: AuthenticationResponse, *,
                    fallback: bool, stored: tuple[bytes, Credential | None] | None = None) -> str:
    """Verify (SPC, fallback or first-party passkey) and finalize atomically; return the result token.

    ``stored``: a credential id and its row (or None), when read already with the transaction.
    """
    verify = _verifier(ctx, record, response, fallback=fallback)
    if stored is None or stored[0] != response.credential_id:
        stored = response.credential_id, await ctx.store.get_credential(response.credential_id)
    stored_credential = stored[1]
    if stored_credential is None:
        raise AssertionRejected("this credential cannot confirm this transaction", code="credential_not_allowed")
    verified = verify(response=response, expected=ExpectedPayment.from_json(record.expected),
                      stored_credential=stored_credential)
    await ctx.store.finalize_transaction(
        record.tenant_id, record.transaction_id, challenge=record.challenge,
        credential_id=verified.credential_id, expected_sign_count=stored_credential.sign_count,
        new_sign_count=verified.sign_count, backed_up=verified.backed_up, method=verified.method,
        browser_bound_public_key=verified.browser_bound_public_key,
    )
    return ctx.result_signer.sign(
        user_id=record.user_id, tenant_id=record.tenant_id, credential_id=verified.credential_id,
        transaction_id=record.transaction_id, transaction_hash=record.data_hash, method=verified.method,
        instrument_id=stored_credential.instrument_id or None,  # a passkey without a card names none
    )
