"""spc-embed: Secure Payment Confirmation for card issuers, mountable in any ASGI app."""

from __future__ import annotations

from .config import IssuerConfig, Merchant
from .errors import (
    AssertionRejected,
    ConfigurationError,
    InvalidRequest,
    RegistrationError,
    SPCEmbedError,
    TokenError,
    TokenExpired,
    TokenUsed,
    VerificationError,
)
from .issuer import Issuer
from .storage import Store
from .tokens import EnrollmentToken

__all__ = [
    "AssertionRejected",
    "ConfigurationError",
    "EnrollmentToken",
    "InvalidRequest",
    "Issuer",
    "IssuerConfig",
    "Merchant",
    "RegistrationError",
    "SPCEmbedError",
    "Store",
    "TokenError",
    "TokenExpired",
    "TokenUsed",
    "VerificationError",
]
