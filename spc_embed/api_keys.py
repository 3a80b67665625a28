"""Who is calling the server-to-server API: a merchant, the issuer's back office (admin), or nobody.

Keys are presented in the ``apiKey`` header (as the Hanko Passkey API) or as
``Authorization: Bearer``; they are kept only as SHA-256 digests
(``IssuerConfig``) and compared in constant time against every digest (T1).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection

from .config import Merchant
from .errors import Unauthorized


def unauthorized() -> Unauthorized:
    # One code and message for missing, wrong, revoked and other-tenant keys.
    return Unauthorized("a valid API key is required (apiKey header or Authorization: Bearer)", code="invalid_api_key")


def presented_key(api_key_header: str | None, authorization_header: str | None) -> str | None:
    """The key the caller presented, from either header; both present must name the same key.

    Header values arrive as latin-1 text (each byte one character), so they are
    compared as the bytes that were sent: ``hmac.compare_digest`` refuses
    non-ASCII ``str`` with a TypeError. A key is printable ASCII (the
    configuration accepts nothing else), so any other byte is a wrong key, 401 (H4).
    """
    bearer = None
    if authorization_header is not None:
        scheme, _, value = authorization_header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <API key>'", code="invalid_api_key")
        bearer = value.strip()
    if api_key_header is not None and bearer is not None \
            and not hmac.compare_digest(_wire_bytes(api_key_header), _wire_bytes(bearer)):
        raise Unauthorized("the apiKey and Authorization headers name different keys", code="invalid_api_key")
    presented = api_key_header if api_key_header is not None else bearer
    if presented is not None and not (presented.isascii() and presented.isprintable()):
        raise unauthorized()
    return presented


def _wire_bytes(value: str) -> bytes:
    # latin-1 gives back the bytes of a header as sent; anything wider cannot have come from one.
    return value.encode("utf-8", "backslashreplace") if max(value, default="\0") > "\xff" else value.encode("latin-1")


class ApiKeys:
    """Constant-time lookup of API keys: every stored digest is compared, match or not (T1)."""

    def __init__(self, merchants: Collection[Merchant], admin_hashes: Collection[str]) -> None:
        self._entries: list[tuple[bytes, Merchant | None]] = [
            *((bytes.fromhex(h), m) for m in merchants for h in m.api_key_hashes),
            *((bytes.fromhex(h), None) for h in admin_hashes),
        ]

    def lookup(self, key: str) -> tuple[bool, Merchant | None]:
        """(matched, merchant): merchant None with matched True is the admin."""
        digest = hashlib.sha256(key.encode("utf-8", "backslashreplace")).digest()
        found: tuple[bool, Merchant | None] = (False, None)
        for stored, merchant in self._entries:
            if hmac.compare_digest(digest, stored):
                found = (True, merchant)
        return found

    def admin_or_merchant(self, presented: str | None) -> Merchant | None:
        """The merchant the key belongs to, or None for an admin key; Unauthorized for anything else."""
        if presented is None:
            raise unauthorized()
        matched, merchant = self.lookup(presented)
        if not matched:
            raise unauthorized()
        return merchant

    def merchant(self, presented: str | None) -> Merchant:
        merchant = self.admin_or_merchant(presented)
        if merchant is None:
            raise unauthorized()
        return merchant

    def admin(self, presented: str | None) -> None:
        if self.admin_or_merchant(presented) is not None:
            raise unauthorized()
