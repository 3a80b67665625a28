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
from .merchant import (
    MergedPolicy,
    PermissionsPolicyParseError,
    SPCMerchantMiddleware,
    delegate_features,
    install_jinja_globals,
    issuer_iframe,
)
from .payment import (
    ExpectedPayment,
    VerifiedPayment,
    payment_request_options,
    verify_fallback_assertion,
    verify_payment_assertion,
)
from .results import ResultSigner, verify_result_token
from .storage import Store
from .tokens import EnrollmentToken
from .transactions import TransactionData, canonical_json, parse_transaction_data, transaction_hash

__all__ = [
    "MergedPolicy",
    "PermissionsPolicyParseError",
    "SPCMerchantMiddleware",
    "delegate_features",
    "install_jinja_globals",
    "issuer_iframe",
    "AssertionRejected",
    "ConfigurationError",
    "EnrollmentToken",
    "ExpectedPayment",
    "InvalidRequest",
    "Issuer",
    "IssuerConfig",
    "Merchant",
    "RegistrationError",
    "ResultSigner",
    "SPCEmbedError",
    "Store",
    "TokenError",
    "TokenExpired",
    "TokenUsed",
    "TransactionData",
    "VerificationError",
    "VerifiedPayment",
    "canonical_json",
    "parse_transaction_data",
    "payment_request_options",
    "transaction_hash",
    "verify_fallback_assertion",
    "verify_payment_assertion",
    "verify_result_token",
]
