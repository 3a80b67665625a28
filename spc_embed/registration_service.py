"""Registration on the issuer's own pages, as the Hanko Passkey API's registration calls, apart from HTTP.

    initialize(ctx, body)       -> {"publicKey": PublicKeyCredentialCreationOptionsJSON}
    finalize(ctx, credential)   -> a JWT: sub (user id), cred, aud [rp_id], iat, iss, exp, jti

Only the issuer's back office calls these (the web layer requires an admin
key): a merchant must never enrol an authenticator for a cardholder. The
ceremony runs top-level on a first-party page (docs/security.md R15): the
issuer origin, or a configured tenant origin that is https with the rp_id as
its host or under it, never in a frame. Otherwise the checks are enrolment's
(R1-R13): the challenge is ours, of this purpose, live and unused, and it is
consumed in the same write that stores the credential; a credential id
registered before is 409 ``credential_exists``.

The card (SPC instrument): spc-embed adds ``instrument_id``, ``instrument_name``
and ``instrument_icon`` to Hanko's body. With them the credential is enrolled
for that card, exactly as through an enrolment link, and confirms SPC
payments for it. Without them it is a passkey of the issuer's rp_id for this
user and no card: listed and revocable like any credential, but never offered
for a payment (H6: every payment is for one card, and SPC shows that card).

Hanko's ``icon`` (a picture of the user) is validated as an image URL and
otherwise ignored: WebAuthn Level 2 removed ``user.icon`` and browsers show
none. It is not the card's icon, which is ``instrument_icon``.

What initialize decided (the user and the card) is carried by the challenge
row itself: its ``subject`` is the canonical JSON of both, and finalize
consumes the challenge only with that exact subject.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .clientdata import ClientData, parse_client_data
from .context import IssuerContext
from .credential_json import b64_member, read_envelope
from .encoding import b64url_encode
from .enrollment_input import (
    Card,
    icon_field,
    optional_card_fields,
    optional_text_field,
    text_field,
    user_id_field,
)
from .errors import ChallengeError, RegistrationError
from .registration import registration_options, verify_registration
from .storage import Challenge, Credential
from .text import quoted

API_REGISTRATION = "api-registration"  # the challenges' purpose: never accepted by the iframe's enrolment


@dataclass(frozen=True)
class Registration:
    """What initialize was asked for: the user, and the card if any."""

    user_id: str
    card: Card | None

    def subject(self) -> str:
        card = asdict(self.card) if self.card else None
        return json.dumps({"user_id": self.user_id, "card": card}, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_subject(cls, subject: str) -> Registration:
        data = json.loads(subject)
        return cls(user_id=data["user_id"], card=Card(**data["card"]) if data["card"] else None)


async def initialize(ctx: IssuerContext, body: Mapping[str, Any]) -> dict[str, Any]:
    """Creation options with the SPC ``payment`` extension, for Hanko's ``{"user_id", "username", ...}``."""
    config, store = ctx.config, ctx.store
    # Every field before anything is stored (H2).
    user_id = user_id_field(body)
    username = text_field(body, "username")
    display_name = optional_text_field(body, "display_name") or username
    if body.get("icon") is not None:
        icon_field(body, "icon")
    card = optional_card_fields(body)
    registration = Registration(user_id=user_id, card=card)
    user = await store.get_or_create_user(user_id, username, display_name, secrets.token_bytes(32))
    existing = await store.list_credentials(user.user_id)
    challenge = b64url_encode(secrets.token_bytes(32))
    await store.put_challenge(Challenge(
        challenge=challenge, purpose=API_REGISTRATION, subject=registration.subject(), user_id=user.user_id,
        expires_at=store.now() + config.challenge_ttl,
    ))
    options = registration_options(
        rp_id=config.rp_id, rp_name=config.rp_name, user_handle=user.user_handle,
        user_name=user.name, user_display_name=user.display_name, challenge=challenge,
        exclude_credential_ids=[c.credential_id for c in existing],
        timeout_ms=config.challenge_ttl * 1000,
    )
    return {"publicKey": options}


async def finalize(ctx: IssuerContext, credential: object) -> str:
    """Verify the RegistrationResponseJSON, store the credential, return the registration token."""
    config, store = ctx.config, ctx.store
    client_data = _client_data(credential)
    allowed = config.first_party_origins
    # Policy (R15): a first-party page, top-level; an iframe or another site enrols nothing here.
    if client_data.origin not in allowed:
        raise RegistrationError(f"Unexpected clientDataJSON.origin {quoted(client_data.origin)}, expected one of "
                                f"{sorted(allowed)} (the issuer's own pages)", code="origin_mismatch")
    if client_data.cross_origin is True or client_data.top_origin is not None:
        raise RegistrationError("clientDataJSON.crossOrigin must not be true: registration runs top-level on the "
                                "issuer's own page, never in a frame", code="cross_origin_not_allowed")
    challenge = await _issued_challenge(ctx, client_data)
    registration = Registration.from_subject(challenge.subject)
    verified = verify_registration(
        credential=credential,
        expected_challenge=challenge.challenge,
        expected_rp_id=config.rp_id,
        expected_origin=client_data.origin,
        allowed_top_origins=(),
        allowed_attestation_formats=config.allowed_attestation_formats,
    )
    card = registration.card
    stored = Credential(
        credential_id=verified.credential_id, user_id=challenge.user_id, public_key=verified.public_key,
        sign_count=verified.sign_count, alg=verified.alg, transports=verified.transports,
        aaguid=verified.aaguid, attestation_format=verified.attestation_format,
        backup_eligible=verified.backup_eligible, backed_up=verified.backed_up,
        instrument_name=card.instrument_name if card else "", instrument_icon=card.instrument_icon if card else "",
        instrument_id=card.instrument_id if card else "",
        enrolled_origin=client_data.origin, created_at=store.now(),
    )
    await store.add_credential(stored, challenge=challenge.challenge, subject=challenge.subject, token_id=None,
                               purpose=API_REGISTRATION)
    return ctx.result_signer.sign_registration(user_id=challenge.user_id, credential_id=verified.credential_id,
                                               rp_id=config.rp_id)


def _client_data(credential: object) -> ClientData:
    """clientDataJSON of a RegistrationResponseJSON, strictly parsed (P1, P2)."""
    _, response = read_envelope(credential)
    return parse_client_data(b64_member(response, "clientDataJSON", "response.clientDataJSON"))


async def _issued_challenge(ctx: IssuerContext, client_data: ClientData) -> Challenge:
    """The challenge initialize issued (R2): ours, of this purpose, live and unused."""
    challenge = await ctx.store.get_challenge(client_data.challenge)
    if (
        challenge is None
        or challenge.purpose != API_REGISTRATION
        or challenge.used_at is not None
        or challenge.expires_at <= ctx.store.now()
    ):
        raise ChallengeError("the challenge was not issued by /registration/initialize, has expired or was used")
    return challenge

