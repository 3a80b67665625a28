"""Managing a cardholder's payment credentials from the issuer's back office, apart from HTTP.

Credentials belong to the bank's cardholder, not to any one merchant, so the
web layer lets only admin keys (``IssuerConfig.admin_api_keys``) reach these.
A revoked credential is gone for every purpose: it is neither listed nor found.
"""

from __future__ import annotations

from .context import IssuerContext
from .encoding import b64url_decode
from .errors import InvalidRequest, NotFound
from .storage import Credential
from .text import storable_text
from .transactions import MAX_TEXT_LENGTH, MAX_USER_ID_LENGTH, validate_identifier


def _not_found() -> NotFound:
    return NotFound("no such credential", code="credential_not_found")


async def credentials_of(ctx: IssuerContext, user_id: object) -> list[Credential]:
    """A user's live credentials, oldest first."""
    valid_user_id = validate_identifier(user_id, field="user_id", max_length=MAX_USER_ID_LENGTH)
    return await ctx.store.list_credentials(valid_user_id)


async def live_credential(ctx: IssuerContext, credential_id: str) -> Credential:
    """The live credential with this base64url id; a malformed id is as unknown as a revoked one."""
    try:
        raw_id = b64url_decode(credential_id, field="credential id")
    except InvalidRequest:
        raise _not_found() from None
    found = await ctx.store.get_credential(raw_id) if raw_id else None
    if found is None or found.revoked_at is not None:
        raise _not_found()
    return found


def credential_name(value: object) -> str:
    """A name for a credential, as the cardholder will see it: checked before anything is looked up (H2)."""
    return storable_text(value, field="'name'", max_length=MAX_TEXT_LENGTH, allow_empty=True)


async def rename_credential(ctx: IssuerContext, credential: Credential, name: object) -> Credential:
    """Give a live credential (from :func:`live_credential`) a name the cardholder recognises."""
    name = credential_name(name)
    if not await ctx.store.rename_credential(credential.user_id, credential.credential_id, name):
        raise _not_found()
    return await ctx.store.get_credential(credential.credential_id) or credential


async def revoke_credential(ctx: IssuerContext, credential: Credential) -> None:
    """Revoke a live credential (from :func:`live_credential`): it confirms nothing from now on."""
    if not await ctx.store.revoke_credential(credential.user_id, credential.credential_id):
        raise _not_found()
