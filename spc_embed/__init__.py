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
    AuthenticationResponse,
    ExpectedPayment,
    VerifiedPayment,
    parse_authentication_response,
    payment_request_options,
    verify_fallback_assertion,
    verify_fallback_response,
    verify_payment_assertion,
    verify_payment_response,
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
    "AuthenticationResponse",
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
    "parse_authentication_response",
    "parse_transaction_data",
    "payment_request_options",
    "transaction_hash",
    "verify_fallback_assertion",
    "verify_fallback_response",
    "verify_payment_assertion",
    "verify_payment_response",
    "verify_result_token",
]
