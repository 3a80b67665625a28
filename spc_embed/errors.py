"""One exception hierarchy for everything a client can get wrong.

Each error carries a stable machine-readable ``code`` and the HTTP ``status``
the web layer answers with; the message is for humans and logs. Callers of the
core only ever see these (third-party errors are wrapped where they occur).
"""

from __future__ import annotations

from typing import Any


class SPCEmbedError(Exception):
    """Base class: a request this library refuses, with a code and a status."""

    code = "invalid_request"
    status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        if not message.isascii():
            # A lone surrogate that slipped into a message must not make the answer fail to encode
            # (docs/security.md H3); spc_embed.text.quoted is how messages show values in the first place.
            message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class InvalidRequest(SPCEmbedError):
    """Malformed input: bad JSON, bad base64url, wrong types, missing fields."""

    code = "invalid_request"


class VerificationError(SPCEmbedError):
    """A WebAuthn or SPC check failed. The message names expected and actual values."""

    code = "verification_failed"


class RegistrationError(VerificationError):
    code = "registration_rejected"


class AssertionRejected(VerificationError):
    code = "assertion_rejected"


class TokenError(SPCEmbedError):
    """A signed token (enrolment link, transaction handle) is unusable."""

    code = "invalid_token"
    status = 401


class TokenExpired(TokenError):
    code = "token_expired"

    def __init__(self, message: str, *, payload: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.payload = payload


class TokenUsed(TokenError):
    code = "token_used"


class ChallengeError(VerificationError):
    """The challenge is unknown, expired, already used or bound to another ceremony."""

    code = "invalid_challenge"


class Unauthorized(SPCEmbedError):
    code = "unauthorized"
    status = 401


class Forbidden(SPCEmbedError):
    code = "forbidden"
    status = 403


class NotFound(SPCEmbedError):
    code = "not_found"
    status = 404


class Conflict(SPCEmbedError):
    code = "conflict"
    status = 409


class UnsupportedMediaType(InvalidRequest):
    """A body in a content type the endpoint does not take (RFC 9110 §15.5.16)."""

    code = "unsupported_media_type"
    status = 415


class PayloadTooLarge(SPCEmbedError):
    code = "payload_too_large"
    status = 413


class StorageUnavailable(SPCEmbedError):
    """The database cannot be reached or refused the operation; nothing was written. Retry later."""

    code = "storage_unavailable"
    status = 503
    retry_after = 1


class ConfigurationError(ValueError):
    """Raised at construction when the issuer's configuration cannot work."""
